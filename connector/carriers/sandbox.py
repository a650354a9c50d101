"""A carrier that lives on disk, for demos and tests: real PDF labels, QR codes, pickups, tracking.

Its carrier-side state (what a real carrier would keep in its own systems) is one JSON file per
parcel in ``<data_dir>/sandbox-carrier/<tracking number>.json``. Tracking numbers derive from the
shipment's idempotency key, so a retried request finds the parcel it made before and returns the
same label instead of announcing a second parcel.

Tracking moves only when someone calls `advance` (the `connector sandbox advance` command, or a
test): info_received -> in_transit -> out_for_delivery -> delivered.

Settings: ``data_dir`` (default: $DATA_DIR, else "var"); ``fail``: "retryable" | "rejected" |
"auth" makes label and pickup requests (and check_credentials, for "auth") raise that error, so
the callers' error handling can be tested without a real carrier.
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import threading
import unicodedata
from contextlib import contextmanager
from dataclasses import asdict
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import segno
from fpdf import FPDF

from connector.returns.context import N_
from connector.returns.ports import (Address, CarrierAuthError, CarrierCapabilities,
                                     CarrierRejected, CarrierRetryable, Label, Pickup,
                                     ShipmentRequest, TrackingEvent)

try:  # serialises the worker and the CLI on one state folder; absent on Windows
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

STATE_FOLDER = "sandbox-carrier"
PICKUP_WINDOW = "09:00-18:00"
SEQUENCE = ("info_received", "in_transit", "out_for_delivery", "delivered")
FAIL_MODES = ("retryable", "rejected", "auth")

_TRACKING_RE = re.compile(r"SBX\d{10}")
_PICKUP_PREFIX = "PU-"
_LOCK = threading.Lock()


def tracking_number_for(idempotency_key: str) -> str:
    """"SBX" + 10 digits from sha256 of the shipment's idempotency key: same shipment, same parcel."""
    digest = hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()
    return f"SBX{int(digest, 16) % 10**10:010d}"


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class SandboxBackend:
    key = "sandbox"
    name = "Sandbox carrier"
    pickup_window = PICKUP_WINDOW
    capabilities = CarrierCapabilities(label=True, qr=True, pickup=True, carrier_brings_label=True,
                                       void=True, tracking=True, international=True)

    def __init__(self, settings: dict | None = None):
        settings = dict(settings or {})
        self.data_dir = Path(settings.get("data_dir") or os.environ.get("DATA_DIR") or "var")
        self.fail = settings.get("fail") or None
        if self.fail is not None and self.fail not in FAIL_MODES:
            raise ValueError(f"sandbox setting fail={self.fail!r}: use one of {', '.join(FAIL_MODES)}")

    @property
    def state_dir(self) -> Path:
        return self.data_dir / STATE_FOLDER

    # ------------------------------------------------------------------ the port

    def create_return_label(self, shipment: ShipmentRequest) -> Label:
        """Announce the parcel (once per idempotency key) and return its label."""
        self._fail_if_asked()
        with self._locked():
            state = self._open_parcel(shipment)
        return _label(state)

    def schedule_pickup(self, shipment: ShipmentRequest, day: date) -> Pickup:
        """Book a pickup on `day` for the shipment's parcel (announced here if it is new).

        The same request again returns the same booking; another day for a booked parcel is
        rejected (cancel first). For method "carrier_label" the driver brings the label, so the
        Pickup carries none.
        """
        self._fail_if_asked()
        if day < _utcnow().date():
            raise CarrierRejected(f"pickup day {day.isoformat()} is in the past",
                                  shopper_message=N_("Please choose a pickup day from today on."), field="pickup_date")
        with self._locked():
            state = self._open_parcel(shipment)
            booked = state.get("pickup")
            if booked and booked["day"] != day.isoformat():
                raise CarrierRejected(f"parcel {state['tracking_number']} already has a pickup on {booked['day']}")
            if not booked:
                state["pickup"] = {"day": day.isoformat(), "window": PICKUP_WINDOW,
                                   "carrier_ref": _PICKUP_PREFIX + state["tracking_number"]}
                self._save(state)
        pickup = state["pickup"]
        return Pickup(day=date.fromisoformat(pickup["day"]), window=pickup["window"],
                      carrier_ref=pickup["carrier_ref"], tracking_number=state["tracking_number"],
                      label=None if shipment.method == "carrier_label" else _label(state))

    def cancel_pickup(self, carrier_ref: str) -> str | None:
        """Cancel the pickup and the parcel with it; refused once the parcel moves."""
        tracking_number = carrier_ref[len(_PICKUP_PREFIX):] if carrier_ref.startswith(_PICKUP_PREFIX) else ""
        with self._locked():
            state = self._load(tracking_number, what=f"pickup {carrier_ref!r}")
            if not state.get("pickup"):
                raise CarrierRejected(f"no pickup is booked for parcel {tracking_number}")
            self._void(state)

    def void_label(self, tracking_number: str, carrier_ref: str | None = None) -> str | None:
        """Void the parcel's label (and any pickup); refused once the parcel moves."""
        with self._locked():
            self._void(self._load(tracking_number))

    def track(self, tracking_number: str, carrier_ref: str | None = None) -> list[TrackingEvent]:
        """The parcel's events so far, oldest first."""
        with self._locked():
            state = self._load(tracking_number)
        return [_event(e) for e in state["events"]]

    def check_credentials(self) -> None:
        if self.fail == "auth":
            raise CarrierAuthError("sandbox carrier: credentials refused (fail=auth setting)")

    # ------------------------------------------------------------------ sandbox only

    def advance(self, tracking_number: str, now: datetime | None = None) -> TrackingEvent | None:
        """Append the parcel's next tracking event and return it; None when already delivered."""
        now = now or _utcnow()
        if now.tzinfo is None:
            raise ValueError("`now` must be timezone-aware")
        with self._locked():
            state = self._load(tracking_number)
            if state.get("voided_at"):
                raise CarrierRejected(f"parcel {tracking_number} was voided and will not move")
            position = SEQUENCE.index(state["events"][-1]["status"])
            if position == len(SEQUENCE) - 1:
                return None
            status = SEQUENCE[position + 1]
            record = _event_record(status, now, state)
            state["events"].append(record)
            self._save(state)
        return _event(record)

    # ------------------------------------------------------------------ state on disk

    def _fail_if_asked(self) -> None:
        if self.fail == "retryable":
            raise CarrierRetryable("sandbox carrier: service unavailable (fail=retryable setting)")
        if self.fail == "rejected":
            raise CarrierRejected("sandbox carrier: parcel refused (fail=rejected setting)", field="address")
        if self.fail == "auth":
            raise CarrierAuthError("sandbox carrier: credentials refused (fail=auth setting)")

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with _LOCK, open(self.state_dir / ".lock", "a") as handle:
            if fcntl is not None:
                fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes
            yield

    def _path(self, tracking_number: str) -> Path:
        return self.state_dir / f"{tracking_number}.json"

    def _load(self, tracking_number: str, what: str | None = None) -> dict[str, Any]:
        # The pattern check also keeps a caller's string from naming a file outside the folder.
        path = self._path(tracking_number) if _TRACKING_RE.fullmatch(tracking_number or "") else None
        if path is None or not path.exists():
            raise CarrierRejected(f"sandbox carrier knows no {what or f'tracking number {tracking_number!r}'}")
        return json.loads(path.read_text("utf-8"))

    def _save(self, state: dict[str, Any]) -> None:
        path = self._path(state["tracking_number"])
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(state, indent=1), "utf-8")
        os.replace(tmp, path)  # readers never see half a file

    def _open_parcel(self, shipment: ShipmentRequest) -> dict[str, Any]:
        """The parcel for this shipment: the stored one on a retry, else a new one with its label."""
        tracking_number = tracking_number_for(shipment.idempotency_key)
        path = self._path(tracking_number)
        if path.exists():
            state = json.loads(path.read_text("utf-8"))
            if state["idempotency_key"] != shipment.idempotency_key:
                raise CarrierRejected(f"tracking number {tracking_number} belongs to another shipment")
            if state.get("voided_at"):
                raise CarrierRejected(f"parcel {tracking_number} was voided; a new shipment needs a new key")
            return state
        now = _utcnow()
        state: dict[str, Any] = {
            "tracking_number": tracking_number,
            "idempotency_key": shipment.idempotency_key,
            "reference": shipment.reference,
            "method": shipment.method,
            "sender": asdict(shipment.sender),
            "recipient": asdict(shipment.recipient),
            "weight_grams": shipment.weight_grams,
            "created_at": now.isoformat(),
            "pickup": None,
            "voided_at": None,
            "events": [],
        }
        state["events"].append(_event_record("info_received", now, state))
        qr_png = _qr_png(tracking_number)
        state["qr_png"] = base64.b64encode(qr_png).decode("ascii")
        state["label_pdf"] = base64.b64encode(render_label(shipment, tracking_number, qr_png, now)).decode("ascii")
        self._save(state)
        return state

    def _void(self, state: dict[str, Any]) -> None:
        if any(e["status"] != "info_received" for e in state["events"]):
            raise CarrierRejected("parcel already moving",
                                  shopper_message=N_("The parcel is already on its way and can no longer be cancelled."))
        if not state.get("voided_at"):
            state["voided_at"] = _utcnow().isoformat()
            self._save(state)


