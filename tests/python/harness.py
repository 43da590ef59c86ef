"""Starts a real Flagpole for the Python SDK tests.

The Python twin of ../node/harness.mjs: the binary that `cargo test` built
(or FLAGPOLE_BIN), on a fresh SQLite file or a fresh PostgreSQL database
(made and dropped with `psql`), with secret keys made by `flagpole api-key
create`, and the environment's client id read from the `aud` of a probe
session's access token. Only the standard library is used here.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent

BINARY = os.environ.get("FLAGPOLE_BIN") or str(ROOT / "target" / "debug" / "flagpole")
POSTGRES_ADMIN_URL = os.environ.get(
    "FLAGPOLE_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres"
)
BACKENDS = ["sqlite", "postgres"]
_binary_wait_ran_out = False


class BackendUnavailable(Exception):
    """A prerequisite of a backend is missing (the binary, psql, PostgreSQL)."""


class ApiError(Exception):
    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        super().__init__(f"{method} {path} answered {status}: {body}")
        self.status = status
        self.body = body


_ports_handed_out: set[int] = set()


def free_port() -> int:
    """A free loopback port, never the same one twice in this process.

    The SDK keeps one PyJWKClient per JWKS URL for the life of the process
    (workos/session.py, `@lru_cache def _get_jwks_client`), with the key set
    cached for 300 s: a second Flagpole on a port used before would be
    verified against the first one's cached keys.
    """
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _ports_handed_out:
            _ports_handed_out.add(port)
            return port


def jwt_part(token: str, index: int) -> dict[str, Any]:
    """The decoded header (0) or payload (1) of a JWT, unverified."""
    part = token.split(".")[index]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def psql(sql: str) -> None:
    subprocess.run(
        ["psql", POSTGRES_ADMIN_URL, "-v", "ON_ERROR_STOP=1", "-qc", sql],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        check=True,
    )


def http_json(
    method: str,
    url: str,
    body: Any = None,
    headers: Optional[dict[str, str]] = None,
    timeout: float = 15,
) -> tuple[int, Any, Any]:
    """One request; answers (status, parsed JSON or None, response headers)."""
    data = None
    all_headers = dict(headers or {})
    if body is not None:
        data = json.dumps(body).encode()
        all_headers["content-type"] = "application/json"
    req = urllib.request.Request(url, data=data, method=method, headers=all_headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as res:
            raw = res.read()
            status, res_headers = res.status, res.headers
    except urllib.error.HTTPError as e:
        raw = e.read()
        status, res_headers = e.code, e.headers
    text = raw.decode("utf-8")
    parsed = json.loads(text) if text.strip() else None
    return status, parsed, res_headers


@dataclass
class Flagpole:
    backend: str
    base: str
    port: int
    key: str
    staging_key: str
    client_id: str
    env: dict[str, str] = field(repr=False)
    _stop: Callable[[], None] = field(repr=False)
    _child: subprocess.Popen = field(repr=False)

    def api(self, method: str, path: str, body: Any = None, key: Optional[str] = None) -> Any:
        """Calls Flagpole's own API (production key by default); raises ApiError on non-2xx."""
        try:
            status, parsed, _ = http_json(
                method,
                f"{self.base}{path}",
                body,
                {"authorization": f"Bearer {key or self.key}"},
            )
        except urllib.error.URLError as e:
            code = self._child.poll()
            state = "is still running" if code is None else f"exited with {code}"
            raise RuntimeError(f"{method} {path}: {e.reason}; the flagpole server {state}") from e
        if not 200 <= status < 300:
            raise ApiError(method, path, status, json.dumps(parsed))
        return parsed

    def cli(self, *args: str) -> str:
        return run_cli(self.env, *args)

    def workos(self, **options: Any):
        """An official WorkOS Python client pointed at this Flagpole."""
        from workos import WorkOSClient

        kwargs: dict[str, Any] = {
            "api_key": self.key,
            "client_id": self.client_id,
            "base_url": self.base,
            "request_timeout": 15,
        }
        kwargs.update(options)
        return WorkOSClient(**kwargs)

    def stop(self) -> None:
        self._stop()


