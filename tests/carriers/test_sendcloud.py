"""Sendcloud backend: request mapping, idempotency, late labels, cancellation, webhooks, refusals,
QR codes for labelless returns and pickups through the Pickups API.

The carrier contract (test_contract.py) runs it too, through tests/carriers/cases_sendcloud.py.
"""
from __future__ import annotations

import hashlib
import hmac
import json
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from connector.carriers.sendcloud import (STATUS_TABLE, SendcloudBackend, rejection, shopper_field,
                                          status_for)
from connector.returns.ports import (SHOPPER_FIELDS, TRACKING_STATUSES, VOID_REQUESTED, VOIDED, Address,
                                     CarrierAuthError, CarrierNotSupported, CarrierRetryable,
                                     CarrierRejected, Customs, CustomsItem, WebhookRejected)
from tests.carriers.cases_sendcloud import SECRET_KEY, SETTINGS, FakeSendcloud, fixture
from tests.carriers.harness import make_request, next_pickup_day

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def fake():
    fake = FakeSendcloud()
    with fake.mock():
        yield fake


@pytest.fixture
def backend(tmp_path, fake):
    return SendcloudBackend({**SETTINGS, "data_dir": tmp_path})


def sent_body(fake: FakeSendcloud) -> dict:
    (found,) = fake.returns.values()
    return found


# ---------------------------------------------------------------------------- settings


@pytest.mark.parametrize("missing", ["public_key", "secret_key", "shipping_option_code"])
def test_a_missing_setting_is_named(tmp_path, missing):
    settings = {**SETTINGS, "data_dir": tmp_path}
    del settings[missing]
    with pytest.raises(ValueError, match=missing):
        SendcloudBackend(settings)


def test_secret_settings_are_marked_secret():
    fields = {f.name: f for f in SendcloudBackend.settings_fields}
    assert fields["secret_key"].secret and fields["webhook_secret"].secret
    assert not fields["public_key"].secret
    assert "api_base" not in fields  # the API address is no merchant setting: credentials go to Sendcloud only


# ---------------------------------------------------------------------------- create


def test_the_return_goes_from_the_shopper_to_the_warehouse_with_the_key_as_its_reference(backend, fake):
    request = make_request(key="shp-42")
    label = backend.create_return_label(request)
    found = sent_body(fake)
    assert found["from_address"]["postal_code"] == "80331" and found["from_address"]["email"] == "anna@example.com"
    assert found["to_address"]["city"] == "Berlin" and found["to_address"]["address_line_2"] == "Halle 2"
    assert found["_external_reference"] == "shp-42" and found["order_number"] == "shp-42"
    assert found["shipping_option"] == {"code": "dpd:return/return"}
    assert found["weight"] == {"value": 800, "unit": "g"}
    assert found["parcel_items"] == [{"description": "T-shirt, blue, M", "quantity": 2,
                                      "price": {"value": 19.9, "currency": "EUR"}, "sku": "TS-BL-M"}]
    assert label.carrier_ref == str(found["id"]) and label.tracking_number == found["tracking_number"]
    assert label.pdf == fake.pdf and label.tracking_url


def test_customs_items_go_into_sendcloud_customs_fields(tmp_path):
    backend = SendcloudBackend({**SETTINGS, "brand_id": "7", "data_dir": tmp_path})
    customs = Customs(currency="CHF", invoice_number="1042", items=(
        CustomsItem("Wool scarf", 2, Decimal("59.80"), 300, hs_code="6117.10", origin_country="it", sku="SC-1"),))
    request = make_request(sender=Address(name="Lea Meier", line1="Bahnhofstrasse 1", postcode="8001", city="Zürich",
                                          country="CH"))
    body = backend._return_body(request.__class__(**{**request.__dict__, "customs": customs}))
    assert body["parcel_items"] == [{"description": "Wool scarf", "quantity": 2, "weight": {"value": 300, "unit": "g"},
                                     "price": {"value": 59.8, "currency": "CHF"}, "hs_code": "6117.10",
                                     "origin_country": "IT", "sku": "SC-1"}]
    assert body["customs_invoice_nr"] == "1042" and body["customs_shipment_type"] == 4
    assert body["customs_information"]["export_reason"] == "returned_goods"
    assert body["customs_information"]["invoice_number"] == "1042"
    assert body["total_order_value"] == {"value": 59.8, "currency": "CHF"}
    assert body["brand_id"] == 7


