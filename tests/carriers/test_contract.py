"""The carrier contract: what a backend claims in `capabilities` is what it does.

Every backend in harness.CASES runs through these tests. The services choose return methods from
the capabilities alone (ports.CarrierCapabilities.serves), so a claim a backend cannot honour
strands a shopper mid-return; a capability it has but hides is never offered.
"""
from __future__ import annotations

from datetime import datetime

import pytest

from connector.carriers.registry import available
from connector.returns.ports import (SHOPPER_FIELDS, TRACKING_STATUSES, Address, CarrierAuthError, CarrierBackend,
                                     CarrierCapabilities, CarrierNotSupported, CarrierRejected, CarrierRetryable,
                                     Label, Pickup, TrackingEvent, TrackingUpdate, WebhookRejected)
from tests.carriers.harness import make_request, next_pickup_day

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_backend_is_registered_and_declares_itself(carrier):
    """The registry hands out this class under its key, and the instance satisfies the port."""
    backend = carrier.backend
    assert isinstance(backend, CarrierBackend)
    assert available()[backend.key] is type(backend)
    assert backend.name.strip()
    assert isinstance(backend.capabilities, CarrierCapabilities)


def test_capabilities_are_consistent(carrier):
    """A QR is a label's; the driver can only bring a label on a pickup; void needs something to void."""
    caps = carrier.backend.capabilities
    assert not caps.qr or caps.label
    assert not caps.carrier_brings_label or caps.pickup
    assert not caps.void or caps.label or caps.pickup
    assert any(caps.serves(method) for method in ("pickup", "dropoff", "carrier_label", "selfship"))


def test_label_is_a_pdf_when_claimed(carrier):
    backend = carrier.backend
    if not backend.capabilities.label:
        with pytest.raises(CarrierNotSupported):
            backend.create_return_label(make_request())
        return
    label = backend.create_return_label(make_request())
    assert isinstance(label, Label)
    assert label.tracking_number
    assert label.pdf is not None and label.pdf.startswith(b"%PDF")


def test_qr_is_a_png_when_claimed(carrier):
    backend = carrier.backend
    if not backend.capabilities.label:
        pytest.skip(f"{backend.key} makes no labels, so no QR codes")
    label = backend.create_return_label(make_request())
    if backend.capabilities.qr:
        assert label.qr_png is not None and label.qr_png.startswith(PNG_MAGIC)
    else:
        assert label.qr_png is None


def test_pickup_is_booked_on_the_requested_day(carrier):
    """The shopper was promised this day; a carrier that moves it must reject instead."""
    backend = carrier.backend
    day = next_pickup_day()
    if not backend.capabilities.pickup:
        with pytest.raises(CarrierNotSupported):
            backend.schedule_pickup(make_request("pickup"), day)
        return
    pickup = backend.schedule_pickup(make_request("pickup"), day)
    assert isinstance(pickup, Pickup)
    assert pickup.day == day
    assert pickup.window
    assert pickup.tracking_number
    # Method "pickup" means the shopper prints the label before the driver comes.
    assert pickup.label is not None and pickup.label.pdf.startswith(b"%PDF")


def test_driver_brings_the_label_only_when_claimed(carrier):
    backend = carrier.backend
    caps = backend.capabilities
    if not caps.pickup:
        pytest.skip(f"{backend.key} has no pickups")
    request = make_request("carrier_label")
    if not caps.carrier_brings_label:
        with pytest.raises(CarrierNotSupported):
            backend.schedule_pickup(request, next_pickup_day())
        return
    pickup = backend.schedule_pickup(request, next_pickup_day())
    assert pickup.tracking_number
    assert pickup.label is None or pickup.label.pdf is None  # nothing for the shopper to print


def test_void_works_before_the_parcel_moves(carrier):
    backend = carrier.backend
    caps = backend.capabilities
    if not caps.void:
        with pytest.raises(CarrierNotSupported):
            backend.void_label("ANY123")
        return
    if not caps.label:
        pytest.skip(f"{backend.key} voids pickups only")
    label = backend.create_return_label(make_request())
    backend.void_label(label.tracking_number)


def test_pickup_can_be_cancelled_before_the_parcel_moves(carrier):
    backend = carrier.backend
    caps = backend.capabilities
    if not caps.pickup:
        with pytest.raises(CarrierNotSupported):
            backend.cancel_pickup("ANY123")
        return
    if not caps.void:
        pytest.skip(f"{backend.key} cannot cancel pickups")
    pickup = backend.schedule_pickup(make_request("pickup"), next_pickup_day())
    backend.cancel_pickup(pickup.carrier_ref)


def test_void_is_refused_once_the_parcel_moves(carrier):
    """A moving parcel cannot be called back: the return must not be cancelled behind its back."""
    backend = carrier.backend
    if not (backend.capabilities.void and backend.capabilities.label):
        pytest.skip(f"{backend.key} has no label to void")
    if carrier.move is None:
        pytest.skip(f"{backend.key} cannot simulate a moving parcel")
    label = backend.create_return_label(make_request())
    carrier.move(label.tracking_number)
    with pytest.raises(CarrierRejected):
        backend.void_label(label.tracking_number)


