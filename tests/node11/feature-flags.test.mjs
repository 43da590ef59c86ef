// The WorkOS Node SDK 11's feature-flag methods and its runtime client
// against Flagpole: list (with auto-pagination), get, enable, disable,
// targets, the per-organization and per-user lists (which SDK 11 has on
// `workos.featureFlags`, where 8.13 had them on `organizations` and
// `userManagement`), and local evaluation that agrees with Flagpole's own.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { WorkOS, NotFoundException, UnauthorizedException } from '@workos-inc/node';
import { BACKENDS, startFlagpole } from '../node/harness.mjs';

const slug = (i) => `flag-${String(i).padStart(2, '0')}`;

for (const backend of BACKENDS) {
  describe(`the SDK 11 feature flags on ${backend}`, () => {
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

    test('lists flags newest first, ten a page, pages by cursor, and auto-paginates', async () => {
      const page = await workos.featureFlags.listFeatureFlags();
      assert.equal(page.object, 'list');
      assert.equal(page.data.length, 10);
      assert.deepEqual(
        page.data.map((f) => f.slug),
        [11, 10, 9, 8, 7, 6, 5, 4, 3, 2].map(slug),
      );
      assert.ok(page.listMetadata.after, 'a next page');
      const flag = page.data[0];
      assert.equal(flag.object, 'feature_flag');
      assert.match(flag.id, /^flag_/);
      assert.equal(flag.name, 'Flag 11');
      assert.equal(flag.slug, 'flag-11');
      assert.equal(flag.description, 'Flag number 11');
      assert.deepEqual(flag.tags, ['sdk']);
      assert.equal(flag.enabled, false);
      assert.equal(flag.defaultValue, false);
      assert.ok(Date.parse(flag.createdAt) > 0 && Date.parse(flag.updatedAt) > 0);

      // The next page, by the cursor the first one gave.
      const next = await workos.featureFlags.listFeatureFlags({ after: page.listMetadata.after });
      assert.deepEqual(next.data.map((f) => f.slug), [slug(1), slug(0)]);
      assert.equal(next.listMetadata.after, null, 'no page after the last');
      const back = await workos.featureFlags.listFeatureFlags({ before: next.listMetadata.before, limit: 3 });
      assert.deepEqual(back.data.map((f) => f.slug), [slug(4), slug(3), slug(2)]);

      const all = await page.autoPagination();
      assert.equal(all.length, 12);
      assert.deepEqual(new Set(all.map((f) => f.slug)).size, 12, 'each flag once');
      const asc = await workos.featureFlags.listFeatureFlags({ order: 'asc', limit: 2 });
      assert.deepEqual(asc.data.map((f) => f.slug), ['flag-00', 'flag-01']);
      // autoPagination() with a limit returns that one page, as the SDK documents.
      assert.deepEqual((await asc.autoPagination()).map((f) => f.slug), ['flag-00', 'flag-01']);
      // Without a limit it reads 100 a page, from the options' order.
      const allAsc = await (await workos.featureFlags.listFeatureFlags({ order: 'asc' })).autoPagination();
      assert.deepEqual(allAsc.map((f) => f.slug), [...Array(12).keys()].map(slug));
    });

    test('gets, enables and disables a flag', async () => {
      const flag = await workos.featureFlags.getFeatureFlag('flag-03');
      assert.equal(flag.slug, 'flag-03');
      assert.equal(flag.name, 'Flag 03');
      assert.equal(flag.enabled, false);
      const on = await workos.featureFlags.enableFeatureFlag('flag-03');
      assert.equal(on.object, 'feature_flag');
      assert.equal(on.slug, 'flag-03');
      assert.equal(on.enabled, true);
      assert.equal((await workos.featureFlags.getFeatureFlag('flag-03')).enabled, true);
      const rule = await flagpole.api('GET', '/api/v1/feature-flags/flag-03/environments/production');
      assert.equal(rule.enabled, true, 'Flagpole sees the change');
      const staging = await flagpole.api('GET', '/api/v1/feature-flags/flag-03/environments/staging', undefined, flagpole.stagingKey);
      assert.equal(staging.enabled, false, 'only the key’s environment changed');
      const off = await workos.featureFlags.disableFeatureFlag('flag-03');
      assert.equal(off.enabled, false);
      assert.equal((await workos.featureFlags.getFeatureFlag('flag-03')).enabled, false);
      await assert.rejects(workos.featureFlags.getFeatureFlag('no-such-flag'), NotFoundException);
      await assert.rejects(workos.featureFlags.enableFeatureFlag('no-such-flag'), NotFoundException);
      await assert.rejects(workos.featureFlags.disableFeatureFlag('no-such-flag'), NotFoundException);
      const stranger = new WorkOS('sk_not_a_key', { apiHostname: '127.0.0.1', port: flagpole.port, https: false });
      await assert.rejects(stranger.featureFlags.listFeatureFlags(), UnauthorizedException);
      await assert.rejects(stranger.featureFlags.getFeatureFlag('flag-03'), UnauthorizedException);
    });

    test('targets decide the per-organization and per-user lists', async () => {
      // SDK 11 has these lists on featureFlags only.
      assert.equal(workos.organizations.listOrganizationFeatureFlags, undefined);
      assert.equal(workos.userManagement.listUserFeatureFlags, undefined);

      await workos.featureFlags.enableFeatureFlag('flag-05');
      await workos.featureFlags.addFlagTarget({ slug: 'flag-05', targetId: ids.acme });
      await workos.featureFlags.enableFeatureFlag('flag-06');
      await workos.featureFlags.addFlagTarget({ slug: 'flag-06', targetId: ids.bob });

      const acme = await workos.featureFlags.listOrganizationFeatureFlags({ organizationId: ids.acme });
      assert.equal(acme.object, 'list');
      assert.deepEqual(acme.data.map((f) => f.slug), ['flag-05']);
      assert.equal(acme.data[0].object, 'feature_flag');
      assert.equal(acme.data[0].enabled, true);
      assert.deepEqual((await acme.autoPagination()).map((f) => f.slug), ['flag-05']);
      const globex = await workos.featureFlags.listOrganizationFeatureFlags({ organizationId: ids.globex });
      assert.deepEqual(globex.data, []);
      const bob = await workos.featureFlags.listUserFeatureFlags({ userId: ids.bob });
      assert.deepEqual(bob.data.map((f) => f.slug), ['flag-06']);
      assert.deepEqual((await bob.autoPagination()).map((f) => f.slug), ['flag-06']);
      // The lists take external ids too.
      const byExternalId = await workos.featureFlags.listUserFeatureFlags({ userId: 'bob' });
      assert.deepEqual(byExternalId.data.map((f) => f.slug), ['flag-06']);

      const evaluated = await flagpole.api('POST', '/api/v1/evaluate', {
        user_id: ids.ada,
        organization_id: ids.acme,
      });
      assert.deepEqual(evaluated.feature_flags, ['flag-05']);

      await workos.featureFlags.removeFlagTarget({ slug: 'flag-05', targetId: ids.acme });
      const afterRemoval = await workos.featureFlags.listOrganizationFeatureFlags({ organizationId: ids.acme });
      assert.deepEqual(afterRemoval.data, []);
      await workos.featureFlags.removeFlagTarget({ slug: 'flag-06', targetId: ids.bob });
      assert.deepEqual((await workos.featureFlags.listUserFeatureFlags({ userId: ids.bob })).data, []);

      await assert.rejects(
        workos.featureFlags.addFlagTarget({ slug: 'flag-05', targetId: 'org_01NOSUCHORGANIZATION' }),
        NotFoundException,
      );
      await assert.rejects(
        workos.featureFlags.addFlagTarget({ slug: 'no-such-flag', targetId: ids.acme }),
        NotFoundException,
      );
      // A user or an organization Flagpole does not know is evaluated as given.
      const unknownOrg = await workos.featureFlags.listOrganizationFeatureFlags({ organizationId: 'org_nope' });
      assert.deepEqual(unknownOrg.data, []);
      const unknownUser = await workos.featureFlags.listUserFeatureFlags({ userId: 'user_nope' });
      assert.deepEqual(unknownUser.data, []);
    });

    test('the per-organization and per-user lists page by cursor and auto-paginate', async () => {
      // Three flags on for Globex, and for Ada by name, newest first.
      for (const i of [0, 1, 2]) {
        await workos.featureFlags.enableFeatureFlag(slug(i));
        await workos.featureFlags.addFlagTarget({ slug: slug(i), targetId: ids.globex });
        await workos.featureFlags.addFlagTarget({ slug: slug(i), targetId: ids.ada });
      }
      try {
        const first = await workos.featureFlags.listOrganizationFeatureFlags({ organizationId: ids.globex, limit: 2 });
        assert.deepEqual(first.data.map((f) => f.slug), [slug(2), slug(1)]);
        assert.ok(first.listMetadata.after, 'a next page');
        const second = await workos.featureFlags.listOrganizationFeatureFlags({
          organizationId: ids.globex,
          limit: 2,
          after: first.listMetadata.after,
        });
        assert.deepEqual(second.data.map((f) => f.slug), [slug(0)]);
        const all = await (await workos.featureFlags.listOrganizationFeatureFlags({ organizationId: ids.globex })).autoPagination();
        assert.deepEqual(all.map((f) => f.slug), [slug(2), slug(1), slug(0)]);

        const ada = await workos.featureFlags.listUserFeatureFlags({ userId: ids.ada, limit: 1, order: 'asc' });
        assert.deepEqual(ada.data.map((f) => f.slug), [slug(0)]);
        assert.ok(ada.listMetadata.after, 'a next page');
        const adaNext = await workos.featureFlags.listUserFeatureFlags({
          userId: ids.ada,
          limit: 1,
          order: 'asc',
          after: ada.listMetadata.after,
        });
        assert.deepEqual(adaNext.data.map((f) => f.slug), [slug(1)]);
        const adaAll = await (await workos.featureFlags.listUserFeatureFlags({ userId: ids.ada })).autoPagination();
        assert.deepEqual(adaAll.map((f) => f.slug), [slug(2), slug(1), slug(0)]);
      } finally {
        for (const i of [0, 1, 2]) {
          await workos.featureFlags.removeFlagTarget({ slug: slug(i), targetId: ids.globex });
          await workos.featureFlags.removeFlagTarget({ slug: slug(i), targetId: ids.ada });
          await workos.featureFlags.disableFeatureFlag(slug(i));
        }
      }
    });

    test("the per-user list includes the flags of the user's organizations", async () => {
      // WorkOS: "Get a list of all enabled feature flags for the provided
      // user. This includes feature flags enabled specifically for the user
      // as well as any organizations that the user is a member of."
      const user = await flagpole.api('POST', '/api/v1/users', { email: 'una@initech.example', external_id: 'una' });
      const org = await flagpole.api('POST', '/api/v1/organizations', { name: 'Initech', external_id: 'initech' });
      await flagpole.api('POST', `/api/v1/organizations/${org.id}/memberships`, { user_id: user.id });
      await flagpole.api('POST', '/api/v1/feature-flags', { name: 'Org feature', slug: 'org-feature', description: '' });
      await flagpole.api('PUT', '/api/v1/feature-flags/org-feature/environments/production', {
        mode: 'some',
        targets: [{ type: 'organization', id: org.id }],
      });
      await flagpole.api('POST', '/api/v1/feature-flags/org-feature/environments/production/enable', {});

      const orgFlags = await workos.featureFlags.listOrganizationFeatureFlags({ organizationId: org.id });
      assert.deepEqual(orgFlags.data.map((f) => f.slug), ['org-feature'], 'the organization has the flag');
      const userFlags = await workos.featureFlags.listUserFeatureFlags({ userId: user.id });
      assert.ok(
        userFlags.data.some((f) => f.slug === 'org-feature'),
        `a member of a targeted organization gets its flag; got ${JSON.stringify(userFlags.data.map((f) => f.slug))}`,
      );
      assert.deepEqual(userFlags.data.map((f) => f.slug), ['org-feature']);
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
        const stats = client.getStats();
        assert.ok(stats.pollCount >= 1 && stats.pollErrorCount === 0, JSON.stringify(stats));
        assert.ok(stats.flagCount >= 12, JSON.stringify(stats));
        const contexts = [
          { userId: ids.ada, organizationId: ids.acme },
          { userId: ids.bob, organizationId: ids.globex },
          { userId: ids.ada },
          { userId: ids.bob },
        ];
        const slugs = Object.keys(client.getAllFlags());
        assert.ok(slugs.length >= 12, JSON.stringify(slugs));
        for (const context of contexts) {
          const evaluated = await flagpole.api('POST', '/api/v1/evaluate', {
            user_id: context.userId,
            organization_id: context.organizationId,
          });
          const local = slugs.filter((s) => client.isEnabled(s, context)).sort();
          assert.deepEqual(local, evaluated.feature_flags, JSON.stringify(context));
          // SDK 11's typed context form evaluates the same.
          const typed = {
            user: { id: context.userId },
            ...(context.organizationId ? { organization: { id: context.organizationId } } : {}),
          };
          const localTyped = Object.entries(client.getAllFlags(typed))
            .filter(([, on]) => on)
            .map(([s]) => s)
            .sort();
          assert.deepEqual(localTyped, evaluated.feature_flags, JSON.stringify(typed));
        }
        assert.equal(client.isEnabled('flag-07', {}), true, 'All is on for everyone');
        assert.equal(client.isEnabled('flag-08', { userId: ids.ada }), true);
        assert.equal(client.isEnabled('flag-08', { organization: { id: ids.globex } }), true);
        assert.equal(client.isEnabled('flag-09', { organizationId: ids.acme }), false);
        assert.equal(client.isEnabled('no-such-flag', {}, true), true, 'unknown flags take the default');
        const entry = client.getFlag('flag-08');
        assert.equal(entry.slug, 'flag-08');
        assert.equal(entry.enabled, true);
        assert.equal(entry.default_value, false);
        assert.deepEqual(entry.targets.users, [{ id: ids.ada, enabled: true }]);
        assert.deepEqual(entry.targets.organizations, [{ id: ids.globex, enabled: true }]);

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
        assert.equal(client.isEnabled('flag-10', { user: { id: ids.bob } }), true);
        assert.equal(client.isEnabled('flag-10', { userId: ids.ada }), false);
      } finally {
        client.close();
      }
    });

    test('the runtime client stops on a key Flagpole refuses', async () => {
      const stranger = new WorkOS('sk_not_a_key', { apiHostname: '127.0.0.1', port: flagpole.port, https: false });
      const client = stranger.featureFlags.createRuntimeClient({ pollingIntervalMs: 5_000 });
      // SDK 11's emitter throws an 'error' event that has no listener, as
      // Node's does: an application listens for it.
      const errors = [];
      client.on('error', (error) => errors.push(error));
      const failed = new Promise((resolve) => client.on('failed', resolve));
      try {
        await assert.rejects(client.waitUntilReady({ timeoutMs: 10_000 }), UnauthorizedException);
        assert.ok((await failed) instanceof UnauthorizedException, "'failed': the client stops polling");
        assert.equal(errors.length, 1);
        assert.ok(errors[0] instanceof UnauthorizedException);
        assert.equal(client.getStats().pollErrorCount, 1);
      } finally {
        client.close();
      }
    });
  });
}
