"""Sendcloud in the carrier contract: a fake Sendcloud answering with the documented payloads.

`FakeSendcloud` keeps returns and pickups as Sendcloud would and answers the calls SendcloudBackend
makes with the shapes in tests/fixtures/carriers/sendcloud/*.json (copied from sendcloud.dev). It is
plain (method, url, headers, body) -> (status, content type, bytes), so the tests mount it on
`responses` and bench/carrier_calls.py serves it from a local http.server (`handle_full` adds the
response headers, for the Link header that pages the pickups list).

Nothing here imports the harness at module level: the bench imports this module on its own.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import re
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "carriers" / "sendcloud"
API_BASE = "https://panel.sendcloud.sc/api/v3"
PUBLIC_KEY, SECRET_KEY = "pk-test-0001", "sk-test-0001"
SETTINGS = {"public_key": PUBLIC_KEY, "secret_key": SECRET_KEY, "shipping_option_code": "dpd:return/return"}


def fixture(name: str) -> dict:
    data = json.loads((FIXTURES / name).read_text("utf-8"))
    data.pop("_source", None)
    return data


def make_pdf(pages: int = 1, filler: int = 0) -> bytes:
    """A real PDF (fpdf2): one A6 page by default; `filler` lines of text make it bigger."""
    from fpdf import FPDF

    pdf = FPDF(unit="mm", format=(105, 148))
    pdf.set_compression(False)
    for _ in range(pages):
        pdf.add_page()
        pdf.set_font("Helvetica", size=8)
        pdf.cell(0, 5, "Sendcloud test label", new_x="LMARGIN", new_y="NEXT")
        for line in range(filler):
            pdf.cell(0, 3, f"{line:05d} filler line for the label document size", new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def make_qr_png(code: str) -> bytes:
    """A real QR code PNG (segno), as Sendcloud's qr document is for a labelless parcel."""
    import io

    import segno

    out = io.BytesIO()
    segno.make(code, error="m").save(out, kind="png", scale=4)
    return out.getvalue()


def _now() -> datetime:
    return datetime.now(timezone.utc)


