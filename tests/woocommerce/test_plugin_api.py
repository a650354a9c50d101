"""The endpoints the WordPress plugin calls: the shopper's portal entry with a customer token, and the
signed server-to-server requests (status, an order's returns, the one-click refund)."""
from __future__ import annotations

import json
import time

import pytest

from connector import db
from connector.platforms.woocommerce import signing
from connector.returns.models import Order, Refund, UsedToken
from connector.returns.ports import RefundResult
from tests.woocommerce.factories import PLUGIN_SECRET, make_woo_shop

# Customer 7 owns orders 1001 and 1003 of the store; order 1002 belongs to customer 8.
CUSTOMERS = {"1001": "7", "1002": "8", "1003": "7"}


@pytest.fixture
def store(woo_shop):
    for order in db.session.query(Order).filter_by(shop_id=woo_shop.id):
        order.customer_platform_id = CUSTOMERS[order.number]
    db.session.commit()
    return woo_shop


@pytest.fixture
def other_store(app, store):
    """A second WooCommerce store whose customer 7 is someone else; same plugin secret on purpose,
    so only tenant isolation (not the secret) keeps the two apart."""
    shop = make_woo_shop(handle="other-store")
    for order in db.session.query(Order).filter_by(shop_id=shop.id):
        order.customer_platform_id = "7"
    db.session.commit()
    return shop


class FakeWooRefunds:
    """Stands in for the store's platform adapter (WooCommerceAdapter is tested on its own, against
    the recorded refund payloads): keeps the platform's native-return calls silent and applies each
    refund key once, answering with the id of the recorded refund (refund_created_with_line_items)."""

    def __init__(self):
        self.sent: list[str] = []
        self.refuse: str | None = None

    def __call__(self, shop):
        from connector.platforms.standalone.adapter import StandaloneAdapter

        fake = self

        class Adapter(StandaloneAdapter):
            def refund(self, order, plan, key, ret=None):
                fake.sent.append(key)
                if fake.refuse:
                    return RefundResult(status="failed", message=fake.refuse)
                return RefundResult(status="succeeded", platform_refund_id=str(700 + len(fake.sent)))

            def find_refund(self, order, key):
                return None

        return Adapter(shop)


@pytest.fixture
def refunds(monkeypatch):
    from connector.returns.context import runtime
    fake = FakeWooRefunds()
    monkeypatch.setattr(runtime, "adapter", fake)
    return fake


def token(shop="alpine-store", customer=7, email="Erika@example.com", order=None, exp=None, nonce=None,
          secret=PLUGIN_SECRET):
    return signing.sign_customer_token(secret, shop=shop, customer=customer, email=email, order=order,
                                       exp=exp or int(time.time()) + 240, nonce=nonce or f"n-{time.time_ns()}")


def signed_headers(method, path, body=b"", *, shop="alpine-store", secret=PLUGIN_SECRET, timestamp=None):
    ts = str(timestamp if timestamp is not None else int(time.time()))
    return {"X-RC-Shop": shop, "X-RC-Timestamp": ts,
            "X-RC-Signature": signing.sign_request(secret, ts, method, path, body)}


def signed_get(client, path, **kw):
    return client.get(path, headers=signed_headers("GET", path, **kw))


def signed_post(client, path, payload, **kw):
    body = json.dumps(payload).encode()
    return client.post(path, data=body, content_type="application/json", headers=signed_headers("POST", path, body, **kw))


def portal_grants(client, shop):
    with client.session_transaction() as sess:
        return (sess.get("portal") or {}).get(str(shop.id)) or {}


def order(shop, number):
    return db.session.query(Order).filter_by(shop_id=shop.id, number=number).one()


def make_return(shop, number="1001", *, received=True):
    """A shopper's return through the real services (as tests/shopify/returns_fake.portal_return),
    then received in the warehouse."""
    from connector.returns import services
    from connector.returns.models import ReturnReason

    the_order = order(shop, number)
    reason = db.session.query(ReturnReason).filter_by(shop_id=shop.id, code="changed_mind").one()
    ret = services.start_draft(shop, the_order, email=the_order.email, locale="en")
    services.set_items(ret, [services.ItemChoice(the_order.lines[0].id, 1, reason.id)])
    services.set_method(ret, "dropoff")
    services.set_instructions(ret, dict(the_order.shipping_address),
                              [code for code, _t in services.checklist_items(ret)])
    services.confirm(ret)
    if received:
        services.mark_received(ret, actor="merchant:test")
    return ret


# ================================================================================ portal entry

def tampered_claims(good: str) -> str:
    claims, mac = good.split(".")
    return f"{claims[:-2]}AA.{mac}"


def test_entry_grants_exactly_that_customers_orders(client, store, other_store):
    resp = client.get("/woocommerce/plugin/enter", query_string={"token": token()})
    assert resp.status_code == 302
    assert resp.headers["Location"].endswith("/portal/alpine-store/orders")
    grants = portal_grants(client, store)
    assert sorted(grants["orders"]) == sorted([order(store, "1001").id, order(store, "1003").id])
    assert grants["email"] == "erika@example.com"
    assert portal_grants(client, other_store) == {}  # the other store's customer 7 is not this one
    page = client.get("/portal/alpine-store/orders")
    assert page.status_code == 200 and "1001" in page.get_data(as_text=True)
    assert client.get(f"/portal/alpine-store/orders/{order(store, '1002').id}/items").status_code == 404


