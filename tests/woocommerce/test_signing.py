"""Plugin <-> connector signing against the shared vectors (the plugin's PHP tests read the same file)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from connector.platforms.woocommerce import signing

VECTORS = json.loads((Path(__file__).parents[1] / "fixtures" / "woocommerce" / "plugin_vectors.json").read_text())
SECRET = VECTORS["secret"]


@pytest.mark.parametrize("vector", VECTORS["customer_tokens"], ids=lambda v: v["claims"]["nonce"])
def test_customer_tokens_match_the_shared_vectors(vector):
    assert signing.sign_customer_token(SECRET, **vector["claims"]) == vector["token"]
    claims = signing.verify_customer_token(SECRET, vector["token"], shop="alpine-store", now=vector["claims"]["exp"] - 60)
    assert claims.customer == vector["claims"]["customer"] and claims.email == vector["claims"]["email"]


def test_tampered_tokens_are_refused():
    vector = VECTORS["customer_tokens"][0]
    token, now = vector["token"], vector["claims"]["exp"] - 60
    body, mac = token.split(".")
    for bad in (body[:-1] + ("A" if body[-1] != "A" else "B") + "." + mac, body + "." + mac[:-1] + "x", "", "a.b.c"):
        with pytest.raises(signing.SignatureError):
            signing.verify_customer_token(SECRET, bad, shop="alpine-store", now=now)
    with pytest.raises(signing.SignatureError, match="another shop"):
        signing.verify_customer_token(SECRET, token, shop="other-store", now=now)
    with pytest.raises(signing.SignatureError, match="bad signature"):
        signing.verify_customer_token("another-secret", token, shop="alpine-store", now=now)
    with pytest.raises(signing.SignatureError, match="expired"):
        signing.verify_customer_token(SECRET, token, shop="alpine-store", now=vector["claims"]["exp"] + 1)


@pytest.mark.parametrize("vector", VECTORS["signed_requests"], ids=lambda v: v["path"])
def test_signed_requests_match_the_shared_vectors(vector):
    body = vector["body"].encode()
    assert signing.request_message(vector["timestamp"], vector["method"], vector["path"], body) == vector["message"]
    assert signing.sign_request(SECRET, vector["timestamp"], vector["method"], vector["path"], body) == vector["signature"]
    signing.verify_request(SECRET, timestamp=vector["timestamp"], signature=vector["signature"], method=vector["method"],
                           path=vector["path"], body=body, now=int(vector["timestamp"]) + 10)
    with pytest.raises(signing.SignatureError, match="stale"):
        signing.verify_request(SECRET, timestamp=vector["timestamp"], signature=vector["signature"],
                               method=vector["method"], path=vector["path"], body=body, now=int(vector["timestamp"]) + 301)
    with pytest.raises(signing.SignatureError, match="bad signature"):
        signing.verify_request(SECRET, timestamp=vector["timestamp"], signature=vector["signature"],
                               method=vector["method"], path=vector["path"], body=body + b" ", now=int(vector["timestamp"]))