def test_a_return_refused_as_duplicate_is_found_in_sendcloud_list(tmp_path, fake):
    """Another machine (its own journal) made the return; Sendcloud refuses the key again."""
    first = SendcloudBackend({**SETTINGS, "data_dir": tmp_path / "a"}).create_return_label(make_request(key="k-1"))
    again = SendcloudBackend({**SETTINGS, "data_dir": tmp_path / "b"}).create_return_label(make_request(key="k-1"))
    assert again.tracking_number == first.tracking_number and len(fake.returns) == 1
    assert ("GET", "/returns") in fake.calls


def test_the_lookup_pages_through_the_list(backend, fake, monkeypatch):
    monkeypatch.setattr("connector.carriers.sendcloud.LIST_PAGE_SIZE", 2)
    for n in range(5):
        backend.create_return_label(make_request(key=f"other-{n}"))
    fake.time_out_next_create()
    with pytest.raises(CarrierRetryable):
        backend.create_return_label(make_request(key="late"))
    assert backend.create_return_label(make_request(key="late")).tracking_number
    assert len(fake.returns) == 6
    assert fake.calls.count(("GET", "/returns")) == 3  # pages of 2, 2 and 2 returns


def test_a_label_not_announced_yet_comes_later(backend, fake):
    fake.announce_later = True
    pending = backend.create_return_label(make_request())
    assert pending.pdf is None and pending.carrier_ref and pending.tracking_number == ""
    assert backend.fetch_label(pending.carrier_ref, None) is None
    fake.announce(int(pending.carrier_ref))
    late = backend.fetch_label(pending.carrier_ref, None)
    assert late.pdf.startswith(b"%PDF") and late.tracking_number
    assert backend.void_label(late.tracking_number) == VOID_REQUESTED  # found by its late tracking number


def test_credentials_go_only_to_the_api_host(backend, fake):
    label = backend.create_return_label(make_request())
    found = fake.returns[int(label.carrier_ref)]
    found["label"] = {"label_printer": "https://cdn.example.com/label.pdf"}
    fake.calls.clear()
    assert backend.fetch_label(label.carrier_ref).pdf == fake.pdf
    assert fake.calls[-1] == ("GET", f"/parcels/{found['_parcel_id']}/documents/label")


# ---------------------------------------------------------------------------- void


def test_void_is_a_request_confirmed_later(backend, fake):
    label = backend.create_return_label(make_request())
    assert backend.void_label(label.tracking_number) == VOID_REQUESTED
    assert fake.returns[int(label.carrier_ref)]["status_history"][-1]["parent_status"] == "Cancellation requested"


def test_void_of_a_moving_parcel_gives_sendcloud_words(backend, fake):
    label = backend.create_return_label(make_request())
    fake.move(label.tracking_number)
    with pytest.raises(CarrierRejected, match="Return is not cancellable"):
        backend.void_label(label.tracking_number, label.carrier_ref)


# ---------------------------------------------------------------------------- errors


def test_documented_postcode_error_points_the_shopper_to_the_postcode(backend, fake):
    fake.fail_next("address")
    with pytest.raises(CarrierRejected) as caught:
        backend.create_return_label(make_request())
    assert caught.value.field == "postcode"
    assert "The postal code you provided is invalid." in str(caught.value)


def test_error_shapes_map_to_shopper_fields():
    jsonapi = {"errors": [{"code": "invalid", "detail": "Enter a valid phone number.",
                           "source": {"pointer": "/from_address/phone_number"}}]}
    assert rejection(jsonapi, "x").field == "phone"
    assert "Enter a valid phone number." in str(rejection(jsonapi, "x"))
    required = rejection(fixture("errors_required.json"), "x")
    assert required.field is None and "This field is required" in str(required)
    assert shopper_field("to_address.postal_code") is None  # the warehouse's address: the shop's to fix
    assert shopper_field("weight.value") == "weight" and shopper_field("dimensions.length") == "size"
    assert shopper_field("from_address.country_code") == "country"


def test_refused_credentials_never_appear_in_the_error(backend, fake):
    fake.fail_next("auth")
    with pytest.raises(CarrierAuthError) as caught:
        backend.create_return_label(make_request())
    assert SECRET_KEY not in str(caught.value) and SETTINGS["public_key"] not in str(caught.value)


# ---------------------------------------------------------------------------- webhooks and statuses


