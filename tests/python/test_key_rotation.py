"""A key rotation seen by a running application that has the key set cached.

The SDK keeps one PyJWKClient per JWKS URL for the life of the process
(workos/session.py: `@lru_cache def _get_jwks_client(jwks_url)` returning
`PyJWKClient(jwks_url)` with PyJWT's defaults): the key set is cached for
300 s, and a token naming a kid the cached set lacks makes it fetch again
only if the last fetch is at least 30 s old (`cooldown_duration`); otherwise
`get_signing_key` raises PyJWKClientError, which `Session.authenticate()`
does not catch.

So `flagpole keys rotate` publishes the next keys at once and signs with
them only after FLAGPOLE_KEY_PUBLICATION_DELAY (600 s by default; 35 s here,
just over PyJWT's cooldown, to keep the test short). An application that
verified a token just before the rotation verifies every token after it.
"""

from __future__ import annotations

import time

import jwt
import pytest
from workos.session import (
    AuthenticateWithSessionCookieSuccessResponse,
    RefreshWithSessionCookieSuccessResponse,
)
from workos.user_management.models import JwksResponse

from harness import jwt_part
from sessions import COOKIE_PASSWORD, seal_with_sdk, start_session

FLAGPOLE_ENV = {"FLAGPOLE_KEY_PUBLICATION_DELAY": "35"}


def authenticate(workos, sealed):
    try:
        return workos.user_management.authenticate_with_session_cookie(
            session_data=sealed, cookie_password=COOKIE_PASSWORD
        )
    except jwt.PyJWKClientError as e:  # what the application's request would die of
        pytest.fail(f"authenticate() raised {e!r}")


def test_tokens_issued_across_a_rotation_verify_in_a_running_app(flagpole, workos):
    # The application verifies a session: its process now has the key set cached.
    response, sealed = seal_with_sdk(workos, start_session(flagpole, "warm"))
    auth = authenticate(workos, sealed)
    assert isinstance(auth, AuthenticateWithSessionCookieSuccessResponse), auth
    old_kid = jwt_part(response.access_token, 0)["kid"]
    fetched_at = time.monotonic()

    out = flagpole.cli("keys", "rotate", "--environment", "production")
    assert "from" in out, out

    # The next key is published at once, and get_jwks parses the whole set.
    jwks = workos.user_management.get_jwks(flagpole.client_id)
    assert isinstance(jwks, JwksResponse)
    kids = {k.kid for k in jwks.keys}
    assert old_kid in kids and len(kids) == 2, kids
    assert {(k.alg, k.kty) for k in jwks.keys} == {("RS256", "RSA")}
    (new_kid,) = kids - {old_kid}

    # Every token issued from now on verifies in that process, through the
    # takeover.
    deadline = time.monotonic() + 70
    while True:
        response, sealed = seal_with_sdk(workos, start_session(flagpole, "later"))
        kid = jwt_part(response.access_token, 0)["kid"]
        auth = authenticate(workos, sealed)
        assert isinstance(auth, AuthenticateWithSessionCookieSuccessResponse), (
            f"kid {kid}, {time.monotonic() - fetched_at:.1f} s after the app fetched the key set: {auth}"
        )
        if kid != old_kid:
            assert kid == new_kid
            break
        assert time.monotonic() < deadline, "the new key never took over"
        time.sleep(1)
    assert time.monotonic() - fetched_at >= 30, "the old key signed until the takeover"

    # Refreshing a session sealed before the rotation works on the new key too.
    session = workos.user_management.load_sealed_session(
        session_data=sealed, cookie_password=COOKIE_PASSWORD
    )
    refreshed = session.refresh()
    assert isinstance(refreshed, RefreshWithSessionCookieSuccessResponse), refreshed
    auth = authenticate(workos, refreshed.sealed_session)
    assert isinstance(auth, AuthenticateWithSessionCookieSuccessResponse), auth
