// The SDK's feature-flag methods and its runtime client against Flagpole:
// list (with auto-pagination), get, enable, disable, targets, the
// per-organization and per-user lists, and local evaluation that agrees
// with Flagpole's own.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { WorkOS, NotFoundException, UnauthorizedException } from '@workos-inc/node';
import { BACKENDS, startFlagpole } from './harness.mjs';

for (const backend of BACKENDS) {
  describe(`the SDK's feature flags on ${backend}`, () => {
    let flagpole;
    let workos;
    const ids = {};

    before(async () => {
      flagpole = await startFlagpole(backend);
      workos = new WorkOS(flagpole.key, {
        apiHostname: '127.0.0.1',
        port: flagpole.port,
        https: false,
        clientId: flagpole.clientId,
      });
      for (let i = 0; i < 12; i++) {
        const n = String(i).padStart(2, '0');
        await flagpole.api('POST', '/api/v1/feature-flags', {
          name: `Flag ${n}`,
          slug: `flag-${n}`,
          description: `Flag number ${i}`,
          tags: ['sdk'],
        });
      }
      const acme = await flagpole.api('POST', '/api/v1/organizations', { name: 'Acme', external_id: 'acme' });
      const globex = await flagpole.api('POST', '/api/v1/organizations', { name: 'Globex', external_id: 'globex' });
      const ada = await flagpole.api('POST', '/api/v1/users', { email: 'ada@acme.example', external_id: 'ada' });
      const bob = await flagpole.api('POST', '/api/v1/users', { email: 'bob@globex.example', external_id: 'bob' });
      await flagpole.api('POST', `/api/v1/organizations/${acme.id}/memberships`, { user_id: ada.id });
      await flagpole.api('POST', `/api/v1/organizations/${globex.id}/memberships`, { user_id: bob.id });
      Object.assign(ids, { acme: acme.id, globex: globex.id, ada: ada.id, bob: bob.id });
    });

    after(async () => {
      await flagpole?.stop();
    });

    test('lists flags newest first, ten a page, and auto-paginates', async () => {
      const page = await workos.featureFlags.listFeatureFlags();
      assert.equal(page.data.length, 10);
      assert.deepEqual(
        page.data.map((f) => f.slug),
        [11, 10, 9, 8, 7, 6, 5, 4, 3, 2].map((i) => `flag-${String(i).padStart(2, '0')}`),
      );
      assert.ok(page.listMetadata.after, 'a next page');
      const flag = page.data[0];
      assert.equal(flag.object, 'feature_flag');
      assert.equal(flag.name, 'Flag 11');
      assert.equal(flag.description, 'Flag number 11');
      assert.deepEqual(flag.tags, ['sdk']);
      assert.equal(flag.enabled, false);
      assert.equal(flag.defaultValue, false);
      assert.ok(Date.parse(flag.createdAt) > 0 && Date.parse(flag.updatedAt) > 0);

      const all = await page.autoPagination();
      assert.equal(all.length, 12);
      assert.deepEqual(new Set(all.map((f) => f.slug)).size, 12, 'each flag once');
      const asc = await workos.featureFlags.listFeatureFlags({ order: 'asc', limit: 2 });
      assert.deepEqual(asc.data.map((f) => f.slug), ['flag-00', 'flag-01']);
    });

    test('gets, enables and disables a flag', async () => {
      const flag = await workos.featureFlags.getFeatureFlag('flag-03');
      assert.equal(flag.slug, 'flag-03');
      assert.equal(flag.enabled, false);
      const on = await workos.featureFlags.enableFeatureFlag('flag-03');
      assert.equal(on.enabled, true);
      assert.equal((await workos.featureFlags.getFeatureFlag('flag-03')).enabled, true);
      const rule = await flagpole.api('GET', '/api/v1/feature-flags/flag-03/environments/production');
      assert.equal(rule.enabled, true, 'Flagpole sees the change');
      const off = await workos.featureFlags.disableFeatureFlag('flag-03');
      assert.equal(off.enabled, false);
      await assert.rejects(workos.featureFlags.getFeatureFlag('no-such-flag'), NotFoundException);
      await assert.rejects(workos.featureFlags.enableFeatureFlag('no-such-flag'), NotFoundException);
      const stranger = new WorkOS('sk_not_a_key', { apiHostname: '127.0.0.1', port: flagpole.port, https: false });
      await assert.rejects(stranger.featureFlags.listFeatureFlags(), UnauthorizedException);
    });

    test('targets decide the per-organization and per-user lists', async () => {
      await workos.featureFlags.enableFeatureFlag('flag-05');
      await workos.featureFlags.addFlagTarget({ slug: 'flag-05', targetId: ids.acme });
      await workos.featureFlags.enableFeatureFlag('flag-06');
      await workos.featureFlags.addFlagTarget({ slug: 'flag-06', targetId: ids.bob });

      const acme = await workos.organizations.listOrganizationFeatureFlags({ organizationId: ids.acme });
      assert.deepEqual(acme.data.map((f) => f.slug), ['flag-05']);
      const bob = await workos.userManagement.listUserFeatureFlags({ userId: ids.bob });
      assert.deepEqual(bob.data.map((f) => f.slug), ['flag-06']);
      // Ada is in Acme: her list holds her organizations' flags, as WorkOS's does.
      const ada = await workos.userManagement.listUserFeatureFlags({ userId: ids.ada });
      assert.deepEqual(ada.data.map((f) => f.slug), ['flag-05']);

      const evaluated = await flagpole.api('POST', '/api/v1/evaluate', {
        user_id: ids.ada,
        organization_id: ids.acme,
      });
      assert.deepEqual(evaluated.feature_flags, ['flag-05']);

      await workos.featureFlags.removeFlagTarget({ slug: 'flag-05', targetId: ids.acme });
      const after = await workos.organizations.listOrganizationFeatureFlags({ organizationId: ids.acme });
      assert.deepEqual(after.data, []);
      await assert.rejects(
        workos.featureFlags.addFlagTarget({ slug: 'flag-05', targetId: 'org_01NOSUCHORGANIZATION' }),
        NotFoundException,
      );
      // An organization Flagpole does not know is evaluated as given.
      const unknown = await workos.organizations.listOrganizationFeatureFlags({ organizationId: 'org_nope' });
      assert.deepEqual(unknown.data, []);
    });

    test('the runtime client evaluates like Flagpole, and follows changes', async () => {
      await flagpole.api('PUT', '/api/v1/feature-flags/flag-07/environments/production', { mode: 'all' });
      await flagpole.api('POST', '/api/v1/feature-flags/flag-07/environments/production/enable', {});
      await flagpole.api('PUT', '/api/v1/feature-flags/flag-08/environments/production', {
        mode: 'some',
        targets: [{ type: 'organization', id: 'globex' }, { type: 'user', id: 'ada' }],
      });
      await flagpole.api('POST', '/api/v1/feature-flags/flag-08/environments/production/enable', {});
      // A rule of mode None keeps its targets, which must not turn it on.
      await flagpole.api('PUT', '/api/v1/feature-flags/flag-09/environments/production', {
        mode: 'none',
        targets: [{ type: 'organization', id: 'acme' }],
      });
      await flagpole.api('POST', '/api/v1/feature-flags/flag-09/environments/production/enable', {});

      const client = workos.featureFlags.createRuntimeClient({ pollingIntervalMs: 5_000 });
      try {
        await client.waitUntilReady({ timeoutMs: 10_000 });
        const contexts = [
          { userId: ids.ada, organizationId: ids.acme },
          { userId: ids.bob, organizationId: ids.globex },
          { userId: ids.ada },
          { userId: ids.bob },
        ];
        const slugs = Object.keys(client.getAllFlags());
        assert.equal(slugs.length, 12);
        for (const context of contexts) {
          const evaluated = await flagpole.api('POST', '/api/v1/evaluate', {
            user_id: context.userId,
            organization_id: context.organizationId,
          });
          const local = slugs.filter((slug) => client.isEnabled(slug, context)).sort();
          assert.deepEqual(local, evaluated.feature_flags, JSON.stringify(context));
        }
        assert.equal(client.isEnabled('flag-08', { userId: ids.ada }), true);
        assert.equal(client.isEnabled('flag-09', { organizationId: ids.acme }), false);
        assert.equal(client.isEnabled('no-such-flag', {}, true), true, 'unknown flags take the default');

        // A change reaches the client at its next poll, with a change event.
        const changed = new Promise((resolve) => {
          client.on('change', (event) => {
            const targeted = event.current?.targets.users.some((t) => t.id === ids.bob);
            if (event.key === 'flag-10' && event.current?.enabled && targeted) resolve(event);
          });
        });
        await workos.featureFlags.enableFeatureFlag('flag-10');
        await workos.featureFlags.addFlagTarget({ slug: 'flag-10', targetId: ids.bob });
        const event = await changed;
        assert.equal(event.current.enabled, true);
        assert.equal(client.isEnabled('flag-10', { userId: ids.bob }), true);
        assert.equal(client.isEnabled('flag-10', { userId: ids.ada }), false);
      } finally {
        client.close();
      }
    });
  });
}
