"""JWKS and access-token verification the way the Python SDK does it.

- `user_management.get_jwks(client_id)` GETs /sso/jwks/{client_id} and parses
  it into JwksResponse / JwksResponseKeys, which index `x5c`, `n`, `e`, `kid`
  and `x5t#S256` of every key (an EC or OKP key fails the whole call).
- `Session.authenticate()` / `refresh()` fetch the same URL with PyJWT's
  PyJWKClient (urllib, no Authorization header, redirects refused) and call
  `jwt.decode(..., algorithms=["RS256"], options={"verify_aud": False},
  issuer=<jwt_issuer or WORKOS_ISSUER, else unchecked>)`.
"""

from __future__ import annotations

import base64
import hashlib

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from workos import NotFoundError
from workos.session import AuthenticateWithSessionCookieSuccessResponse
from workos.user_management.models import JwksResponse, JwksResponseKeys

from harness import http_json, jwt_part
from sessions import COOKIE_PASSWORD, seal_with_sdk, start_session


def b64url_uint(value: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)), "big")


@pytest.fixture(scope="module")
def sdk_session(flagpole, workos):
    """A session started with Flagpole's API and sealed through the SDK
    (the README's way): (Flagpole's first answer, the SDK's answer, cookie)."""
    started = start_session(flagpole, "jo")
    response, sealed = seal_with_sdk(workos, started)
    return started, response, sealed


@pytest.fixture(scope="module")
def started(sdk_session):
    """The SDK's tokens of the session, with Flagpole's ids."""
    first, response, _ = sdk_session
    return {**first, "access_token": response.access_token}


def test_tokens_are_rs256_jwts_with_a_kid(started):
    header = jwt_part(started["access_token"], 0)
    assert header["alg"] == "RS256", f"the SDK verifies RS256 only; the header is {header}"
    assert header.get("kid")


def test_get_jwks_parses_and_holds_the_signing_key(flagpole, workos, started):
    jwks = workos.user_management.get_jwks(flagpole.client_id)
    assert isinstance(jwks, JwksResponse)
    assert jwks.keys, "at least one key"
    for key in jwks.keys:
        assert isinstance(key, JwksResponseKeys)
        assert (key.alg, key.kty, key.use) == ("RS256", "RSA", "sig")
        assert key.kid and key.n and key.e
        assert isinstance(key.x_5_c, list)
        assert isinstance(key.x_5_t_s_256, str)
    kid = jwt_part(started["access_token"], 0)["kid"]
    assert kid in [k.kid for k in jwks.keys]
    with pytest.raises(NotFoundError):
        workos.user_management.get_jwks("client_01NOSUCHCLIENT")


def test_the_jwks_url_is_public_and_served_directly(flagpole, workos):
    url = workos.user_management.get_jwks_url()
    assert url == f"{flagpole.base}/sso/jwks/{flagpole.client_id}"
    status, body, _ = http_json("GET", url)  # no Authorization, as PyJWKClient sends
    assert status == 200, body
    assert body["keys"]


def test_jwks_x5c_is_a_certificate_of_the_key_as_workos_publishes(flagpole):
    # The Python SDK only requires `x5c` and `x5t#S256` to be present
    # (JwksResponseKeys.from_dict indexes them and keeps them as they are;
    # nothing in workos or PyJWT parses them). What WorkOS publishes, and
    # what other JWT libraries may use (x5c first, e.g. jose's importX509):
    # x5c[0] is the base64 (not base64url) DER of a certificate for the same
    # RSA key, and x5t#S256 the base64url SHA-256 thumbprint of that DER.
    _, body, _ = http_json("GET", f"{flagpole.base}/sso/jwks/{flagpole.client_id}")
    for key in body["keys"]:
        assert isinstance(key.get("x5c"), list) and key["x5c"], f"x5c in {key}"
        der = base64.b64decode(key["x5c"][0], validate=True)
        certificate = x509.load_der_x509_certificate(der)
        public = certificate.public_key()
        assert isinstance(public, rsa.RSAPublicKey)
        assert public.public_numbers().n == b64url_uint(key["n"])
        assert public.public_numbers().e == b64url_uint(key["e"])
        thumbprint = base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()
        assert key.get("x5t#S256") == thumbprint


def test_access_tokens_verify_with_the_sdks_rules(flagpole, workos, started):
    client = jwt.PyJWKClient(workos.user_management.get_jwks_url())
    token = started["access_token"]
    key = client.get_signing_key_from_jwt(token)
    claims = jwt.decode(
        token,
        key.key,
        algorithms=["RS256"],
        audience=flagpole.client_id,
        issuer=flagpole.base,
    )
    assert claims["sid"] == started["session_id"]
    assert claims["sub"] == started["user"]["id"]
    assert claims["org_id"] == started["organization_id"]
    assert isinstance(claims["feature_flags"], list)


def test_a_staging_token_does_not_verify_as_production(flagpole, workos):
    staging = flagpole.api(
        "POST",
        "/api/v1/sessions",
        {"user": {"external_id": "u-stage", "email": "stage@acme.example"}},
        key=flagpole.staging_key,
    )
    client = jwt.PyJWKClient(workos.user_management.get_jwks_url(), cooldown_duration=0)
    with pytest.raises(jwt.PyJWTError):
        key = client.get_signing_key_from_jwt(staging["access_token"])
        jwt.decode(staging["access_token"], key.key, algorithms=["RS256"], audience=flagpole.client_id)


def test_the_sdk_checks_the_issuer_when_told_to(flagpole, sdk_session):
    _, _, sealed = sdk_session
    with flagpole.workos(jwt_issuer=flagpole.base) as right:
        auth = right.user_management.authenticate_with_session_cookie(
            session_data=sealed, cookie_password=COOKIE_PASSWORD
        )
        assert isinstance(auth, AuthenticateWithSessionCookieSuccessResponse), auth
    with flagpole.workos(jwt_issuer="https://api.workos.com") as wrong:
        auth = wrong.user_management.authenticate_with_session_cookie(
            session_data=sealed, cookie_password=COOKIE_PASSWORD
        )
        assert auth.authenticated is False
        assert getattr(auth.reason, "value", auth.reason) == "invalid_jwt"