def _assert_normalised(events):
    assert all(isinstance(e, TrackingEvent) for e in events)
    assert all(e.status in TRACKING_STATUSES for e in events)
    assert all(isinstance(e.at, datetime) and e.at.utcoffset() is not None for e in events)
    assert [e.at for e in events] == sorted(e.at for e in events)


def test_tracking_events_are_normalised(carrier):
    backend = carrier.backend
    if not backend.capabilities.tracking:
        # No feed: an empty list (the status comes from elsewhere) or an explicit refusal.
        try:
            assert backend.track("ANY123") == []
        except CarrierNotSupported:
            pass
        return
    label = backend.create_return_label(make_request())
    _assert_normalised(backend.track(label.tracking_number))
    if carrier.move is not None:
        carrier.move(label.tracking_number)
        events = backend.track(label.tracking_number)
        _assert_normalised(events)
        assert events[-1].status == "in_transit"


def test_international_label_when_claimed(carrier):
    """A shopper in France returning to a German warehouse."""
    backend = carrier.backend
    if not backend.capabilities.label:
        pytest.skip(f"{backend.key} makes no labels")
    abroad = Address(name="Élodie Martin", line1="12 rue de la Paix", postcode="75002", city="Paris", country="FR")
    request = make_request(sender=abroad)
    if backend.capabilities.international:
        assert backend.create_return_label(request).pdf.startswith(b"%PDF")
    else:
        with pytest.raises((CarrierRejected, CarrierNotSupported)):
            backend.create_return_label(request)


# ---------------------------------------------------------------------------- no duplicate labels


def test_a_repeated_label_request_for_one_shipment_makes_one_label(carrier):
    backend = carrier.backend
    if not backend.capabilities.label:
        pytest.skip(f"{backend.key} makes no labels")
    if carrier.labels_at_carrier is None:
        pytest.fail(f"{backend.key}: the contract needs labels_at_carrier to count the carrier's labels")
    request = make_request(key="shp-dup-1")
    first = backend.create_return_label(request)
    second = backend.create_return_label(request)
    assert second.tracking_number == first.tracking_number
    assert carrier.labels_at_carrier() == 1


def test_a_timeout_after_the_carrier_made_the_label_finds_it_instead_of_making_another(carrier):
    backend = carrier.backend
    if not backend.capabilities.label:
        pytest.skip(f"{backend.key} makes no labels")
    if carrier.timeout_after_create is None:
        pytest.skip(f"{backend.key} talks to no remote carrier: nothing can time out")
    request = make_request(key="shp-timeout-1")
    carrier.timeout_after_create()
    with pytest.raises(CarrierRetryable):
        backend.create_return_label(request)
    label = backend.create_return_label(request)  # the job's retry
    assert label.tracking_number
    assert carrier.labels_at_carrier() == 1


# ---------------------------------------------------------------------------- error classes


@pytest.mark.parametrize("mode, error", [("retryable", CarrierRetryable), ("address", CarrierRejected),
                                         ("auth", CarrierAuthError)])
def test_each_error_class(carrier, mode, error):
    backend = carrier.backend
    if not (backend.capabilities.label or backend.capabilities.pickup):
        pytest.skip(f"{backend.key} calls no carrier")
    if carrier.fail_next is None:
        pytest.fail(f"{backend.key}: the contract needs fail_next to make the carrier fail")
    carrier.fail_next(mode)
    request = make_request()
    with pytest.raises(error) as caught:
        if backend.capabilities.label:
            backend.create_return_label(request)
        else:
            backend.schedule_pickup(make_request("pickup"), next_pickup_day())
    if mode == "address":
        assert caught.value.field in SHOPPER_FIELDS  # something the shopper can fix
        assert str(caught.value)  # the carrier's own words, for the merchant


def test_check_credentials_refuses_bad_credentials(carrier):
    backend = carrier.backend
    if not (backend.capabilities.label or backend.capabilities.pickup):
        backend.check_credentials()  # nothing to check: never raises
        return
    backend.check_credentials()
    carrier.fail_next("auth")
    with pytest.raises(CarrierAuthError):
        backend.check_credentials()


# ---------------------------------------------------------------------------- webhooks


def test_tracking_webhooks_are_verified_and_normalised(carrier):
    backend = carrier.backend
    if not backend.capabilities.tracking_webhook:
        assert carrier.webhook is None
        return
    label = backend.create_return_label(make_request())
    headers, body = carrier.webhook(label.tracking_number, label.carrier_ref)
    updates = backend.parse_webhook(headers, body)
    assert updates and all(isinstance(u, TrackingUpdate) for u in updates)
    (update,) = [u for u in updates if u.tracking_number == label.tracking_number
                 or (label.carrier_ref and u.carrier_ref == label.carrier_ref)]
    _assert_normalised(list(update.events))
    assert update.events[-1].status == "in_transit"
    tampered = body[:-2] + (b" }" if body[-2:] != b" }" else b"  ")
    with pytest.raises(WebhookRejected):
        backend.parse_webhook(headers, tampered)
    with pytest.raises(WebhookRejected):
        backend.parse_webhook({k: v for k, v in headers.items() if "sign" not in k.lower()
                               and "hmac" not in k.lower()}, body)