# ---------------------------------------------------------------------- events

_DESCRIPTIONS = {
    "info_received": "Label created; the parcel is announced",
    "in_transit": "Parcel handed to the carrier",
    "out_for_delivery": "Out for delivery to the returns warehouse",
    "delivered": "Delivered to the returns warehouse",
}


def _event_record(status: str, at: datetime, state: dict[str, Any]) -> dict[str, str]:
    side = "sender" if status in ("info_received", "in_transit") else "recipient"
    return {"at": at.astimezone(timezone.utc).isoformat(), "status": status,
            "description": _DESCRIPTIONS[status], "location": state[side].get("city", "")}


def _event(record: dict[str, str]) -> TrackingEvent:
    return TrackingEvent(at=datetime.fromisoformat(record["at"]), status=record["status"],
                         description=record["description"], location=record["location"])


def _label(state: dict[str, Any]) -> Label:
    return Label(tracking_number=state["tracking_number"],
                 pdf=base64.b64decode(state["label_pdf"]),
                 qr_png=base64.b64decode(state["qr_png"]),
                 carrier_ref=state["tracking_number"])


# ---------------------------------------------------------------------- label

def _qr_png(tracking_number: str) -> bytes:
    buffer = io.BytesIO()
    segno.make(tracking_number, error="m", micro=False).save(buffer, kind="png", scale=10, border=4)
    return buffer.getvalue()


