"""Shopify's mandatory privacy topics: customers/data_request, customers/redact, shop/redact.

Each protects one promise: the merchant gets exactly that customer's data in that shop; redaction
removes that customer and no one else; a shop's deletion removes that shop's rows and files only.
Each is delivered twice (Shopify delivers at least once) and must end the same way.
"""
from __future__ import annotations

import json
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from connector import db
from connector.platforms.shopify import credentials
from connector.returns import lifecycle as lc
from connector.returns.context import runtime
from connector.returns.models import (Event, Order, OrderLine, Refund, Return, ReturnLine, Shipment, Shop,
                                      WebhookDelivery)
from tests.factories import make_order
from tests.shopify.deliveries import deliver, order_payload, payload
from tests.shopify.factories import make_shopify_shop, order_gid

OTHER_DOMAIN = "other-shop.myshopify.com"


@pytest.fixture
def shops(app, shopify_shop):
    """The demo Shopify shop and another installed shop holding an order of the same email."""
    other = make_shopify_shop(handle="other-shop", domain=OTHER_DOMAIN, with_orders=False)
    make_order(other, "2001", "erika@example.com", lines=[{"title": "Other Shop Tent", "price": "299.00"}])
    other_order = db.session.scalar(select(Order).where(Order.shop_id == other.id))
    other_order.platform_id = "gid://shopify/Order/7000002001"
    db.session.commit()
    put_return(other, other_order, comment="Other shop's comment", photo=f"shop-{other.id}/photos/{'b' * 32}.jpg")
    return shopify_shop, other


def put_return(shop, order, *, comment="", photo=None, note="", withdrawal_name=None) -> Return:
    """A received return of the order's first line with a photo, a label, a refund and events."""
    ret = Return(shop_id=shop.id, order_id=order.id, number=order.id + 500, email=order.email, state=lc.RECEIVED,
                 currency=order.currency, method="dropoff", address=dict(order.shipping_address),
                 withdrawal_name=withdrawal_name, is_withdrawal=bool(withdrawal_name))
    photos = [photo] if photo else []
    for key in photos:
        runtime.storage.put(key, b"jpeg bytes")
    label = f"shop-{shop.id}/labels/key-{order.id}.pdf"
    runtime.storage.put(label, b"%PDF label with the sender's address")
    ret.lines.append(ReturnLine(shop_id=shop.id, order_line_id=order.lines[0].id, quantity=1, comment=comment,
                                photos=photos, received_quantity=1, grade="B", disposition="refurbish",
                                inspection_note=note))
    ret.shipments.append(Shipment(shop_id=shop.id, carrier="sandbox", method="dropoff", status="in_transit",
                                  idempotency_key=f"ship-{order.id}", tracking_number=f"TRK{order.id}",
                                  label_key=label))
    ret.refunds.append(Refund(shop_id=shop.id, amount=Decimal("10.00"), currency=order.currency,
                              idempotency_key=f"rc-{shop.id}-{order.id}-1", state="succeeded"))
    ret.events.append(Event(shop_id=shop.id, actor="shopper", kind="withdrawal", public=True,
                            data={"name": withdrawal_name or order.customer_name, "email": order.email,
                                  "order": order.number}))
    ret.events.append(Event(shop_id=shop.id, actor="merchant:Sam", kind="state", public=True,
                            data={"from": "in_transit", "to": "received"}))
    db.session.add(ret)
    db.session.commit()
    return ret


def the_order(shop, number) -> Order:
    return db.session.scalar(select(Order).where(Order.shop_id == shop.id, Order.number == number))


def document_in(mail) -> dict:
    """The JSON document embedded in a merchant mail's text part."""
    text = mail.get_body(("plain",)).get_content()
    return json.loads(text[text.index("\n{\n") + 1:text.rindex("\n}") + 2])


def request_payload(name, email, numbers, shop_domain):
    data = payload(name)
    data["shop_domain"] = shop_domain
    data["customer"]["email"] = email
    key = "orders_requested" if name == "customers_data_request" else "orders_to_redact"
    data[key] = [int(order_gid(n).rsplit("/", 1)[1]) for n in numbers]
    return data


# ---------------------------------------------------------------------------- customers/data_request


