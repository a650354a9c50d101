"""Request verification: every published vector passes; tampered requests are refused.

Vectors: tests/fixtures/shopify/vectors.json (each with its public source).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from urllib.parse import quote, urlencode

import jwt
import pytest

from connector.platforms.shopify.verify import (InvalidSessionToken, VerificationError, decode_session_token,
                                                oauth_message, proxy_message, valid_shop_domain,
                                                verify_oauth_query, verify_proxy_signature, verify_webhook)

VECTORS = json.loads((Path(__file__).parent.parent / "fixtures" / "shopify" / "vectors.json").read_text())
OAUTH = VECTORS["oauth_query_hmac"]["vectors"]
PROXY = VECTORS["app_proxy_signature"]["vectors"]
WEBHOOK = VECTORS["webhook_hmac"]["vectors"]

API_KEY = "test-api-key"
SECRET = "test-api-secret"
PREVIOUS = "test-api-secret-before-rotation"
SHOP = "demo-shop.myshopify.com"


def flip(text: str, index: int) -> str:
    """`text` with one character changed at `index` (a hex/base64 digit stays a valid digit)."""
    ch = text[index]
    replacement = "0" if ch != "0" else "1"
    return text[:index] + replacement + text[index + 1:]


def sign_oauth(params: dict, secret: str = SECRET) -> str:
    mac = hmac.new(secret.encode(), oauth_message(params.items()).encode(), hashlib.sha256).hexdigest()
    return urlencode({**params, "hmac": mac})


def sign_proxy(pairs: list[tuple[str, str]], secret: str = SECRET) -> str:
    mac = hmac.new(secret.encode(), proxy_message(pairs).encode(), hashlib.sha256).hexdigest()
    return urlencode(pairs + [("signature", mac)])


# ============================================================================ shop domains

@pytest.mark.parametrize("value, expected", [
    ("demo-shop.myshopify.com", "demo-shop.myshopify.com"),
    ("Demo-Shop.MyShopify.com", "demo-shop.myshopify.com"),
    ("a1.myshopify.com", "a1.myshopify.com"),
])
def test_valid_shop_domains(value, expected):
    assert valid_shop_domain(value) == expected


@pytest.mark.parametrize("value", [
    None, "", "myshopify.com", ".myshopify.com", "-shop.myshopify.com", "shop.myshopify.com:443",
    "shop.myshopify.com/admin", "https://shop.myshopify.com", "evil.com?x.myshopify.com",
    "evil.com#x.myshopify.com", "shop.myshopify.com.evil.com", "shop.myshopify.com.", "a.b.myshopify.com",
    "shop.myshopify.com\n", " shop.myshopify.com", "user@shop.myshopify.com", "shop_x.myshopify.com",
    "shop.myshopify.io", "xn--sh%70.myshopify.com", "s" * 300 + ".myshopify.com", 42,
])
def test_foreign_or_malformed_shop_domains_are_refused(value):
    assert valid_shop_domain(value) is None


# ============================================================================ OAuth query HMAC

@pytest.mark.parametrize("vector", OAUTH, ids=[v["id"] for v in OAUTH])
def test_oauth_vectors_pass(vector):
    stamp = int(dict(p.split("=", 1) for p in vector["query_string"].split("&"))["timestamp"])
    pairs = [tuple(p.split("=", 1)) for p in vector["query_string"].split("&")]
    assert oauth_message(pairs) == vector["message"]
    params = verify_oauth_query(vector["query_string"], [vector["secret"]], now=stamp + 5)
    assert params["hmac"] == vector["expected_hmac"]
    assert params["shop"] == "some-shop.myshopify.com"
    # The same vector as pairs (request.args) and with the secret as a plain string.
    assert verify_oauth_query(pairs, vector["secret"], now=stamp)["code"] == params["code"]


def _oauth_tamperings(query: str) -> list[tuple[str, str]]:
    mac = dict(p.split("=", 1) for p in query.split("&"))["hmac"]
    return [
        ("one byte of the hmac", query.replace(mac, flip(mac, 10))),
        ("one byte of a parameter", query.replace("code=0907", "code=0908")),
        ("one byte of the shop", query.replace("some-shop", "some-shoq")),
        ("a parameter added", query + "&extra=1"),
        ("a parameter dropped", query.replace("&state=0.6784241404160823", "")),
        ("the hmac missing", "&".join(p for p in query.split("&") if not p.startswith("hmac="))),
        ("a repeated parameter", query + "&code=0907a61c0c8d55e99db179b68161bc00"),
    ]


@pytest.mark.parametrize("vector", OAUTH, ids=[v["id"] for v in OAUTH])
def test_tampered_oauth_queries_are_refused(vector):
    stamp = 1337178173
    for what, query in _oauth_tamperings(vector["query_string"]):
        with pytest.raises(VerificationError):
            verify_oauth_query(query, [vector["secret"]], now=stamp)
            pytest.fail(f"accepted with {what}")
    with pytest.raises(VerificationError, match="hmac"):
        verify_oauth_query(vector["query_string"], ["wrong-secret"], now=stamp)


def test_oauth_timestamp_window():
    now = 1_800_000_000
    query = sign_oauth({"code": "abc", "shop": SHOP, "state": "s1", "timestamp": str(now)})
    assert verify_oauth_query(query, SECRET, now=now + 599)["state"] == "s1"
    with pytest.raises(VerificationError, match="too old"):
        verify_oauth_query(query, SECRET, now=now + 601)
    with pytest.raises(VerificationError, match="future"):
        verify_oauth_query(query, SECRET, now=now - 91)
    assert verify_oauth_query(query, SECRET, now=now + 3600, max_age=86400)
    stale_vector = OAUTH[0]
    with pytest.raises(VerificationError, match="too old"):  # the docs' vector is from 2012
        verify_oauth_query(stale_vector["query_string"], stale_vector["secret"], now=time.time())
    no_stamp = sign_oauth({"code": "abc", "shop": SHOP, "state": "s1"})
    with pytest.raises(VerificationError, match="timestamp"):
        verify_oauth_query(no_stamp, SECRET, now=now)


def test_oauth_foreign_shop_domain_is_refused_even_when_signed():
    now = 1_800_000_000
    for shop in ("evil.com", "evil.com?x.myshopify.com", "shop.myshopify.com.evil.com"):
        query = sign_oauth({"code": "abc", "shop": shop, "timestamp": str(now)})
        with pytest.raises(VerificationError, match="shop"):
            verify_oauth_query(query, SECRET, now=now)


def test_oauth_previous_secret_still_verifies():
    now = 1_800_000_000
    query = sign_oauth({"code": "abc", "shop": SHOP, "timestamp": str(now)}, secret=PREVIOUS)
    assert verify_oauth_query(query, [SECRET, PREVIOUS], now=now)["code"] == "abc"
    assert verify_oauth_query(query, [SECRET, None, PREVIOUS], now=now)
    with pytest.raises(VerificationError):
        verify_oauth_query(query, [SECRET], now=now)


def test_oauth_delimiters_in_values_cannot_forge_pairs():
    """'a=1&b=2' as one value must not sign the same as two parameters a=1, b=2."""
    assert oauth_message([("x", "a&b=2")]) != oauth_message([("x", "a"), ("b", "2")])
    assert oauth_message([("x", "1%26b%3D2")]) != oauth_message([("x", "1&b=2")])


def test_no_secret_configured_refuses():
    with pytest.raises(VerificationError, match="secret"):
        verify_oauth_query(OAUTH[0]["query_string"], [None, ""], now=1337178173)


# ============================================================================ app proxy signature

@pytest.mark.parametrize("vector", PROXY, ids=[v["id"] for v in PROXY])
def test_proxy_vectors_pass(vector):
    from urllib.parse import parse_qsl
    pairs = parse_qsl(vector["query_string"], keep_blank_values=True)
    assert proxy_message(pairs) == vector["message"]
    params = verify_proxy_signature(vector["query_string"], [vector["secret"]], now=1317327555 + 30)
    assert params["shop"] == "shop-name.myshopify.com"
    assert params["logged_in_customer_id"] == ""  # anonymous shopper
    assert params["extra"] == "1,2"
    assert params["path_prefix"] == "/apps/awesome_reviews"
    assert "signature" not in params


@pytest.mark.parametrize("vector", PROXY, ids=[v["id"] for v in PROXY])
def test_tampered_proxy_requests_are_refused(vector):
    query, secret, now = vector["query_string"], vector["secret"], 1317327555
    sig = vector["expected_signature"]
    tampered = {
        "one byte of the signature": query.replace(sig, flip(sig, 0)),
        "a shopper id filled in": query.replace("logged_in_customer_id=", "logged_in_customer_id=1"),
        "one byte of a value": query.replace("extra=2", "extra=3"),
        "a repeated value reordered": query.replace("extra=1&extra=2", "extra=2&extra=1"),
        "a parameter added": query + "&x=1",
        "the signature missing": query.replace(f"&signature={sig}", ""),
        "shop repeated": query + "&shop=shop-name.myshopify.com",
        "timestamp repeated": query + "&timestamp=1317327555",
        "signature repeated": query + f"&signature={sig}",
        "hmac repeated": query + "&hmac=1&hmac=2",
    }
    for what, candidate in tampered.items():
        with pytest.raises(VerificationError):
            verify_proxy_signature(candidate, [secret], now=now)
            pytest.fail(f"accepted with {what}")
    with pytest.raises(VerificationError, match="signature"):
        verify_proxy_signature(query, ["wrong-secret"], now=now)


def test_proxy_timestamp_window_is_90_seconds():
    vector = PROXY[0]
    assert verify_proxy_signature(vector["query_string"], vector["secret"], now=1317327555 + 90)
    with pytest.raises(VerificationError, match="too old"):
        verify_proxy_signature(vector["query_string"], vector["secret"], now=1317327555 + 91)
    with pytest.raises(VerificationError, match="future"):
        verify_proxy_signature(vector["query_string"], vector["secret"], now=1317327555 - 91)


def test_proxy_signed_shopper_and_foreign_shop():
    now = 1_800_000_000
    good = sign_proxy([("shop", SHOP), ("logged_in_customer_id", "7001"), ("path_prefix", "/apps/returns"),
                       ("timestamp", str(now))])
    assert verify_proxy_signature(good, [SECRET], now=now)["logged_in_customer_id"] == "7001"
    assert verify_proxy_signature(sign_proxy([("shop", SHOP), ("timestamp", str(now))], PREVIOUS),
                                  [SECRET, PREVIOUS], now=now)
    foreign = sign_proxy([("shop", "evil.com"), ("timestamp", str(now))])
    with pytest.raises(VerificationError, match="shop"):
        verify_proxy_signature(foreign, [SECRET], now=now)
    # Percent-encoded values are signed decoded: an encoded path verifies as its decoded form.
    encoded = sign_proxy([("shop", SHOP), ("path_prefix", "/apps/returns"), ("timestamp", str(now))])
    assert quote("/apps/returns", safe="") in encoded
    assert verify_proxy_signature(encoded, SECRET, now=now)["path_prefix"] == "/apps/returns"


# ============================================================================ webhooks

@pytest.mark.parametrize("vector", WEBHOOK, ids=[v["id"] for v in WEBHOOK])
def test_webhook_vectors_pass(vector):
    body = vector["raw_body"].encode()
    assert verify_webhook(body, vector["expected_header"], [vector["secret"]])
    assert base64.b64decode(vector["expected_header"]).hex() == vector["hex_of_same_mac"]
    assert verify_webhook(body, vector["expected_header"], ["rotated-new-secret", vector["secret"]])


@pytest.mark.parametrize("vector", WEBHOOK, ids=[v["id"] for v in WEBHOOK])
def test_tampered_webhooks_are_refused(vector):
    body, header, secret = vector["raw_body"].encode(), vector["expected_header"], vector["secret"]
    assert not verify_webhook(body.replace(b"123.45", b"123.46"), header, [secret])  # one byte of the body
    assert not verify_webhook(body + b" ", header, [secret])
    assert not verify_webhook(body, flip(header, 5), [secret])  # one byte of the signature
    assert not verify_webhook(body, header, ["wrong-secret"])
    assert not verify_webhook(body, vector["hex_of_same_mac"], [secret])  # hex is not what Shopify sends
    assert not verify_webhook(body, None, [secret])
    assert not verify_webhook(body, "", [secret])
    assert not verify_webhook(body, header, [])
    # Parsed and re-serialised JSON is not the raw body.
    assert not verify_webhook(json.dumps(json.loads(body)).encode(), header, [secret])


# ============================================================================ session tokens

def session_payload(shop: str = SHOP, now: float | None = None, **over) -> dict:
    """The documented payload shape (shopify_python_api test/session_token_test.py)."""
    now = time.time() if now is None else now
    payload = {"iss": f"https://{shop}/admin", "dest": f"https://{shop}", "aud": API_KEY, "sub": "42",
               "exp": int(now) + 60, "nbf": int(now) - 5, "iat": int(now) - 5, "jti": "4f2c1c7e-token-id",
               "sid": "a4b6f8-session-id"}
    payload.update(over)
    return {k: v for k, v in payload.items() if v is not None}


def session_token(secret: str = SECRET, algorithm: str = "HS256", **payload) -> str:
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return jwt.encode(session_payload(**payload), secret, algorithm=algorithm)


def test_session_token_in_the_documented_shape_is_accepted():
    token = decode_session_token(session_token(), API_KEY, [SECRET])
    assert token.shop == SHOP
    assert token.user_id == "42" and token.session_id == "a4b6f8-session-id" and token.jti == "4f2c1c7e-token-id"
    assert token.exp.tzinfo is not None
    assert "test-api-secret" not in repr(token)


def test_session_token_signed_with_the_previous_secret_is_accepted():
    token = session_token(secret=PREVIOUS)
    assert decode_session_token(token, API_KEY, [SECRET, PREVIOUS]).shop == SHOP
    with pytest.raises(InvalidSessionToken, match="signature"):
        decode_session_token(token, API_KEY, [SECRET])


def test_session_token_expiry_and_not_before_with_leeway():
    now = 1_800_000_000
    token = session_token(now=now)  # exp now+60, nbf now-5
    assert decode_session_token(token, API_KEY, SECRET, now=now + 60 + 10)
    with pytest.raises(InvalidSessionToken, match="expired"):
        decode_session_token(token, API_KEY, SECRET, now=now + 60 + 11)
    assert decode_session_token(token, API_KEY, SECRET, now=now - 5 - 10)
    with pytest.raises(InvalidSessionToken, match="not valid yet"):
        decode_session_token(token, API_KEY, SECRET, now=now - 5 - 11)
    with pytest.raises(InvalidSessionToken, match="expired"):
        decode_session_token(session_token(now=time.time() - 3600), API_KEY, SECRET)


@pytest.mark.parametrize("case, token, message", [
    ("wrong aud", lambda: session_token(aud="another-app"), "another app"),
    ("no aud", lambda: session_token(aud=None), "Missing"),
    ("wrong secret", lambda: session_token(secret="not-the-secret"), "signature"),
    ("iss of another shop", lambda: session_token(iss="https://other-shop.myshopify.com/admin"), "different shops"),
    ("dest not myshopify", lambda: session_token(shop="evil.com"), "myshopify"),
    ("dest with a port", lambda: session_token(dest=f"https://{SHOP}:8443"), "dest"),
    ("dest over http", lambda: session_token(dest=f"http://{SHOP}"), "dest"),
    ("dest with user info", lambda: session_token(dest=f"https://evil.com@{SHOP}"), "dest"),
    ("no dest", lambda: session_token(dest=None), "Missing"),
    ("no exp", lambda: session_token(exp=None), "Missing"),
    ("no nbf", lambda: session_token(nbf=None), "Missing"),
    ("HS512", lambda: session_token(algorithm="HS512"), "HS256"),
])
def test_bad_session_tokens_are_refused(case, token, message):
    with pytest.raises(InvalidSessionToken, match=message):
        decode_session_token(token(), API_KEY, [SECRET])


def test_alg_none_is_refused():
    header = base64.urlsafe_b64encode(json.dumps({"alg": "none", "typ": "JWT"}).encode()).rstrip(b"=")
    body = base64.urlsafe_b64encode(json.dumps(session_payload()).encode()).rstrip(b"=")
    unsigned = f"{header.decode()}.{body.decode()}."
    with pytest.raises(InvalidSessionToken):
        decode_session_token(unsigned, API_KEY, [SECRET])
    # Nor does an HS256 header over a body signed by nobody verify.
    forged = f"{session_token().rsplit('.', 1)[0]}.{'A' * 43}"
    with pytest.raises(InvalidSessionToken):
        decode_session_token(forged, API_KEY, [SECRET])


def test_one_byte_changed_in_a_session_token_is_refused():
    token = session_token()
    head, body, sig = token.split(".")
    with pytest.raises(InvalidSessionToken):
        decode_session_token(f"{head}.{body}.{flip(sig, 3)}", API_KEY, [SECRET])
    other_body = base64.urlsafe_b64encode(json.dumps(session_payload(sub="43")).encode()).rstrip(b"=").decode()
    with pytest.raises(InvalidSessionToken):
        decode_session_token(f"{head}.{other_body}.{sig}", API_KEY, [SECRET])


@pytest.mark.parametrize("value", [None, "", "not-a-jwt", "a.b", "a.b.c", "x" * 9000])
def test_malformed_session_tokens_are_refused(value):
    with pytest.raises(InvalidSessionToken):
        decode_session_token(value, API_KEY, [SECRET])


def test_session_token_without_api_key_or_secret_is_refused():
    with pytest.raises(InvalidSessionToken):
        decode_session_token(session_token(), None, [SECRET])
    with pytest.raises(VerificationError):
        decode_session_token(session_token(), API_KEY, [None])
