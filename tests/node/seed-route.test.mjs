// The seed's server-side route (../../../shared/seed/feature-flags.md, "Use
// the feature flags in your application"), copied unchanged, against
// Flagpole: only the WorkOS client's options differ (API host, port,
// https: false).

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import express from 'express';
import cookieParser from 'cookie-parser';
import { WorkOS } from '@workos-inc/node';
import { BACKENDS, startFlagpole } from './harness.mjs';

/** The value of the `wos-session` cookie that a response sets. */
function sessionCookie(res) {
  const header = res.headers.getSetCookie().find((c) => c.startsWith('wos-session='));
  assert.ok(header, 'the route sets the wos-session cookie');
  const value = decodeURIComponent(header.split(';')[0].slice('wos-session='.length));
  return { header, value };
}

for (const backend of BACKENDS) {
  describe(`the seed's route on ${backend}`, () => {
    let flagpole;
    let workos;
    let server;
    let appBase;

    before(async () => {
      // The replay checks below are about strict reuse detection, so this
      // suite does not depend on the default grace period.
      flagpole = await startFlagpole(backend, { env: { FLAGPOLE_REFRESH_GRACE: '0' } });
      process.env.WORKOS_COOKIE_PASSWORD = randomBytes(24).toString('hex');
      workos = new WorkOS(flagpole.key, {
        apiHostname: '127.0.0.1',
        port: flagpole.port,
        https: false,
        clientId: flagpole.clientId,
      });
      const app = express();
      app.use(cookieParser());

      // ---- from the seed, unchanged ----
      app.get('/api/feature-flags', async (req, res) => {
        // load the original session
        const session = workos.userManagement.loadSealedSession({
          cookiePassword: process.env.WORKOS_COOKIE_PASSWORD,
          sessionData: req.cookies['wos-session'],
        });

        const { sealedSession, featureFlags } = await session.refresh();

        // set the updated refresh session data in a cookie
        res.cookie('wos-session', sealedSession, {
          httpOnly: true,
          sameSite: 'lax',
          secure: true,
        });

        // return the feature flags to the client
        res.json({
          featureFlags,
        });
      });
      // ---- end of the seed's code ----

      await new Promise((resolve) => {
        server = app.listen(0, '127.0.0.1', resolve);
      });
      appBase = `http://127.0.0.1:${server.address().port}`;
    });

    after(async () => {
      await new Promise((resolve) => (server ? server.close(resolve) : resolve()));
      await flagpole?.stop();
    });

    test('a flag turned on through the API shows up, and the cookie rotates', async () => {
      await flagpole.api('POST', '/api/v1/feature-flags', {
        name: 'New feature',
        slug: 'new-feature',
        description: 'The one the seed gates.',
      });
      // A session started through Flagpole, sealed by the SDK.
      const started = await flagpole.api('POST', '/api/v1/sessions', {
        user: { external_id: 'u-ada', email: 'ada@acme.example', first_name: 'Ada' },
        organization: { external_id: 'acme', name: 'Acme Inc' },
      });
      assert.deepEqual(started.feature_flags, []);
      const sealed = await workos.userManagement.authenticateWithRefreshToken({
        refreshToken: started.refresh_token,
        session: { sealSession: true, cookiePassword: process.env.WORKOS_COOKIE_PASSWORD },
      });
      assert.equal(sealed.user.email, 'ada@acme.example');
      assert.equal(sealed.organizationId, started.organization_id);
      let cookie = sealed.sealedSession;

      const get = () =>
        fetch(`${appBase}/api/feature-flags`, {
          headers: { cookie: `wos-session=${encodeURIComponent(cookie)}` },
        });

      let res = await get();
      assert.equal(res.status, 200);
      assert.deepEqual(await res.json(), { featureFlags: [] });
      const first = sessionCookie(res);
      assert.match(first.header, /HttpOnly/);
      assert.match(first.header, /SameSite=Lax/);
      assert.match(first.header, /Secure/);
      const before = await workos.userManagement.getSessionFromCookie({ sessionData: cookie });
      const afterFirst = await workos.userManagement.getSessionFromCookie({
        sessionData: first.value,
      });
      assert.notEqual(afterFirst.refreshToken, before.refreshToken, 'the refresh token rotated');
      assert.equal(afterFirst.organizationId, started.organization_id);
      const oldCookie = cookie;
      cookie = first.value;

      // Turn the flag on for Acme in Production with Flagpole's API.
      await flagpole.api('PUT', '/api/v1/feature-flags/new-feature/environments/production', {
        mode: 'some',
        targets: [{ type: 'organization', id: 'acme' }],
      });
      await flagpole.api('POST', '/api/v1/feature-flags/new-feature/environments/production/enable', {});

      res = await get();
      assert.equal(res.status, 200);
      assert.deepEqual(await res.json(), { featureFlags: ['new-feature'] });
      const second = sessionCookie(res);
      const afterSecond = await workos.userManagement.getSessionFromCookie({
        sessionData: second.value,
      });
      assert.notEqual(afterSecond.refreshToken, afterFirst.refreshToken, 'rotated again');
      assert.deepEqual(
        JSON.parse(Buffer.from(afterSecond.accessToken.split('.')[1], 'base64url')).feature_flags,
        ['new-feature'],
      );
      cookie = second.value;

      // The session authenticates with the SDK's own JWT check (JWKS from
      // /sso/jwks/{clientId}).
      const auth = await workos.userManagement
        .loadSealedSession({ sessionData: cookie, cookiePassword: process.env.WORKOS_COOKIE_PASSWORD })
        .authenticate();
      assert.equal(auth.authenticated, true, JSON.stringify(auth));
      assert.deepEqual(auth.featureFlags, ['new-feature']);
      assert.equal(auth.organizationId, started.organization_id);
      assert.equal(auth.sessionId, started.session_id);

      // An old cookie presented again is refresh-token reuse: the SDK reports
      // invalid_grant and Flagpole revokes the whole session.
      const replay = await workos.userManagement
        .loadSealedSession({ sessionData: oldCookie, cookiePassword: process.env.WORKOS_COOKIE_PASSWORD })
        .refresh();
      assert.deepEqual(replay, { authenticated: false, reason: 'invalid_grant' });
      const revoked = await workos.userManagement
        .loadSealedSession({ sessionData: cookie, cookiePassword: process.env.WORKOS_COOKIE_PASSWORD })
        .refresh();
      assert.deepEqual(revoked, { authenticated: false, reason: 'invalid_grant' });
    });

    test('revokeSession signs a user out: the next refresh is refused', async () => {
      const started = await flagpole.api('POST', '/api/v1/sessions', {
        user: { external_id: 'u-bob', email: 'bob@acme.example' },
        organization: { external_id: 'acme', name: 'Acme Inc' },
      });
      const { sealedSession } = await workos.userManagement.authenticateWithRefreshToken({
        refreshToken: started.refresh_token,
        session: { sealSession: true, cookiePassword: process.env.WORKOS_COOKIE_PASSWORD },
      });
      const session = workos.userManagement.loadSealedSession({
        sessionData: sealedSession,
        cookiePassword: process.env.WORKOS_COOKIE_PASSWORD,
      });
      const { sessionId } = await session.authenticate();
      assert.equal(sessionId, started.session_id);
      await workos.userManagement.revokeSession({ sessionId });
      assert.deepEqual(await session.refresh(), { authenticated: false, reason: 'invalid_grant' });
    });
  });
}
