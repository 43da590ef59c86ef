// Starts a real Flagpole for the SDK tests: the binary that `cargo test`
// built, on a fresh SQLite file or a fresh PostgreSQL database, with a
// secret key made by `flagpole api-key create`. Every suite runs once per
// backend. With CI=true a backend that cannot start fails the run.

import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..', '..');

export const BINARY =
  process.env.FLAGPOLE_BIN ?? join(root, 'target', 'debug', 'flagpole');

const POSTGRES_ADMIN_URL =
  process.env.FLAGPOLE_TEST_POSTGRES_URL ??
  'postgres://postgres@127.0.0.1:5432/postgres';

export const BACKENDS = ['sqlite', 'postgres'];

export function freePort() {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolvePort(port));
    });
  });
}

function psql(sql) {
  execFileSync('psql', [POSTGRES_ADMIN_URL, '-v', 'ON_ERROR_STOP=1', '-qc', sql], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
}

function cli(env, ...args) {
  return execFileSync(BINARY, args, {
    env,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  }).trim();
}

async function waitUntilHealthy(base, child) {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) {
      throw new Error(`flagpole exited with ${child.exitCode} before it was healthy`);
    }
    try {
      const res = await fetch(`${base}/healthz`);
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('flagpole did not become healthy within 30 s');
}

/**
 * Starts Flagpole on `backend` ('sqlite' or 'postgres').
 * `options.env` (optional) adds environment variables for the server and its
 * CLI, over the harness's own; a value of `undefined` removes one (for
 * example one inherited from the shell).
 * Returns { base, port, key, stagingKey, clientId, api, cli, stop }.
 */
export async function startFlagpole(backend, { env: extraEnv = {} } = {}) {
  if (!existsSync(BINARY)) {
    throw new Error(`${BINARY} is missing: run \`cargo test --all-targets\` (or cargo build) first`);
  }
  const dir = mkdtempSync(join(tmpdir(), 'flagpole-node-'));
  let databaseUrl;
  let dropDatabase = () => {};
  if (backend === 'sqlite') {
    databaseUrl = `sqlite://${join(dir, 'flagpole.db')}`;
  } else {
    const name = `flagpole_node_${randomBytes(6).toString('hex')}`;
    psql(`CREATE DATABASE ${name}`);
    const url = new URL(POSTGRES_ADMIN_URL);
    url.pathname = `/${name}`;
    databaseUrl = url.toString();
    dropDatabase = () => psql(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  }
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const env = {
    ...process.env,
    DATABASE_URL: databaseUrl,
    FLAGPOLE_BIND: `127.0.0.1:${port}`,
    FLAGPOLE_PUBLIC_URL: base,
    FLAGPOLE_DATA_DIR: dir,
    FLAGPOLE_SECRET_KEY: randomBytes(32).toString('hex'),
    RUST_LOG: process.env.RUST_LOG ?? 'error',
  };
  for (const [name, value] of Object.entries(extraEnv)) {
    if (value === undefined) delete env[name];
    else env[name] = String(value);
  }
  cli(env, 'migrate');
  const key = cli(env, 'api-key', 'create', '--environment', 'production', '--name', 'node sdk', '--scope', 'admin');
  const stagingKey = cli(env, 'api-key', 'create', '--environment', 'staging', '--name', 'node sdk', '--scope', 'admin');
  const child = spawn(BINARY, ['serve'], { env, stdio: ['ignore', 'ignore', 'inherit'] });
  try {
    await waitUntilHealthy(base, child);
  } catch (e) {
    child.kill('SIGKILL');
    throw e;
  }

  /** Calls Flagpole's own API with the production key. */
  async function api(method, path, body, secret = key) {
    const res = await fetch(`${base}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${secret}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    const json = text ? JSON.parse(text) : null;
    if (!res.ok) {
      throw new Error(`${method} ${path} answered ${res.status}: ${text}`);
    }
    return json;
  }

  // The environment's client id is the audience of its tokens.
  const probe = await api('POST', '/api/v1/sessions', {
    user: { external_id: 'probe', email: 'probe@example.com' },
  });
  const claims = JSON.parse(
    Buffer.from(probe.access_token.split('.')[1], 'base64url').toString(),
  );
  const clientId = claims.aud;

  async function stop() {
    if (child.exitCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5_000))]);
      if (child.exitCode === null) child.kill('SIGKILL');
    }
    try {
      dropDatabase();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  return {
    backend,
    base,
    port,
    key,
    stagingKey,
    clientId,
    api,
    cli: (...args) => cli(env, ...args),
    stop,
  };
}
