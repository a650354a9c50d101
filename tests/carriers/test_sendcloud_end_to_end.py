"""A shop connects its Sendcloud account and runs returns through it, end to end.

The merchant connects Sendcloud in the admin and checks the credentials; a shopper's drop-off
return goes to Sendcloud, whose label comes later (the reconciler fetches it and the shopper gets
it by mail); Sendcloud's signed status webhooks move the parcel to in transit and delivered
(received); a cancelled return's label is cancelled and confirmed by Sendcloud's status; a Swiss
shopper's return carries a customs declaration. Every Sendcloud answer is in its documented shape
(tests/carriers/cases_sendcloud.py, FakeSendcloud over tests/fixtures/carriers/sendcloud).
"""
from __future__ import annotations

import hashlib
import hmac
import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from connector import db
from connector.carriers import registry
from connector.carriers.sendcloud import SendcloudBackend
from connector.returns import lifecycle as lc
from connector.returns import services
from connector.returns.models import CarrierConnection, Order, ReturnReason, Shipment
from tests.carriers.cases_sendcloud import PUBLIC_KEY, SECRET_KEY, FakeSendcloud, fixture
from tests.factories import now


@pytest.fixture
def sendcloud(monkeypatch):
    monkeypatch.setattr(registry, "_plugins", lambda: {"sendcloud": SendcloudBackend})
    fake = FakeSendcloud()
    with fake.mock():
        yield fake


@pytest.fixture
def connected(shop, admin, sendcloud):
    """Sendcloud connected through the admin for drop-offs everywhere, checked."""
    shop.policy = {"methods": {"*": ["dropoff", "selfship"]}}
    db.session.commit()
    form = {"name": "Sendcloud", "field-public_key": PUBLIC_KEY, "field-secret_key": SECRET_KEY,
            "field-shipping_option_code": "dpd:return/return", "field-qr_dropoff": "no", "field-pickups": "no",
            "method-dropoff": "*", "address_rows": "0"}
    assert admin.post("settings/carriers/new/sendcloud", form, page="settings/carriers/new/sendcloud").status_code == 302
    conn = db.session.scalars(select(CarrierConnection).where(CarrierConnection.shop_id == shop.id)).one()
    checked = admin.post(f"settings/carriers/{conn.id}/check", page=f"settings/carriers/{conn.id}", follow=True)
    assert "The carrier accepted the credentials." in checked.get_data(as_text=True)
    return conn


def confirmed(shop, address=None):
    order = db.session.scalars(select(Order).where(Order.shop_id == shop.id, Order.number == "1001")).one()
    reason = db.session.scalars(select(ReturnReason).where(ReturnReason.shop_id == shop.id,
                                                            ReturnReason.code == "changed_mind")).one()
    ret = services.start_draft(shop, order, email=order.email, locale="en")
    services.set_items(ret, [services.ItemChoice(order.lines[0].id, 1, reason.id)])
    services.set_method(ret, "dropoff")
    services.set_instructions(ret, address or dict(order.shipping_address),
                              [code for code, _t in services.checklist_items(ret)])
    services.confirm(ret)
    return ret


def status_webhook(tracking_number: str, status_id: int, message: str) -> tuple[dict[str, str], bytes]:
    payload = fixture("webhook_parcel_status_changed.json")
    stamp = int(now().timestamp() * 1000)
    payload["timestamp"] = payload["carrier_status_change_timestamp"] = stamp
    payload["parcel"]["tracking_number"] = tracking_number
    payload["parcel"]["status"] = {"id": status_id, "message": message}
    body = json.dumps(payload).encode()
    return {"Sendcloud-Signature": hmac.new(SECRET_KEY.encode(), body, hashlib.sha256).hexdigest(),
            "Content-Type": "application/json"}, body


