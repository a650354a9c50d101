"""Carrier connections: a merchant's carrier accounts, and what the portal and the services do with them.

`AcmeBackend` is the sandbox carrier behind a merchant account (an API key that must be "good",
an account number, a webhook secret): it stands for any remote backend here, where what is tested
is the connector's side (sealing, choosing, addressing, late labels, asynchronous cancels,
webhooks). The real backends' own behaviour is in their contract cases (cases_*.py).
"""
from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import select, text

from connector import db
from connector.carriers import connections
from connector.carriers.customs import needs_customs
from connector.carriers.sandbox import SandboxBackend
from connector.returns import lifecycle as lc
from connector.returns import services
from connector.returns.models import CarrierConnection, Order, ReturnReason, Shipment
from connector.returns.ports import TrackingEvent
from connector.returns.services.drafts import pickup_day
from tests.carriers.acme import AcmeBackend, acme, connect  # noqa: F401  (acme: an autouse fixture)
from tests.factories import make_shop, now


SWISS_ADDRESS = {"name": "Demo Returns CH", "line1": "Lagerstrasse 1", "postcode": "8001", "city": "Zürich",
                 "country": "CH"}


def draft(shop, number="1001", country=None):
    order = db.session.scalars(select(Order).where(Order.shop_id == shop.id, Order.number == number)).one()
    if country:
        order.country = country
        order.shipping_address = {**order.shipping_address, "country": country}
    reason = db.session.scalars(select(ReturnReason).where(ReturnReason.shop_id == shop.id,
                                                            ReturnReason.code == "changed_mind")).one()
    ret = services.start_draft(shop, order, email=order.email, locale="en")
    services.set_items(ret, [services.ItemChoice(order.lines[0].id, 1, reason.id)])
    return ret


def confirmed(shop, method="dropoff", address=None, **kw):
    ret = draft(shop, **kw)
    services.set_method(ret, method)
    services.set_instructions(ret, address or dict(ret.order.shipping_address),
                              [code for code, _t in services.checklist_items(ret)])
    services.confirm(ret)
    return ret


# ---------------------------------------------------------------------------- saving


def test_secrets_are_sealed_and_kept_when_left_empty(shop):
    conn = connect(shop)
    raw = db.session.execute(text("SELECT credentials, settings FROM carrier_connections WHERE id = :id"),
                             {"id": conn.id}).one()
    assert b"good" not in bytes(raw.credentials) and b"whsec" not in bytes(raw.credentials)
    assert conn.settings == {"account": "A-1"}
    connections.save(shop, "acme", {"api_key": "", "account": "A-2"}, name="Acme", test_mode=False,
                     methods={"dropoff": ["*"]}, connection=conn)
    settings = connections.backend_settings(conn)
    assert (settings["api_key"], settings["account"], settings["test_mode"]) == ("good", "A-2", False)


@pytest.mark.parametrize("values, methods, message", [
    ({"account": "A-1"}, {"dropoff": ["DE"]}, "API key is required"),
    ({"api_key": "x", "account": "A-1"}, {"dropoff": ["Germany"]}, "two-letter codes"),
    ({"api_key": "x", "account": "A-1"}, {"teleport": ["DE"]}, "unknown return method"),
])
def test_what_cannot_make_a_connection_is_named(shop, values, methods, message):
    with pytest.raises(connections.ConnectionInvalid, match=message):
        connections.save(shop, "acme", values, name="Acme", test_mode=True, methods=methods)


def test_check_credentials_calls_the_carrier_and_keeps_the_outcome(shop):
    conn = connect(shop, api_key="bad")
    assert connections.check(conn) == connections.CheckResult(False, message="Acme: invalid API key")
    assert conn.check_error and conn.checked_at
    connections.save(shop, "acme", {"api_key": "good", "account": "A-1"}, name="Acme", test_mode=True,
                     methods={"dropoff": ["DE"]}, connection=conn)
    assert connections.check(conn).accepted and conn.check_error is None


