"""Sessions for the tests: started with Flagpole's own API, sealed with the
Python SDK's own helpers."""

from __future__ import annotations

from cryptography.fernet import Fernet
from workos.session import seal_session_from_auth_response

# The Python SDK seals with Fernet (workos/session.py, seal_data): the cookie
# password must be a Fernet key (32 url-safe base64-encoded bytes), not any
# 32-character string as in the Node SDK.
COOKIE_PASSWORD = Fernet.generate_key().decode()


def start_session(flagpole, who: str, org: bool = True) -> dict:
    """A Flagpole session for a user (of Acme), started with Flagpole's own API."""
    body: dict = {
        "user": {"external_id": f"u-{who}", "email": f"{who}@acme.example", "first_name": who.title()},
    }
    if org:
        body["organization"] = {"external_id": "acme", "name": "Acme Inc"}
    return flagpole.api("POST", "/api/v1/sessions", body)


def seal(started: dict) -> str:
    """Seals Flagpole's session answer as is with the SDK's sealing helper
    (no request: the tokens are Flagpole's first pair)."""
    return seal_session_from_auth_response(
        access_token=started["access_token"],
        refresh_token=started["refresh_token"],
        user=started["user"],
        cookie_password=COOKIE_PASSWORD,
    )


def seal_with_sdk(workos, started: dict):
    """The Python SDK's way to seal a first session: what Node's
    `authenticateWithRefreshToken({refreshToken, session: {sealSession: true,
    cookiePassword}})` does in one call. The 10.6 Python SDK's
    `authenticate_with_refresh_token` has no `session` argument, so an
    application exchanges the refresh token (the SDK parses the answer into
    AuthenticateResponse) and seals that answer with
    `workos.session.seal_session_from_auth_response`.

    Answers (AuthenticateResponse, sealed cookie)."""
    response = workos.user_management.authenticate_with_refresh_token(
        refresh_token=started["refresh_token"]
    )
    sealed = seal_session_from_auth_response(
        access_token=response.access_token,
        refresh_token=response.refresh_token,
        user=response.user.to_dict(),
        impersonator=response.impersonator.to_dict() if response.impersonator else None,
        cookie_password=COOKIE_PASSWORD,
    )
    return response, sealed


def reason_text(result) -> str:
    """A failed authenticate()/refresh()'s reason as text: an enum's value,
    or the string the SDK keeps for an unmapped exception (for a 400 from
    /user_management/authenticate that is str(BadRequestError), which holds
    `error=invalid_grant`)."""
    reason = getattr(result, "reason", None)
    return str(getattr(reason, "value", reason))