def run_cli(env: dict[str, str], *args: str) -> str:
    out = subprocess.run(
        [BINARY, *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def _wait_until_healthy(base: str, child: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise RuntimeError(f"flagpole exited with {child.returncode} before it was healthy")
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=2) as res:
                if res.status == 200:
                    return
        except OSError:
            pass  # not listening yet
        time.sleep(0.1)
    raise RuntimeError("flagpole did not become healthy within 30 s")


def start_flagpole(backend: str, env: Optional[dict[str, Optional[str]]] = None) -> Flagpole:
    """Starts Flagpole on `backend` ('sqlite' or 'postgres').

    `env` (optional) adds environment variables for the server and its CLI,
    over the harness's own; a value of None removes one (for example one
    inherited from the shell), as in ../node/harness.mjs.

    Raises BackendUnavailable when a prerequisite is missing; any other
    failure is a real error.
    """
    # `cargo build` replaces the binary in place: wait out a rebuild's gap,
    # but only until one wait has run out (a binary that is really missing
    # is then reported at once for every other module).
    global _binary_wait_ran_out
    if not _binary_wait_ran_out:
        deadline = time.monotonic() + 60
        while not os.access(BINARY, os.X_OK) and time.monotonic() < deadline:
            time.sleep(1)
    if not os.access(BINARY, os.X_OK):
        _binary_wait_ran_out = True
        raise BackendUnavailable(
            f"{BINARY} is missing: run `cargo test --all-targets` (or cargo build) first, "
            "or set FLAGPOLE_BIN"
        )
    directory = tempfile.mkdtemp(prefix="flagpole-python-")
    drop_database: Callable[[], None] = lambda: None
    if backend == "sqlite":
        database_url = f"sqlite://{os.path.join(directory, 'flagpole.db')}"
    elif backend == "postgres":
        database = f"flagpole_python_{secrets.token_hex(6)}"
        if shutil.which("psql") is None:
            shutil.rmtree(directory, ignore_errors=True)
            raise BackendUnavailable("psql is not installed (Debian: postgresql-client)")
        try:
            psql(f"CREATE DATABASE {database}")
        except subprocess.CalledProcessError as e:
            shutil.rmtree(directory, ignore_errors=True)
            raise BackendUnavailable(
                f"PostgreSQL at {POSTGRES_ADMIN_URL} refused CREATE DATABASE ({e})"
            ) from e
        url = urllib.parse.urlsplit(POSTGRES_ADMIN_URL)
        database_url = urllib.parse.urlunsplit(url._replace(path=f"/{database}"))
        drop_database = lambda: psql(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
    else:
        raise ValueError(f"unknown backend {backend!r}")

    child: Optional[subprocess.Popen] = None

    def stop() -> None:
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(timeout=5)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        try:
            drop_database()
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    try:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server_env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "FLAGPOLE_BIND": f"127.0.0.1:{port}",
            "FLAGPOLE_PUBLIC_URL": base,
            "FLAGPOLE_DATA_DIR": directory,
            "FLAGPOLE_SECRET_KEY": secrets.token_hex(32),
            "RUST_LOG": os.environ.get("RUST_LOG", "error"),
        }
        for variable, value in (env or {}).items():
            if value is None:
                server_env.pop(variable, None)
            else:
                server_env[variable] = str(value)
        env = server_env
        run_cli(env, "migrate")
        key = run_cli(
            env, "api-key", "create", "--environment", "production", "--name", "python sdk",
            "--scope", "admin",
        )
        staging_key = run_cli(
            env, "api-key", "create", "--environment", "staging", "--name", "python sdk",
            "--scope", "admin",
        )
        child = subprocess.Popen(
            [BINARY, "serve"], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
        )
        _wait_until_healthy(base, child)

        # The environment's client id is the audience of its tokens.
        status, probe, _ = http_json(
            "POST",
            f"{base}/api/v1/sessions",
            {"user": {"external_id": "probe", "email": "probe@example.com"}},
            {"authorization": f"Bearer {key}"},
        )
        if not 200 <= status < 300:
            raise RuntimeError(f"the probe session answered {status}: {probe}")
        client_id = jwt_part(probe["access_token"], 1)["aud"]
    except BaseException:
        stop()
        raise

    return Flagpole(
        backend=backend,
        base=base,
        port=port,
        key=key,
        staging_key=staging_key,
        client_id=client_id,
        env=env,
        _stop=stop,
        _child=child,
    )