def test_the_documented_signature_example_verifies():
    """sendcloud.dev webhooks overview: body {"key": "value"}, secret "secretkey"."""
    body = b'{"key": "value"}'
    expected = "1eed4b3d41f4653ac64fd56f1bf1cbfd349e4482cbc11dff7134bd93e5da4b0a"
    assert hmac.new(b"secretkey", body, hashlib.sha256).hexdigest() == expected
    backend = SendcloudBackend({**SETTINGS, "secret_key": "secretkey", "data_dir": "/nonexistent"})
    assert backend.parse_webhook({"sendcloud-signature": expected}, body) == []  # no parcel action
    with pytest.raises(WebhookRejected):
        backend.parse_webhook({"Sendcloud-Signature": "0" * 64}, body)


def test_a_webhook_signature_key_replaces_the_secret_key(tmp_path):
    backend = SendcloudBackend({**SETTINGS, "webhook_secret": "whsk", "data_dir": tmp_path})
    body = json.dumps(fixture("webhook_parcel_status_changed.json")).encode()
    good = hmac.new(b"whsk", body, hashlib.sha256).hexdigest()
    (update,) = backend.parse_webhook({"Sendcloud-Signature": good}, body)
    assert update.tracking_number == "3SYZXG132912330"
    assert [e.status for e in update.events] == ["info_received"]  # status 1: Ready to send... announced
    assert update.events[0].at.utcoffset() is not None
    with pytest.raises(WebhookRejected):
        backend.parse_webhook({"Sendcloud-Signature": hmac.new(SECRET_KEY.encode(), body, hashlib.sha256).hexdigest()},
                              body)


@pytest.mark.parametrize("status_id, message, cancelled", [(2000, "Cancelled", True), (1998, "Cancelled upstream", True),
                                                          (94, "Parcel cancellation failed.", False),
                                                          (1999, "Cancellation requested", None)])
def test_cancellation_outcomes_come_from_the_parcel_status(backend, fake, status_id, message, cancelled):
    label = backend.create_return_label(make_request())
    headers, body = fake.webhook(label.tracking_number)
    payload = json.loads(body)
    payload["parcel"]["status"] = {"id": status_id, "message": message}
    body = json.dumps(payload).encode()
    headers["Sendcloud-Signature"] = hmac.new(SECRET_KEY.encode(), body, hashlib.sha256).hexdigest()
    (update,) = backend.parse_webhook(headers, body)
    assert update.cancelled is cancelled and update.events == ()
    assert update.carrier_ref == label.carrier_ref


def test_the_status_table_is_complete_and_unambiguous():
    ids = [row[0] for row in STATUS_TABLE]
    assert len(ids) == len(set(ids))
    assert all(row[3] is None or row[3] in TRACKING_STATUSES for row in STATUS_TABLE)
    assert {row[3] for row in STATUS_TABLE} - {None} == set(TRACKING_STATUSES)
    assert status_for(None, "Ready to Ship") == "info_received"  # the Returns API example's wording
    assert status_for(None, "at-sorting-centre") == status_for(62990) == "in_transit"
    assert status_for(None, "Driver en route") == "out_for_delivery"
    assert status_for(1337, "Unknown status - check carrier track & trace page") is None


def test_tracking_follows_the_return_status_history(backend, fake):
    label = backend.create_return_label(make_request())
    assert [e.status for e in backend.track(label.tracking_number)] == ["info_received"]
    fake.move(label.tracking_number)
    assert [e.status for e in backend.track(label.tracking_number, label.carrier_ref)] == ["info_received", "in_transit"]


def test_shopper_fields_are_known_to_the_port():
    for hint in ("postal_code", "phone_number", "email", "country_code", "weight", "dimensions", "address_line_1"):
        assert shopper_field(f"from_address.{hint}") in SHOPPER_FIELDS


# ---------------------------------------------------------------------------- per-connection capabilities


def test_qr_and_pickups_are_off_until_the_merchant_turns_them_on(tmp_path):
    plain = SendcloudBackend({**SETTINGS, "data_dir": tmp_path})
    assert not plain.capabilities.qr and not plain.capabilities.pickup
    assert SendcloudBackend.capabilities.qr and SendcloudBackend.capabilities.pickup  # what a connection can do
    full = SendcloudBackend({**SETTINGS, "qr_dropoff": "yes", "pickups": "yes", "data_dir": tmp_path})
    assert full.capabilities.qr and full.capabilities.pickup and not full.capabilities.carrier_brings_label
    fields = {f.name: f for f in SendcloudBackend.settings_fields}
    assert {c for c, _ in fields["qr_dropoff"].choices} == {"no", "yes"} and "labelless" in fields["qr_dropoff"].help
    assert not fields["pickups"].required and not fields["pickup_window"].required


