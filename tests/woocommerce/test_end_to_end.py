"""One store's whole way, through the app's real endpoints and real jobs (JOBS_IMMEDIATE runs each
enqueued job inline): the wc-auth key callback, the setup and the backfill, a webhook, a shopper's
return from the plugin's link (label and order notes), the warehouse (receipt, grading) and the
plugin's one-click refund, exactly once.

The store is `Store` below: every WooCommerce answer in its recorded shape
(tests/fixtures/woocommerce: orders_list_pagination, order_created_v3 via deliveries/008,
webhooks_create, order_notes, refund_created_with_line_items), ids and values adapted. The
payment_gateways answer has no recording: WooCommerce's documented wc/v3 shape, as in
test_refunds.py. A fresh store: the `woo_shop` fixture is not used.
"""
from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import re
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import select
from werkzeug.security import generate_password_hash

from connector import db
from connector.platforms.woocommerce import connect, credentials, signing
from connector.returns import lifecycle as lc
from connector.returns.models import Event, Order, Refund, Return, Shop, WebhookDelivery
from tests.admin.conftest import Admin
from tests.factories import ADMIN_PASSWORD
from tests.portal.conftest import Shopper, address_form, reason_id

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "woocommerce"
STORE = "https://store.example.com"
API_PATH = "/wp-json/wc/v3/"
HANDLE = "store-example-com"
HOOK_URL = f"https://returns.example.com/woocommerce/webhooks/{HANDLE}"
RETURN_URL = f"{STORE}/wp-admin/admin.php?page=returns-connector"
CUSTOMER = 7
NEW_ORDER = 31  # created after the backfill, arrives by webhook


def recorded(name: str):
    return json.loads((FIX / "fixtures" / name).read_text())


def delivery(name: str) -> tuple[dict[str, str], dict]:
    data = json.loads((FIX / "deliveries" / f"{name}.json").read_text())
    transport = {"Host", "Content-Length", "Connection", "Accept-Encoding"}
    return ({k: v for k, v in data["headers"].items() if k not in transport},
            json.loads(base64.b64decode(data["body_b64"])))


def gmt(dt: datetime) -> str:
    return dt.astimezone(UTC).replace(tzinfo=None, microsecond=0).isoformat()


NOW = datetime.now(UTC)


def gateway(gid: str, title: str, supports: list[str]) -> dict:
    """wc/v3 payment_gateways item (documented shape; no recording)."""
    return {"id": gid, "title": title, "description": "", "order": 0, "enabled": True, "method_title": title,
            "method_description": "", "method_supports": supports, "settings": {}}


GATEWAYS = [gateway("bacs", "Direct bank transfer", ["products"]),
            gateway("stripe", "Credit card (Stripe)", ["products", "refunds", "tokenization"])]


def backfill_orders() -> list[list[dict]]:
    """Two pages of the recorded orders list (orders 13, 15; then 17, 19 made from them)."""
    first = recorded("orders_list_pagination.json")["orders_list_p1"]["json"]
    second = []
    for template, id_ in zip(first, (17, 19)):
        order = copy.deepcopy(template)
        order.update(id=id_, number=str(id_))
        second.append(order)
    second[0]["customer_id"] = CUSTOMER  # an older order of the same shopper
    return [first, second]


def new_order() -> dict:
    """The recorded order.created delivery (deliveries/008.json) as a paid, completed order of
    customer 7: two mugs, paid by card (stripe), shipped two days ago."""
    _headers, order = delivery("008")
    created, completed = NOW - timedelta(days=5), NOW - timedelta(days=2)
    address = {"first_name": "Erika", "last_name": "Muster", "company": "", "address_1": "Hauptstr. 5",
               "address_2": "", "city": "Berlin", "state": "", "postcode": "10115", "country": "DE", "phone": ""}
    order.update(id=NEW_ORDER, number=str(NEW_ORDER), status="completed", customer_id=CUSTOMER,
                 payment_method="stripe", payment_method_title="Credit card (Stripe)",
                 billing={**address, "email": "erika@example.com"}, shipping=address,
                 total="19.36", total_tax="3.36", cart_tax="3.36",
                 date_created_gmt=gmt(created), date_modified_gmt=gmt(created), date_paid_gmt=gmt(created),
                 date_completed_gmt=gmt(completed), date_created=gmt(created), date_modified=gmt(created),
                 date_paid=gmt(created), date_completed=gmt(completed), needs_payment=False)
    (mug,) = order["line_items"]
    mug.update(quantity=2, subtotal="16.00", subtotal_tax="3.36", total="16.00", total_tax="3.36",
               taxes=[{"id": 1, "total": "3.36", "subtotal": "3.36"}])
    order["tax_lines"][0]["tax_total"] = "3.36"
    return order