def test_a_carrier_that_does_not_answer_says_so_and_changes_nothing(shop, admin, monkeypatch):
    from connector.returns.ports import CarrierRetryable

    conn = connect(shop)
    assert connections.check(conn).accepted
    checked_at = conn.checked_at
    monkeypatch.setattr(AcmeBackend, "check_credentials",
                        lambda self: (_ for _ in ()).throw(CarrierRetryable("Acme: connection refused")))
    page = admin.post(f"settings/carriers/{conn.id}/check", page=f"settings/carriers/{conn.id}", follow=True)
    assert "The carrier could not be reached; try again later: Acme: connection refused" in page.get_data(as_text=True)
    db.session.refresh(conn)
    assert conn.checked_at == checked_at and conn.check_error is None


def test_another_shops_connection_is_never_used(shop):
    other = make_shop("other-shop", with_orders=False)
    conn = connect(other)
    assert connections.get(shop, conn.id) is None
    assert connections.serving(shop, "dropoff", "DE") is None


# ---------------------------------------------------------------------------- what the portal offers


def test_the_portal_offers_exactly_what_the_connections_serve_for_the_country(shop):
    connect(shop, methods={"dropoff": ["DE", "AT"], "carrier_label": ["DE"]})
    offered = {o.method: o for o in services.method_options(draft(shop))}
    assert set(offered) == {"dropoff", "carrier_label", "selfship"}  # selfship needs no carrier
    assert offered["dropoff"].carrier == "acme" and offered["dropoff"].connection_id is not None
    assert offered["carrier_label"].prints_label is False
    french = {o.method for o in services.method_options(draft(shop, number="1003"))}
    assert french == {"selfship"}  # FR is served by no connection


def test_a_domestic_carrier_is_offered_abroad_only_with_a_return_address_there(shop):
    connect(shop, methods={"dropoff": ["*"]})
    assert "dropoff" not in {o.method for o in services.method_options(draft(shop, country="CH"))}
    conn = db.session.scalars(select(CarrierConnection)).one()
    connections.save(shop, "acme", {"account": "A-1"}, name="Acme", test_mode=True, methods={"dropoff": ["*"]},
                     return_addresses={"CH": SWISS_ADDRESS}, connection=conn)
    db.session.commit()
    assert "dropoff" in {o.method for o in services.method_options(draft(shop, country="CH"))}


def test_a_shop_without_connections_keeps_its_policy_carriers(shop):
    assert {o.carrier for o in services.method_options(draft(shop))} >= {"sandbox"}


# ---------------------------------------------------------------------------- the parcel


def test_the_label_goes_to_the_return_address_for_the_shoppers_country(shop):
    connect(shop, methods={"dropoff": ["*"]}, return_addresses={"CH": SWISS_ADDRESS})
    swiss = {"name": "Heidi Muster", "line1": "Bahnhofstrasse 1", "postcode": "8001", "city": "Zürich",
             "country": "CH"}
    ret = confirmed(shop, address=swiss, country="CH")
    assert ret.state == lc.LABEL_READY
    request = AcmeBackend.requests[ret.shipment.tracking_number]
    assert request.recipient.city == "Zürich" and request.recipient.country == "CH"
    assert request.customs is None  # Switzerland to Switzerland: no border
    assert ret.shipment.connection_id is not None


def test_a_swiss_return_into_germany_carries_a_customs_declaration(shop, acme, monkeypatch):
    monkeypatch.setattr(acme, "capabilities", replace(acme.capabilities, international=True))
    connect(shop, methods={"dropoff": ["*"]}, return_addresses={"CH": {**SWISS_ADDRESS, "country": "DE",
                                                                         "city": "Konstanz", "postcode": "78462"}})
    swiss = {"name": "Heidi Muster", "line1": "Bahnhofstrasse 1", "postcode": "8001", "city": "Zürich",
             "country": "CH"}
    ret = confirmed(shop, address=swiss, country="CH")
    customs = AcmeBackend.requests[ret.shipment.tracking_number].customs
    assert customs is not None and customs.invoice_number == "1001" and customs.contents_type == "returned_goods"
    (item,) = customs.items
    assert (item.description, item.quantity, str(item.value)) == ("Trail Jacket - M / Blue", 1, "129.00")
    assert item.weight_grams > 0


