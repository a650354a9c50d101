"""The karrio backend in the carrier contract, driving karrio's DHL Parcel DE and UPS integrations.

karrio is mocked where karrio's own tests mock it: its HTTP call `lib.request` (the function
`karrio.mappers.<carrier>.proxy.lib.request` names), answering with the carrier's documented
payloads from tests/fixtures/carriers/karrio (see the "_source" of each file). `FakeDhlParcelDe`
and `FakeUps` play the carrier: they count the return labels made, let a parcel move, fail on
request and can finish a label call only after the backend's deadline passed.
"""
from __future__ import annotations

import base64
import io
import itertools
import json
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import segno

from connector.carriers import registry

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "carriers" / "karrio"
# A real, minimal PDF: the label documents DHL returns are PDFs (labelType BOTH: PDF label + QR PNG).
LABEL_PDF = (b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\n"
             b"trailer<</Root 1 0 R>>\n%%EOF\n")
DEADLINE = 0.5  # seconds; the slow calls below outlast it


def fixture(name: str):
    """A fixture file's payload without its "_source" note (JSON), or its text (XML)."""
    text = (FIXTURES / name).read_text("utf-8")
    if name.endswith(".json"):
        data = json.loads(text)
        data.pop("_source", None)
        return data
    return text


def qr_png(text: str) -> bytes:
    buffer = io.BytesIO()
    segno.make(text, micro=False).save(buffer, kind="png", scale=4)
    return buffer.getvalue()


class FakeDhlParcelDe:
    """DHL Parcel DE behind karrio's `lib.request`: token, Returns API, Pickup API, tracking."""

    def __init__(self):
        self.labels: list[str] = []  # shipmentNo of every return label made
        self.moved: set[str] = set()
        self.fail: str | None = None  # "retryable" | "address" | "auth", for the next calls
        self.slow_next: float = 0.0  # delay (s) for the next label call, after the label is made
        self.calls: list[dict] = []
        self._numbers = itertools.count(999991587211)
        self._lock = threading.Lock()

    # what karrio calls
    def __call__(self, **kwargs):
        self.calls.append(kwargs)
        url, method = kwargs["url"], kwargs.get("method", "GET")
        if "/auth/ropc/" in url:
            return fixture("dhl_parcel_de_token_refused.json") if self.fail == "auth" else fixture("dhl_parcel_de_token.json")
        if self.fail == "auth":
            return json.dumps(fixture("dhl_parcel_de_error_401.json"))
        if self.fail == "retryable":
            return json.dumps(fixture("dhl_parcel_de_error_503.json"))
        if "/returns/v1/orders" in url:
            return self._return_order(kwargs)
        if "/pickup/v3/orders" in url:
            return self._pickup(kwargs) if method == "POST" else json.dumps(fixture("dhl_parcel_de_pickup_cancel.json"))
        if "/tracking/v0/" in url:
            return self._tracking(url)
        raise AssertionError(f"unexpected DHL call {method} {url}")

    def _return_order(self, kwargs) -> str:
        if self.fail == "address":
            return json.dumps(fixture("dhl_parcel_de_error_400.json"))
        with self._lock:
            number = str(next(self._numbers))
            self.labels.append(number)
            slow, self.slow_next = self.slow_next, 0.0
        answer = fixture("dhl_parcel_de_return_order.json")
        answer["shipmentNo"] = number
        answer["label"]["b64"] = base64.b64encode(LABEL_PDF).decode()
        answer["qrLabel"]["b64"] = base64.b64encode(qr_png(number)).decode()
        answer["qrLink"] = f"https://www.dhl.de/retoure/qr/{number}"
        if slow:
            time.sleep(slow)  # DHL made the label; its answer arrives after the deadline
        return json.dumps(answer)

    def _pickup(self, kwargs) -> str:
        asked = json.loads(kwargs["data"])["pickupDetails"]["pickupDate"]["value"]
        answer = fixture("dhl_parcel_de_pickup.json")
        answer["confirmation"]["value"]["pickupDate"] = asked
        return json.dumps(answer)

    def _tracking(self, url: str) -> str:
        xml_request = urllib.parse.parse_qs(urllib.parse.urlparse(url).query)["xml"][0]
        piece_code = ET.fromstring(xml_request.split("?>", 1)[-1]).get("piece-code")
        root = ET.fromstring(fixture("dhl_parcel_de_tracking.xml").encode("utf-8"))
        shipment = root.find("data")
        shipment.set("piece-code", piece_code)
        shipment.set("searched-piece-code", piece_code)
        shipment.set("delivery-event-flag", "0")
        events = shipment.find("data")
        # Not handed over yet: no scans. Moved: posted and on its way (the first two events).
        keep = 2 if piece_code in self.moved else 0
        for event in list(events)[keep:]:
            events.remove(event)
        return ET.tostring(root, encoding="unicode")

    # what the contract drives
    def fail_next(self, mode: str) -> None:
        self.fail = mode

    def timeout_after_create(self) -> None:
        # Past the deadline, yet done before the retry (sent at once here) waits out its own deadline.
        self.slow_next = DEADLINE * 1.3


def install(request, fake) -> None:
    """Route karrio's HTTP through `fake` and make the registry list the backend."""
    from connector.carriers.karrio_backend import KarrioBackend

    monkeypatch = request.getfixturevalue("monkeypatch")
    monkeypatch.setattr("karrio.lib.request", fake)
    monkeypatch.setattr(registry, "_plugins", lambda: {"karrio": KarrioBackend})