class Store:
    """The WooCommerce store behind https://store.example.com, answering in the recorded shapes and
    keeping every request (method, route, query, JSON body)."""

    def __init__(self, rsps):
        self.pages = backfill_orders()
        self.orders = {o["id"]: o for page in self.pages for o in page}
        self.webhooks: list[dict] = []
        self.refunds: dict[int, list[dict]] = {}
        self.notes: dict[int, list[dict]] = {}
        self.calls: list[tuple[str, str, dict, object]] = []
        for method in ("GET", "POST", "PUT", "DELETE"):
            rsps.add_callback(method, re.compile(re.escape(STORE) + r"/wp-json/.*"), callback=self._answer)

    def count(self) -> Counter:
        return Counter((method, route) for method, route, _q, _b in self.calls)

    def sent(self, method: str, route: str) -> list:
        return [body for m, r, _q, body in self.calls if (m, r) == (method, route)]

    def _answer(self, request):
        parts = urlsplit(request.url)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        route = parts.path.split("/wp-json/", 1)[1]
        body = json.loads(request.body) if request.body else None
        self.calls.append((request.method, route, query, body))
        if not route.startswith("wc/v3/"):
            # The plugin's own REST route (connect.push_plugin_secret), answering as the plugin's
            # RC_Settings does (embedded_ui/woocommerce/returns-connector/includes/class-rc-settings.php).
            return 200, {}, json.dumps({"ok": True, "shop": body["shop"], "portal_url": body["portal_url"]})
        route = route.removeprefix("wc/v3/")
        if (request.method, route) == ("GET", "orders"):
            return self._orders(query)
        if (request.method, route) == ("GET", "webhooks"):
            return 200, {"X-WP-Total": str(len(self.webhooks)), "X-WP-TotalPages": "1"}, json.dumps(self.webhooks)
        if (request.method, route) == ("POST", "webhooks"):
            hook = copy.deepcopy(recorded("webhooks_create.json")["webhook_create_order_updated"]["json"])
            resource, event = body["topic"].split(".")
            hook.update(id=10 + len(self.webhooks), name=body["name"], topic=body["topic"], resource=resource,
                        event=event, status=body["status"], delivery_url=body["delivery_url"])
            self.webhooks.append(hook)
            return 201, {}, json.dumps(hook)
        if (request.method, route) == ("GET", "payment_gateways"):
            return 200, {}, json.dumps(GATEWAYS)
        match = re.fullmatch(r"orders/(\d+)(/refunds|/notes)?", route)
        assert match, f"unexpected WooCommerce call {request.method} {route}"
        order_id, sub = int(match.group(1)), match.group(2)
        if sub is None and request.method == "GET":
            return 200, {}, json.dumps(self.orders[order_id])
        if sub == "/refunds" and request.method == "GET":
            listed = list(reversed(self.refunds.get(order_id, [])))
            return 200, {"X-WP-Total": str(len(listed)), "X-WP-TotalPages": "1"}, json.dumps(listed)
        if sub == "/refunds" and request.method == "POST":
            refund = self._refund(order_id, body)
            self.refunds.setdefault(order_id, []).append(refund)
            return 201, {}, json.dumps(refund)
        if sub == "/notes" and request.method == "POST":
            note = copy.deepcopy(recorded("order_notes.json")[0])
            notes = self.notes.setdefault(order_id, [])
            note.update(id=900 + len(notes), note=body["note"], customer_note=body["customer_note"])
            notes.append(note)
            return 201, {}, json.dumps(note)
        raise AssertionError(f"unexpected WooCommerce call {request.method} {route}")

    def _orders(self, query):
        headers = dict(recorded("orders_list_pagination.json")["orders_list_p1"]["headers"])
        everything = [o for page in self.pages for o in page]
        if "page" not in query:  # the keys check: per_page=1, first page
            assert query == {"per_page": "1"}
            headers.update({"X-WP-Total": str(len(everything)), "X-WP-TotalPages": str(len(everything))})
            return 200, headers, json.dumps(everything[:1])
        page = int(query["page"])
        headers.update({"X-WP-Total": str(len(everything)), "X-WP-TotalPages": str(len(self.pages))})
        return 200, headers, json.dumps(self.pages[page - 1] if page <= len(self.pages) else [])

    def _refund(self, order_id: int, sent: dict) -> dict:
        """The refund as WooCommerce answers it (refund_created_with_line_items.json)."""
        refund = recorded("refund_created_with_line_items.json")
        template = refund["line_items"][0]
        items = {i["id"]: i for i in self.orders[order_id]["line_items"]}
        lines = []
        for item in sent.get("line_items", []):
            if item["id"] not in items:
                continue
            line = copy.deepcopy(template)
            tax = sum(Decimal(t["refund_total"]) for t in item.get("refund_tax", []))
            line.update(id=500 + len(lines), name=items[item["id"]]["name"], quantity=-item.get("quantity", 0),
                        total=f"-{item['refund_total']}", total_tax=f"-{tax:.2f}")
            line["meta_data"][0]["value"] = str(item["id"])
            lines.append(line)
        refund.update(id=100 + sum(map(len, self.refunds.values())), amount=sent["amount"],
                      reason=sent.get("reason", ""), refunded_payment=bool(sent.get("api_refund", True)),
                      line_items=lines)
        return refund