@pytest.mark.parametrize("sender, recipient, needed", [
    ("CH", "DE", True), ("GB", "FR", True), ("NO", "SE", True), ("US", "DE", True), ("DE", "CH", True),
    ("AT", "DE", False), ("FR", "ES", False), ("CH", "CH", False), ("US", "CH", True)])
def test_customs_is_needed_across_the_eu_customs_border(sender, recipient, needed):
    assert needs_customs(sender, recipient) is needed


def test_pickups_follow_the_region_of_the_pickup_address_and_the_carriers_cut_off(shop):
    monday_5_jan = datetime(2026, 1, 5, 10, 0, tzinfo=timezone.utc)  # 6 January: Epiphany in Bavaria only
    assert pickup_day(shop, "DE", monday_5_jan, region="BY") == date(2026, 1, 7)
    assert pickup_day(shop, "DE", monday_5_jan, region="BE") == date(2026, 1, 6)
    assert pickup_day(shop, "DE", monday_5_jan, region="BE", cutoff_hour=11) == date(2026, 1, 7)  # 11:00 Berlin
    assert pickup_day(shop, "DE", monday_5_jan, region="XX") == date(2026, 1, 6)  # unknown region: the country's


def test_a_pickup_is_booked_at_the_pickup_address_region(shop, monkeypatch):
    connect(shop, methods={"pickup": ["DE"]}, cutoff_hour=14)
    booked = {}
    real = SandboxBackend.schedule_pickup
    monkeypatch.setattr(SandboxBackend, "schedule_pickup",
                        lambda self, request, day: booked.update(region=request.sender.region, day=day)
                        or real(self, request, day))
    address = {"name": "Sepp Huber", "line1": "Marienplatz 1", "postcode": "80331", "city": "München",
               "region": "BY", "country": "DE"}
    ret = confirmed(shop, method="pickup", address=address)
    assert ret.state == lc.AWAITING_PICKUP and booked["region"] == "BY"
    assert booked["day"] == pickup_day(shop, "DE", region="BY", cutoff_hour=14)


# ---------------------------------------------------------------------------- late labels


def test_a_late_label_is_mailed_when_it_arrives(shop, outbox, acme):
    acme.late = True
    connect(shop)
    ret = confirmed(shop)
    shipment = ret.shipment
    assert shipment.status == "label_pending" and ret.state == lc.APPROVED and ret.pending_step == "label"
    assert not [m for m in outbox() if "label" in m["Subject"].lower()]
    services.fetch_late_label(shipment.id)  # not made yet: asked again later
    assert shipment.status == "label_pending"
    acme.ready = True
    services.reconcile(now=now() + timedelta(hours=1))
    db.session.refresh(ret)
    assert shipment.status == "label_ready" and ret.state == lc.LABEL_READY
    assert services.label_bytes(ret).startswith(b"%PDF")
    (mail,) = [m for m in outbox() if m["To"] == ret.email and any(
        part.get_filename() for part in m.iter_attachments())]
    assert mail


def test_a_label_that_never_comes_fails_after_24_hours_and_alerts_the_merchant(shop, outbox, acme):
    acme.late = True
    connect(shop)
    ret = confirmed(shop)
    services.fetch_late_label(ret.shipment.id, now=now() + timedelta(hours=25))
    assert ret.shipment.status == "failed" and "24 hours" in ret.shipment.error
    assert [m for m in outbox() if m["To"] == shop.support_email and "refused" in m["Subject"]]


# ---------------------------------------------------------------------------- cancelling and webhooks