def dhl_settings(request, **extra) -> dict:
    return {
        "carrier": "dhl_parcel_de",
        "credentials": json.dumps({"username": "user-valid", "password": "SandboxPasswort2023!",
                                   "client_id": "client_id", "client_secret": "client_secret"}),
        "account_country": "DE",
        "deadline_seconds": str(DEADLINE),
        "test_mode": True,
        "data_dir": request.getfixturevalue("tmp_path"),
        **extra,
    }


def _karrio_dhl_parcel_de(request):
    pytest.importorskip("karrio.mappers.dhl_parcel_de")
    from connector.carriers.karrio_backend import KarrioBackend
    from tests.carriers.harness import CarrierCase  # here: harness imports this module while loading

    fake = FakeDhlParcelDe()
    install(request, fake)
    backend = KarrioBackend(dhl_settings(request))
    return CarrierCase(backend, move=fake.moved.add, labels_at_carrier=lambda: len(fake.labels),
                       timeout_after_create=fake.timeout_after_create, fail_next=fake.fail_next)


class FakeUps:
    """UPS behind karrio's `lib.request`: OAuth token, Shipping API ship (Print Return Label) and
    void, Pickup API create/cancel, Track API.

    Like UPS, it refuses to void a parcel that has moved (no longer within the void period) and
    reports its scans in tracking. The "auth" failure refuses the token and any call made with a
    token fetched before."""

    def __init__(self):
        self.labels: list[str] = []  # tracking numbers of every return label made
        self.moved: set[str] = set()
        self.fail: str | None = None  # "retryable" | "address" | "auth", for the next calls
        self.slow_next: float = 0.0  # delay (s) for the next label call, after the label is made
        self.calls: list[dict] = []
        self._numbers = itertools.count(31716786)
        self._lock = threading.Lock()

    # what karrio calls
    def __call__(self, **kwargs):
        self.calls.append(kwargs)
        url, method = kwargs["url"], kwargs.get("method", "GET")
        if url.endswith("/security/v1/oauth/token"):
            return self._token()
        if self.fail == "auth":
            return json.dumps(fixture("ups_error_401.json"))
        if self.fail == "retryable":
            return json.dumps(fixture("ups_error_503.json"))
        if url.endswith("/api/shipments/v2409/ship"):
            return self._ship(kwargs)
        if "/api/shipments/v2409/void/cancel/" in url:
            return self._void(url.rsplit("/", 1)[-1])
        if url.endswith("/api/pickupcreation/v2409/pickup") and method == "POST":
            return json.dumps(fixture("ups_pickup.json"))
        if "/api/shipments/v2409/pickup/" in url and method == "DELETE":
            return json.dumps(fixture("ups_pickup_cancel.json"))
        if "/api/track/v1/details/" in url:
            return self._tracking(urllib.parse.urlparse(url).path.rsplit("/", 1)[-1])
        raise AssertionError(f"unexpected UPS call {method} {url}")

    def _token(self):
        # karrio asks with on_error=lib.error_decoder, which parses the error body and adds the status.
        if self.fail == "auth":
            return {**fixture("ups_error_401.json"), "http_status": 401, "http_message": "Unauthorized"}
        return fixture("ups_token.json")

    def _ship(self, kwargs) -> str:
        if self.fail == "address":
            return json.dumps(fixture("ups_error_address.json"))
        with self._lock:
            number = f"1ZA82D6720{next(self._numbers):08d}"
            self.labels.append(number)
            slow, self.slow_next = self.slow_next, 0.0
        answer = fixture("ups_return_shipment.json")
        results = answer["ShipmentResponse"]["ShipmentResults"]
        results["ShipmentIdentificationNumber"] = number
        results["PackageResults"][0]["TrackingNumber"] = number
        if slow:
            time.sleep(slow)  # UPS made the label; its answer arrives after the deadline
        return json.dumps(answer)

    def _void(self, number: str) -> str:
        if number in self.moved:
            return json.dumps(fixture("ups_void_refused.json"))
        return json.dumps(fixture("ups_void.json"))

    def _tracking(self, number: str) -> str:
        answer = fixture("ups_tracking.json")
        shipment = answer["trackResponse"]["shipment"][0]
        shipment["inquiryNumber"] = number
        package = shipment["package"][0]
        package["trackingNumber"] = number
        if number not in self.moved:  # label made, no scan yet: only the manifest activity
            package["activity"] = package["activity"][-1:]
        package["currentStatus"] = package["activity"][0]["status"]
        return json.dumps(answer)

    # what the contract drives
    def fail_next(self, mode: str) -> None:
        self.fail = mode

    def timeout_after_create(self) -> None:
        self.slow_next = DEADLINE * 1.3


def ups_settings(request, **extra) -> dict:
    return {
        "carrier": "ups",
        "credentials": json.dumps({"client_id": "client_id", "client_secret": "client_secret",
                                   "account_number": "A82D67"}),
        "account_country": "DE",
        "deadline_seconds": str(DEADLINE),
        "test_mode": True,
        "data_dir": request.getfixturevalue("tmp_path"),
        **extra,
    }


def _karrio_ups(request):
    pytest.importorskip("karrio.mappers.ups")
    from connector.carriers.karrio_backend import KarrioBackend
    from tests.carriers.harness import CarrierCase  # here: harness imports this module while loading

    fake = FakeUps()
    install(request, fake)
    backend = KarrioBackend(ups_settings(request))
    return CarrierCase(backend, move=fake.moved.add, labels_at_carrier=lambda: len(fake.labels),
                       timeout_after_create=fake.timeout_after_create, fail_next=fake.fail_next)


CASES = {"karrio": _karrio_dhl_parcel_de, "karrio-ups": _karrio_ups}
