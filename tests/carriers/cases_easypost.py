"""The EasyPost backend in the carrier contract, against a fake EasyPost API.

`FakeEasyPost` answers the SDK's HTTP calls (mocked with `responses`) the way the recorded
payloads in tests/fixtures/carriers/easypost show: shipments with rates, bought with a PDF label
and a tracker, refunds, pickups, trackers. It keeps what a real account would keep, so the contract
can count labels, simulate a timeout after EasyPost created the shipment, and move a parcel.
"""
from __future__ import annotations

import copy
import itertools
import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import requests
import responses

from connector.carriers import registry
from connector.carriers.easypost_backend import EasyPostBackend, webhook_signature
from tests.carriers.harness import CarrierCase

FIXTURES = Path(__file__).parent.parent / "fixtures" / "carriers" / "easypost"
API = "https://api.easypost.com/v2"
FILES = "https://easypost-files.s3.us-west-2.amazonaws.com/files/postage_label/"
WEBHOOK_SECRET = "s\u00e9cr\u00e8t-\ufb01le"  # non-ASCII and a ligature: NFKD matters
SETTINGS = {"api_key": "EZAK_production_key", "test_api_key": "EZTK_test_key", "test_mode": True,
            "webhook_secret": WEBHOOK_SECRET}


def fixture(name: str) -> Any:
    data = json.loads((FIXTURES / name).read_text("utf-8"))
    if isinstance(data, dict):
        data.pop("_source", None)
    return data


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeEasyPost:
    """EasyPost's side of one account, served through a `responses` mock."""

    def __init__(self, mock: responses.RequestsMock):
        self.shipments: dict[str, dict] = {}  # in creation order
        self.pickups: dict[str, dict] = {}
        self.trackers: dict[str, dict] = {}  # standalone trackers by tracking code
        self.requests: list[tuple[str, str, Any]] = []  # (method, path, JSON body or query)
        self.authorizations: list[str | None] = []
        self.fail: str | None = None
        self.timeout_after_create = False
        self.png_labels = False  # buy labels as PNG (EasyPost's default format) instead of PDF
        self.refund_status = "submitted"  # what the next refunds answer
        self.answer_next_create = None  # a callable answering the next POST /shipments instead
        self._ids = itertools.count(1)
        self._label_pdf = (FIXTURES / "label.pdf").read_bytes()
        routes = [
            ("POST", r"/shipments$", self._create_shipment),
            ("GET", r"/shipments$", self._list_shipments),
            ("GET", r"/shipments/(?P<id>shp_\w+)$", self._get_shipment),
            ("POST", r"/shipments/(?P<id>shp_\w+)/buy$", self._buy_shipment),
            ("GET", r"/shipments/(?P<id>shp_\w+)/label$", self._convert_label),
            ("POST", r"/shipments/(?P<id>shp_\w+)/refund$", self._refund_shipment),
            ("GET", r"/trackers$", self._list_trackers),
            ("POST", r"/trackers$", self._create_tracker),
            ("POST", r"/pickups$", self._create_pickup),
            ("GET", r"/pickups$", self._list_pickups),
            ("POST", r"/pickups/(?P<id>pickup_\w+)/buy$", self._buy_pickup),
            ("POST", r"/pickups/(?P<id>pickup_\w+)/cancel$", self._cancel_pickup),
        ]
        for method, path, handler in routes:
            mock.add_callback(method, re.compile(re.escape(API) + path.replace("$", r"(\?.*)?$")),
                              callback=self._handler(path, handler))
        mock.add(responses.GET, re.compile(re.escape(FILES) + r".*\.pdf$"), body=self._label_pdf,
                 content_type="application/pdf")

    # ------------------------------------------------------------------ test controls

    def labels(self) -> int:
        return len(self.shipments)

    def move(self, tracking_number: str) -> None:
        """The carrier scans the parcel: its tracker goes in_transit."""
        shipment = self.shipment_by_tracking(tracking_number)
        tracker = shipment["tracker"]
        detail = fixture("tracking_detail_in_transit.json")
        detail["datetime"] = _now()
        tracker["tracking_details"].append(detail)
        tracker["status"], tracker["status_detail"] = "in_transit", detail["status_detail"]

    def shipment_by_tracking(self, tracking_number: str) -> dict:
        return next(s for s in self.shipments.values() if s["tracking_code"] == tracking_number)

    def webhook(self, tracking_number: str, carrier_ref: str | None) -> tuple[dict[str, str], bytes]:
        """A tracker.updated Event for the parcel, signed as EasyPost signs it."""
        event = fixture("event_tracker_updated.json")
        event["result"]["tracking_code"] = tracking_number
        event["result"]["shipment_id"] = carrier_ref
        body = json.dumps(event).encode("utf-8")
        return {"X-Hmac-Signature": webhook_signature(WEBHOOK_SECRET, body),
                "Content-Type": "application/json"}, body

    # ------------------------------------------------------------------ plumbing

    def _id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._ids):032x}"

    def _handler(self, path: str, handler):
        pattern = re.compile(re.escape(API) + path.replace("$", r"(\?.*)?$"))

        def respond(request: requests.PreparedRequest):
            body = json.loads(request.body) if request.body else {}
            query = {k: v[0] for k, v in parse_qs(urlparse(request.url).query).items()}
            self.requests.append((request.method, urlparse(request.url).path, body or query))
            self.authorizations.append(request.headers.get("Authorization"))
            if self.fail:
                mode, self.fail = self.fail, None
                return _fail(mode)
            match = pattern.match(request.url)
            return handler(match.groupdict(), body, query)

        return respond

    # ------------------------------------------------------------------ shipments

    def _create_shipment(self, ids, body, query):
        if self.answer_next_create is not None:
            answer, self.answer_next_create = self.answer_next_create, None
            return answer()
        sent = body["shipment"]
        shipment = fixture("shipment_created.json")
        shipment_id = self._id("shp")
        shipment.update(id=shipment_id, created_at=_now(), is_return=bool(sent.get("is_return")),
                        reference=sent.get("reference"),
                        to_address={"id": self._id("adr"), "object": "Address", **sent["to_address"]},
                        from_address={"id": self._id("adr"), "object": "Address", **sent["from_address"]},
                        customs_info=sent.get("customs_info"))
        shipment["options"].update(sent.get("options") or {})
        shipment["parcel"].update(sent.get("parcel") or {})
        for rate in shipment["rates"]:
            rate["shipment_id"] = shipment_id
        self.shipments[shipment_id] = shipment
        if self.timeout_after_create:
            self.timeout_after_create = False
            raise requests.exceptions.ReadTimeout("read timed out after EasyPost created the shipment")
        return 201, {}, json.dumps(shipment)

    def _list_shipments(self, ids, body, query):
        newest_first = list(reversed(self.shipments.values()))
        size = int(query.get("page_size", 20))
        return 200, {}, json.dumps({"shipments": newest_first[:size], "has_more": len(newest_first) > size})

    def _get_shipment(self, ids, body, query):
        shipment = self.shipments.get(ids["id"])
        if shipment is None:
            return _not_found()
        return 200, {}, json.dumps(shipment)

    def _buy_shipment(self, ids, body, query):
        shipment = self.shipments[ids["id"]]
        rate = next(r for r in shipment["rates"] if r["id"] == body["rate"]["id"])
        bought = fixture("shipment_bought.json")
        tracking_code = f"94001001054422{next(self._ids):08d}"
        label = bought["postage_label"]
        label["id"] = self._id("pl")
        label["label_url"] = label["label_pdf_url"] = f"{FILES}20261122/{shipment['id']}.pdf"
        if self.png_labels:  # as recorded in test_shipment_buy.yaml: a PNG label, no PDF url
            label.update(label_file_type="image/png", label_pdf_url=None,
                         label_url=f"{FILES}20261122/{shipment['id']}.png")
        tracker = bought["tracker"]
        tracker.update(id=self._id("trk"), tracking_code=tracking_code, shipment_id=shipment["id"],
                       carrier=rate["carrier"])
        pre_transit = fixture("tracking_detail_pre_transit.json")
        pre_transit["datetime"] = _now()
        tracker["tracking_details"], tracker["status"] = [pre_transit], "pre_transit"
        shipment.update(selected_rate=rate, tracking_code=tracking_code, postage_label=label, tracker=tracker,
                        fees=bought["fees"])
        return 200, {}, json.dumps(shipment)

    def _convert_label(self, ids, body, query):
        """GET /shipments/:id/label?file_format=PDF: the label is also made as PDF."""
        shipment = self.shipments[ids["id"]]
        if query.get("file_format", "").upper() == "PDF":
            shipment["postage_label"]["label_pdf_url"] = f"{FILES}20261122/{shipment['id']}.pdf"
        return 200, {}, json.dumps(shipment)

    def _refund_shipment(self, ids, body, query):
        shipment = self.shipments[ids["id"]]
        shipment["refund_status"] = self.refund_status
        return 200, {}, json.dumps(shipment)

    # ------------------------------------------------------------------ trackers

    def _list_trackers(self, ids, body, query):
        code = query.get("tracking_code")
        found = [s["tracker"] for s in self.shipments.values() if s["tracker"] and s["tracking_code"] == code]
        found += [t for c, t in self.trackers.items() if c == code]
        return 200, {}, json.dumps({"trackers": found, "has_more": False})

    def _create_tracker(self, ids, body, query):
        code = body["tracker"]["tracking_code"]
        tracker = copy.deepcopy(fixture("shipment_bought.json")["tracker"])
        tracker.update(id=self._id("trk"), tracking_code=code, shipment_id=None)
        self.trackers.setdefault(code, tracker)
        return 201, {}, json.dumps(self.trackers[code])

    # ------------------------------------------------------------------ pickups

    def _create_pickup(self, ids, body, query):
        sent = body["pickup"]
        pickup = fixture("pickup_created.json")
        pickup_id = self._id("pickup")
        pickup.update(id=pickup_id, reference=sent.get("reference"), instructions=sent.get("instructions"),
                      min_datetime=sent["min_datetime"].replace(" ", "T") + "Z",
                      max_datetime=sent["max_datetime"].replace(" ", "T") + "Z",
                      address={"id": self._id("adr"), "object": "Address", **sent["address"]},
                      shipment=self.shipments[sent["shipment"]["id"]])
        for rate in pickup["pickup_rates"]:
            rate["pickup_id"] = pickup_id
        self.pickups[pickup_id] = pickup
        return 200, {}, json.dumps(pickup)

    def _list_pickups(self, ids, body, query):
        newest_first = list(reversed(self.pickups.values()))
        return 200, {}, json.dumps({"pickups": newest_first, "has_more": False})

    def _buy_pickup(self, ids, body, query):
        pickup = self.pickups[ids["id"]]
        if not any(r["carrier"] == body.get("carrier") and r["service"] == body.get("service")
                   for r in pickup["pickup_rates"]):
            return 422, {}, json.dumps(fixture("error_pickup_no_rates.json"))
        pickup.update(fixture("pickup_bought.json")["scheduled"])
        return 200, {}, json.dumps(pickup)

    def _cancel_pickup(self, ids, body, query):
        pickup = self.pickups[ids["id"]]
        pickup.update(fixture("pickup_bought.json")["canceled"])
        return 200, {}, json.dumps(pickup)