def test_a_cancel_the_carrier_confirms_later_is_recorded_when_it_does(shop, client, acme):
    acme.async_void = True
    conn = connect(shop)
    ret = confirmed(shop)
    shipment = ret.shipment
    services.cancel(ret, "shopper")
    assert shipment.status == "void_pending"
    body = json.dumps({"tracking_number": shipment.tracking_number, "cancelled": True}).encode()
    signature = hmac.new(b"whsec", body, hashlib.sha256).hexdigest()
    url = f"/carriers/webhooks/{conn.webhook_token}"
    assert client.post(url, data=body, headers={"Acme-Signature": "0" * 64}).status_code == 401
    assert client.post(url, data=body, headers={"Acme-Signature": signature}).status_code == 200
    assert client.post(url, data=body, headers={"Acme-Signature": signature}).status_code == 200  # redelivered
    db.session.expire_all()
    shipment = db.session.get(Shipment, shipment.id)
    assert shipment.status == "voided"
    assert [e.kind for e in shipment.return_.events].count("label_voided") == 1


def test_tracking_webhooks_move_the_return_and_only_this_connections_parcels(shop, client):
    conn = connect(shop)
    ret = confirmed(shop)
    tracking = ret.shipment.tracking_number
    body = json.dumps({"tracking_number": tracking, "events": [
        {"at": "2026-11-20T09:00:00+00:00", "status": "in_transit"}]}).encode()
    other = connect(make_shop("other-shop", with_orders=False))
    signature = hmac.new(b"whsec", body, hashlib.sha256).hexdigest()
    assert client.post(f"/carriers/webhooks/{other.webhook_token}", data=body,
                       headers={"Acme-Signature": signature}).status_code == 200
    db.session.expire_all()
    assert db.session.get(Shipment, ret.shipment.id).status == "label_ready"  # another shop's URL: not ours
    assert client.post(f"/carriers/webhooks/{conn.webhook_token}", data=body,
                       headers={"Acme-Signature": signature}).status_code == 200
    db.session.expire_all()
    assert db.session.get(Shipment, ret.shipment.id).return_.state == lc.IN_TRANSIT
    assert client.post("/carriers/webhooks/nope", data=body).status_code == 404


def test_tracking_polls_back_off_while_nothing_happens(shop):
    from connector.returns.services.shipments import poll_interval

    ret = confirmed(shop)
    shipment = ret.shipment
    assert poll_interval(shipment, has_webhook=False) == timedelta(minutes=30)
    shipment.created_at = now() - timedelta(days=2)
    assert poll_interval(shipment, has_webhook=False) == timedelta(hours=2)
    shipment.created_at = now() - timedelta(days=5)
    assert poll_interval(shipment, has_webhook=False) == timedelta(hours=6)
    assert poll_interval(shipment, has_webhook=True) == timedelta(hours=24)


# ---------------------------------------------------------------------------- the admin


def test_the_merchant_connects_checks_and_never_sees_a_secret_again(shop, admin):
    listing = admin.get("settings/carriers").get_data(as_text=True)
    assert "Acme Parcel" in listing
    form = {"name": "Acme DE", "field-api_key": "good", "field-account": "A-1", "field-webhook_secret": "whsec",
            "test_mode": "1", "cutoff_hour": "14", "method-dropoff": "DE, AT", "method-pickup": "",
            "method-carrier_label": "de", "address_rows": "2", "address-0-for": "CH",
            **{f"address-0-{k}": v for k, v in SWISS_ADDRESS.items()}}
    saved = admin.post("settings/carriers/new/acme", form, page="settings/carriers/new/acme")
    assert saved.status_code == 302
    conn = db.session.scalars(select(CarrierConnection).where(CarrierConnection.shop_id == shop.id)).one()
    assert conn.methods == {"dropoff": ["AT", "DE"], "carrier_label": ["DE"]}
    assert conn.settings == {"account": "A-1", "cutoff_hour": 14} and conn.return_addresses["CH"]["city"] == "Zürich"
    page = admin.get(f"settings/carriers/{conn.id}").get_data(as_text=True)
    assert "good" not in page and "whsec" not in page  # secrets are never shown again
    assert f"/carriers/webhooks/{conn.webhook_token}" in page
    checked = admin.post(f"settings/carriers/{conn.id}/check", page=f"settings/carriers/{conn.id}", follow=True)
    assert "The carrier accepted the credentials." in checked.get_data(as_text=True)


