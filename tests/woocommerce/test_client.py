"""The REST client: auth (Basic over https, OAuth 1.0a over http with the recorded vector),
params never in the path, retries, WooCommerce's error words, 401 -> ReconnectRequired."""
from __future__ import annotations

import base64
import json
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
import responses

from connector.platforms.woocommerce.client import WooClient, oauth1_params
from connector.platforms.woocommerce.errors import ReconnectRequired, WooError
from tests.woocommerce.conftest import API, STORE_URL

FIXTURES = Path(__file__).parents[1] / "fixtures" / "woocommerce"
VECTORS = json.loads((FIXTURES / "vectors.json").read_text())
PAGES = json.loads((FIXTURES / "fixtures" / "orders_list_pagination.json").read_text())
KEY, SECRET = "ck_" + "a" * 40, "cs_" + "b" * 40


def client(url=STORE_URL, **kw):
    return WooClient(url, KEY, SECRET, sleep=lambda s: None, jitter=lambda: 0.0, **kw)


@pytest.mark.parametrize("vector", VECTORS["oauth1"], ids=lambda v: v["method"])
def test_oauth1_signature_matches_the_recorded_vector(vector):
    signed = oauth1_params(vector["method"], vector["url"], [tuple(q) for q in vector["query"]],
                           vector["consumer_key"], vector["consumer_secret"],
                           timestamp=vector["oauth_timestamp"], nonce=vector["oauth_nonce"])
    assert dict(signed)["oauth_signature"] == vector["oauth_signature"]


def test_https_uses_basic_auth_and_params(rsps):
    rsps.get(f"{API}/orders", json=PAGES["orders_list_p1"]["json"], headers=PAGES["orders_list_p1"]["headers"])
    orders, headers = client().get("orders", params={"per_page": 2, "status": ["any"]})
    assert [o["id"] for o in orders] == [13, 15] and headers["X-WP-TotalPages"] == "2"
    sent = rsps.calls[0].request
    assert sent.headers["Authorization"] == "Basic " + base64.b64encode(f"{KEY}:{SECRET}".encode()).decode()
    assert urlsplit(sent.url).path == "/wp-json/wc/v3/orders"
    assert parse_qsl(urlsplit(sent.url).query) == [("per_page", "2"), ("status[]", "any")]


def test_plain_http_signs_with_oauth1_and_sends_no_basic_auth(rsps):
    rsps.get("http://localhost:8080/wp-json/wc/v3/orders", json=[])
    client("http://localhost:8080").get("orders", params={"page": 2})
    sent = rsps.calls[0].request
    assert "Authorization" not in sent.headers
    query = dict(parse_qsl(urlsplit(sent.url).query))
    assert query["page"] == "2" and query["oauth_consumer_key"] == KEY
    assert query["oauth_signature_method"] == "HMAC-SHA256" and query["oauth_signature"]


def test_query_in_the_endpoint_string_is_refused():
    with pytest.raises(ValueError, match="params="):
        client().get("orders?page=2")


def test_timeout_is_above_woocommerce_default(rsps):
    seen = {}

    def answer(request):
        seen["timeout"] = request.req_kwargs["timeout"]
        return 200, {}, "[]"
    rsps.add_callback(responses.GET, f"{API}/orders", callback=answer)
    client().get("orders")
    assert seen["timeout"] == (5.0, 30.0)


def test_get_is_retried_on_5xx_and_timeouts(rsps):
    rsps.get(f"{API}/orders/13", status=503, json={"code": "x", "message": "busy", "data": {"status": 503}})
    rsps.get(f"{API}/orders/13", body=requests.ReadTimeout("slow"))
    rsps.get(f"{API}/orders/13", json={"id": 13})
    slept = []
    c = WooClient(STORE_URL, KEY, SECRET, sleep=slept.append, jitter=lambda: 0.5)
    assert c.get("orders/13")[0] == {"id": 13}
    assert len(rsps.calls) == 3 and slept == [0.75, 1.5]  # exponential, with jitter


