"""The session flow after `flagpole keys rotate --environment production
--algorithm RS256`, the algorithm the Python SDK accepts.

This separates what the signing algorithm alone decides (refresh and
authenticate verify RS256 only) from the shape of /sso/jwks/{client_id}:
after a rotation the previous key stays published until its tokens expire,
and get_jwks() must still parse every key it lists.
"""

from __future__ import annotations

import time

import pytest
from workos.session import (
    AuthenticateWithSessionCookieSuccessResponse,
    RefreshWithSessionCookieSuccessResponse,
)
from workos.user_management.models import JwksResponse

from harness import jwt_part
from sessions import COOKIE_PASSWORD, seal, start_session


@pytest.fixture(scope="module")
def rotated(flagpole):
    """The kid of the new RS256 key."""
    before = start_session(flagpole, "pre")
    flagpole.cli("keys", "rotate", "--environment", "production", "--algorithm", "RS256")
    # A running Flagpole picks the new key up within its signing-key cache
    # time (about 10 s for the snapshot binary).
    deadline = time.monotonic() + 30
    while True:
        header = jwt_part(start_session(flagpole, "post")["access_token"], 0)
        if header["alg"] == "RS256" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert header["alg"] == "RS256", header
    assert header["kid"] != jwt_part(before["access_token"], 0)["kid"]
    flagpole.api(
        "POST",
        "/api/v1/feature-flags",
        {"name": "Rotated", "slug": "rotated", "description": "After the rotation."},
    )
    flagpole.api("PUT", "/api/v1/feature-flags/rotated/environments/production", {"mode": "all"})
    flagpole.api("POST", "/api/v1/feature-flags/rotated/environments/production/enable", {})
    return header["kid"]


def test_refresh_and_authenticate_work_once_tokens_are_rs256(flagpole, workos, rotated):
    started = start_session(flagpole, "rhea")
    session = workos.user_management.load_sealed_session(
        session_data=seal(started), cookie_password=COOKIE_PASSWORD
    )
    refreshed = session.refresh()
    assert isinstance(refreshed, RefreshWithSessionCookieSuccessResponse), refreshed
    assert refreshed.feature_flags == ["rotated"]
    assert refreshed.session_id == started["session_id"]
    auth = workos.user_management.load_sealed_session(
        session_data=refreshed.sealed_session, cookie_password=COOKIE_PASSWORD
    ).authenticate()
    assert isinstance(auth, AuthenticateWithSessionCookieSuccessResponse), auth
    assert auth.feature_flags == ["rotated"]
    assert auth.organization_id == started["organization_id"]


def test_get_jwks_parses_while_the_previous_key_is_still_published(flagpole, workos, rotated):
    jwks = workos.user_management.get_jwks(flagpole.client_id)
    assert isinstance(jwks, JwksResponse)
    assert rotated in [k.kid for k in jwks.keys]
    assert {(k.alg, k.kty) for k in jwks.keys} == {("RS256", "RSA")}
