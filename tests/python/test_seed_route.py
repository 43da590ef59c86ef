"""The seed's server-side route (../../../shared/seed/feature-flags.md, "Use
the feature flags in your application"), written with the Python SDK as a
tiny WSGI app, against Flagpole: only the client's options differ from an
application talking to WorkOS (base_url, client_id).

The session is started with Flagpole's own `POST /api/v1/sessions` (Flagpole
has no AuthKit) and sealed the Python SDK's way: its refresh token exchanged
with `user_management.authenticate_with_refresh_token` and the answer sealed
with `workos.session.seal_session_from_auth_response` (the Python twin of
Node's `authenticateWithRefreshToken({..., session: {sealSession: true}})`).
From then on only the SDK talks to Flagpole: `load_sealed_session(...)
.refresh()` posts `grant_type=refresh_token` to /user_management/authenticate
and verifies the new access token against /sso/jwks/{client_id} with
`jwt.decode(..., algorithms=["RS256"])`; `.authenticate()` verifies the
cookie's access token the same way, without a request but the JWKS fetch.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from http.cookies import SimpleCookie
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
from workos import BadRequestError
from workos.session import (
    AuthenticateWithSessionCookieSuccessResponse,
    RefreshWithSessionCookieSuccessResponse,
    seal_session_from_auth_response,
    unseal_data,
)
from workos.user_management.models import AuthenticateResponse

from harness import jwt_part
from sessions import COOKIE_PASSWORD, reason_text, seal, seal_with_sdk, start_session

# The replay checks are about strict reuse detection, as in
# ../node/seed-route.test.mjs: no grace period.
FLAGPOLE_ENV = {"FLAGPOLE_REFRESH_GRACE": "0"}


def make_app(workos, cookie_password: str):
    """The seed's route, in Python."""

    def app(environ, start_response):
        if environ["PATH_INFO"] != "/api/feature-flags" or environ["REQUEST_METHOD"] != "GET":
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found"]
        cookies = SimpleCookie()
        cookies.load(environ.get("HTTP_COOKIE", ""))
        cookie = cookies.get("wos-session")

        # ---- the seed's route ----
        # load the original session
        session = workos.user_management.load_sealed_session(
            session_data=cookie.value if cookie else "",
            cookie_password=cookie_password,
        )

        result = session.refresh()
        if not result.authenticated:
            # (Node's route would answer with undefined values here; a Python
            # app has to look at `authenticated` first.)
            body = json.dumps({"error": str(getattr(result.reason, "value", result.reason))})
            start_response("401 Unauthorized", [("Content-Type", "application/json")])
            return [body.encode()]

        # set the updated refresh session data in a cookie
        set_cookie = (
            f"wos-session={result.sealed_session}; Path=/; HttpOnly; SameSite=Lax; Secure"
        )
        # return the feature flags to the client
        body = json.dumps({"featureFlags": result.feature_flags})
        # ---- end of the seed's route ----
        start_response(
            "200 OK", [("Content-Type", "application/json"), ("Set-Cookie", set_cookie)]
        )
        return [body.encode()]

    return app


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