def test_data_request_gives_the_merchant_that_customers_data_only(client, shops, outbox):
    shop, other = shops
    erika = the_order(shop, "1001")
    put_return(shop, erika, comment="Too tight", photo=f"shop-{shop.id}/photos/{'a' * 32}.jpg",
               note="Worn once, tag missing")
    put_return(shop, the_order(shop, "1003"), comment="Jean's own comment")
    # Order 1002 has another email but the same Shopify customer account as the request.
    the_order(shop, "1002").customer_platform_id = "gid://shopify/Customer/191167"
    the_order(shop, "1003").customer_platform_id = "gid://shopify/Customer/5"
    db.session.commit()
    data = request_payload("customers_data_request", "Erika@Example.com", [], shop.domain)

    for event_id in ("evt-1", "evt-1", "evt-2"):  # a duplicate, then Shopify sending the request again
        assert deliver(client, "customers/data_request", data, event_id=event_id).status_code == 200

    mails = [m for m in outbox() if m["To"] == shop.support_email]
    assert len(mails) == 2
    text = mails[0].get_body(("plain",)).get_content()
    assert "erika@example.com" in text and "9999" in text  # the Shopify request id
    document = document_in(mails[0])
    assert [o["order"] for o in document["orders"]] == ["#1001", "#1002"]  # by email, and by account
    assert [r["order"] for r in document["returns"]] == ["#1001"]
    [ret] = document["returns"]
    assert ret["lines"][0]["comment"] == "Too tight" and ret["lines"][0]["inspection_note"] == "Worn once, tag missing"
    assert ret["shipments"][0]["tracking_number"] and ret["refunds"][0]["amount"] == "10.00"
    assert [e["kind"] for e in ret["timeline"]] == ["withdrawal", "state"]
    assert document["orders"][0]["lines"][0]["unit_price"] == "129.00"
    flat = json.dumps(document)
    assert "jean@example.fr" not in flat and "Jean's own comment" not in flat  # another customer
    assert "Other Shop Tent" not in flat and "Other shop's comment" not in flat  # another shop
    # Stored under the shop's folder, the same document both times.
    stored = json.loads(runtime.storage.get(f"shop-{shop.id}/privacy/data-request-9999.json"))
    for doc in (stored, document_in(mails[1])):
        assert {k: v for k, v in doc.items() if k not in ("generated_at", "request")} == \
            {k: v for k, v in document.items() if k not in ("generated_at", "request")}


def test_data_request_for_an_unknown_customer_says_there_is_nothing(client, shops, outbox):
    shop, _other = shops
    deliver(client, "customers/data_request",
            request_payload("customers_data_request", "nobody@example.com", [], shop.domain))
    [mail] = [m for m in outbox() if m["To"] == shop.support_email]
    text = mail.get_body(("plain",)).get_content()
    assert "0 order(s) and 0 return(s)" in text


# ---------------------------------------------------------------------------- customers/redact