def test_a_wrong_entry_is_shown_and_nothing_is_saved(shop, admin):
    form = {"name": "Acme", "field-api_key": "", "field-account": "A-1", "address_rows": "0",
            "method-dropoff": "Germany"}
    answer = admin.post("settings/carriers/new/acme", form, page="settings/carriers/new/acme")
    assert answer.status_code == 422 and "API key is required" in answer.get_data(as_text=True)
    assert db.session.scalar(select(CarrierConnection.id)) is None


def test_another_shops_connection_is_a_404_in_the_admin(shop, admin):
    other = connect(make_shop("other-shop", with_orders=False))
    assert admin.get(f"settings/carriers/{other.id}").status_code == 404
    assert admin.post(f"settings/carriers/{other.id}/check", page="settings/carriers").status_code == 404


def test_delivered_is_received_unless_the_shop_receives_parcels_itself(shop):
    from connector.returns.services.shipments import apply_events

    delivered = [TrackingEvent(at=now(), status="delivered")]
    ret = confirmed(shop)
    apply_events(ret.shipment, delivered)
    assert ret.state == lc.RECEIVED

    warehouse = make_shop("warehouse-shop")
    warehouse.policy = {"receive_on_delivery": False}
    db.session.commit()
    ret = confirmed(warehouse)
    shipment = ret.shipment
    apply_events(shipment, delivered)
    apply_events(shipment, delivered)  # the carrier says it twice
    assert ret.state == lc.LABEL_READY and shipment.status == "delivered"
    assert [e.kind for e in ret.events].count("parcel_delivered") == 1
    services.mark_received(ret, "merchant:anna")
    assert ret.state == lc.RECEIVED


def test_a_pickup_address_in_a_country_the_carrier_does_not_serve_is_refused(shop):
    from connector.returns.services.base import ValidationError

    connect(shop, methods={"dropoff": ["DE"]})
    ret = draft(shop)
    services.set_method(ret, "dropoff")
    french = {"name": "Jean Dupont", "line1": "1 rue de Rivoli", "postcode": "75001", "city": "Paris",
              "country": "FR"}
    with pytest.raises(ValidationError) as caught:
        services.set_instructions(ret, french, [code for code, _t in services.checklist_items(ret)])
    assert "not available from this country" in caught.value.errors["country"]
    services.set_instructions(ret, dict(ret.order.shipping_address),
                              [code for code, _t in services.checklist_items(ret)])
    assert ret.address["country"] == "DE"


def test_the_pickup_window_promised_is_the_one_the_carrier_books(shop, acme, monkeypatch):
    monkeypatch.setattr(acme, "pickup_window", "10:00-14:00")
    connect(shop, methods={"carrier_label": ["DE"]})
    (option,) = [o for o in services.method_options(draft(shop)) if o.method == "carrier_label"]
    assert option.pickup_window == "10:00-14:00"


def test_a_carrier_that_does_not_answer_for_a_day_is_reported_to_the_merchant_once(shop, outbox, acme, monkeypatch):
    from connector.returns.ports import CarrierRetryable

    connect(shop)
    monkeypatch.setattr(AcmeBackend, "create_return_label",
                        lambda self, request: (_ for _ in ()).throw(CarrierRetryable("Acme: 503 Service Unavailable")))
    ret = confirmed(shop)
    shipment = ret.shipment
    assert shipment.status == "requested" and ret.pending_step == "shipment"
    shipment.created_at = now() - timedelta(hours=25)
    db.session.commit()
    for _ in range(2):
        services.fulfil_shipment(shipment.id)
    alerts = [m for m in outbox() if m["To"] == shop.support_email and "not answered" in m["Subject"]]
    assert len(alerts) == 1 and shipment.status == "requested"  # still tried, told once



def test_the_account_page_says_when_the_policy_switches_a_served_method_off(shop, admin):
    conn = connect(shop, methods={"carrier_label": ["DE"], "dropoff": ["DE"]})
    shop.policy = {**shop.policy, "methods": {"*": ["dropoff", "selfship"]}}
    db.session.commit()
    page = admin.get(f"settings/carriers/{conn.id}").get_data(as_text=True)
    assert "Not offered to shoppers: Pickup, driver brings label is switched off" in page