# The core PDF fonts speak Latin-1 only; these letters do not decompose to one.
_LATIN1_FALLBACK = str.maketrans({"Ł": "L", "ł": "l", "Đ": "D", "đ": "d", "Œ": "OE", "œ": "oe",
                                  "€": "EUR", "–": "-", "—": "-", "‘": "'", "’": "'", "“": '"', "”": '"',
                                  "„": '"', "…": "..."})


def _latin1(text: str) -> str:
    """`text` as close as Latin-1 gets: accents kept where Latin-1 has them, else dropped."""
    out = []
    for char in (text or "").translate(_LATIN1_FALLBACK):
        if ord(char) < 256:
            out.append(char)
            continue
        base = "".join(c for c in unicodedata.normalize("NFKD", char) if ord(c) < 256 and not unicodedata.combining(c))
        out.append(base or "?")
    return "".join(out)


def _address_lines(address: Address) -> list[str]:
    lines = [address.name, address.line1, address.line2,
             f"{address.postcode} {address.city}".strip(), address.country.upper()]
    return [_latin1(line) for line in lines if line]


def render_label(shipment: ShipmentRequest, tracking_number: str, qr_png: bytes, created_at: datetime) -> bytes:
    """An A6 return label: sender, recipient, RMA reference, tracking number and its QR code."""
    pdf = FPDF(orientation="portrait", unit="mm", format=(105, 148))  # A6; fpdf2 has no name for it
    pdf.set_auto_page_break(False)
    pdf.set_margins(6, 6, 6)
    pdf.set_creation_date(created_at)
    pdf.set_title(f"Return label {shipment.reference} {tracking_number}")
    pdf.set_creator("Returns Connector sandbox carrier")
    pdf.add_page()
    width = pdf.w - 12  # 93 mm between the margins

    # Header band: who carries it and that it is a return.
    pdf.set_fill_color(0, 0, 0)
    pdf.rect(6, 6, width, 11, style="F")
    pdf.set_text_color(255, 255, 255)
    pdf.set_xy(8, 7.5)
    pdf.set_font("Helvetica", "B", 14)
    pdf.cell(55, 8, "SANDBOX CARRIER")
    pdf.set_xy(6, 7.5)
    pdf.cell(width - 2, 8, "RETURN", align="R")
    pdf.set_text_color(0, 0, 0)
    pdf.set_xy(6, 18.5)
    pdf.set_font("Helvetica", "", 6.5)
    pdf.cell(width, 3.5, "Test label from the sandbox carrier - not valid with a real carrier", align="C")

    # Sender: small, top left, as on any parcel label.
    pdf.set_xy(6, 24)
    pdf.set_font("Helvetica", "B", 7)
    pdf.cell(width, 3.5, "FROM", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 8)
    for line in _address_lines(shipment.sender):
        pdf.set_x(6)
        pdf.cell(width, 3.6, line, new_x="LMARGIN", new_y="NEXT")

    # Recipient: large and boxed, the part a sorter reads.
    top = 48
    pdf.set_line_width(0.6)
    pdf.rect(6, top, width, 33)
    pdf.set_xy(9, top + 2)
    pdf.set_font("Helvetica", "B", 7)
    pdf.cell(width - 6, 3.5, "TO", new_x="LMARGIN", new_y="NEXT")
    for index, line in enumerate(_address_lines(shipment.recipient)):
        pdf.set_x(9)
        pdf.set_font("Helvetica", "B" if index in (0, 3) else "", 11)
        pdf.cell(width - 6, 5.2, line, new_x="LMARGIN", new_y="NEXT")

    # Reference row: the RMA the warehouse books the parcel against.
    row = top + 36
    pdf.set_line_width(0.3)
    pdf.line(6, row - 1.5, 6 + width, row - 1.5)
    pdf.set_xy(6, row)
    pdf.set_font("Helvetica", "B", 7)
    pdf.cell(40, 3.5, "RETURN REFERENCE")
    pdf.cell(width - 40, 3.5, "WEIGHT / DATE", align="R", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(50, 8, _latin1(shipment.reference))
    pdf.set_font("Helvetica", "", 9)
    pdf.cell(width - 50, 8, f"{shipment.weight_grams / 1000:.1f} kg  {created_at:%Y-%m-%d}", align="R",
             new_x="LMARGIN", new_y="NEXT")
    pdf.line(6, row + 13, 6 + width, row + 13)

    # Tracking: QR on the left, the number in large print beside it.
    qr_top = row + 16
    pdf.image(io.BytesIO(qr_png), x=6, y=qr_top, w=36, h=36)
    pdf.set_xy(46, qr_top + 6)
    pdf.set_font("Helvetica", "B", 7)
    pdf.cell(width - 40, 3.5, "TRACKING NUMBER", new_x="LMARGIN", new_y="NEXT")
    pdf.set_xy(46, qr_top + 11)
    pdf.set_font("Courier", "B", 13)
    pdf.cell(width - 40, 7, tracking_number)
    pdf.set_xy(46, qr_top + 20)
    pdf.set_font("Helvetica", "", 7)
    method = {"pickup": "Pickup", "dropoff": "Drop-off", "carrier_label": "Pickup"}.get(shipment.method, shipment.method)
    pdf.multi_cell(width - 40, 3.5, _latin1(f"{method} return. Scan the code at the counter or show it to the driver."),
                   align="L")
    return bytes(pdf.output())