def test_get_gives_up_retryable_after_the_attempts(rsps):
    rsps.get(f"{API}/orders", status=502, body="Bad gateway")
    with pytest.raises(WooError) as caught:
        client().get("orders")
    assert caught.value.retryable and caught.value.status == 502 and len(rsps.calls) == 4


def test_post_is_not_repeated_after_a_read_timeout(rsps):
    rsps.post(f"{API}/orders/13/refunds", body=requests.ReadTimeout("slow"))
    with pytest.raises(WooError) as caught:
        client().post("orders/13/refunds", json={"amount": "1.00"})
    assert caught.value.retryable and len(rsps.calls) == 1


def test_post_is_repeated_after_a_connect_timeout(rsps):
    rsps.post(f"{API}/webhooks", body=requests.ConnectTimeout("no route"))
    rsps.post(f"{API}/webhooks", json={"id": 1}, status=201)
    assert client().post("webhooks", json={}) == {"id": 1} and len(rsps.calls) == 2


@pytest.mark.parametrize("name", ["refund_bacs_api_refund_default", "refund_too_large", "refund_gateway_error"])
def test_refusals_carry_woocommerce_words_and_are_final(rsps, name):
    recorded = VECTORS["refund_errors_live"][name]
    rsps.post(f"{API}/orders/13/refunds", status=recorded["status"], json=recorded["json"])
    with pytest.raises(WooError) as caught:
        client().post("orders/13/refunds", json={})
    assert str(caught.value) == recorded["json"]["message"]
    assert caught.value.code == "woocommerce_rest_cannot_create_order_refund" and not caught.value.retryable
    assert len(rsps.calls) == 1


def test_400_carries_the_message(rsps):
    recorded = PAGES["orders_list_per_page_101"]
    rsps.get(f"{API}/orders", status=recorded["status"], json=recorded["json"])
    with pytest.raises(WooError, match="Invalid parameter\\(s\\): per_page") as caught:
        client().get("orders", params={"per_page": 101})
    assert caught.value.status == 400 and caught.value.code == "rest_invalid_param"


def test_401_means_reconnect(rsps):
    rsps.get(f"{API}/orders", status=401, json={"code": "woocommerce_rest_authentication_error",
                                               "message": "Invalid signature - provided signature does not match.",
                                               "data": {"status": 401}})
    with pytest.raises(ReconnectRequired) as caught:
        client().get("orders")
    assert not caught.value.retryable and len(rsps.calls) == 1


def test_403_cannot_view_means_reconnect(rsps):
    rsps.get(f"{API}/orders", status=403, json={"code": "woocommerce_rest_cannot_view",
                                               "message": "Sorry, you cannot list resources.", "data": {"status": 403}})
    with pytest.raises(ReconnectRequired):
        client().get("orders")


def test_paged_follows_total_pages_not_link(rsps):
    p1 = PAGES["orders_list_p1"]
    rsps.get(f"{API}/orders", json=p1["json"], headers=p1["headers"],
             match=[responses.matchers.query_param_matcher({"per_page": "100", "page": "1"}, strict_match=False)])
    rsps.get(f"{API}/orders", json=[dict(p1["json"][0], id=17)], headers=p1["headers"],
             match=[responses.matchers.query_param_matcher({"per_page": "100", "page": "2"}, strict_match=False)])
    pages = list(client().paged("orders", {"orderby": "modified"}))
    assert [[o["id"] for o in page] for page in pages] == [[13, 15], [17]]
    assert all("oauth_signature" not in c.request.url for c in rsps.calls)  # Link was not followed


def test_repr_hides_keys():
    assert SECRET not in repr(client()) and KEY not in repr(client())


def test_for_shop_reads_sealed_keys(woo_shop, rsps):
    rsps.get(f"{API}/orders", json=[])
    c = WooClient.for_shop(woo_shop)
    c.get("orders")
    assert rsps.calls[0].request.headers["Authorization"].startswith("Basic ")