@pytest.mark.parametrize("window", ["9-17", "17:00-09:00", "09:00-24:00"])
def test_a_bad_pickup_window_is_named(tmp_path, window):
    with pytest.raises(ValueError, match="pickup_window"):
        SendcloudBackend({**SETTINGS, "pickup_window": window, "data_dir": tmp_path})


# ---------------------------------------------------------------------------- QR drop-off


@pytest.fixture
def labelless(tmp_path, fake):
    return SendcloudBackend({**SETTINGS, "qr_dropoff": "yes", "data_dir": tmp_path})


def test_a_labelless_return_comes_with_its_qr_code_from_the_v2_documents(labelless, fake):
    label = labelless.create_return_label(make_request())
    found = sent_body(fake)
    assert found["delivery_option"] == "drop_off_labelless"
    assert label.qr_png.startswith(PNG_MAGIC) and label.pdf.startswith(b"%PDF")
    assert ("GET", f"v2:/parcels/{found['_parcel_id']}/documents/qr") in fake.calls


def test_without_the_setting_the_return_is_a_printed_label_and_no_qr_is_asked_for(backend, fake):
    label = backend.create_return_label(make_request())
    assert sent_body(fake)["delivery_option"] == "drop_off_point"
    assert label.qr_png is None and not any(path.startswith("v2:") for _, path in fake.calls)


def test_a_parcel_without_a_qr_document_keeps_its_label(labelless, fake):
    """404 "Document type requested is not available for the parcel": the shopper prints the label."""
    label = labelless.create_return_label(make_request())
    fake.returns[int(label.carrier_ref)].pop("delivery_option")  # no echo: the backend asks, Sendcloud has none
    again = labelless.fetch_label(label.carrier_ref)
    assert again.pdf.startswith(b"%PDF") and again.qr_png is None


def test_the_qr_of_a_late_label_comes_with_it(labelless, fake):
    fake.announce_later = True
    pending = labelless.create_return_label(make_request())
    assert pending.pdf is None and pending.qr_png is None
    fake.announce(int(pending.carrier_ref))
    late = labelless.fetch_label(pending.carrier_ref)
    assert late.pdf.startswith(b"%PDF") and late.qr_png.startswith(PNG_MAGIC)


# ---------------------------------------------------------------------------- pickups


@pytest.fixture
def pickups(tmp_path, fake):
    return SendcloudBackend({**SETTINGS, "pickups": "yes", "data_dir": tmp_path})


def test_a_pickup_books_the_driver_at_the_shopper_on_the_day_in_the_window(pickups, fake):
    day = next_pickup_day()
    pickup = pickups.schedule_pickup(make_request("pickup", key="p-1"), day)
    (booked,) = fake.pickups.values()
    assert booked["address"]["postal_code"] == "80331" and booked["address"]["name"] == "Anna Schmidt"
    assert booked["address"]["phone_number"] == "+49 89 123456"
    start = datetime.combine(day, datetime.min.time().replace(hour=9), ZoneInfo("Europe/Berlin"))
    assert booked["time_slots"] == [{"start_at": start.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                                     "end_at": (start + timedelta(hours=8)).astimezone(timezone.utc)
                                     .strftime("%Y-%m-%dT%H:%M:%SZ")}]
    assert booked["items"] == [{"quantity": 1, "container_type": "parcel",
                                "total_weight": {"value": "0.80", "unit": "kg"}}]
    assert booked["reference"] == "p-1" and booked["carrier_code"] == "dpd"  # from dpd:return/return
    (made,) = fake.returns.values()
    assert "delivery_option" not in made or made["delivery_option"] is None  # Sendcloud books no pickup of its own
    assert booked["special_instructions"] == f"Return R-1042, parcel {made['tracking_number']}"
    assert pickup.day == day and pickup.window == "09:00-17:00" and pickup.carrier_ref == str(booked["id"])
    assert pickup.tracking_number == made["tracking_number"] and pickup.label.pdf.startswith(b"%PDF")