def test_entry_for_an_order_opens_its_items(client, store):
    resp = client.get("/woocommerce/plugin/enter", query_string={"token": token(order=1003)})
    assert resp.headers["Location"].endswith(f"/portal/alpine-store/orders/{order(store, '1003').id}/items")
    assert client.get(resp.headers["Location"]).status_code == 200


def test_entry_naming_someone_elses_order_lands_on_the_own_list(client, store):
    resp = client.get("/woocommerce/plugin/enter", query_string={"token": token(order=1002)})
    assert resp.headers["Location"].endswith("/portal/alpine-store/orders")
    assert order(store, "1002").id not in portal_grants(client, store)["orders"]


def test_a_customer_without_orders_gets_the_portal_sign_in(client, store):
    resp = client.get("/woocommerce/plugin/enter", query_string={"token": token(customer=99)})
    assert resp.headers["Location"].endswith("/portal/alpine-store/")
    assert not portal_grants(client, store).get("orders")


def test_a_token_works_once(client, store):
    once = token(nonce="nonce-used-twice")
    assert client.get("/woocommerce/plugin/enter", query_string={"token": once}).status_code == 302
    again = client.get("/woocommerce/plugin/enter", query_string={"token": once})
    assert again.status_code == 400
    text = again.get_data(as_text=True)
    assert "expired or was already used" in text
    assert 'href="/portal/alpine-store/' in text  # back to the portal's own sign-in
    assert db.session.query(UsedToken).filter(UsedToken.jti.like("wc:%")).count() == 1


@pytest.mark.parametrize("bad", [
    lambda: token(exp=int(time.time()) - 5),                          # expired
    lambda: token(exp=int(time.time()) + 3600),                       # longer than a token may live
    lambda: token(secret="another-secret"),                           # signed by someone else
    lambda: token()[:-2] + "xy",                                      # tampered signature
    lambda: tampered_claims(token()),
    lambda: token(shop="other-store"),                                # a store that is not connected
    lambda: token(shop="no-such-store"),
    lambda: "not-a-token",
    lambda: "",
], ids=["expired", "too-long-lived", "wrong-secret", "tampered-mac", "tampered-claims", "other-shop-unknown",
        "unknown-shop", "garbage", "empty"])
def test_bad_tokens_get_the_error_page_and_no_grants(client, store, bad):
    resp = client.get("/woocommerce/plugin/enter", query_string={"token": bad()})
    assert resp.status_code == 400
    assert "text/html" in resp.headers["Content-Type"]
    assert portal_grants(client, store) == {}


def test_another_shops_token_does_not_open_this_shop(client, store, other_store):
    from connector.platforms.woocommerce import credentials
    creds = credentials.load(other_store)
    credentials.save(other_store, creds.with_(plugin_secret="rcps_other_store_secret_000000000000"))
    db.session.commit()
    # Signed with this store's secret but naming the other store: the other store's secret refuses it.
    resp = client.get("/woocommerce/plugin/enter", query_string={"token": token(shop="other-store")})
    assert resp.status_code == 400
    assert portal_grants(client, other_store) == {} and portal_grants(client, store) == {}


def test_a_standalone_shop_is_not_entered_through_the_plugin(client, shop):
    resp = client.get("/woocommerce/plugin/enter", query_string={"token": token(shop="demo-shop")})
    assert resp.status_code == 400


# ================================================================================ signed requests

def test_status(client, store):
    store.platform_data = {**store.platform_data, "connection": "connected",
                           "webhooks": {"order.updated": 12, "order.created": 11},
                           "webhooks_checked_at": "2026-05-04T09:00:00+00:00", "polled_at": "2026-05-04T10:00:00+00:00"}
    db.session.commit()
    resp = signed_get(client, "/woocommerce/plugin/status")
    assert resp.status_code == 200
    assert resp.get_json() == {"shop": "alpine-store", "connected": True,
                               "portal_url": "https://returns.example.com/portal/alpine-store/",
                               "webhooks": {"topics": {"order.updated": 12, "order.created": 11},
                                            "checked_at": "2026-05-04T09:00:00+00:00"},
                               "last_sync": "2026-05-04T10:00:00+00:00", "error": None}


def test_status_of_a_refused_connection(client, store):
    store.platform_data = {**store.platform_data, "connection": "refused", "connection_error": "keys revoked"}
    db.session.commit()
    answer = signed_get(client, "/woocommerce/plugin/status").get_json()
    assert answer["connected"] is False and answer["error"] == "keys revoked" and answer["last_sync"] is None


@pytest.mark.parametrize("case", ["missing", "stale", "future", "wrong-secret", "other-path", "unknown-shop",
                                  "tampered-body"])
