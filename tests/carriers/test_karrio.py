"""The karrio backend beyond the contract: optional import, settings, per-carrier capabilities,
the label journal across deadlines, karrio's messages as the port's errors, customs, UPS voids.

karrio is mocked at its HTTP function as in karrio's own tests (see cases_karrio.py); answers come
from tests/fixtures/carriers/karrio.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

pytest.importorskip("karrio.sdk")

from connector.carriers import karrio_backend  # noqa: E402
from connector.carriers.karrio_backend import KarrioBackend  # noqa: E402
from connector.returns.ports import (VOIDED, Address, CarrierAuthError, CarrierNotSupported,  # noqa: E402
                                     CarrierRejected, CarrierRetryable, Customs, CustomsItem)
from tests.carriers.cases_karrio import (DEADLINE, FakeDhlParcelDe, dhl_settings, fixture,  # noqa: E402
                                         install)
from tests.carriers.harness import make_request, next_pickup_day  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

CREDENTIALS = {
    "dhl_parcel_de": {"username": "user", "password": "pass", "client_id": "id", "client_secret": "secret"},
    "ups": {"client_id": "id", "client_secret": "secret", "account_number": "Y1234"},
    "gls": {"client_id": "id", "client_secret": "secret", "contact_id": "276a45fkqM"},
    "dpd_meta": {"dpd_login": "login", "dpd_password": "pass", "dpd_bucode": "001"},
    "dhl_express": {"site_id": "site", "password": "pass", "account_number": "123456789"},
}


def backend_for(tmp_path, carrier: str, **extra) -> KarrioBackend:
    return KarrioBackend({"carrier": carrier, "credentials": json.dumps(CREDENTIALS[carrier]),
                          "account_country": "DE", "test_mode": True, "data_dir": tmp_path, **extra})


@pytest.fixture
def dhl(request):
    fake = FakeDhlParcelDe()
    install(request, fake)
    return KarrioBackend(dhl_settings(request)), fake


# ---------------------------------------------------------------------------- the optional extra


def test_module_loads_without_karrio_and_building_names_the_extra():
    """karrio is imported only when a backend is built; without it the error says what to install."""
    script = (
        "import sys; sys.modules['karrio'] = None\n"
        "from connector.carriers.karrio_backend import KarrioBackend\n"
        "assert KarrioBackend.key == 'karrio' and KarrioBackend.settings_fields\n"
        "try:\n"
        "    KarrioBackend({'carrier': 'dhl_parcel_de', 'credentials': '{}'})\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    run = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "pip install returns-connector[karrio]" in run.stdout


def test_settings_fields_offer_the_installed_carriers_and_keep_credentials_secret():
    fields = {f.name: f for f in KarrioBackend.settings_fields}
    offered = {value for value, _ in fields["carrier"].choices}
    assert {"dhl_parcel_de", "ups", "gls", "dpd_meta", "dhl_express"} <= offered
    assert fields["credentials"].secret
    assert "account_country" in fields


@pytest.mark.parametrize("settings, named", [
    ({"credentials": "{}"}, "carrier"),
    ({"carrier": "dhl_parcel_de"}, "credentials"),
    ({"carrier": "dhl_parcel_de", "credentials": "{not json"}, "credentials"),
    ({"carrier": "dhl_parcel_de", "credentials": "[1]"}, "credentials"),
    ({"carrier": "no_such_carrier", "credentials": "{}"}, "carrier"),
    ({"carrier": "ups", "credentials": "{}"}, "credentials"),  # karrio's UPS settings need client_id
    ({"carrier": "dhl_parcel_de", "credentials": "{}", "deadline_seconds": "soon"}, "deadline_seconds"),
])
def test_invalid_settings_name_the_field(tmp_path, settings, named):
    with pytest.raises(ValueError, match=named):
        KarrioBackend({**settings, "data_dir": tmp_path})


def test_credential_values_never_reach_the_error(tmp_path):
    with pytest.raises(ValueError) as caught:
        KarrioBackend({"carrier": "ups", "credentials": json.dumps({"client_secret": "TOPSECRET"}),
                       "data_dir": tmp_path})
    assert "TOPSECRET" not in str(caught.value)


# ---------------------------------------------------------------------------- capabilities


@pytest.mark.parametrize("carrier, expected", [
    # DHL Parcel DE: Returns API label + QR; pickups; tracking. Return labels cannot be voided
    # (karrio's cancel reaches the Shipping API only).
    ("dhl_parcel_de", dict(label=True, qr=True, pickup=True, void=False, tracking=True)),
    # UPS: Print Return Label, pickups, void, tracking.
    ("ups", dict(label=True, qr=False, pickup=True, void=True, tracking=True)),
    # GLS: karrio's GLS proxy has schedule_pickup/cancel_shipment but its mapper builds neither request.
    ("gls", dict(label=True, qr=False, pickup=False, void=False, tracking=True)),
    # DPD META: labels and pickups; karrio has no tracking or cancellation for it.
    ("dpd_meta", dict(label=True, qr=False, pickup=True, void=False, tracking=False)),
    # DHL Express: no cancel_shipment in karrio's proxy.
    ("dhl_express", dict(label=True, qr=False, pickup=True, void=False, tracking=True)),
])
def test_capabilities_follow_what_karrio_implements_for_the_carrier(tmp_path, carrier, expected):
    caps = backend_for(tmp_path, carrier).capabilities
    assert {name: getattr(caps, name) for name in expected} == expected
    assert caps.carrier_brings_label is False
    assert not caps.tracking_webhook and not caps.late_label
    union = KarrioBackend.capabilities  # the registry's listing claims no less than any instance
    assert all(getattr(union, f.name) or not getattr(caps, f.name) for f in dataclasses.fields(caps))


def test_operations_a_carrier_lacks_are_refused_before_any_call(tmp_path):
    dpd = backend_for(tmp_path, "dpd_meta")
    with pytest.raises(CarrierNotSupported):
        dpd.track("0123456789")
    with pytest.raises(CarrierNotSupported):
        dpd.void_label("0123456789")
    with pytest.raises(CarrierNotSupported):
        dpd.schedule_pickup(make_request("carrier_label"), next_pickup_day())
    with pytest.raises(CarrierNotSupported):
        backend_for(tmp_path, "gls").schedule_pickup(make_request("pickup"), next_pickup_day())


# ---------------------------------------------------------------------------- DHL Parcel DE via karrio


def test_return_label_goes_to_dhl_returns_api_with_the_shopper_as_shipper(dhl):
    backend, fake = dhl
    label = backend.create_return_label(make_request(reference="R-7"))
    (call,) = [c for c in fake.calls if "/returns/v1/orders" in c["url"]]
    body = json.loads(call["data"])
    assert call["url"].endswith("/orders?labelType=BOTH")
    assert body["receiverId"] == "deu"
    assert body["customerReference"] == "R-7"
    assert body["shipper"] == {"name1": "Anna Schmidt", "addressStreet": "Hauptstraße", "addressHouse": "12",
                               "postalCode": "80331", "city": "München", "email": "anna@example.com",
                               "phone": "+49 89 123456"}
    assert body["itemWeight"] == {"uom": "kg", "value": 0.8}
    assert label.tracking_number == fake.labels[0]
    assert label.pdf.startswith(b"%PDF") and label.qr_png.startswith(b"\x89PNG")
    assert label.tracking_url.endswith(label.tracking_number)


def test_customs_items_reach_dhl_as_commodities(dhl):
    backend, fake = dhl
    bern = Address(name="Max Muster", line1="Musterstr. 1", postcode="3344", city="Bern", country="CH")
    customs = Customs(currency="CHF", invoice_number="SO-1001", items=(
        CustomsItem("T-shirt, blue, M", 2, Decimal("39.80"), 400, hs_code="610910", origin_country="PT", sku="TS"),
        CustomsItem("Belt", 1, Decimal("25.00"), 150, hs_code="420330", origin_country="IT"),
    ))
    backend.create_return_label(dataclasses.replace(make_request(sender=bern), customs=customs))
    body = json.loads([c for c in fake.calls if "/returns/v1/orders" in c["url"]][0]["data"])
    assert body["receiverId"] == "che"
    assert body["customsDetails"]["items"] == [
        {"itemDescription": "T-shirt, blue, M", "packagedQuantity": 2, "countryOfOrigin": "PRT", "hsCode": "610910",
         "itemWeight": {"uom": "kg", "value": 0.4}, "itemValue": {"currency": "CHF", "value": 39.8}},
        {"itemDescription": "Belt", "packagedQuantity": 1, "countryOfOrigin": "ITA", "hsCode": "420330",
         "itemWeight": {"uom": "kg", "value": 0.15}, "itemValue": {"currency": "CHF", "value": 25.0}},
    ]


def test_customs_model_carries_every_item_field():
    customs = Customs(currency="GBP", invoice_number="SO-9", items=(
        CustomsItem("Jacket", 1, Decimal("120.50"), 900, hs_code="620193", origin_country="gb", sku="JK-1"),))
    mapped = karrio_backend._customs(customs)
    assert mapped.content_type == "return_merchandise"
    assert mapped.invoice == "SO-9"
    (item,) = mapped.commodities
    assert (item.description, item.quantity, item.value_amount, item.value_currency, item.weight, item.weight_unit,
            item.hs_code, item.origin_country, item.sku) == ("Jacket", 1, 120.5, "GBP", 0.9, "KG", "620193", "GB", "JK-1")


def test_a_label_made_after_the_deadline_is_journalled_and_found_by_a_later_backend(request, tmp_path):
    """The worker writes the journal when DHL answers, though the caller gave up: a retry in
    another process (a fresh backend, nothing in flight) hands out that label, no second one."""
    fake = FakeDhlParcelDe()
    install(request, fake)
    shipment = make_request(key="shp-journal-1")
    journal = tmp_path / "karrio-labels" / f"{hashlib.sha256(b'shp-journal-1').hexdigest()}.json"
    fake.slow_next = DEADLINE * 2
    with pytest.raises(CarrierRetryable):
        KarrioBackend(dhl_settings(request)).create_return_label(shipment)
    assert not journal.exists()  # DHL has not answered yet
    for _ in range(200):
        if journal.exists() and not karrio_backend._IN_FLIGHT:
            break
        time.sleep(0.02)
    recorded = json.loads(journal.read_text("utf-8"))
    assert recorded["tracking_number"] == fake.labels[0]
    label = KarrioBackend(dhl_settings(request)).create_return_label(shipment)
    assert label.tracking_number == fake.labels[0] and label.pdf.startswith(b"%PDF")
    assert len(fake.labels) == 1


def test_a_label_call_another_process_began_is_waited_for_not_repeated(dhl, tmp_path):
    """The job's retry runs in another process while the first one's karrio call may still be
    making the label there: it waits (retryable) for IN_FLIGHT_ELSEWHERE_SECONDS, then asks again."""
    backend, fake = dhl
    shipment = make_request(key="shp-elsewhere-1")
    digest = hashlib.sha256(b"shp-elsewhere-1").hexdigest()
    started = backend.data_dir / "karrio-labels" / f"{digest}.started"
    started.parent.mkdir(parents=True, exist_ok=True)
    started.write_text(json.dumps({"at": datetime.now(timezone.utc).isoformat(), "pid": 1}))
    with pytest.raises(CarrierRetryable, match="may still be running"):
        backend.create_return_label(shipment)
    assert fake.labels == []
    gone = datetime.now(timezone.utc) - timedelta(seconds=karrio_backend.IN_FLIGHT_ELSEWHERE_SECONDS + 1)
    started.write_text(json.dumps({"at": gone.isoformat(), "pid": 1}))
    label = backend.create_return_label(shipment)
    assert label.tracking_number == fake.labels[0] and not started.exists()


def test_a_failed_label_call_is_not_journalled_and_the_retry_calls_again(dhl):
    backend, fake = dhl
    shipment = make_request(key="shp-retry-1")
    fake.fail_next("retryable")
    with pytest.raises(CarrierRetryable):
        backend.create_return_label(shipment)
    fake.fail = None
    assert backend.create_return_label(shipment).tracking_number == fake.labels[0]


def test_address_refusal_names_the_postcode(dhl):
    backend, fake = dhl
    fake.fail_next("address")
    with pytest.raises(CarrierRejected) as caught:
        backend.create_return_label(make_request())
    assert caught.value.field == "postcode"
    assert "postal code 80331" in str(caught.value)


def test_pickup_is_booked_once_on_the_day_and_can_be_cancelled(dhl):
    backend, fake = dhl
    day = next_pickup_day()
    shipment = make_request("pickup", key="shp-pickup-1")
    pickup = backend.schedule_pickup(shipment, day)
    again = backend.schedule_pickup(shipment, day)
    posts = [c for c in fake.calls if "/pickup/v3/orders" in c["url"] and c["method"] == "POST"]
    assert len(posts) == 1 and again == pickup
    assert json.loads(posts[0]["data"])["pickupDetails"]["pickupDate"] == {"type": "Date", "value": day.isoformat()}
    assert pickup.window == "09:00-18:00" and pickup.tracking_number == fake.labels[0]
    with pytest.raises(CarrierRejected):
        backend.schedule_pickup(shipment, day.fromordinal(day.toordinal() + 1))
    assert backend.cancel_pickup(pickup.carrier_ref) == VOIDED
    (delete,) = [c for c in fake.calls if c.get("method") == "DELETE"]
    assert delete["url"].endswith(f"orderID={pickup.carrier_ref}")


def test_a_pickup_the_carrier_moves_to_another_day_is_refused(dhl, monkeypatch):
    backend, fake = dhl
    moved = fake._pickup
    monkeypatch.setattr(fake, "_pickup", lambda kwargs: moved(kwargs).replace(next_pickup_day().isoformat(),
                                                                              "2099-04-21"))
    with pytest.raises(CarrierRejected, match="2099-04-21"):
        backend.schedule_pickup(make_request("pickup"), next_pickup_day())


def test_dhl_return_labels_cannot_be_voided(dhl):
    backend, _ = dhl
    with pytest.raises(CarrierNotSupported, match="Returns API"):
        backend.void_label("999991587211")


def test_tracking_reads_dhl_local_times_in_berlin_time_oldest_first(dhl):
    backend, fake = dhl
    fake.moved.add("00340434161094042557")
    events = backend.track("00340434161094042557")
    assert [e.at.isoformat() for e in events] == ["2016-03-17T11:21:00+01:00", "2016-03-17T13:23:00+01:00"]
    assert [e.status for e in events] == ["in_transit", "in_transit"]
    assert events[0].location == "Bremen, Germany"


def test_check_credentials_logs_in_afresh_each_time(dhl):
    backend, fake = dhl
    backend.check_credentials()
    backend.check_credentials()
    assert len([c for c in fake.calls if "/auth/ropc/" in c["url"]]) == 2


# ---------------------------------------------------------------------------- karrio's messages


def _message(code, text, **details):
    from karrio.core.models import Message
    return Message(carrier_name="dhl_parcel_de", carrier_id="dhl_parcel_de", code=code, message=text,
                   details=details or None)


@pytest.mark.parametrize("code, text, details, error, field", [
    ("401", "Unauthorized for given resource.", {}, CarrierAuthError, None),
    ("5", "Log-in failed", {}, CarrierAuthError, None),
    ("503", "The service is temporarily unavailable.", {}, CarrierRetryable, None),
    ("429", "Too Many Requests", {}, CarrierRetryable, None),
    ("SHIPPING_SDK_INTERNAL_ERROR", "<urlopen error [Errno 111] Connection refused>", {}, CarrierRetryable, None),
    ("SHIPPING_SDK_INTERNAL_ERROR", "timed out", {}, CarrierRetryable, None),
    ("SHIPPING_SDK_NON_SUPPORTED_ERROR", "this operation is not supported.", {}, CarrierNotSupported, None),
    ("error", "shipper.postalCode: invalid", {"property": "shipper.postalCode"}, CarrierRejected, "postcode"),
    ("error", "Phone number missing", {}, CarrierRejected, "phone"),
    ("400", "The weight exceeds 31.5 kg", {}, CarrierRejected, "weight"),
    ("error", "shipper.addressStreet: Straße unbekannt", {}, CarrierRejected, "address"),
    # The refused property decides before the prose ("length" would read as the parcel's size).
    ("error", "shipper.name1: length exceeds 50", {"property": "shipper.name1"}, CarrierRejected, "address"),
    ("error", "Service for Deutschland not bookable", {}, CarrierRejected, None),
    ("400", "Bad Request", {}, CarrierRejected, None),
])
def test_messages_become_the_ports_errors(code, text, details, error, field):
    with pytest.raises(error) as caught:
        karrio_backend._raise_for([_message(code, text, **details)], "dhl_parcel_de")
    assert text in str(caught.value)
    if error is CarrierRejected:
        assert caught.value.field == field


def test_no_answer_at_all_is_retryable():
    with pytest.raises(CarrierRetryable):
        karrio_backend._raise_for([], "dhl_parcel_de")


def test_a_hanging_karrio_call_ends_at_the_deadline(dhl, monkeypatch):
    backend, fake = dhl
    monkeypatch.setattr(fake, "_tracking", lambda url: time.sleep(DEADLINE * 2) or "<data/>")
    started = time.monotonic()
    with pytest.raises(CarrierRetryable, match="within"):
        backend.track("00340434161094042557")
    assert time.monotonic() - started < DEADLINE * 1.8


# ---------------------------------------------------------------------------- UPS via karrio


class FakeUps:
    """UPS behind karrio's lib.request: OAuth token, Shipping API ship and void."""

    def __init__(self):
        self.calls: list[dict] = []

    def __call__(self, **kwargs):
        self.calls.append(kwargs)
        url = kwargs["url"]
        if url.endswith("/security/v1/oauth/token"):
            return fixture("ups_token.json")
        if url.endswith("/api/shipments/v2409/ship"):
            return json.dumps(fixture("ups_return_shipment.json"))
        if "/api/shipments/v2409/void/cancel/" in url:
            return json.dumps(fixture("ups_void.json"))
        raise AssertionError(f"unexpected UPS call {url}")


def test_ups_print_return_label_and_void(request, tmp_path):
    fake = FakeUps()
    install(request, fake)
    backend = backend_for(tmp_path, "ups")
    label = backend.create_return_label(make_request())
    ship = json.loads([c for c in fake.calls if c["url"].endswith("/ship")][0]["data"])["ShipmentRequest"]["Shipment"]
    # A label the shopper prints, not karrio's default (Return Service 3-attempt: a driver comes).
    assert ship["ReturnService"]["Code"] == "9"
    assert ship["ShipFrom"]["Address"]["PostalCode"] == "80331"  # the shopper
    assert ship["ShipTo"]["Address"]["PostalCode"] == "10115"  # the warehouse
    assert label.tracking_number == "1ZXXXXXXXXXXXXXXXX"
    assert label.pdf.startswith(b"%PDF") and label.qr_png is None
    assert backend.void_label(label.tracking_number, label.carrier_ref) == VOIDED
    assert fake.calls[-1]["url"].endswith("/void/cancel/1ZXXXXXXXXXXXXXXXX")