def test_a_repeated_pickup_request_books_once(pickups, fake):
    request, day = make_request("pickup", key="p-2"), next_pickup_day()
    first = pickups.schedule_pickup(request, day)
    again = pickups.schedule_pickup(request, day)
    assert again == first and len(fake.pickups) == 1 and len(fake.returns) == 1


def test_a_booking_whose_answer_was_lost_is_found_by_its_reference(pickups, fake, monkeypatch):
    monkeypatch.setattr("connector.carriers.sendcloud.PICKUP_PAGE_SIZE", 2)
    day = next_pickup_day()
    for n in range(3):
        pickups.schedule_pickup(make_request("pickup", key=f"other-{n}"), day)
    fake.time_out_next_pickup()
    with pytest.raises(CarrierRetryable):
        pickups.schedule_pickup(make_request("pickup", key="lost"), day)
    pickup = pickups.schedule_pickup(make_request("pickup", key="lost"), day)
    assert len(fake.pickups) == 4 and fake.pickups[int(pickup.carrier_ref)]["reference"] == "lost"
    assert fake.calls.count(("GET", "/pickups")) == 2  # pages of 2 and 2 pickups, linked by `Link`


def test_a_pickup_moved_to_another_day_is_refused_and_cancelled(pickups, fake):
    fake.pickup_day_shift = 1
    with pytest.raises(CarrierRejected, match="not the promised"):
        pickups.schedule_pickup(make_request("pickup"), next_pickup_day())
    (booked,) = fake.pickups.values()
    assert booked["status"] == "CANCELLED"


def test_a_failed_booking_is_refused(pickups, fake, monkeypatch):
    original = fake._book

    def failing(request):
        status, content_type, content = original(request)
        found = json.loads(content)
        found["data"]["status"] = "FAILED"
        return status, content_type, json.dumps(found).encode()

    monkeypatch.setattr(fake, "_book", failing)
    with pytest.raises(CarrierRejected, match="FAILED"):
        pickups.schedule_pickup(make_request("pickup"), next_pickup_day())


def test_the_window_and_carrier_code_settings_and_the_shoppers_time_zone(tmp_path, fake):
    backend = SendcloudBackend({**SETTINGS, "pickups": "yes", "pickup_window": "12:00-16:00",
                                "pickup_carrier_code": "dhl_express", "data_dir": tmp_path})
    lisbon = Address(name="Rui Costa", line1="Rua Augusta 10", postcode="1100-053", city="Lisboa", country="PT")
    day = next_pickup_day()
    pickup = backend.schedule_pickup(make_request("pickup", sender=lisbon), day)
    (booked,) = fake.pickups.values()
    start = datetime.combine(day, datetime.min.time().replace(hour=12), ZoneInfo("Europe/Lisbon"))
    assert booked["time_slots"][0]["start_at"] == start.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert booked["carrier_code"] == "dhl_express" and pickup.window == "12:00-16:00"


def test_pickups_the_connection_does_not_offer_are_refused(backend, pickups):
    with pytest.raises(CarrierNotSupported):
        backend.schedule_pickup(make_request("pickup"), next_pickup_day())
    with pytest.raises(CarrierNotSupported):
        backend.cancel_pickup("294247")
    with pytest.raises(CarrierNotSupported, match="driver brings the label"):
        pickups.schedule_pickup(make_request("carrier_label"), next_pickup_day())
    with pytest.raises(CarrierRejected, match="has passed"):
        pickups.schedule_pickup(make_request("pickup"), date.today() - timedelta(days=2))


@pytest.mark.parametrize("mode, outcome", [("carrier", VOIDED), ("support", VOID_REQUESTED)])
def test_cancelling_a_pickup(pickups, fake, mode, outcome):
    pickup = pickups.schedule_pickup(make_request("pickup"), next_pickup_day())
    fake.pickup_cancel = mode
    assert pickups.cancel_pickup(pickup.carrier_ref) == outcome
    assert fake.pickups[int(pickup.carrier_ref)]["status"] in ("CANCELLED", "CANCELLATION_REQUESTED")
    assert fake.returns  # the return parcel and its label stay


def test_a_pickup_that_can_no_longer_be_cancelled_is_refused(pickups, fake):
    pickup = pickups.schedule_pickup(make_request("pickup"), next_pickup_day())
    fake.pickup_cancel = "refuse"
    with pytest.raises(CarrierRejected, match="could not cancel pickup"):
        pickups.cancel_pickup(pickup.carrier_ref)
    with pytest.raises(CarrierRejected):
        pickups.cancel_pickup("not-an-id")
