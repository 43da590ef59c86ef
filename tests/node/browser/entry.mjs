// The browser side of browser-ofrep.test.mjs, bundled by esbuild at test
// time with the real OpenFeature web SDK and OFREP web provider: what a
// single-page application on another origin would do with a publishable key.
//
// The page's query names Flagpole (`flagpole`), the key (`key`), the poll
// interval in ms (`poll`) and the user (`user`). Everything the page sees
// lands in `window.__results` and on the page itself:
//   ready / initError   whether setProviderAndWait resolved
//   status              the client's provider status
//   values, details     getBooleanValue and getBooleanDetails of both flags
//   events              the provider events the client heard
//   requests            every fetch the page made, as the page saw it
//                       (method, url, If-None-Match sent, status, ETag read)
//   evaluate            the page's own POST /api/v1/evaluate with the key

import { OpenFeature, ProviderEvents } from '@openfeature/web-sdk';
import { OFREPWebProvider } from '@openfeature/ofrep-web-provider';

const FLAGS = { 'on-flag': false, 'off-flag': true }; // flag → default value

const params = new URLSearchParams(location.search);
const base = params.get('flagpole');
const key = params.get('key');
const poll = Number(params.get('poll') ?? '500');
const user = params.get('user') ?? 'user-1';

const results = {
  origin: location.origin,
  ready: false,
  initError: null,
  status: null,
  values: {},
  details: {},
  events: [],
  requests: [],
  evaluate: null,
  done: false,
};
window.__results = results;

// Wrap fetch before the provider is made: OFREPApi binds globalThis.fetch
// when it is constructed, so every request it sends goes through here.
const realFetch = globalThis.fetch.bind(globalThis);
globalThis.fetch = async (input, init) => {
  const request = input instanceof Request ? input : null;
  const headers = new Headers(init?.headers ?? request?.headers ?? {});
  const entry = {
    at: Date.now(),
    method: init?.method ?? request?.method ?? 'GET',
    url: request ? request.url : String(input),
    ifNoneMatch: headers.get('if-none-match'),
    status: null,
    etag: null,
    error: null,
  };
  results.requests.push(entry);
  try {
    const response = await realFetch(input, init);
    entry.status = response.status;
    // Readable only if Flagpole exposes it (Access-Control-Expose-Headers).
    entry.etag = response.headers.get('etag');
    return response;
  } catch (e) {
    entry.error = `${e?.name}: ${e?.message}`;
    throw e;
  } finally {
    render();
  }
};

const client = OpenFeature.getClient();

function snapshot() {
  results.status = client.providerStatus;
  for (const [flag, fallback] of Object.entries(FLAGS)) {
    results.values[flag] = client.getBooleanValue(flag, fallback);
    const d = client.getBooleanDetails(flag, fallback);
    results.details[flag] = {
      value: d.value,
      reason: d.reason ?? null,
      variant: d.variant ?? null,
      errorCode: d.errorCode ?? null,
      errorMessage: d.errorMessage ?? null,
      flagMetadata: { ...(d.flagMetadata ?? {}) },
    };
  }
  render();
}

function cell(text) {
  const td = document.createElement('td');
  td.textContent = text;
  return td;
}

function render() {
  const status = document.getElementById('status');
  if (!status) return;
  status.textContent =
    `${results.origin} → ${base} · provider ${results.status ?? '…'}` +
    (results.initError ? ` · ${results.initError}` : '');
  const rows = document.getElementById('flags');
  rows.replaceChildren(
    ...Object.keys(FLAGS).map((flag) => {
      const d = results.details[flag];
      const tr = document.createElement('tr');
      tr.dataset.flag = flag;
      tr.append(
        cell(flag),
        cell(d ? String(d.value) : '…'),
        cell(d?.reason ?? ''),
        cell(d?.variant ?? ''),
        cell(d?.errorCode ?? ''),
      );
      if (d) tr.className = d.errorCode ? 'error' : d.value ? 'on' : 'off';
      return tr;
    }),
  );
  const log = document.getElementById('requests');
  log.textContent = results.requests
    .slice(-14)
    .map((r) => {
      const path = r.url.replace(base, '');
      const sent = r.ifNoneMatch ? ` If-None-Match: ${r.ifNoneMatch}` : '';
      const got = r.error ?? `${r.status}${r.etag ? ` ETag: ${r.etag}` : ''}`;
      return `${r.method} ${path}${sent} → ${got}`;
    })
    .join('\n');
}

for (const event of [
  ProviderEvents.Ready,
  ProviderEvents.Error,
  ProviderEvents.Stale,
  ProviderEvents.ConfigurationChanged,
]) {
  client.addHandler(event, (details) => {
    results.events.push({
      at: Date.now(),
      type: event,
      message: details?.message ?? null,
      flagsChanged: details?.flagsChanged ?? null,
    });
    snapshot();
  });
}

async function main() {
  await OpenFeature.setContext({ targetingKey: user });
  try {
    await OpenFeature.setProviderAndWait(
      new OFREPWebProvider({
        baseUrl: base,
        headers: [['Authorization', `Bearer ${key}`]],
        pollInterval: poll,
        changeDetection: 'polling',
        // No localStorage: every page load asks Flagpole.
        cacheMode: 'disabled',
        timeoutMs: 5_000,
      }),
    );
    results.ready = true;
  } catch (e) {
    results.initError = `${e?.name}: ${e?.message}${e?.cause ? ` (${e.cause?.name}: ${e.cause?.message})` : ''}`;
  }
  snapshot();
  // The same key and context through Flagpole's own evaluation endpoint.
  try {
    const response = await fetch(`${base}/api/v1/evaluate`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ user_id: user }),
    });
    results.evaluate = { status: response.status, body: await response.json().catch(() => null) };
  } catch (e) {
    results.evaluate = { error: `${e?.name}: ${e?.message}` };
  }
  results.done = true;
  render();
}

main();
