// This suite must run on the Node 22 installed in its own node_modules
// (the `node` package): SDK 11 needs Node >= 22.11, and the system's Node
// may be older.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { realpathSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const here = dirname(fileURLToPath(import.meta.url));

test('runs on the Node 22 from this package, with WorkOS SDK 11', () => {
  const [major, minor] = process.versions.node.split('.').map(Number);
  assert.ok(major > 22 || (major === 22 && minor >= 11), `Node ${process.version} is older than 22.11`);
  assert.equal(
    realpathSync(process.execPath),
    realpathSync(join(here, 'node_modules', 'node', 'bin', 'node')),
    'the Node binary of node_modules/node',
  );
  const { version } = createRequire(import.meta.url)('@workos-inc/node/package.json');
  assert.match(version, /^11\./);
});