def test_unsigned_or_badly_signed_requests_get_401(client, store, case):
    path = "/woocommerce/plugin/refund"
    body = b'{"return_id":1}'
    headers = signed_headers("POST", path, body)
    if case == "missing":
        headers = {}
    elif case == "stale":
        headers = signed_headers("POST", path, body, timestamp=int(time.time()) - 301)
    elif case == "future":
        headers = signed_headers("POST", path, body, timestamp=int(time.time()) + 301)
    elif case == "wrong-secret":
        headers = signed_headers("POST", path, body, secret="another-secret")
    elif case == "other-path":
        headers = signed_headers("POST", "/woocommerce/plugin/status", body)
    elif case == "unknown-shop":
        headers = signed_headers("POST", path, body, shop="no-such-store")
    elif case == "tampered-body":
        body = b'{"return_id":2}'
    resp = client.post(path, data=body, content_type="application/json", headers=headers)
    assert resp.status_code == 401
    assert "error" in resp.get_json()
    assert db.session.query(Refund).count() == 0


def test_large_bodies_are_refused(client, store):
    path = "/woocommerce/plugin/refund"
    body = b" " * (64 * 1024 + 1)
    resp = client.post(path, data=body, content_type="application/json", headers=signed_headers("POST", path, body))
    assert resp.status_code == 413


def test_returns_of_an_order(client, store, refunds):
    ret = make_return(store)
    resp = signed_get(client, "/woocommerce/plugin/orders/1001/returns")
    assert resp.status_code == 200
    [item] = resp.get_json()
    assert item["id"] == ret.id and item["rma"] == ret.rma and item["state"] == "received"
    assert item["state_label"] == "Received"
    assert item["refund"] is None and item["can_refund"] is True
    preview = item["refund_preview"]
    assert preview["currency"] == "EUR" and preview["lines"] == [
        {"title": "Trail Jacket", "quantity": 1, "amount": preview["lines"][0]["amount"]}]
    assert isinstance(preview["total"], str) and isinstance(preview["shipping"], str)
    assert signed_get(client, "/woocommerce/plugin/orders/1002/returns").get_json() == []
    assert signed_get(client, "/woocommerce/plugin/orders/999999/returns").get_json() == []


def test_state_labels_follow_the_shops_language(client, store, refunds):
    make_return(store)
    store.locale = "de"
    db.session.commit()
    [item] = signed_get(client, "/woocommerce/plugin/orders/1001/returns").get_json()
    assert item["state_label"] == "Eingegangen"


def test_another_shops_order_is_not_listed(client, store, other_store, refunds):
    make_return(store)
    # The other store's order 1001 has the same WooCommerce id: its (empty) list is what it gets.
    assert signed_get(client, "/woocommerce/plugin/orders/1001/returns", shop="other-store").get_json() == []


def test_refund_once_even_when_clicked_twice(client, store, refunds):
    ret = make_return(store)
    first = signed_post(client, "/woocommerce/plugin/refund", {"return_id": ret.id})
    assert first.status_code == 200
    answer = first.get_json()
    assert answer["state"] == "succeeded" and answer["platform_refund_id"] == "701"
    assert answer["currency"] == "EUR" and answer["error"] is None and isinstance(answer["amount"], str)
    second = signed_post(client, "/woocommerce/plugin/refund", {"return_id": ret.id})
    assert second.get_json() == answer
    assert len(refunds.sent) == 1
    assert db.session.query(Refund).filter_by(return_id=ret.id).one().requested_by == "merchant:woocommerce-admin"
    [item] = signed_get(client, "/woocommerce/plugin/orders/1001/returns").get_json()
    assert item["state"] == "refunded" and item["can_refund"] is False and item["refund_preview"] is None
    assert item["refund"]["state"] == "succeeded"


def test_a_refusal_comes_back_verbatim(client, store, refunds):
    ret = make_return(store)
    refunds.refuse = "Error processing refund. Please try again."
    answer = signed_post(client, "/woocommerce/plugin/refund", {"return_id": ret.id}).get_json()
    assert answer["state"] == "failed" and answer["error"] == "Error processing refund. Please try again."
    [item] = signed_get(client, "/woocommerce/plugin/orders/1001/returns").get_json()
    assert item["state"] == "received" and item["can_refund"] is True and item["refund"]["state"] == "failed"


def test_refund_before_receipt_is_refused(client, store, refunds):
    ret = make_return(store, received=False)
    resp = signed_post(client, "/woocommerce/plugin/refund", {"return_id": ret.id})
    assert resp.status_code == 409 and resp.get_json()["error"]
    assert refunds.sent == []


def test_another_shops_return_is_404(client, store, other_store, refunds):
    ret = make_return(store)
    resp = signed_post(client, "/woocommerce/plugin/refund", {"return_id": ret.id}, shop="other-store")
    assert resp.status_code == 404
    assert refunds.sent == [] and db.session.query(Refund).count() == 0


@pytest.mark.parametrize("payload", [{}, {"return_id": "1"}, {"return_id": True}, [1]])
def test_refund_needs_a_return_id(client, store, payload):
    assert signed_post(client, "/woocommerce/plugin/refund", payload).status_code == 400
