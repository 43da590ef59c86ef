"""Sessions for the tests: started with Flagpole's own API, sealed with the
Python SDK's own helper."""

from __future__ import annotations

from cryptography.fernet import Fernet
from workos.session import seal_session_from_auth_response

# The Python SDK seals with Fernet: the cookie password must be a Fernet key
# (32 url-safe base64-encoded bytes), not any 32-character string.
COOKIE_PASSWORD = Fernet.generate_key().decode()


def start_session(flagpole, who: str) -> dict:
    """A Flagpole session for a user of Acme, started with Flagpole's own API."""
    return flagpole.api(
        "POST",
        "/api/v1/sessions",
        {
            "user": {"external_id": f"u-{who}", "email": f"{who}@acme.example", "first_name": who.title()},
            "organization": {"external_id": "acme", "name": "Acme Inc"},
        },
    )


def seal(started: dict) -> str:
    """Seals Flagpole's session answer with the SDK's own sealing helper."""
    return seal_session_from_auth_response(
        access_token=started["access_token"],
        refresh_token=started["refresh_token"],
        user=started["user"],
        cookie_password=COOKIE_PASSWORD,
    )


def reason_text(result) -> str:
    reason = getattr(result, "reason", None)
    return str(getattr(reason, "value", reason))