def test_a_return_through_sendcloud_from_label_to_received(shop, client, connected, sendcloud, outbox):
    sendcloud.announce_later = True  # Sendcloud makes the label asynchronously
    ret = confirmed(shop)
    shipment = ret.shipment
    assert shipment.connection_id == connected.id and shipment.status == "label_pending"
    assert ret.state == lc.APPROVED
    (return_id,) = sendcloud.returns
    sent = sendcloud.returns[return_id]
    assert sent["_external_reference"] == shipment.idempotency_key  # one return per shipment at Sendcloud
    assert sent["to_address"]["city"] == "Leipzig"  # the shop's return address

    sendcloud.announce(return_id)
    services.reconcile(now=now() + timedelta(hours=1))
    db.session.refresh(ret)
    assert ret.state == lc.LABEL_READY and shipment.status == "label_ready"
    assert services.label_bytes(ret).startswith(b"%PDF")
    assert shipment.tracking_number == sendcloud.returns[return_id]["tracking_number"]
    mails = [m for m in outbox() if m["To"] == ret.email]
    assert any(part.get_filename() for m in mails for part in m.iter_attachments())
    assert len(sendcloud.returns) == 1

    url = f"/carriers/webhooks/{connected.webhook_token}"
    headers, body = status_webhook(shipment.tracking_number, 3, "En route to sorting center")
    assert client.post(url, data=body, headers={**headers, "Sendcloud-Signature": "0" * 64}).status_code == 401
    assert client.post(url, data=body, headers=headers).status_code == 200
    db.session.expire_all()
    assert db.session.get(Shipment, shipment.id).return_.state == lc.IN_TRANSIT
    headers, body = status_webhook(shipment.tracking_number, 11, "Delivered")
    assert client.post(url, data=body, headers=headers).status_code == 200
    db.session.expire_all()
    assert db.session.get(Shipment, shipment.id).return_.state == lc.RECEIVED


def test_a_cancelled_return_cancels_at_sendcloud_and_is_confirmed_by_its_status(shop, client, connected, sendcloud):
    ret = confirmed(shop)
    shipment = ret.shipment
    assert ret.state == lc.LABEL_READY
    services.cancel(ret, "shopper")
    assert shipment.status == "void_pending"  # Sendcloud confirms a cancellation later
    headers, body = status_webhook(shipment.tracking_number, 2000, "Cancelled")
    assert client.post(f"/carriers/webhooks/{connected.webhook_token}", data=body, headers=headers).status_code == 200
    db.session.expire_all()
    shipment = db.session.get(Shipment, shipment.id)
    assert shipment.status == "voided" and "label_voided" in [e.kind for e in shipment.return_.events]


def test_a_swiss_shoppers_return_carries_a_customs_declaration(shop, connected, sendcloud):
    swiss = {"name": "Heidi Muster", "line1": "Bahnhofstrasse 1", "postcode": "8001", "city": "Zürich",
             "country": "CH"}
    ret = confirmed(shop, address=swiss)
    (sent,) = sendcloud.returns.values()
    assert sent["customs_invoice_nr"] == "1001"
    assert sent["customs_shipment_type"] == 4  # Sendcloud's "Returned Goods"
    (item,) = sent["parcel_items"]
    assert item["quantity"] == 1 and item["description"].startswith("Trail Jacket")
    assert ret.state == lc.LABEL_READY


def test_without_a_webhook_the_tracking_poll_learns_that_sendcloud_cancelled(shop, connected, sendcloud):
    ret = confirmed(shop)
    shipment = ret.shipment
    services.cancel(ret, "shopper")
    assert shipment.status == "void_pending"
    services.refresh_tracking(shipment)  # Sendcloud still works on it ("Cancellation requested")
    assert shipment.status == "void_pending"
    (found,) = sendcloud.returns.values()
    found["status_history"].append(sendcloud._status("Cancelled"))
    services.refresh_tracking(shipment)
    assert shipment.status == "voided" and "label_voided" in [e.kind for e in shipment.return_.events]
