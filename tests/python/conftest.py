"""The official WorkOS Python SDK (`workos` 10.6.0) against a real Flagpole.

The Python twin of tests/node: it runs the binary that `cargo test
--all-targets` built (target/debug/flagpole, or FLAGPOLE_BIN) on a fresh
SQLite file and on a fresh PostgreSQL database, and every test runs once per
backend. From the repository root, after `cargo test --all-targets`:

    python3 -m venv tests/python/.venv && tests/python/.venv/bin/pip install -r tests/python/requirements.txt && tests/python/.venv/bin/pytest tests/python

(Debian's python3 needs the python3-venv package for the first command.)

- PostgreSQL is FLAGPOLE_TEST_POSTGRES_URL, by default
  postgres://postgres@127.0.0.1:5432/postgres; each test module creates a
  database with `psql` and drops it afterwards.
- Without the binary, psql or PostgreSQL the tests that need them are
  SKIPPED with a loud message; with CI=true they fail instead.
- A module's `FLAGPOLE_ENV` dict adds environment variables for its
  Flagpole (server and CLI): test_webhooks.py sets
  FLAGPOLE_WEBHOOK_ALLOW=127.0.0.1 (the SSRF guard refuses a loopback
  receiver otherwise), test_seed_route.py FLAGPOLE_REFRESH_GRACE=0.
- Files: harness.py starts Flagpole; test_seed_route.py is the seed's
  server-side route written with the Python SDK (sealed session, refresh,
  authenticate, refresh-token reuse); test_feature_flags.py every
  feature-flag method; test_jwks.py get_jwks() and token verification;
  test_key_rotation.py the session flow after `flagpole keys rotate
  --algorithm RS256`; test_key_rotation_cached_jwks.py a rotation seen by
  an application whose process has the JWKS cached; test_webhooks.py
  `webhooks.verify_event` on deliveries captured by a local receiver;
  sessions.py starts sessions with Flagpole's API and seals them with the
  SDK's helpers.
"""

from __future__ import annotations

import os
import sys

import pytest

from harness import BACKENDS, BackendUnavailable, start_flagpole

CI = os.environ.get("CI", "").lower() in ("true", "1")

# The SDK would check the access tokens' issuer against this; the tests say
# when they want that (jwt_issuer=...).
os.environ.pop("WORKOS_ISSUER", None)


def _start(backend: str, env: dict):
    try:
        return start_flagpole(backend, env=env)
    except BackendUnavailable as e:
        message = f"the {backend} backend cannot start: {e}"
        if CI:
            pytest.fail(f"{message} (CI=true, so this is a failure)", pytrace=False)
        banner = "=" * 72
        print(f"\n{banner}\nSKIPPED: {message}\n{banner}", file=sys.stderr)
        pytest.skip(f"SKIPPED: {message}")


@pytest.fixture(scope="module", params=BACKENDS)
def flagpole(request):
    """A fresh Flagpole per test module and backend.

    A module may set `FLAGPOLE_ENV = {...}` for the server and its CLI (for
    example FLAGPOLE_WEBHOOK_ALLOW for a loopback webhook receiver).
    """
    fp = _start(request.param, dict(getattr(request.module, "FLAGPOLE_ENV", {})))
    yield fp
    fp.stop()


@pytest.fixture(scope="module")
def workos(flagpole):
    """The SDK client, configured as an application would point it at Flagpole."""
    client = flagpole.workos()
    yield client
    client.close()