def _fail(mode: str):
    if mode == "retryable":
        return 503, {}, json.dumps(fixture("error_unavailable.json"))
    if mode == "address":
        return 422, {}, json.dumps(fixture("error_address.json"))
    if mode == "auth":
        return 401, {}, json.dumps(fixture("error_unauthorized.json"))
    raise ValueError(mode)


def _not_found():
    return 404, {}, json.dumps({"error": {"code": "NOT_FOUND", "message": "The requested resource could not be found.",
                                          "errors": []}})


def start_fake(request) -> FakeEasyPost:
    """A started `responses` mock serving a fresh FakeEasyPost, stopped when the test ends; the
    registry sees EasyPostBackend (its entry point is not installed in the test venv yet)."""
    monkeypatch = request.getfixturevalue("monkeypatch")
    monkeypatch.setattr(registry, "_plugins", lambda: {EasyPostBackend.key: EasyPostBackend})
    mock = responses.RequestsMock(assert_all_requests_are_fired=False)
    mock.start()
    request.addfinalizer(mock.stop)
    request.addfinalizer(mock.reset)
    return FakeEasyPost(mock)


def _easypost(request) -> CarrierCase:
    fake = start_fake(request)
    backend = EasyPostBackend({**SETTINGS, "data_dir": str(request.getfixturevalue("tmp_path"))})

    def timeout_after_create() -> None:
        fake.timeout_after_create = True

    def fail_next(mode: str) -> None:
        fake.fail = mode

    return CarrierCase(backend, move=fake.move, labels_at_carrier=fake.labels,
                       timeout_after_create=timeout_after_create, fail_next=fail_next, webhook=fake.webhook)


CASES = {"easypost": _easypost}
