"""Auth strategies add the right headers or parameters and can scrub their secrets."""

from __future__ import annotations

from pydantic import SecretStr

from marketpipe.connectors import AlpacaKeyAuth, BearerTokenAuth, NoAuth, QueryApiKeyAuth

SECRET = "s3cr3t/with+chars=="


def test_alpaca_key_auth_sends_both_headers() -> None:
    auth = AlpacaKeyAuth(SecretStr("PKID"), SecretStr(SECRET))
    assert auth.headers() == {"APCA-API-KEY-ID": "PKID", "APCA-API-SECRET-KEY": SECRET}
    assert auth.query_params() == {}


def test_bearer_and_query_and_none() -> None:
    assert BearerTokenAuth(SecretStr("tok")).headers() == {"Authorization": "Bearer tok"}
    query = QueryApiKeyAuth(SecretStr(SECRET), param_name="token")
    assert query.headers() == {}
    assert query.query_params() == {"token": SECRET}
    assert NoAuth().headers() == {} and NoAuth().query_params() == {}


def test_redact_scrubs_raw_and_url_encoded_secrets() -> None:
    auth = QueryApiKeyAuth(SecretStr(SECRET))
    text = (
        f"GET /x?apikey=s3cr3t%2Fwith%2Bchars%3D%3D failed; raw {SECRET}; plus s3cr3t%2Fwith+chars"
    )
    scrubbed = auth.redact(text)
    assert SECRET not in scrubbed
    assert "s3cr3t%2Fwith%2Bchars%3D%3D" not in scrubbed
    assert scrubbed.count("***") == 2


def test_reprs_hide_secrets() -> None:
    strategies = [
        AlpacaKeyAuth(SecretStr("PKID"), SecretStr(SECRET)),
        BearerTokenAuth(SecretStr(SECRET)),
        QueryApiKeyAuth(SecretStr(SECRET)),
    ]
    for auth in strategies:
        assert SECRET not in repr(auth)
        assert "PKID" not in repr(auth)
