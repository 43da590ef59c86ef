// Webhook deliveries from Flagpole, captured by a local receiver and checked
// with SDK 11's `webhooks.constructEvent`, as an application would.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { WorkOS, SignatureVerificationException } from '@workos-inc/node';
import { BACKENDS, startFlagpole } from '../node/harness.mjs';

/** A receiver that records every POST and answers 200. */
async function startReceiver() {
  const deliveries = [];
  const waiters = [];
  const server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk) => (body += chunk));
    req.on('end', () => {
      deliveries.push({ method: req.method, headers: req.headers, body });
      res.writeHead(200).end('ok');
      for (const waiter of waiters.splice(0)) waiter();
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));

  /** Waits (up to 20 s) for a delivery whose event matches. */
  async function next(predicate) {
    const deadline = Date.now() + 20_000;
    for (;;) {
      const found = deliveries.find((d) => predicate(JSON.parse(d.body)));
      if (found) return found;
      if (Date.now() > deadline) {
        throw new Error(`no matching delivery; got ${deliveries.map((d) => d.body).join('\n')}`);
      }
      await new Promise((resolve) => {
        waiters.push(resolve);
        setTimeout(resolve, 250);
      });
    }
  }
  return {
    url: `http://127.0.0.1:${server.address().port}/hooks/flagpole`,
    next,
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

for (const backend of BACKENDS) {
  describe(`webhooks with SDK 11 on ${backend}`, () => {
    let flagpole;
    let receiver;
    let secret;
    let workos;

    before(async () => {
      // The receiver listens on loopback, which webhooks refuse unless the
      // operator allows it.
      flagpole = await startFlagpole(backend, { env: { FLAGPOLE_WEBHOOK_ALLOW: '127.0.0.1' } });
      receiver = await startReceiver();
      secret = flagpole.cli(
        'webhooks', 'create',
        '--environment', 'production',
        '--url', receiver.url,
        '--events', 'flag.created,flag.updated,flag.rule_updated,flag.deleted',
      );
      assert.ok(secret.length >= 32, 'the CLI prints the signing secret');
      workos = new WorkOS(flagpole.key, {
        apiHostname: '127.0.0.1',
        port: flagpole.port,
        https: false,
        clientId: flagpole.clientId,
      });
    });

    after(async () => {
      await receiver?.close();
      await flagpole?.stop();
    });

    test('constructEvent accepts a delivery and rejects a forged one', async () => {
      await flagpole.api('POST', '/api/v1/feature-flags', {
        name: 'Hooked',
        slug: 'hooked',
        description: 'Delivered to the receiver.',
      });
      const delivery = await receiver.next((e) => e.event === 'flag.created' && e.data.slug === 'hooked');
      assert.equal(delivery.method, 'POST');
      assert.match(delivery.headers['content-type'], /application\/json/);
      const sigHeader = delivery.headers['workos-signature'];
      assert.match(sigHeader, /^t=\d+, v1=[0-9a-f]{64}$/);

      const payload = JSON.parse(delivery.body);
      const event = await workos.webhooks.constructEvent({ payload, sigHeader, secret });
      assert.equal(event.event, 'flag.created');
      assert.ok(event.id);
      assert.ok(Date.parse(event.createdAt) > 0);
      assert.equal(event.data.object, 'feature_flag');
      assert.equal(event.data.slug, 'hooked');
      assert.equal(event.data.name, 'Hooked');
      assert.equal(event.data.enabled, false);
      assert.equal(event.context.environment.slug, 'production');

      // SDK 11 also takes the raw body, as an application reads it.
      const fromRaw = await workos.webhooks.constructEvent({ payload: delivery.body, sigHeader, secret });
      assert.equal(fromRaw.id, event.id);
      assert.equal(fromRaw.data.slug, 'hooked');

      await assert.rejects(
        workos.webhooks.constructEvent({ payload, sigHeader, secret: 'not-the-secret' }),
        SignatureVerificationException,
      );
      await assert.rejects(
        workos.webhooks.constructEvent({
          payload: { ...payload, data: { ...payload.data, slug: 'forged' } },
          sigHeader,
          secret,
        }),
        SignatureVerificationException,
      );
    });

    test('a rule change in Production arrives as flag.rule_updated', async () => {
      await flagpole.api('PUT', '/api/v1/feature-flags/hooked/environments/production', { mode: 'all' });
      const delivery = await receiver.next((e) => e.event === 'flag.rule_updated' && e.data.slug === 'hooked');
      const event = await workos.webhooks.constructEvent({
        payload: JSON.parse(delivery.body),
        sigHeader: delivery.headers['workos-signature'],
        secret,
      });
      assert.equal(event.data.defaultValue, true);
      assert.equal(event.context.environment.slug, 'production');

      await workos.featureFlags.enableFeatureFlag('hooked');
      const toggled = await receiver.next(
        (e) => e.event === 'flag.updated' && e.data.slug === 'hooked' && e.data.enabled === true,
      );
      const updated = await workos.webhooks.constructEvent({
        payload: JSON.parse(toggled.body),
        sigHeader: toggled.headers['workos-signature'],
        secret,
      });
      assert.equal(updated.data.enabled, true);
    });
  });
}