def test_redact_anonymises_only_that_customer_in_that_shop(client, shops):
    shop, other = shops
    erika = the_order(shop, "1001")
    photo = f"shop-{shop.id}/photos/{'c' * 32}.jpg"
    ret = put_return(shop, erika, comment="Too tight, Erika", photo=photo, withdrawal_name="Erika Mustermann",
                     note="Customer Erika called about it")
    clean_note_ret = put_return(shop, the_order(shop, "1002"), note="Seam torn, grade B")
    jean_ret = put_return(shop, the_order(shop, "1003"), comment="Jean's own comment",
                          photo=f"shop-{shop.id}/photos/{'d' * 32}.jpg")
    # A stored orders/updated body carrying Erika's order, and one of Jean's.
    deliver(client, "orders/updated", order_payload("1001", updated_at="2000-01-01T00:00:00Z"))
    deliver(client, "orders/updated", order_payload("1003", updated_at="2000-01-01T00:00:00Z",
                                                    email="jean@example.fr"))
    data = request_payload("customers_redact", "erika@example.com", ["1002"], shop.domain)
    label = ret.shipments[0].label_key

    for event_id in ("evt-r1", "evt-r2"):
        assert deliver(client, "customers/redact", data, event_id=event_id).status_code == 200
    db.session.expire_all()

    for number in ("1001", "1002"):
        got = the_order(shop, number)
        assert (got.email, got.customer_name, got.postcode, got.customer_platform_id) == ("", "", "", None)
        assert got.shipping_address == {"country": got.country} and got.country in ("DE", "US")
        assert got.lines and got.total > 0  # the business facts stay
    ret = db.session.get(Return, ret.id)
    assert ret.email == "" and ret.withdrawal_name is None and ret.address == {"country": "DE"}
    assert ret.state == lc.RECEIVED and ret.refunds[0].amount == Decimal("10.00")
    line = ret.lines[0]
    assert (line.comment, line.photos, line.grade) == ("", [], "B")
    assert line.inspection_note == "[redacted]"  # it named her
    assert db.session.get(Return, clean_note_ret.id).lines[0].inspection_note == "Seam torn, grade B"
    assert ret.shipments[0].label_key is None and ret.shipments[0].tracking_number
    withdrawal = next(e for e in ret.events if e.kind == "withdrawal")
    assert withdrawal.data == {"name": "[redacted]", "email": "[redacted]", "order": "1001"}
    assert not runtime.storage.exists(photo) and not runtime.storage.exists(label)
    bodies = {d.payload for d in db.session.scalars(select(WebhookDelivery).where(
        WebhookDelivery.topic == "orders/updated"))}
    assert '{"redacted": true}' in bodies and any("jean@example.fr" in b for b in bodies)
    assert not any("erika@example.com" in d.payload for d in db.session.scalars(select(WebhookDelivery)))

    # Jean, and the other shop's Erika, are untouched.
    jean = db.session.get(Return, jean_ret.id)
    assert jean.email == "jean@example.fr" and jean.lines[0].comment == "Jean's own comment"
    assert runtime.storage.exists(jean.lines[0].photos[0])
    assert the_order(shop, "1003").email == "jean@example.fr"
    theirs = the_order(other, "2001")
    assert theirs.email == "erika@example.com" and theirs.customer_name == "Erika Mustermann"
    other_ret = db.session.scalar(select(Return).where(Return.shop_id == other.id))
    assert other_ret.lines[0].comment == "Other shop's comment"
    assert runtime.storage.exists(other_ret.lines[0].photos[0])


# ---------------------------------------------------------------------------- shop/redact


def uninstall(client, shop):
    deliver(client, "app/uninstalled", payload("app_uninstalled"), shop=shop.domain)


def count(model, shop_id) -> int:
    return db.session.scalar(select(func.count()).select_from(model).where(model.shop_id == shop_id))


def test_shop_redact_deletes_that_shops_rows_and_files_only(client, shops):
    shop, other = shops
    shop_id = shop.id
    ret = put_return(shop, the_order(shop, "1001"), photo=f"shop-{shop_id}/photos/{'e' * 32}.jpg")
    files = [ret.lines[0].photos[0], ret.shipments[0].label_key]
    other_ret = db.session.scalar(select(Return).where(Return.shop_id == other.id))
    other_files = [other_ret.lines[0].photos[0], other_ret.shipments[0].label_key]
    assert all(runtime.storage.exists(key) for key in files + other_files)
    uninstall(client, shop)
    data = payload("shop_redact")
    data["shop_domain"] = shop.domain
    assert deliver(client, "shop/redact", data, event_id="evt-s1").status_code == 200
    db.session.expire_all()

    assert db.session.get(Shop, shop_id) is None
    for model in (Order, OrderLine, Return, ReturnLine, Shipment, Refund, Event, WebhookDelivery):
        assert count(model, shop_id) == 0, model.__name__
    assert not any(runtime.storage.exists(key) for key in files)
    # The other shop keeps everything.
    assert db.session.get(Shop, other.id) is not None and count(Order, other.id) == 1 and count(Return, other.id) == 1
    assert all(runtime.storage.exists(key) for key in other_files)
    # Shopify sending it again: the shop is unknown now, nothing to do.
    again = deliver(client, "shop/redact", data, event_id="evt-s2")
    assert (again.status_code, again.get_data(as_text=True)) == (200, "unknown shop")


def test_shop_redact_for_a_shop_installed_again_deletes_nothing(client, shops):
    shop, _other = shops
    assert shop.active and credentials.load(shop) is not None
    data = payload("shop_redact")
    data["shop_domain"] = shop.domain
    deliver(client, "shop/redact", data)
    db.session.expire_all()
    assert db.session.get(Shop, shop.id) is not None and count(Order, shop.id) == 3