class FakeSendcloud:
    """Sendcloud's returns, parcels and label documents, in memory."""

    def __init__(self, base: str = API_BASE, pdf: bytes | None = None):
        self.base = base.rstrip("/")
        self.base_v2 = re.sub(r"/v3$", "/v2", self.base)
        self.pdf = pdf or make_pdf()
        self.returns: dict[int, dict] = {}
        self.pickups: dict[int, dict] = {}
        self._pickup_ids = itertools.count(294247)
        self._timeout_after_pickup = False
        self.pickup_day_shift = 0  # days the carrier moves a booked pickup by
        # How a cancellation goes: "carrier" (done in the call, 200), "support" (Sendcloud Support
        # does it later, 202), "refuse" (409, e.g. past the carrier's deadline).
        self.pickup_cancel = "carrier"
        self._ids = itertools.count(12345)
        self._history_ids = itertools.count(1)
        self._fail: str | None = None
        self._timeout_after_create = False
        self.announce_later = False  # new returns wait for `announce` before they have a label
        self._lock = threading.Lock()
        self.calls: list[tuple[str, str]] = []
        self.auth = "Basic " + base64.b64encode(f"{PUBLIC_KEY}:{SECRET_KEY}".encode()).decode()

    # ------------------------------------------------------------------ test levers

    def fail_next(self, mode: str) -> None:
        self._fail = mode

    def time_out_next_create(self) -> None:
        self._timeout_after_create = True

    def time_out_next_pickup(self) -> None:
        """The next POST /pickups books the pickup and its answer is lost."""
        self._timeout_after_pickup = True

    def announce(self, return_id: int) -> None:
        """The carrier accepted the parcel: the return gets its tracking number and label."""
        found = self.returns[return_id]
        found.update(found.pop("_announced"))
        found["status_history"].append(self._status("Announced"))

    def move(self, tracking_number: str) -> None:
        """The driver picked the parcel up: the return is on its way and no longer cancellable."""
        found = self._by_tracking(tracking_number)
        found["is_cancellable"] = False
        found["status_history"].append(self._status("En route to sorting center"))

    def webhook(self, tracking_number: str, carrier_ref: str | None = None) -> tuple[dict[str, str], bytes]:
        """A signed parcel_status_changed delivery: the parcel is en route to sorting (status 3)."""
        payload = fixture("webhook_parcel_status_changed.json")
        stamp = int(_now().timestamp() * 1000)
        payload["timestamp"] = payload["carrier_status_change_timestamp"] = stamp
        payload["parcel"]["tracking_number"] = tracking_number
        payload["parcel"]["status"] = {"id": 3, "message": "En route to sorting center"}
        body = json.dumps(payload, indent=1).encode()
        signature = hmac.new(SECRET_KEY.encode(), body, hashlib.sha256).hexdigest()
        return {"Sendcloud-Signature": signature, "Content-Type": "application/json"}, body

    # ------------------------------------------------------------------ the API

    def handle(self, method: str, url: str, headers, body: bytes | None):
        """Answer one request: (status, content type, body bytes). Raises TimeoutError where a
        lever asked for a timeout after the return was made."""
        return self.handle_full(method, url, headers, body)[:3]

    def handle_full(self, method: str, url: str, headers, body: bytes | None):
        """`handle` plus the answer's extra headers: (status, content type, body, headers)."""
        answer = self._handle(method, url, headers, body)
        return answer if len(answer) == 4 else (*answer, {})

    def _handle(self, method: str, url: str, headers, body: bytes | None):
        parts = urlsplit(url)
        v2 = urlsplit(self.base_v2).path
        if self.base_v2 != self.base and parts.path.startswith(v2 + "/"):
            path = "v2:" + parts.path[len(v2):]
        else:
            path = parts.path[len(urlsplit(self.base).path):]
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        with self._lock:
            self.calls.append((method, path))
            if headers.get("Authorization") != self.auth:
                return 401, "application/json", b'{"error": {"code": 401, "message": "Invalid username/password."}}'
            mode, self._fail = self._fail, None
            if mode == "auth":
                return 401, "application/json", b'{"error": {"code": 401, "message": "Invalid username/password."}}'
            if mode == "retryable":
                return 503, "text/html", b"<html>Service unavailable</html>"
            if mode == "address":
                return self._json(400, fixture("error_invalid_postal_code.json"))
            return self._route(method, path, query, body)

    def _route(self, method: str, path: str, query: dict, body: bytes | None):
        if method == "POST" and path == "/returns":
            return self._create(json.loads(body or b"{}"))
        if method == "GET" and path == "/returns":
            return self._list(query)
        match = re.fullmatch(r"/returns/(\d+)(/cancel)?", path)
        if match and int(match.group(1)) in self.returns:
            found = self.returns[int(match.group(1))]
            if method == "GET" and not match.group(2):
                return self._json(200, found)
            if method == "PATCH" and match.group(2):
                return self._cancel(found)
        match = re.fullmatch(r"/parcels/(\d+)/documents/label", path)
        if method == "GET" and match and any(r["_parcel_id"] == int(match.group(1)) for r in self.returns.values()):
            return 200, "application/pdf", self.pdf
        match = re.fullmatch(r"v2:/parcels/(\d+)/documents/qr", path)
        if method == "GET" and match:
            return self._qr(int(match.group(1)))
        if path == "/pickups":
            if method == "POST":
                return self._book(json.loads(body or b"{}"))
            if method == "GET":
                return self._pickup_list(query)
        match = re.fullmatch(r"/pickups/(\d+)(/cancel)?", path)
        if match and int(match.group(1)) in self.pickups:
            found = self.pickups[int(match.group(1))]
            if method == "GET" and not match.group(2):
                return self._json(200, {"data": found})
            if method == "POST" and match.group(2):
                return self._cancel_pickup(found)
        return 404, "application/json", b'{"error": {"code": 404, "message": "Not found."}}'

    def _create(self, request: dict):
        reference = request.get("external_reference")
        if reference and any(r.get("_external_reference") == reference for r in self.returns.values()):
            return self._json(400, fixture("error_external_reference_used.json"))
        return_id = next(self._ids)
        parcel_id = return_id + 55535
        found = fixture("return.json")
        label_url = f"{self.base}/parcels/{parcel_id}/documents/label"
        found.update({
            "id": return_id, "_parcel_id": parcel_id, "_external_reference": reference,
            "created_at": _now().isoformat(), "is_cancellable": True,
            "tracking_number": f"3SYZXG{return_id:09d}",
            "label_url": label_url,
            "label": {"label_printer": label_url, "normal_printer": [label_url + "?paper_size=a4"] * 4},
            "from_address": request["from_address"], "to_address": request["to_address"],
            "shipping_option": {"code": request["ship_with"].get("shipping_option_code")},
            "weight": request["weight"], "parcel_items": request.get("parcel_items", []),
            "order_number": request.get("order_number", ""),
            "delivery_option": request.get("delivery_option"),
            "customs_invoice_nr": request.get("customs_invoice_nr", ""),
            "customs_shipment_type": request.get("customs_shipment_type", 2),
            "status_history": [self._status("Ready to send")],
            "delivered_at": None, "delivered_at_iso": None, "reason": None, "refund": None, "return_fee": None,
        })
        if self.announce_later:  # what Sendcloud shows while the carrier announcement runs
            found["_announced"] = {k: found[k] for k in ("tracking_number", "label_url", "label", "tracking_url")}
            found.update(tracking_number=None, label_url=None, label={}, tracking_url=None)
            found["status_history"] = [self._status("Being announced")]
        self.returns[return_id] = found
        if self._timeout_after_create:
            self._timeout_after_create = False
            raise TimeoutError("the answer to POST /returns was lost")
        created = fixture("return_created.json")
        created.update({"return_id": return_id, "parcel_id": parcel_id})
        return self._json(201, created)

    def _list(self, query: dict):
        start = datetime.fromisoformat(query["from_date"]).replace(tzinfo=timezone.utc)
        end = datetime.fromisoformat(query["to_date"]).replace(tzinfo=timezone.utc)
        size = int(query.get("page_size", 40))
        offset = int(base64.b64decode(query["cursor"]).decode().split("=")[1]) if "cursor" in query else 0
        matching = [r for r in self.returns.values() if start <= datetime.fromisoformat(r["created_at"]) <= end]
        page = fixture("returns_list.json")
        page["data"] = matching[offset:offset + size]
        more = offset + size < len(matching)
        cursor = base64.b64encode(f"o={offset + size}".encode()).decode()
        page["next"] = f"{self.base}/returns?cursor={cursor}&page_size={size}&from_date={query['from_date']}" \
                       f"&to_date={query['to_date']}" if more else None
        page["previous"] = None
        return self._json(200, page)

    def _cancel(self, found: dict):
        if not found["is_cancellable"]:
            return self._json(409, fixture("cancel_conflict.json"))
        found["is_cancellable"] = False
        found["status_history"].append(self._status("Cancellation requested"))
        return self._json(202, fixture("cancel_requested.json"))

    def _qr(self, parcel_id: int):
        """GET /api/v2/parcels/{id}/documents/qr: a PNG for a labelless return, else 404."""
        found = next((r for r in self.returns.values() if r["_parcel_id"] == parcel_id), None)
        if found is None or found.get("delivery_option") != "drop_off_labelless" or not found.get("tracking_number"):
            return self._json(404, fixture("document_not_found.json"))
        return 200, "image/png", make_qr_png(found["tracking_number"])

    def _book(self, request: dict):
        """POST /pickups: books at once (status ANNOUNCING), on the slot asked for, moved by
        `pickup_day_shift` days when the test wants a carrier that moves pickups."""
        shift = timedelta(days=self.pickup_day_shift)
        slots = [{k: (datetime.fromisoformat(v.replace("Z", "+00:00")) + shift).strftime("%Y-%m-%dT%H:%M:%SZ")
                  for k, v in slot.items()} for slot in request.get("time_slots", [])]
        found = fixture("pickup_created.json")["data"]
        found.update({"id": next(self._pickup_ids), "address": request["address"], "time_slots": slots,
                      "items": request["items"], "reference": request.get("reference", ""),
                      "special_instructions": request.get("special_instructions", ""),
                      "carrier_code": request["carrier_code"], "created_at": _now().isoformat()})
        found.pop("contract_id", None)
        self.pickups[found["id"]] = found
        if self._timeout_after_pickup:
            self._timeout_after_pickup = False
            raise TimeoutError("the answer to POST /pickups was lost")
        return self._json(201, {"data": found})

    def _pickup_list(self, query: dict):
        """GET /pickups: list items (no address, items or reference), pages linked by `Link`."""
        size = int(query.get("page_size", 10))
        offset = int(query.get("offset", 0))
        keep = ("id", "time_slots", "carrier_code", "tracking_number", "status", "created_at", "cancelled_at")
        everything = [{"country": p["address"]["country_code"], **{k: p[k] for k in keep}}
                      for p in self.pickups.values()]
        page = fixture("pickups_list.json")
        page["data"] = everything[offset:offset + size]
        status, content_type, content = self._json(200, page)
        headers = {}
        if offset + size < len(everything):
            headers["Link"] = f'<{self.base}/pickups?page_size={size}&offset={offset + size}>; rel="next"'
        return status, content_type, content, headers

    def _cancel_pickup(self, found: dict):
        if self.pickup_cancel == "refuse" or found["status"] != "ANNOUNCING":
            found["status"] = "FAILED" if found["status"] == "ANNOUNCING" else found["status"]
            return self._json(409, {"data": found})
        if self.pickup_cancel == "support":
            found["status"] = "CANCELLATION_REQUESTED"
            return self._json(202, {"data": found})
        found.update(status="CANCELLED", cancelled_at=_now().isoformat())
        return self._json(200, {"data": found})

    # ------------------------------------------------------------------ helpers

    def _by_tracking(self, tracking_number: str) -> dict:
        return next(r for r in self.returns.values() if r["tracking_number"] == tracking_number)

    def _status(self, parent_status: str) -> dict:
        history_id = next(self._history_ids)
        # A strictly later stamp per status, so the order of events is the order of statuses.
        stamp = _now() + timedelta(microseconds=history_id)
        return {"carrier_update_timestamp": stamp.isoformat(), "parcel_status_history_id": str(history_id),
                "parent_status": parent_status, "carrier_code": "", "carrier_message": parent_status}

    @staticmethod
    def _json(status: int, data) -> tuple[int, str, bytes]:
        public = {k: v for k, v in data.items() if not k.startswith("_")} if isinstance(data, dict) else data
        if isinstance(public, dict) and isinstance(public.get("data"), list):
            public["data"] = [{k: v for k, v in r.items() if not k.startswith("_")} for r in public["data"]]
        return status, "application/json", json.dumps(public).encode()

    # ------------------------------------------------------------------ mounting

    def mock(self):
        """A started-on-enter `responses.RequestsMock` routing the API base to this fake."""
        import requests
        import responses

        mock = responses.RequestsMock(assert_all_requests_are_fired=False)

        def callback(request):
            try:
                status, content_type, content, headers = self.handle_full(request.method, request.url,
                                                                          request.headers, request.body)
            except TimeoutError as exc:
                raise requests.ReadTimeout(str(exc))
            return status, {"Content-Type": content_type, **headers}, content

        for base in {self.base, self.base_v2}:
            pattern = re.compile(re.escape(base) + r"(/.*)?$")
            for method in ("GET", "POST", "PATCH"):
                mock.add_callback(method, pattern, callback=callback)
        return mock


def _sendcloud(request):
    from connector.carriers import registry
    from connector.carriers.sendcloud import SendcloudBackend
    from tests.carriers.harness import CarrierCase

    request.getfixturevalue("monkeypatch").setattr(registry, "_plugins", lambda: {"sendcloud": SendcloudBackend})
    fake = FakeSendcloud()
    mock = fake.mock()
    mock.start()
    request.addfinalizer(mock.stop)
    # A connection set up for all Sendcloud does: a labelless return option whose carrier takes pickups.
    backend = SendcloudBackend({**SETTINGS, "qr_dropoff": "yes", "pickups": "yes", "test_mode": True,
                                "data_dir": request.getfixturevalue("tmp_path")})
    return CarrierCase(backend, move=fake.move, labels_at_carrier=lambda: len(fake.returns),
                       timeout_after_create=fake.time_out_next_create, fail_next=fake.fail_next,
                       webhook=fake.webhook)


CASES = {"sendcloud": _sendcloud}
