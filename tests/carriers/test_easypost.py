"""The EasyPost backend beyond the contract: what it sends EasyPost, how it reads the answers."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
import requests
from easypost.util import validate_webhook

from connector.carriers.easypost_backend import TIMEOUT, EasyPostBackend, _events, webhook_signature
from connector.returns.ports import (VOID_REQUESTED, VOIDED, Address, CarrierAuthError, CarrierNotSupported,
                                     CarrierRejected, CarrierRetryable, Customs, CustomsItem, WebhookRejected)
from tests.carriers.cases_easypost import SETTINGS, WEBHOOK_SECRET, fixture, start_fake
from tests.carriers.harness import SHOPPER, WAREHOUSE, make_request, next_pickup_day


@pytest.fixture
def fake(request):
    return start_fake(request)


def backend(**settings) -> EasyPostBackend:
    return EasyPostBackend({**SETTINGS, **settings})


def sent(fake, method: str, path_end: str) -> list:
    return [body for m, path, body in fake.requests if m == method and path.endswith(path_end)]


# ---------------------------------------------------------------------------- settings


def test_settings_name_the_missing_key():
    with pytest.raises(ValueError, match="api_key"):
        EasyPostBackend({"test_mode": False})
    with pytest.raises(ValueError, match="test_api_key"):
        EasyPostBackend({"api_key": "EZAK_x", "test_mode": True})


def test_secrets_are_marked_secret():
    fields = {f.name: f for f in EasyPostBackend.settings_fields}
    assert {n for n, f in fields.items() if f.secret} == {"api_key", "test_api_key", "webhook_secret"}
    assert [n for n, f in fields.items() if f.required] == ["api_key"]


def test_test_mode_uses_the_test_key_and_production_the_production_key(fake):
    backend(test_mode=True).check_credentials()
    backend(test_mode=False).check_credentials()
    assert fake.authorizations == ["Bearer EZTK_test_key", "Bearer EZAK_production_key"]


def test_timeouts_are_explicit_and_the_sdk_does_not_retry():
    client = backend().client
    assert client.timeout == TIMEOUT == (5, 30)
    adapter = client._requests_session.get_adapter("https://api.easypost.com/v2/shipments")
    assert adapter.max_retries.total == 0


# ---------------------------------------------------------------------------- labels


def test_a_return_shipment_as_easypost_documents_it(fake):
    label = backend(carrier_accounts="ca_1, ca_2").create_return_label(make_request(key="shp-payload-1"))
    (created,) = sent(fake, "POST", "/shipments")
    shipment = created["shipment"]
    # is_return swaps the addresses: given as outbound, to = the shopper, from = the warehouse.
    assert shipment["is_return"] is True
    assert shipment["to_address"]["street1"] == SHOPPER.line1 and shipment["to_address"]["zip"] == SHOPPER.postcode
    assert shipment["from_address"]["name"] == WAREHOUSE.name and shipment["from_address"]["street2"] == "Halle 2"
    assert shipment["reference"] == "shp-payload-1"
    assert shipment["options"] == {"label_format": "PDF", "print_custom_1": "R-1042"}
    assert shipment["parcel"] == {"weight": 28.2}  # 800 g in ounces
    assert shipment["carrier_accounts"] == ["ca_1", "ca_2"]
    assert "customs_info" not in shipment
    assert label.carrier_ref.startswith("shp_")
    assert label.tracking_url.startswith("https://track.easypost.com/")


def test_the_cheapest_rate_is_bought_unless_a_carrier_or_service_is_preferred(fake):
    backend().create_return_label(make_request())
    backend(carrier="usps", service="priority").create_return_label(make_request())
    bought = [body["rate"]["id"] for body in sent(fake, "POST", "/buy")]
    assert bought == ["rate_b936eae682e543b1a6550ea120e81a3e",  # GroundAdvantage 5.93
                      "rate_7eb8606e070a4df19b70de813f9bea9d"]  # Priority 6.95


def test_no_rate_of_the_preferred_carrier_is_a_refusal(fake):
    with pytest.raises(CarrierRejected, match="DHLExpress"):
        backend(carrier="DHLExpress").create_return_label(make_request())
    assert not sent(fake, "POST", "/buy")


def test_customs_are_declared_for_returns_from_outside_the_eu(fake):
    request = make_request(sender=Address(name="Tom Brown", line1="1 High St", postcode="SW1A 1AA",
                                          city="London", country="GB"))
    customs = Customs(currency="EUR", invoice_number="SO-1001", items=(
        CustomsItem(description="T-shirt", quantity=2, value=Decimal("39.80"), weight_grams=400,
                    hs_code="610910", origin_country="PT", sku="TS-BL-M"),))
    request = type(request)(**{**request.__dict__, "customs": customs})
    backend().create_return_label(request)
    shipment = sent(fake, "POST", "/shipments")[0]["shipment"]
    info = shipment["customs_info"]
    assert info["contents_type"] == "returned_goods"
    assert info["customs_certify"] is True
    assert info["customs_items"] == [{"description": "T-shirt", "quantity": 2, "value": "39.80", "currency": "EUR",
                                      "weight": 14.1, "hs_tariff_number": "610910", "origin_country": "PT",
                                      "code": "TS-BL-M"}]
    assert shipment["options"]["invoice_number"] == "SO-1001"
    assert shipment["options"]["currency"] == "EUR"


def test_a_png_label_is_converted_to_pdf(fake):
    fake.png_labels = True
    label = backend().create_return_label(make_request())
    assert label.pdf.startswith(b"%PDF")
    assert sent(fake, "GET", "/label") == [{"file_format": "PDF"}]


def test_a_shipment_created_but_not_bought_is_bought_on_the_retry(fake):
    request = make_request(key="shp-half-1")
    fake.timeout_after_create = True
    with pytest.raises(CarrierRetryable):
        backend().create_return_label(request)
    label = backend().create_return_label(request)
    assert len(sent(fake, "POST", "/shipments")) == 1
    assert len(sent(fake, "POST", "/buy")) == 1
    assert fake.shipment_by_tracking(label.tracking_number)["reference"] == "shp-half-1"


def test_a_voided_shipment_is_not_reused(fake):
    request = make_request(key="shp-voided-1")
    label = backend().create_return_label(request)
    backend().void_label(label.tracking_number, label.carrier_ref)
    with pytest.raises(CarrierRejected, match="voided"):
        backend().create_return_label(request)


# ---------------------------------------------------------------------------- void


@pytest.mark.parametrize("status, outcome", [("submitted", VOID_REQUESTED), ("refunded", VOIDED)])
def test_void_is_a_refund(fake, status, outcome):
    fake.refund_status = status
    label = backend().create_return_label(make_request())
    assert backend().void_label(label.tracking_number, label.carrier_ref) == outcome
    # Asking again does not refund twice.
    assert backend().void_label(label.tracking_number, label.carrier_ref) == outcome
    assert len(sent(fake, "POST", "/refund")) == 1


@pytest.mark.parametrize("status", ["rejected", "not_applicable"])
def test_a_refused_refund_is_a_refusal(fake, status):
    fake.refund_status = status
    label = backend().create_return_label(make_request())
    with pytest.raises(CarrierRejected, match=status):
        backend().void_label(label.tracking_number, label.carrier_ref)


def test_a_submitted_refund_is_decided_later(fake):
    label = backend().create_return_label(make_request())
    assert backend().void_label(label.tracking_number, label.carrier_ref) == VOID_REQUESTED
    assert backend().void_status(label.tracking_number, label.carrier_ref) is None
    fake.shipment_by_tracking(label.tracking_number)["refund_status"] = "refunded"
    assert backend().void_status(label.tracking_number, label.carrier_ref) is True
    fake.shipment_by_tracking(label.tracking_number)["refund_status"] = "rejected"
    assert backend().void_status(label.tracking_number, None) is False


def test_a_rejected_refund_is_asked_again(fake):
    fake.refund_status = "rejected"
    label = backend().create_return_label(make_request())
    with pytest.raises(CarrierRejected):
        backend().void_label(label.tracking_number, label.carrier_ref)
    fake.refund_status = "submitted"
    assert backend().void_label(label.tracking_number, label.carrier_ref) == VOID_REQUESTED
    assert len(sent(fake, "POST", "/refund")) == 2


def test_void_without_the_shipment_id_finds_it_through_the_tracker(fake):
    label = backend().create_return_label(make_request())
    assert backend().void_label(label.tracking_number) == VOID_REQUESTED
    assert sent(fake, "GET", "/trackers") == [{"tracking_code": label.tracking_number, "page_size": "1"}]


def test_a_moving_parcel_is_not_refunded(fake):
    label = backend().create_return_label(make_request())
    fake.move(label.tracking_number)
    with pytest.raises(CarrierRejected, match="in_transit"):
        backend().void_label(label.tracking_number, label.carrier_ref)
    assert not sent(fake, "POST", "/refund")


# ---------------------------------------------------------------------------- pickups


def test_a_pickup_is_booked_for_the_day_with_the_labels_carrier(fake):
    day = next_pickup_day()
    pickup = backend().schedule_pickup(make_request("pickup", key="shp-pickup-1"), day)
    (created,) = sent(fake, "POST", "/pickups")
    body = created["pickup"]
    assert body["min_datetime"] == f"{day.isoformat()} 09:00:00"
    assert body["max_datetime"] == f"{day.isoformat()} 17:00:00"
    assert body["reference"] == "shp-pickup-1"
    assert body["address"]["street1"] == SHOPPER.line1
    assert body["shipment"]["id"] == pickup.label.carrier_ref
    assert sent(fake, "POST", "/buy")[-1] == {"carrier": "USPS", "service": "NextDay"}
    assert (pickup.day, pickup.window) == (day, "09:00-17:00")
    assert pickup.carrier_ref.startswith("pickup_")


def test_a_repeated_pickup_request_books_once_and_another_day_is_refused(fake):
    request = make_request("pickup", key="shp-pickup-2")
    day = next_pickup_day()
    first = backend().schedule_pickup(request, day)
    again = backend().schedule_pickup(request, day)
    assert again.carrier_ref == first.carrier_ref
    assert len(sent(fake, "POST", "/pickups")) == 1 and len(sent(fake, "POST", "/shipments")) == 1
    with pytest.raises(CarrierRejected, match="cancel"):
        backend().schedule_pickup(request, day + timedelta(days=1))


def test_a_pickup_without_a_matching_rate_is_a_refusal(fake):
    request = make_request("pickup")
    label = backend().create_return_label(request)
    fake.shipment_by_tracking(label.tracking_number)["selected_rate"]["carrier"] = "UPS"
    with pytest.raises(CarrierRejected, match="no pickup"):
        backend().schedule_pickup(request, next_pickup_day())


def test_the_driver_never_brings_the_label(fake):
    with pytest.raises(CarrierNotSupported):
        backend().schedule_pickup(make_request("carrier_label"), next_pickup_day())
    assert not fake.requests


def test_cancel_pickup(fake):
    pickup = backend().schedule_pickup(make_request("pickup"), next_pickup_day())
    assert backend().cancel_pickup(pickup.carrier_ref) == VOIDED
    assert fake.pickups[pickup.carrier_ref]["status"] == "canceled"


# ---------------------------------------------------------------------------- tracking


def test_tracking_statuses_are_normalised_and_sorted():
    details = [
        {"status": "delivered", "datetime": "2024-08-03T10:00:00Z", "message": "Delivered"},
        {"status": "pre_transit", "datetime": "2024-08-01T10:00:00", "message": "Label created"},  # no zone: UTC
        {"status": "unknown", "datetime": "2024-08-02T09:00:00Z", "message": "Scan"},
        {"status": "in_transit", "datetime": "2024-08-02T08:00:00+02:00", "message": "Picked up",
         "tracking_location": {"city": "BERLIN", "state": None, "country": "DE"}},
        {"status": "return_to_sender", "datetime": None, "message": "undated"},
    ]
    events = _events(details)
    assert [e.status for e in events] == ["info_received", "in_transit", "in_transit", "delivered"]
    assert events[0].at == datetime(2024, 8, 1, 10, tzinfo=timezone.utc)
    assert events[1].location == "BERLIN, DE"
    assert all(e.at.utcoffset() is not None for e in events)


def test_track_by_tracking_number_alone_uses_the_tracker(fake):
    label = backend().create_return_label(make_request())
    fake.move(label.tracking_number)
    events = backend().track(label.tracking_number)
    assert [e.status for e in events] == ["info_received", "in_transit"]
    assert sent(fake, "GET", "/trackers")


def test_track_creates_a_tracker_for_an_unknown_number(fake):
    assert backend().track("1Z999AA10123456784") == []
    assert sent(fake, "POST", "/trackers") == [{"tracker": {"tracking_code": "1Z999AA10123456784"}}]


# ---------------------------------------------------------------------------- webhooks


def test_our_signature_is_the_sdks():
    body = (json.dumps(fixture("event_tracker_updated.json"))).encode()
    headers = {"X-Hmac-Signature": webhook_signature(WEBHOOK_SECRET, body)}
    assert validate_webhook(body, headers, WEBHOOK_SECRET)["description"] == "tracker.updated"


def test_the_sdk_test_event_is_read():
    body = json.dumps(fixture("event_tracker_updated.json")).encode()
    headers = {"x-hmac-signature": webhook_signature(WEBHOOK_SECRET, body)}  # any header case
    (update,) = backend().parse_webhook(headers, body)
    assert update.tracking_number == "1" and update.carrier_ref is None and update.cancelled is None
    assert [e.status for e in update.events] == ["info_received"] + ["in_transit"] * 6
    assert update.events[1].location == "ORLANDO, FL, US"


def test_a_refund_event_confirms_the_void():
    # The Event envelope of the SDK's test body around the Refund object of docs.easypost.com/docs/refunds.
    event = fixture("event_tracker_updated.json")
    event.update(description="refund.successful", previous_attributes={})
    event["result"] = {"id": "rfnd_92d852c508204fc3a34e62977eaa6c50", "object": "Refund",
                       "tracking_code": "9405500208303109884137", "confirmation_number": None, "status": "refunded",
                       "carrier": "USPS", "shipment_id": "shp_744d6715c6794d8c8cd0874c368878ba"}
    body = json.dumps(event).encode()
    (update,) = backend().parse_webhook({"X-Hmac-Signature": webhook_signature(WEBHOOK_SECRET, body)}, body)
    assert (update.tracking_number, update.carrier_ref, update.cancelled) == (
        "9405500208303109884137", "shp_744d6715c6794d8c8cd0874c368878ba", True)


def test_webhooks_are_refused_without_a_configured_secret():
    body = json.dumps(fixture("event_tracker_updated.json")).encode()
    headers = {"X-Hmac-Signature": webhook_signature(WEBHOOK_SECRET, body)}
    with pytest.raises(WebhookRejected):
        backend(webhook_secret="").parse_webhook(headers, body)
    with pytest.raises(WebhookRejected):
        backend(webhook_secret="another secret").parse_webhook(headers, body)


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize("status, body, error", [
    (429, {"error": {"code": "RATE_LIMITED", "message": "Too many requests", "errors": []}}, CarrierRetryable),
    (500, {"error": {"code": "INTERNAL_SERVER_ERROR", "message": "Something went wrong", "errors": []}}, CarrierRetryable),
    (502, "<html>Bad gateway</html>", CarrierRetryable),  # not JSON: the SDK's JsonError
    (403, {"error": {"code": "FORBIDDEN", "message": "Forbidden", "errors": []}}, CarrierAuthError),
    (402, {"error": {"code": "PAYMENT.INSUFFICIENT_FUNDS", "message": "Insufficient funds", "errors": []}},
     CarrierRejected),
])
def test_error_classes(fake, status, body, error):
    fake.answer_next_create = lambda: (status, {}, body if isinstance(body, str) else json.dumps(body))
    with pytest.raises(error) as caught:
        backend().create_return_label(make_request())
    assert "EZTK_test_key" not in str(caught.value)
    if error is CarrierRejected:
        assert caught.value.field is None  # the merchant's account, nothing the shopper can do


def test_a_connection_error_is_retryable(fake):
    def refuse():
        raise requests.exceptions.ConnectionError("connection refused")

    fake.answer_next_create = refuse
    with pytest.raises(CarrierRetryable):
        backend().create_return_label(make_request())


@pytest.mark.parametrize("field, expected", [
    ("shipment.to_address.zip", "postcode"), ("to_address.phone", "phone"), ("to_address.country", "country"),
    ("parcel.weight", "weight"), ("from_address.street1", None),
])
def test_field_errors_name_what_the_shopper_can_fix(fake, field, expected):
    body = {"error": {"code": "SHIPMENT.INVALID_PARAMS", "message": "Invalid parameters",
                      "errors": [{"field": field, "message": "is invalid", "suggestion": None}]}}
    fake.answer_next_create = lambda: (422, {}, json.dumps(body))
    with pytest.raises(CarrierRejected) as caught:
        backend().create_return_label(make_request())
    assert caught.value.field == expected
    assert field in str(caught.value)


def test_the_documented_address_error_is_the_shoppers_address(fake):
    fake.fail = "address"
    with pytest.raises(CarrierRejected) as caught:
        backend().create_return_label(make_request())
    assert caught.value.field == "address"
    assert "House number is missing" in str(caught.value)