def sign_delivery(secret: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def signed_post(client, shop: Shop, path: str, payload: dict, secret: str):
    body = json.dumps(payload).encode()
    ts = str(int(time.time()))
    return client.post(path, data=body, content_type="application/json",
                       headers={"X-RC-Shop": shop.handle, "X-RC-Timestamp": ts,
                                "X-RC-Signature": signing.sign_request(secret, ts, "POST", path, body)})


def the_shop() -> Shop:
    db.session.expire_all()
    return db.session.scalar(select(Shop).where(Shop.handle == HANDLE))


def order_ids(shop: Shop) -> set[str]:
    return set(db.session.scalars(select(Order.platform_id).where(Order.shop_id == shop.id)))


def test_a_store_from_the_key_callback_to_the_refund(client, app, rsps):
    store = Store(rsps)

    # ---------------------------------------------------------------- 1. connect, setup, backfill
    resp = client.get("/woocommerce/connect", query_string={"store_url": STORE, "return_url": RETURN_URL})
    assert resp.status_code == 302
    target = urlsplit(resp.headers["Location"])
    assert f"{target.scheme}://{target.netloc}{target.path}" == f"{STORE}/wc-auth/v1/authorize"
    user_id = parse_qs(target.query)["user_id"][0]
    assert store.calls == []  # nothing asked of the store before the keys arrive

    callback = json.loads((FIX / "deliveries" / "wc_auth_callback.json").read_text())
    body = dict(json.loads(callback["body"]), user_id=user_id)
    resp = client.post("/woocommerce/auth/callback", data=json.dumps(body, separators=(",", ":")),
                       headers={"Content-Type": callback["headers"]["Content-Type"],
                                "User-Agent": callback["headers"]["User-Agent"]})
    resp.close()  # the setup job runs once the answer is out
    assert resp.status_code == 200 and resp.data == b""

    shop = the_shop()
    creds = credentials.load(shop)
    assert creds.consumer_key == body["consumer_key"] and creds.key_id == body["key_id"]
    assert shop.active and shop.platform_data["connection"] == "connected"
    calls = store.count()
    assert calls[("GET", "wc/v3/orders")] == 1 + 2  # the keys check, then the two backfill pages
    assert calls[("GET", "wc/v3/webhooks")] == 1
    assert calls[("POST", "wc/v3/webhooks")] == len(connect.TOPICS)
    order_queries = [q for m, r, q, _b in store.calls if (m, r) == ("GET", "wc/v3/orders")]
    assert order_queries[0] == {"per_page": "1"}
    assert [q["page"] for q in order_queries[1:]] == ["1", "2"]
    assert all(q["per_page"] == "100" and q["orderby"] == "modified" for q in order_queries[1:])
    hooks = store.sent("POST", "wc/v3/webhooks")
    assert sorted(h["topic"] for h in hooks) == sorted(connect.TOPICS)
    assert all(h["secret"] == creds.webhook_secret and h["delivery_url"] == HOOK_URL and h["status"] == "active"
               for h in hooks)
    plugin_pushes = store.sent("POST", "returns-connector/v1/secret")
    assert len(plugin_pushes) == 1 and shop.platform_data["plugin"] == "connected"
    assert all(p["plugin_secret"] == creds.plugin_secret and p["shop"] == HANDLE for p in plugin_pushes)
    assert len(store.calls) == sum(calls.values()) == 3 + 1 + len(connect.TOPICS) + len(plugin_pushes)
    assert shop.platform_data["backfill"]["status"] == "done" and shop.platform_data["backfill"]["imported"] == 4
    assert order_ids(shop) == {"13", "15", "17", "19"}
    assert shop.currency == "EUR"

    # ---------------------------------------------------------------- 2. a webhook: order.created
    order_json = new_order()
    store.orders[NEW_ORDER] = order_json
    headers, _recorded_body = delivery("008")
    raw = json.dumps(order_json, separators=(",", ":")).encode()
    headers.update({"X-WC-Webhook-Signature": sign_delivery(creds.webhook_secret, raw),
                    "X-WC-Webhook-ID": str(store.webhooks[0]["id"]),
                    "X-WC-Webhook-Delivery-ID": "5b0c8a3e9f7d41c2a6e1d0b9c8a7f6e5"})
    before = len(store.calls)
    resp = client.post(f"/woocommerce/webhooks/{HANDLE}", data=raw, headers=headers)
    assert resp.status_code == 200
    db.session.expire_all()
    (row,) = db.session.scalars(select(WebhookDelivery).where(WebhookDelivery.shop_id == shop.id))
    assert (row.platform, row.topic) == ("woocommerce", "order.created")
    assert row.processed_at is not None and row.error is None
    assert len(store.calls) == before  # the payload is the order: nothing to fetch
    order = db.session.scalar(select(Order).where(Order.shop_id == shop.id, Order.platform_id == str(NEW_ORDER)))
    assert order is not None and order.customer_platform_id == str(CUSTOMER) and order.email == "erika@example.com"
    assert [(line.platform_id, line.quantity) for line in order.lines] == [("20", 2)]

    # ---------------------------------------------------------------- 3. the shopper, from the plugin's link
    token = signing.sign_customer_token(creds.plugin_secret, shop=HANDLE, customer=CUSTOMER,
                                        email="erika@example.com", order=NEW_ORDER, exp=int(time.time()) + 240,
                                        nonce="e2e-nonce-1")
    resp = client.get("/woocommerce/plugin/enter", query_string={"token": token})
    assert resp.status_code == 302
    assert resp.headers["Location"].endswith(f"/portal/{HANDLE}/orders/{order.id}/items")

    shopper = Shopper(client, HANDLE)
    items = shopper.get(f"orders/{order.id}/items")
    assert items.status_code == 200
    line = order.lines[0]
    resp = shopper.post(f"orders/{order.id}/items", {f"line-{line.id}-quantity": "1",
                                                     f"line-{line.id}-reason": str(reason_id(shop, "too_small"))})
    assert resp.status_code == 302, resp.get_data(as_text=True)
    resp = shopper.post(f"orders/{order.id}/method", {"method": "dropoff"})
    assert resp.status_code == 302, resp.get_data(as_text=True)
    page = shopper.get(f"orders/{order.id}/instructions").get_data(as_text=True)
    codes = re.findall(r'name="checklist" id="checklist-([a-z_]+)"', page)
    resp = shopper.post(f"orders/{order.id}/instructions", address_form(order) + [("checklist", c) for c in codes])
    assert resp.status_code == 302, resp.get_data(as_text=True)
    assert shopper.get(f"orders/{order.id}/summary").status_code == 200
    (ret,) = db.session.scalars(select(Return).where(Return.shop_id == shop.id))
    before = len(store.calls)
    resp = shopper.post(f"orders/{order.id}/confirm", {"return_id": str(ret.id)})
    assert resp.status_code == 302 and resp.headers["Location"].endswith(f"/returns/{ret.rma}/confirmed")
    db.session.expire_all()
    ret = db.session.get(Return, ret.id)
    assert ret.method == "dropoff" and ret.shipment is not None and ret.shipment.carrier == "sandbox"
    assert ret.shipment.tracking_number
    label = shopper.get(f"returns/{ret.rma}/label.pdf")
    assert label.status_code == 200 and label.data.startswith(b"%PDF")
    notes = store.sent("POST", f"wc/v3/orders/{NEW_ORDER}/notes")
    assert [(n["note"].split(":")[0], n["customer_note"]) for n in notes] == [
        (f"Return {ret.rma} requested", False), (f"Return {ret.rma}", False)]
    assert notes[0]["note"] == f"Return {ret.rma} requested: 1 × Mug (Too small)"
    assert notes[1]["note"].startswith(f"Return {ret.rma}: return label created, tracking number "
                                       f"{ret.shipment.tracking_number} (sandbox)")
    assert Counter(m for m, _r, _q, _b in store.calls[before:]) == Counter({"POST": 2})

    # ---------------------------------------------------------------- 4. the warehouse
    shop = the_shop()
    shop.admin_password_hash = generate_password_hash(ADMIN_PASSWORD)
    db.session.commit()
    admin = Admin(client, HANDLE)
    assert admin.login().status_code == 302
    (return_line,) = ret.lines
    resp = admin.post(f"returns/{ret.id}/receive", {f"received-{return_line.id}": "1"}, page=f"returns/{ret.id}")
    assert resp.status_code == 302, resp.get_data(as_text=True)
    resp = admin.post(f"returns/{ret.id}/inspect", {f"grade-{return_line.id}": "A",
                                                     f"disposition-{return_line.id}": "restock"},
                      page=f"returns/{ret.id}")
    assert resp.status_code == 302, resp.get_data(as_text=True)
    db.session.expire_all()
    ret = db.session.get(Return, ret.id)
    assert ret.state == lc.INSPECTED
    notes = store.sent("POST", f"wc/v3/orders/{NEW_ORDER}/notes")
    assert [n["note"] for n in notes[2:]] == [f"Return {ret.rma} received: 1 × Mug",
                                               f"Return {ret.rma} graded: Mug: A, restock"]

    # ---------------------------------------------------------------- 5. the plugin's one-click refund
    before = store.count()
    resp = signed_post(client, shop, "/woocommerce/plugin/refund", {"return_id": ret.id}, creds.plugin_secret)
    assert resp.status_code == 200
    answer = resp.get_json()
    db.session.expire_all()
    (refund,) = db.session.scalars(select(Refund).where(Refund.return_id == ret.id))
    made = store.count() - before
    assert made == Counter({("GET", f"wc/v3/orders/{NEW_ORDER}"): 1,  # the order's lines and taxes
                            ("GET", "wc/v3/payment_gateways"): 1,  # can its gateway refund?
                            ("POST", f"wc/v3/orders/{NEW_ORDER}/refunds"): 1,
                            ("POST", f"wc/v3/orders/{NEW_ORDER}/notes"): 1})  # "refunded"
    (sent,) = store.sent("POST", f"wc/v3/orders/{NEW_ORDER}/refunds")
    assert sent == {
        "amount": f"{refund.amount:.2f}",
        "reason": f"Returns Connector {ret.rma} [{refund.idempotency_key}]",
        "api_refund": True,  # stripe lists "refunds" in method_supports
        "api_restock": True,  # every refunded unit graded A, restock
        "line_items": sent["line_items"],
    }
    assert Decimal(sent["amount"]) == Decimal("9.68") - Decimal("3.95")  # one mug with its tax, less the drop-off fee
    assert [(i["id"], i["quantity"]) for i in sent["line_items"]] == [(20, 1)]
    assert refund.state == "succeeded" and refund.platform_refund_id == str(store.refunds[NEW_ORDER][0]["id"])
    assert answer == {"state": "succeeded", "amount": answer["amount"], "currency": "EUR", "error": None,
                      "platform_refund_id": refund.platform_refund_id}
    assert Decimal(answer["amount"]) == refund.amount
    ret = db.session.get(Return, ret.id)
    assert ret.state == lc.REFUNDED
    notes = store.sent("POST", f"wc/v3/orders/{NEW_ORDER}/notes")
    assert len(notes) == 5 and notes[4]["note"].startswith(f"Return {ret.rma} refunded: ")
    kinds = [e.data["kind"] for e in db.session.scalars(select(Event).where(Event.return_id == ret.id))
             if e.kind == "platform_note"]
    assert kinds[:4] == ["created", "label", "received", "graded"] and kinds[4].startswith("refunded-")

    # a second click sends nothing more
    before = len(store.calls)
    again = signed_post(client, shop, "/woocommerce/plugin/refund", {"return_id": ret.id}, creds.plugin_secret)
    assert again.status_code == 200 and again.get_json() == answer
    assert store.calls[before:] == []
    assert len(store.refunds[NEW_ORDER]) == 1
    assert db.session.query(Refund).filter_by(return_id=ret.id).count() == 1
    # the whole story, call by call
    assert store.count() == Counter({
        ("GET", "wc/v3/orders"): 3, ("GET", "wc/v3/webhooks"): 1, ("POST", "wc/v3/webhooks"): len(connect.TOPICS),
        ("POST", "returns-connector/v1/secret"): 1,
        ("POST", f"wc/v3/orders/{NEW_ORDER}/notes"): 5, ("GET", f"wc/v3/orders/{NEW_ORDER}"): 1,
        ("GET", "wc/v3/payment_gateways"): 1, ("POST", f"wc/v3/orders/{NEW_ORDER}/refunds"): 1})
