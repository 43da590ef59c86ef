// Sessions with the WorkOS Node SDK 11 as a real application meets them:
// two browser tabs refreshing the same sealed session at once, and a
// signing-key rotation while the SDK holds a cached JWKS. Both run on
// Flagpole's defaults (no FLAGPOLE_REFRESH_GRACE from the shell).

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { WorkOS } from '@workos-inc/node';
import { BACKENDS, startFlagpole } from '../node/harness.mjs';

const cookiePassword = randomBytes(24).toString('hex');

/** The JOSE header of a JWT. */
const jwtHeader = (token) => JSON.parse(Buffer.from(token.split('.')[0], 'base64url').toString());

for (const backend of BACKENDS) {
  describe(`SDK 11 sessions on ${backend}`, () => {
    let flagpole;
    let n = 0;

    before(async () => {
      flagpole = await startFlagpole(backend, { env: { FLAGPOLE_REFRESH_GRACE: undefined } });
    });

    after(async () => {
      await flagpole?.stop();
    });

    /** A new WorkOS client, with its own (empty) JWKS cache. */
    function client() {
      return new WorkOS(flagpole.key, {
        apiHostname: '127.0.0.1',
        port: flagpole.port,
        https: false,
        clientId: flagpole.clientId,
      });
    }

    /** A session started through Flagpole and sealed by the SDK. */
    async function sealedSession(workos) {
      n += 1;
      const started = await flagpole.api('POST', '/api/v1/sessions', {
        user: { external_id: `u-${n}`, email: `user${n}@acme.example` },
        organization: { external_id: 'acme', name: 'Acme Inc' },
      });
      const { sealedSession: sealed } = await workos.userManagement.authenticateWithRefreshToken({
        refreshToken: started.refresh_token,
        session: { sealSession: true, cookiePassword },
      });
      return { started, sealed };
    }

    const load = (workos, sessionData) =>
      workos.userManagement.loadSealedSession({ sessionData, cookiePassword });

    test('two tabs refreshing the same cookie at once are both signed in', async () => {
      const workos = client();
      const { started, sealed } = await sealedSession(workos);

      // Two requests from two tabs carry the same cookie and refresh it together.
      const [a, b] = await Promise.all([load(workos, sealed).refresh(), load(workos, sealed).refresh()]);
      assert.equal(a.authenticated, true, `tab A: ${JSON.stringify(a)}`);
      assert.equal(b.authenticated, true, `tab B: ${JSON.stringify(b)}`);
      assert.equal(a.sessionId, started.session_id);
      assert.equal(b.sessionId, started.session_id);
      assert.equal(
        a.session.refreshToken,
        b.session.refreshToken,
        'within the grace period the same refresh token gets the same new pair',
      );

      // The session goes on from either tab's new cookie.
      const later = await load(workos, b.sealedSession).refresh();
      assert.equal(later.authenticated, true, JSON.stringify(later));
      const auth = await load(workos, later.sealedSession).authenticate();
      assert.equal(auth.authenticated, true, JSON.stringify(auth));
    });

    test('a second tab refreshing the old cookie just after the first is signed in too', async () => {
      const workos = client();
      const { started, sealed } = await sealedSession(workos);

      const a = await load(workos, sealed).refresh();
      assert.equal(a.authenticated, true, `tab A: ${JSON.stringify(a)}`);
      const b = await load(workos, sealed).refresh();
      assert.equal(b.authenticated, true, `tab B, a moment later with the old cookie: ${JSON.stringify(b)}`);
      assert.equal(b.sessionId, started.session_id);
      assert.equal(b.session.refreshToken, a.session.refreshToken, 'the same new pair');
      const later = await load(workos, a.sealedSession).refresh();
      assert.equal(later.authenticated, true, JSON.stringify(later));
    });

    test('after `flagpole keys rotate`, new tokens verify with the JWKS the SDK cached', async () => {
      const workos = client();
      const { started, sealed } = await sealedSession(workos);
      // authenticate() fetches /sso/jwks/{clientId} and caches it: the SDK's
      // createRemoteJWKSet (cooldownDuration 5 min, cacheMaxAge 10 min)
      // fetches it again only after the cooldown, even for an unknown kid.
      const first = await load(workos, sealed).authenticate();
      assert.equal(first.authenticated, true, JSON.stringify(first));
      const signedBefore = jwtHeader(first.accessToken).kid;
      const cached = await (await fetch(`${flagpole.base}/sso/jwks/${flagpole.clientId}`)).json();
      const cachedKids = cached.keys.map((k) => k.kid);
      assert.ok(cachedKids.includes(signedBefore));

      flagpole.cli('keys', 'rotate', '--environment', 'production');

      const published = await (await fetch(`${flagpole.base}/sso/jwks/${flagpole.clientId}`)).json();
      const publishedKids = published.keys.map((k) => k.kid);
      assert.ok(
        publishedKids.some((kid) => !cachedKids.includes(kid)),
        `the rotation published a new key: before ${cachedKids}, after ${publishedKids}`,
      );
      for (const kid of cachedKids) {
        assert.ok(publishedKids.includes(kid), `the old key ${kid} stays published`);
      }

      // The running server reads its signing keys again every few seconds
      // (about 10 s): wait, up to 20 s, until a token it signs names another
      // key than before the rotation, so that the tokens below are "new".
      // (A server that defers the switch keeps signing with the old key, and
      // that is fine too: what matters is the JWKS the SDK already has.)
      const deadline = Date.now() + 20_000;
      for (;;) {
        const probe = await flagpole.api('POST', '/api/v1/sessions', { user_id: started.user.id });
        if (jwtHeader(probe.access_token).kid !== signedBefore || Date.now() > deadline) break;
        await new Promise((resolve) => setTimeout(resolve, 500));
      }

      // A refresh after the rotation gets a token that the same SDK client,
      // with its cached JWKS, accepts.
      const refreshed = await load(workos, sealed).refresh();
      assert.equal(refreshed.authenticated, true, JSON.stringify(refreshed));
      const { kid } = jwtHeader(refreshed.session.accessToken);
      // (SDK 11's isValidJwt() rethrows jose's ERR_JWKS_NO_MATCHING_KEY instead
      // of answering invalid_jwt, so an unknown kid throws out of authenticate().)
      const auth = await load(workos, refreshed.sealedSession)
        .authenticate()
        .catch((error) => ({ authenticated: false, threw: `${error.code}: ${error.message}` }));
      assert.equal(
        auth.authenticated,
        true,
        `a token signed after the rotation (kid ${kid}) verifies with the JWKS cached before it (kids ${cachedKids}): ${JSON.stringify(auth)}`,
      );
      assert.equal(auth.sessionId, started.session_id);
      assert.ok(cachedKids.includes(kid), `kid ${kid} was published before the rotation (${cachedKids})`);

      // A client that fetches the JWKS now accepts both the old and the new token.
      const fresh = client();
      const old = await load(fresh, sealed).authenticate();
      assert.equal(old.authenticated, true, `the token from before the rotation: ${JSON.stringify(old)}`);
      const renewed = await load(fresh, refreshed.sealedSession).authenticate();
      assert.equal(renewed.authenticated, true, JSON.stringify(renewed));
    });
  });
}