@pytest.fixture(scope="module")
def app_base(workos):
    server: WSGIServer = make_server(
        "127.0.0.1", 0, make_app(workos, COOKIE_PASSWORD), handler_class=_QuietHandler
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def get_route(app_base: str, cookie: str):
    """GET /api/feature-flags with the cookie; answers (status, json, set-cookie headers)."""
    req = urllib.request.Request(
        f"{app_base}/api/feature-flags", headers={"Cookie": f"wos-session={cookie}"}
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as res:
            return res.status, json.loads(res.read()), res.headers.get_all("Set-Cookie") or []
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null"), e.headers.get_all("Set-Cookie") or []


def session_cookie(set_cookies: list[str]) -> tuple[str, str]:
    """The header and the value of the wos-session cookie a response sets."""
    header = next((c for c in set_cookies if c.startswith("wos-session=")), None)
    assert header, f"the route sets the wos-session cookie (got {set_cookies})"
    return header, header.split(";")[0][len("wos-session=") :]


@pytest.fixture(scope="module")
def new_feature(flagpole):
    flagpole.api(
        "POST",
        "/api/v1/feature-flags",
        {"name": "New feature", "slug": "new-feature", "description": "The one the seed gates."},
    )
    return "new-feature"


def test_the_route_sees_a_flag_turned_on_and_rotates_the_cookie(flagpole, workos, app_base, new_feature):
    # A session started through Flagpole, sealed by the SDK.
    started = start_session(flagpole, "ada")
    assert started["feature_flags"] == []
    sealed, cookie = seal_with_sdk(workos, started)
    assert sealed.user.email == "ada@acme.example"
    assert sealed.organization_id == started["organization_id"]

    status, body, set_cookies = get_route(app_base, cookie)
    assert status == 200, body
    assert body == {"featureFlags": []}
    header, first = session_cookie(set_cookies)
    assert "HttpOnly" in header and "SameSite=Lax" in header and "Secure" in header
    before = unseal_data(cookie, COOKIE_PASSWORD)
    after_first = unseal_data(first, COOKIE_PASSWORD)
    assert after_first["refresh_token"] != before["refresh_token"], "the refresh token rotated"
    assert after_first["user"]["email"] == "ada@acme.example"
    old_cookie, cookie = cookie, first

    # Turn the flag on for Acme in Production with Flagpole's API.
    flagpole.api(
        "PUT",
        f"/api/v1/feature-flags/{new_feature}/environments/production",
        {"mode": "some", "targets": [{"type": "organization", "id": "acme"}]},
    )
    flagpole.api("POST", f"/api/v1/feature-flags/{new_feature}/environments/production/enable", {})

    status, body, set_cookies = get_route(app_base, cookie)
    assert status == 200, body
    assert body == {"featureFlags": [new_feature]}
    _, second = session_cookie(set_cookies)
    after_second = unseal_data(second, COOKIE_PASSWORD)
    assert after_second["refresh_token"] != after_first["refresh_token"], "rotated again"
    assert jwt_part(after_second["access_token"], 1)["feature_flags"] == [new_feature]
    cookie = second

    # The refreshed sealed session authenticates with the SDK's own JWT check.
    auth = workos.user_management.load_sealed_session(
        session_data=cookie, cookie_password=COOKIE_PASSWORD
    ).authenticate()
    assert isinstance(auth, AuthenticateWithSessionCookieSuccessResponse), auth
    assert auth.feature_flags == [new_feature]
    assert auth.organization_id == started["organization_id"]
    assert auth.session_id == started["session_id"]

    # The old cookie presented again is refresh-token reuse: invalid_grant,
    # and Flagpole revokes the whole session, so the newest cookie fails too.
    status, body, _ = get_route(app_base, old_cookie)
    assert status == 401 and "invalid_grant" in body["error"], body
    status, body, _ = get_route(app_base, cookie)
    assert status == 401 and "invalid_grant" in body["error"], body


def test_refresh_returns_the_flags_and_a_new_sealed_session(flagpole, workos, new_feature):
    flagpole.api(
        "PUT",
        f"/api/v1/feature-flags/{new_feature}/environments/production",
        {"mode": "some", "targets": [{"type": "organization", "id": "acme"}]},
    )
    flagpole.api("POST", f"/api/v1/feature-flags/{new_feature}/environments/production/enable", {})
    started = start_session(flagpole, "cy")
    sealed = seal(started)

    session = workos.user_management.load_sealed_session(
        session_data=sealed, cookie_password=COOKIE_PASSWORD
    )
    result = session.refresh()
    assert isinstance(result, RefreshWithSessionCookieSuccessResponse), result
    assert result.authenticated is True
    assert result.feature_flags == [new_feature]
    assert result.session_id == started["session_id"]
    assert result.organization_id == started["organization_id"]
    assert result.user["email"] == "cy@acme.example"
    assert result.sealed_session != sealed
    assert session.session_data == result.sealed_session, "the Session object keeps the new cookie"


def test_authenticate_works_on_a_session_sealed_through_the_sdk(flagpole, workos):
    # Tokens of /api/v1/sessions are the environment's fast ES256 ones; the
    # SDK's exchange of the refresh token (the README's way to seal a first
    # session) answers with an RS256 token, the only kind the SDK verifies.
    started = start_session(flagpole, "dee")
    assert jwt_part(started["access_token"], 0)["alg"] == "ES256"
    response, sealed = seal_with_sdk(workos, started)
    assert jwt_part(response.access_token, 0)["alg"] == "RS256"
    auth = workos.user_management.authenticate_with_session_cookie(
        session_data=sealed, cookie_password=COOKIE_PASSWORD
    )
    assert isinstance(auth, AuthenticateWithSessionCookieSuccessResponse), auth
    assert auth.session_id == started["session_id"]
    assert auth.organization_id == started["organization_id"]
    assert auth.feature_flags == started["feature_flags"]
    assert auth.user["email"] == "dee@acme.example"


def test_authenticate_with_refresh_token_answers_workos_authenticate_response(flagpole, workos):
    started = start_session(flagpole, "eve")
    response = workos.user_management.authenticate_with_refresh_token(
        refresh_token=started["refresh_token"]
    )
    assert isinstance(response, AuthenticateResponse)
    assert response.organization_id == started["organization_id"]
    assert response.refresh_token and response.refresh_token != started["refresh_token"]
    assert jwt_part(response.access_token, 1)["sid"] == started["session_id"]
    user = response.user
    assert user.id == started["user"]["id"] and user.id.startswith("user_")
    assert user.email == "eve@acme.example"
    assert user.first_name == "Eve"
    assert user.external_id == "u-eve"
    assert isinstance(user.email_verified, bool)
    assert user.created_at.tzinfo is not None and user.updated_at.tzinfo is not None

    # Sealed with the SDK's helper from the SDK's own answer, it authenticates.
    sealed = seal_session_from_auth_response(
        access_token=response.access_token,
        refresh_token=response.refresh_token,
        user=user.to_dict(),
        cookie_password=COOKIE_PASSWORD,
    )
    auth = workos.user_management.load_sealed_session(
        session_data=sealed, cookie_password=COOKIE_PASSWORD
    ).authenticate()
    assert isinstance(auth, AuthenticateWithSessionCookieSuccessResponse), auth
    assert auth.session_id == started["session_id"]


def test_a_replayed_sealed_session_is_invalid_grant_and_revokes_the_session(flagpole, workos):
    started = start_session(flagpole, "fay")
    old_cookie = seal(started)
    # Rotate once through the SDK (this call verifies no JWT).
    rotated = workos.user_management.authenticate_with_refresh_token(
        refresh_token=started["refresh_token"]
    )
    new_cookie = seal_session_from_auth_response(
        access_token=rotated.access_token,
        refresh_token=rotated.refresh_token,
        user=rotated.user.to_dict(),
        cookie_password=COOKIE_PASSWORD,
    )

    replay = workos.user_management.load_sealed_session(
        session_data=old_cookie, cookie_password=COOKIE_PASSWORD
    ).refresh()
    assert replay.authenticated is False
    assert "invalid_grant" in reason_text(replay), replay

    # The reuse revoked the session: the newest sealed session is refused too.
    revoked = workos.user_management.load_sealed_session(
        session_data=new_cookie, cookie_password=COOKIE_PASSWORD
    ).refresh()
    assert revoked.authenticated is False
    assert "invalid_grant" in reason_text(revoked), revoked
    with pytest.raises(BadRequestError) as raised:
        workos.user_management.authenticate_with_refresh_token(refresh_token=rotated.refresh_token)
    assert raised.value.status_code == 400
    assert raised.value.error == "invalid_grant"
    assert raised.value.error_description


def test_revoke_session_signs_a_user_out(flagpole, workos):
    started = start_session(flagpole, "gus")
    sealed = seal(started)
    workos.user_management.revoke_session(session_id=started["session_id"])
    result = workos.user_management.load_sealed_session(
        session_data=sealed, cookie_password=COOKIE_PASSWORD
    ).refresh()
    assert result.authenticated is False
    assert "invalid_grant" in reason_text(result), result

