"""Sendcloud: return labels through the Returns API v3, tracking by its parcel status webhooks.

Sendcloud (https://sendcloud.dev) is a shipping platform in front of many carriers; the merchant
picks the carrier by the shipping option code in the connection's settings. Calls:

- ``POST /returns`` makes a return parcel (from the shopper to the warehouse). It is asynchronous:
  the answer holds the return and parcel ids; the label exists once the carrier announced the
  parcel. So a label may come back without its PDF (capabilities.late_label) and `fetch_label`
  gets it later.
- ``GET /returns/{id}`` gives the return: tracking number, label URLs and the status history.
- ``GET /returns?from_date&to_date`` lists returns; it is how a retry finds the return an earlier,
  timed-out attempt made (the list has no filter by reference, so we page through a window).
- ``PATCH /returns/{id}/cancel`` only *requests* a cancellation (202); the parcel's status later
  says whether the carrier cancelled it. 409 "Return is not cancellable." once it moves.
- Label PDFs from the return's ``label.label_printer`` URL (``/parcels/{id}/documents/label``, A6).
- QR codes for labelless returns (setting "qr_dropoff"): the return is made with ``delivery_option``
  ``drop_off_labelless`` (a shipping option with the ``labelless`` functionality: "can be announced
  with a QR code instead of a traditional label") and the QR comes as PNG from the v2 parcel
  documents endpoint, ``GET /api/v2/parcels/{id}/documents/qr`` with ``Accept: image/png`` (v3's
  documents endpoint lists no ``qr`` type). Whether an option is labelless depends on the merchant's
  shipping option, so qr is set per connection.
- Pickups (setting "pickups"): the return parcel is made as above and the Pickups API v3 books the
  carrier's driver at the shopper's address on the chosen day: ``POST /pickups`` (address,
  ``time_slots`` in UTC, items, ``reference`` = the idempotency key, ``carrier_code``),
  ``GET /pickups`` (Link-header pages) and ``GET /pickups/{id}`` to find a booking whose answer was
  lost, ``POST /pickups/{id}/cancel`` (200 CANCELLED, 202 CANCELLATION_REQUESTED when Sendcloud
  Support cancels it, 409 when it cannot be cancelled). Not the Returns API's own
  ``delivery_option: "pickup"``: that books the pickup itself on "the next working day, or the
  following day", so the shopper's day could not be kept. Only some carriers take pickups through
  the API, so pickup is set per connection too. The shopper prints the label: Sendcloud documents
  no pickup where the driver brings it (method carrier_label is refused).

Auth: HTTP Basic with the integration's public and secret key. Webhooks (``parcel_status_changed``)
carry ``Sendcloud-Signature``: hex HMAC-SHA256 of the raw body, keyed with the integration's
Secret Key, or its Webhook Signature Key for integration types that have one.

Sendcloud has no sandbox endpoint: "test_mode" changes nothing here; test with a test integration
and a shipping option that costs nothing.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit
from zoneinfo import ZoneInfo

import pytz
import requests

from connector.returns.context import N_
from connector.returns.ports import (VOID_REQUESTED, VOIDED, Address, CarrierAuthError, CarrierCapabilities,
                                     CarrierNotSupported, CarrierRejected, CarrierRetryable, Label, Pickup,
                                     SettingField, ShipmentRequest, TrackingEvent, TrackingUpdate,
                                     WebhookRejected)


API_BASE = "https://panel.sendcloud.sc/api/v3"
TIMEOUT = (5, 30)  # connect, read (seconds)
SIGNATURE_HEADER = "Sendcloud-Signature"
JOURNAL_FOLDER = "sendcloud"
# How far back a retry looks for a return an earlier attempt may have made, when this machine's
# journal does not say when that attempt began.
LOOKBACK = timedelta(days=14)
LIST_PAGE_SIZE = 40  # the documented maximum
_DUPLICATE_REFERENCE = "external reference has already been used"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
YES = frozenset({"yes", "true", "1", "on"})
# Pickups: the window asked for on the day, local time at the shopper's address, unless the
# connection sets its own; a retry whose booking answer was lost pages through this many pages of
# Sendcloud's pickups (the list has no filter) before giving up.
PICKUP_WINDOW = "09:00-17:00"
_WINDOW = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")
PICKUP_PAGE_SIZE = 100  # the documented maximum
PICKUP_SEARCH_PAGES = 5
PICKUP_FAILED = frozenset({"FAILED"})
PICKUP_CANCEL_PENDING = frozenset({"CANCELLATION_REQUESTED"})

# ---------------------------------------------------------------------------- parcel statuses
# Sendcloud's parcel statuses -> ports.TRACKING_STATUSES, in one place.
# Ids and messages: GET /api/v2/parcels/statuses (https://sendcloud.dev/api/v2/parcel-statuses), as
# listed in white-nl/commerce-sendcloud OrderSyncStatus::STATUSES; parent status slugs: the
# `parent_parcel_status` filter of GET /api/v3/returns; names: https://sendcloud.dev/docs/tracking/
# tracking-statuses. A status mapped to None is not a tracking step (cancellations, failures to
# announce are reported otherwise); unknown ones are left out rather than guessed.
#           id      message                              parent slug                  ours
STATUS_TABLE: tuple[tuple[int, str, str, str | None], ...] = (
    (999,   "No label",                          "no-label",                  None),
    (1000,  "Ready to send",                     "ready-to-send",             "info_received"),
    (1001,  "Being announced",                   "announcing",                "info_received"),
    (1,     "Announced",                         "announced",                 "info_received"),
    (13,    "Announced: not collected",          "announced-uncollected",     "info_received"),
    (1002,  "Announcement failed",               "announcement-failed",       "exception"),
    (22,    "Shipment picked up by driver",      "picked-up-by-driver",       "in_transit"),
    (3,     "En route to sorting center",        "to-sorting",                "in_transit"),
    (4,     "Delivery delayed",                  "delayed",                   "in_transit"),
    (5,     "Sorted",                            "sorted",                    "in_transit"),
    (6,     "Not sorted",                        "unsorted",                  "in_transit"),
    (7,     "Being sorted",                      "sorting",                   "in_transit"),
    (91,    "Parcel en route",                   "shipment-on-route",         "in_transit"),
    (62989, "At Customs",                        "at-customs",                "in_transit"),
    (62990, "At sorting centre",                 "at-sorting-centre",         "in_transit"),
    (62993, "Delivery method changed",           "delivery-method-changed",   "in_transit"),
    (62994, "Delivery date changed",             "delivery-date-changed",     "in_transit"),
    (62995, "Delivery address changed",          "delivery-address-changed",  "in_transit"),
    (92,    "Driver en route",                   "driver-on-route",           "out_for_delivery"),
    (12,    "Awaiting customer pickup",          "awaiting-customer-pickup",  "out_for_delivery"),
    (11,    "Delivered",                         "delivered",                 "delivered"),
    (93,    "Shipment collected by customer",    "collected-by-customer",     "delivered"),
    (8,     "Delivery attempt failed",           "delivery-failed",           "exception"),
    (15,    "Error collecting",                  "collect-error",             "exception"),
    (80,    "Unable to deliver",                 "undeliverable",             "exception"),
    (62991, "Refused by recipient",              "refused-by-recipient",      "exception"),
    (62992, "Returned to sender",                "returned-to-sender",        "exception"),
    (62996, "Exception",                         "exception",                 "exception"),
    (62997, "Address invalid",                   "address-invalid",           "exception"),
    (1999,  "Cancellation requested",            "cancelling",                None),
    (2001,  "Submitting cancellation request",   "cancelling-upstream",       None),
    (1998,  "Cancelled upstream",                "cancelled-upstream",        None),
    (2000,  "Cancelled",                         "cancelled",                 None),
    (94,    "Parcel cancellation failed.",       "cancellation-failed",       None),
)
CANCELLED_IDS = frozenset({1998, 2000})
CANCEL_FAILED_IDS = frozenset({94})
_BY_ID = {row[0]: row[3] for row in STATUS_TABLE}
_BY_SLUG = {row[2]: row[3] for row in STATUS_TABLE}
_BY_SLUG.update({"ready-to-ship": "info_received",  # "Ready to Ship": the Returns API's own example
                 "delivery-forced": "delivered", "unsorted2": "in_transit"})
_CANCELLED_SLUGS = frozenset({"cancelled", "cancelled-upstream"})


def _slug(text: str) -> str:
    """"At sorting centre" -> "at-sorting-centre": names and slugs compare alike."""
    return "-".join("".join(c if c.isalnum() else " " for c in (text or "").lower()).split())


def status_for(status_id: int | None = None, text: str = "") -> str | None:
    """Our tracking status for a Sendcloud status id or parent status (name or slug); None when it
    is no tracking step or unknown."""
    if status_id is not None and status_id in _BY_ID:
        return _BY_ID[status_id]
    slug = _slug(text)
    if slug in _BY_SLUG:
        return _BY_SLUG[slug]
    by_message = {_slug(row[1]): row[3] for row in STATUS_TABLE}
    return by_message.get(slug)


# ---------------------------------------------------------------------------- refusals
# Sendcloud names the request field it refuses (`field`, a JSON pointer, or an error code); the
# shopper can fix these.
_FIELD_WORDS = (("postal_code", "postcode"), ("postcode", "postcode"), ("phone", "phone"),
                ("telephone", "phone"), ("email", "email"), ("country", "country"),
                ("weight", "weight"), ("dimension", "size"), ("length", "size"), ("width", "size"),
                ("height", "size"), ("address", "address"), ("house_number", "address"),
                ("city", "address"), ("street", "address"), ("name", "address"))


def shopper_field(*hints: str) -> str | None:
    """The SHOPPER_FIELDS value a Sendcloud field name, pointer or error code points to."""
    for hint in hints:
        hint = (hint or "").lower()
        if not hint or hint.startswith("to_address"):  # the warehouse: not the shopper's to fix
            continue
        for word, field in _FIELD_WORDS:
            if word in hint:
                return field
    return None


def _errors(payload: Any) -> list[dict[str, Any]]:
    """Sendcloud's error objects from any of its three documented shapes: {"errors": [{field,
    code, message}]}, JSON:API {"errors": [{code, detail, source: {pointer}}]}, {"error": {...}}."""
    if not isinstance(payload, dict):
        return []
    if isinstance(payload.get("errors"), list):
        return [e for e in payload["errors"] if isinstance(e, dict)]
    if isinstance(payload.get("error"), dict):
        return [payload["error"]]
    return []


def rejection(payload: Any, fallback: str) -> CarrierRejected:
    """A CarrierRejected with Sendcloud's own words and the shopper field they point to."""
    errors = _errors(payload)
    words, field = [], None
    for error in errors:
        pointer = (error.get("source") or {}).get("pointer", "") if isinstance(error.get("source"), dict) else ""
        name = error.get("field") or pointer.strip("/").replace("/", ".")
        text = str(error.get("message") or error.get("detail") or error.get("title") or error.get("code") or "")
        words.append(f"{name}: {text}" if name else text)
        field = field or shopper_field(str(name), str(error.get("code") or ""))
    return CarrierRejected("; ".join(w for w in words if w) or fallback, field=field)


# ---------------------------------------------------------------------------- the backend

class SendcloudBackend:
    """Sendcloud returns. The class capabilities say what a connection *can* be set up to do (so
    the admin offers Sendcloud for pickups); each instance narrows qr and pickup to what its
    settings turn on, and the portal asks the instance."""

    key = "sendcloud"
    name = "Sendcloud"
    capabilities = CarrierCapabilities(label=True, qr=True, pickup=True, carrier_brings_label=False,
                                       void=True, tracking=True, international=True,
                                       tracking_webhook=True, late_label=True)
    _YES_NO = (("no", N_("No")), ("yes", N_("Yes")))
    settings_fields = (
        SettingField("public_key", N_("Public key"), help=N_("Sendcloud > Settings > Integrations > Sendcloud API")),
        SettingField("secret_key", N_("Secret key"), secret=True),
        SettingField("shipping_option_code", N_("Return shipping option code"),
                     help=N_("A return option from Sendcloud's shipping options, e.g. dpd:return/return")),
        SettingField("webhook_secret", N_("Webhook signature key"), secret=True, required=False,
                     help=N_("Only for integrations that have one; otherwise the secret key signs webhooks")),
        SettingField("brand_id", N_("Brand id"), required=False, help=N_("Sendcloud brand the returns belong to")),
        SettingField("qr_dropoff", N_("Labelless returns (QR code)"), required=False, choices=_YES_NO,
                     help=N_("Yes only when the return shipping option above is a labelless one (Sendcloud "
                          "shipping functionality 'labelless': announced with a QR code instead of a "
                          "label). Shoppers then show a QR code at the drop-off point.")),
        SettingField("pickups", N_("Pickups at the shopper's address"), required=False, choices=_YES_NO,
                     help=N_("Yes only when the shipping option's carrier is one Sendcloud's Pickups API "
                          "books (sendcloud.dev, Pickups API: which carriers support pickups via the "
                          "API). The driver collects the parcel on the day the shopper chose; the "
                          "shopper prints the label.")),
        SettingField("pickup_carrier_code", N_("Pickup carrier code"), required=False,
                     help=N_("Sendcloud's carrier code for pickups, e.g. dhl_express. Default: the carrier "
                          "of the shipping option code (the part before ':')")),
        SettingField("pickup_window", N_("Pickup time window"), required=False,
                     help=N_("HH:MM-HH:MM, local time at the shopper's address. Default 09:00-17:00")),
    )

    def __init__(self, settings: dict | None = None):
        settings = dict(settings or {})
        for field in ("public_key", "secret_key", "shipping_option_code"):
            if not settings.get(field):
                raise ValueError(f"Sendcloud setting {field!r} is missing")
        self.shipping_option_code = str(settings["shipping_option_code"])
        self.webhook_secret = str(settings.get("webhook_secret") or settings["secret_key"])
        brand = settings.get("brand_id")
        if brand not in (None, "") and not str(brand).isdigit():
            raise ValueError("Sendcloud setting 'brand_id' must be a number")
        self.brand_id = int(brand) if brand not in (None, "") else None
        # Not a merchant setting (no SettingField): tests and the bench point it at a local stub. The
        # credentials only ever go to this host.
        self.api_base = str(settings.get("api_base") or API_BASE).rstrip("/")
        # The QR document is only on the v2 documents endpoint, same host.
        self.api_base_v2 = re.sub(r"/v3$", "/v2", self.api_base)
        self.qr_dropoff = _yes(settings.get("qr_dropoff"))
        self.pickups = _yes(settings.get("pickups"))
        self.pickup_carrier_code = str(settings.get("pickup_carrier_code")
                                       or self.shipping_option_code.split(":", 1)[0])
        window = str(settings.get("pickup_window") or PICKUP_WINDOW).replace(" ", "")
        if not _WINDOW.match(window) or window[6:] <= window[:5]:
            raise ValueError("Sendcloud setting 'pickup_window' must be HH:MM-HH:MM, the end after the start")
        self.pickup_window = window
        self.capabilities = replace(type(self).capabilities, qr=self.qr_dropoff, pickup=self.pickups)
        data_dir = Path(settings.get("data_dir") or os.environ.get("DATA_DIR") or "var")
        self.journal = Journal(data_dir / JOURNAL_FOLDER)
        self.session = requests.Session()
        self.session.auth = (str(settings["public_key"]), str(settings["secret_key"]))
        self.session.headers.update({"Accept": "application/json"})

    # ------------------------------------------------------------------ the port

    def create_return_label(self, shipment: ShipmentRequest) -> Label:
        """Make the return parcel once per idempotency key and return its label.

        The key goes to Sendcloud as the return's `external_reference` (Sendcloud refuses a second
        return with it) and `order_number` (which the list shows, so we can find it). A repeat finds
        the return in this machine's journal; a retry after an attempt whose outcome is unknown (a
        timeout) or a refusal as duplicate looks it up in Sendcloud's list before making another.
        """
        record = self.journal.get(shipment.idempotency_key)
        if record and record.get("return_id"):
            return self._label_of(record)
        if record:  # an earlier attempt began and we never heard back
            found = self._find_return(shipment.idempotency_key, since=_parse_time(record["started_at"]) - timedelta(days=1))
            if found:
                return self._label_of(self._remember(shipment.idempotency_key, found), found)
        started = _utcnow()
        self.journal.put(shipment.idempotency_key, {"started_at": started.isoformat()})
        try:
            created = self._call("POST", "/returns", json=self._return_body(shipment))
        except CarrierRejected as exc:
            if _DUPLICATE_REFERENCE not in str(exc).lower():
                raise
            found = self._find_return(shipment.idempotency_key, since=started - LOOKBACK)
            if not found:
                raise
            return self._label_of(self._remember(shipment.idempotency_key, found), found)
        record = {"started_at": started.isoformat(), "return_id": int(created["return_id"]),
                  "parcel_id": created.get("parcel_id")}
        self.journal.put(shipment.idempotency_key, record)
        self.journal.note_return(record["return_id"], record["parcel_id"])
        return self._label_of(record)

    def fetch_label(self, carrier_ref: str, tracking_number: str | None = None) -> Label | None:
        """The label of return `carrier_ref` once Sendcloud has it; None while it is being announced."""
        return_id = int(carrier_ref)
        label = self._label_of({"return_id": return_id, "parcel_id": self.journal.parcel_of(return_id)})
        return label if label.pdf is not None else None

    def schedule_pickup(self, shipment: ShipmentRequest, day: date) -> Pickup:
        """Make the return parcel (its label, as create_return_label) and book the carrier's driver
        at the shopper's address on `day`, in the connection's window, once per idempotency key.

        The key goes to Sendcloud as the pickup's `reference`. A repeat answers from the journal;
        a retry after a booking whose answer was lost looks for a pickup with that reference
        before booking another. Sendcloud answering with another day than `day` is refused (and
        that booking cancelled): the shopper was promised `day`.
        """
        if not self.capabilities.pickup:
            raise CarrierNotSupported("this Sendcloud connection books no pickups (setting 'pickups')")
        if shipment.method != "pickup":
            raise CarrierNotSupported("Sendcloud documents no pickup where the driver brings the label")
        zone = _zone_of(shipment.sender.country)
        if day < datetime.now(zone).date():
            raise CarrierRejected(f"the pickup day {day.isoformat()} has passed")
        label = self.create_return_label(shipment)
        key = shipment.idempotency_key
        booking = (self.journal.get(key) or {}).get("pickup") or {}
        if booking.get("id"):
            return _pickup(booking, label)
        if booking.get("started_at"):  # an earlier booking began and we never heard back
            found = self._find_pickup(key, since=_parse_time(booking["started_at"]) - timedelta(days=1))
            if found:
                return self._booked(shipment, day, zone, found, label)
        self._note_booking(key, {"started_at": _utcnow().isoformat()})
        created = self._call("POST", "/pickups", json=self._pickup_body(shipment, day, zone, label))
        return self._booked(shipment, day, zone, created.get("data") or created, label)

    def cancel_pickup(self, carrier_ref: str) -> str | None:
        """Cancel pickup `carrier_ref` (Sendcloud's pickup id). VOIDED when the carrier cancelled
        it during the call, VOID_REQUESTED when Sendcloud Support cancels it later (202); the
        return parcel and its label stay. CarrierRejected once it cannot be cancelled (409: the
        pickup time started, the carrier's deadline passed, or the carrier takes no cancellations)."""
        if not self.capabilities.pickup:
            raise CarrierNotSupported("this Sendcloud connection books no pickups (setting 'pickups')")
        if not str(carrier_ref).isdigit():
            raise CarrierRejected(f"{carrier_ref!r} is not a Sendcloud pickup id")
        response = self._send("POST", f"/pickups/{int(carrier_ref)}/cancel", accept=(409,))
        answer = _json(response)
        status = str(((answer.get("data") if isinstance(answer, dict) else None) or {}).get("status") or "").upper()
        if response.status_code == 409:
            raise rejection(answer, f"Sendcloud could not cancel pickup {carrier_ref}"
                                    + (f" (status {status})" if status else ""))
        if response.status_code == 202 or status in PICKUP_CANCEL_PENDING:
            return VOID_REQUESTED
        return VOIDED

    def void_label(self, tracking_number: str, carrier_ref: str | None = None) -> str | None:
        """Ask Sendcloud to cancel the return. It confirms later (the parcel's status becomes
        Cancelled), so the answer is VOID_REQUESTED; a parcel on its way is refused (409)."""
        return_id = self._return_id(tracking_number, carrier_ref)
        self._call("PATCH", f"/returns/{return_id}/cancel")
        return VOID_REQUESTED

    def void_status(self, tracking_number: str, carrier_ref: str | None = None) -> bool | None:
        """After void_label: True once the return's latest status is Cancelled (or cancelled
        upstream), False when it says the cancellation failed, None while Sendcloud works on it."""
        found = self._call("GET", f"/returns/{self._return_id(tracking_number, carrier_ref)}")
        history = found.get("status_history") or []
        latest = _slug(str(history[-1].get("parent_status") or "")) if history else ""
        if latest in _CANCELLED_SLUGS:
            return True
        return False if latest == "cancellation-failed" else None

    def track(self, tracking_number: str, carrier_ref: str | None = None) -> list[TrackingEvent]:
        """The return's status history as tracking events, oldest first."""
        found = self._call("GET", f"/returns/{self._return_id(tracking_number, carrier_ref)}")
        return history_events(found.get("status_history") or [])

    def check_credentials(self) -> None:
        """One cheap authenticated call: a page of one return from the last day."""
        now = _utcnow()
        self._call("GET", "/returns", params={"from_date": _sc_time(now - timedelta(days=1)),
                                              "to_date": _sc_time(now), "page_size": 1})

    def parse_webhook(self, headers: dict[str, str], body: bytes) -> list[TrackingUpdate]:
        """A `parcel_status_changed` delivery as a TrackingUpdate; other actions give [].

        Raises WebhookRejected when the Sendcloud-Signature header is missing or is not the hex
        HMAC-SHA256 of the raw body under our secret (compared in constant time), or the body is
        not JSON.
        """
        signature = next((v for k, v in headers.items() if k.lower() == SIGNATURE_HEADER.lower()), None)
        if not signature:
            raise WebhookRejected(f"{SIGNATURE_HEADER} header missing")
        expected = hmac.new(self.webhook_secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature.strip().lower()):
            raise WebhookRejected(f"{SIGNATURE_HEADER} does not match the body")
        try:
            payload = json.loads(body)
        except ValueError as exc:
            raise WebhookRejected(f"webhook body is not JSON: {exc}") from None
        if not isinstance(payload, dict) or payload.get("action") != "parcel_status_changed":
            return []
        parcel = payload.get("parcel") or {}
        status = parcel.get("status") or {}
        status_id = status.get("id") if isinstance(status.get("id"), int) else None
        tracking_number = parcel.get("tracking_number") or None
        ours = status_for(status_id, str(status.get("message") or ""))
        at = _from_epoch(payload.get("carrier_status_change_timestamp") or payload.get("timestamp"))
        events = (TrackingEvent(at=at, status=ours, description=str(status.get("message") or "")),) if ours else ()
        cancelled = True if status_id in CANCELLED_IDS else False if status_id in CANCEL_FAILED_IDS else None
        record = self.journal.by_tracking(tracking_number) if tracking_number else None
        carrier_ref = str(record["return_id"]) if record and record.get("return_id") else None
        return [TrackingUpdate(tracking_number=tracking_number, carrier_ref=carrier_ref, events=events,
                               cancelled=cancelled)]

    # ------------------------------------------------------------------ requests

    def _url(self, path_or_url: str) -> str:
        return path_or_url if "://" in path_or_url else self.api_base + path_or_url

    def _own(self, url: str) -> bool:
        """Whether `url` is on the API's host: our credentials go nowhere else."""
        mine, theirs = urlsplit(self.api_base), urlsplit(url)
        return (mine.scheme, mine.netloc) == (theirs.scheme, theirs.netloc)

    def _send(self, method: str, path_or_url: str, *, accept: tuple[int, ...] = (),
              **kwargs) -> requests.Response:
        """One HTTP call, its failures as carrier errors (never with the credentials in them);
        4xx statuses in `accept` come back as answers for the caller to read."""
        url = self._url(path_or_url)
        try:
            response = self.session.request(method, url, timeout=TIMEOUT, **kwargs)
        except requests.Timeout:
            raise CarrierRetryable(f"Sendcloud did not answer {method} {urlsplit(url).path} in time") from None
        except requests.RequestException as exc:
            raise CarrierRetryable(f"Sendcloud unreachable ({type(exc).__name__}) for {method} {urlsplit(url).path}") from None
        status = response.status_code
        if status == 429 or status >= 500:
            raise CarrierRetryable(f"Sendcloud answered {status} to {method} {urlsplit(url).path}")
        if status in (401, 403):
            raise CarrierAuthError(f"Sendcloud refused the credentials ({status})")
        if status in accept:
            return response
        if status == 404:
            raise CarrierRejected(f"Sendcloud knows no {urlsplit(url).path}")
        if status >= 400:
            raise rejection(_json(response), f"Sendcloud refused {method} {urlsplit(url).path} ({status})")
        return response

    def _call(self, method: str, path_or_url: str, **kwargs) -> dict[str, Any]:
        response = self._send(method, path_or_url, **kwargs)
        return _json(response) if response.content else {}

    # ------------------------------------------------------------------ returns

    def _return_body(self, shipment: ShipmentRequest) -> dict[str, Any]:
        """The Create-a-return request for `shipment`: shopper -> warehouse, dropped off."""
        body: dict[str, Any] = {
            "from_address": _address(shipment.sender),
            "to_address": _address(shipment.recipient),
            "ship_with": {"type": "shipping_option_code", "shipping_option_code": self.shipping_option_code},
            "weight": {"value": shipment.weight_grams, "unit": "g"},
            "collo_count": 1,
            "parcel_items": [_item(item, shipment.currency) for item in shipment.items],
            "send_tracking_emails": False,
            "order_number": shipment.idempotency_key,
            "external_reference": shipment.idempotency_key,
            "total_order_value": {"value": float(sum((i.value * i.quantity for i in shipment.items), Decimal(0))),
                                  "currency": shipment.currency},
        }
        option = self._delivery_option(shipment)
        if option:
            body["delivery_option"] = option
        if self.brand_id is not None:
            body["brand_id"] = self.brand_id
        if shipment.customs is not None:
            customs = shipment.customs
            body["parcel_items"] = [{
                "description": c.description, "quantity": c.quantity,
                "weight": {"value": c.weight_grams, "unit": "g"},
                "price": {"value": float(c.value), "currency": customs.currency},
                **({"hs_code": c.hs_code} if c.hs_code else {}),
                **({"origin_country": c.origin_country.upper()} if c.origin_country else {}),
                **({"sku": c.sku} if c.sku else {}),
            } for c in customs.items]
            body["customs_invoice_nr"] = customs.invoice_number
            body["customs_shipment_type"] = 4  # "Returned Goods"
            body["customs_information"] = {"invoice_number": customs.invoice_number,
                                           "export_reason": customs.contents_type,  # "returned_goods"
                                           "general_notes": customs.reason}
            body["total_order_value"] = {"value": float(sum((c.value for c in customs.items), Decimal(0))),
                                         "currency": customs.currency}
        return body

    def _delivery_option(self, shipment: ShipmentRequest) -> str | None:
        """How the shopper hands the parcel over. None for a pickup: we book the driver through
        the Pickups API on the shopper's day; "pickup" here would have Sendcloud book one of its
        own, on a day of its choosing, for carriers with pickup returns."""
        if shipment.method == "pickup":
            return None
        return "drop_off_labelless" if self.qr_dropoff else "drop_off_point"

    def _label_of(self, record: dict[str, Any], found: dict[str, Any] | None = None) -> Label:
        """The Label of a known return: its PDF when Sendcloud has announced it, else pdf=None."""
        return_id = record["return_id"]
        found = found if found is not None else self._call("GET", f"/returns/{return_id}")
        tracking_number = found.get("tracking_number") or ""
        if tracking_number:  # void_label and webhooks know a return by its tracking number
            self.journal.note_tracking(tracking_number, return_id)
        url = _label_url(found)
        parcel_id = record.get("parcel_id") or self.journal.parcel_of(return_id) or _parcel_in(url)
        pdf = self._download_pdf(url, parcel_id) if url else None
        qr = self._qr_png(parcel_id) if pdf is not None and self._labelless(found) else None
        return Label(tracking_number=tracking_number, pdf=pdf, qr_png=qr, carrier_ref=str(return_id),
                     tracking_url=found.get("tracking_url") or None)

    def _labelless(self, found: dict[str, Any]) -> bool:
        """Whether this return was made for a QR drop-off (its delivery option says so; a return
        that does not echo it counts as the connection's setting)."""
        return self.qr_dropoff and found.get("delivery_option", "drop_off_labelless") == "drop_off_labelless"

    def _qr_png(self, parcel_id: int | None) -> bytes | None:
        """The parcel's drop-off QR code as PNG; None when Sendcloud has none for it (404: the
        carrier announced it with a label after all) or answers with something not a PNG."""
        if not parcel_id:
            return None
        response = self._send("GET", f"{self.api_base_v2}/parcels/{parcel_id}/documents/qr",
                              headers={"Accept": "image/png"}, accept=(404,))
        if response.status_code == 404 or not response.content.startswith(PNG_MAGIC):
            return None
        return response.content

    def _download_pdf(self, url: str, parcel_id: int | None) -> bytes:
        if not self._own(url):
            if not parcel_id:
                raise CarrierRejected(f"Sendcloud gave a label URL off its API host: {urlsplit(url).netloc}")
            url = f"{self.api_base}/parcels/{parcel_id}/documents/label"
        response = self._send("GET", url, headers={"Accept": "application/pdf"})
        if not response.content.startswith(b"%PDF"):
            raise CarrierRetryable("Sendcloud's label document is not a PDF yet")
        return response.content

    def _remember(self, key: str, found: dict[str, Any]) -> dict[str, Any]:
        record = {"started_at": found.get("created_at") or _utcnow().isoformat(), "return_id": int(found["id"])}
        self.journal.put(key, record)
        return record

    def _find_return(self, key: str, since: datetime) -> dict[str, Any] | None:
        """The return made for `key` since `since`, by paging through Sendcloud's list."""
        params: dict[str, Any] | None = {"from_date": _sc_time(since), "to_date": _sc_time(_utcnow() + timedelta(days=1)),
                                         "page_size": LIST_PAGE_SIZE}
        url = "/returns"
        while url:
            page = self._call("GET", url, params=params)
            for found in page.get("data") or []:
                if key in (found.get("order_number"), found.get("external_reference")) and found.get("id"):
                    return found
            url, params = page.get("next") or "", None
            if url and not self._own(urljoin(self.api_base + "/", url)):
                break  # never follow a cursor off the API host
        return None

    def _return_id(self, tracking_number: str, carrier_ref: str | None) -> int:
        if carrier_ref and str(carrier_ref).isdigit():
            return int(carrier_ref)
        record = self.journal.by_tracking(tracking_number)
        if record and record.get("return_id"):
            return int(record["return_id"])
        raise CarrierRejected(f"no Sendcloud return is known for tracking number {tracking_number!r}")

    # ------------------------------------------------------------------ pickups

    def _pickup_body(self, shipment: ShipmentRequest, day: date, zone: ZoneInfo, label: Label) -> dict[str, Any]:
        """The Create-a-pickup request: one parcel at the shopper's address, in the window on `day`."""
        start, end = (datetime.combine(day, datetime.strptime(t, "%H:%M").time(), zone)
                      for t in self.pickup_window.split("-"))
        address = {k: v for k, v in _address(shipment.sender).items() if k != "state_province_code"}
        note = f"Return {shipment.reference}" + (f", parcel {label.tracking_number}" if label.tracking_number else "")
        return {
            "address": address,
            "time_slots": [{"start_at": _utc_z(start), "end_at": _utc_z(end)}],
            "items": [{"quantity": 1, "container_type": "parcel",
                       "total_weight": {"value": f"{shipment.weight_grams / 1000:.2f}", "unit": "kg"}}],
            "reference": shipment.idempotency_key,
            "special_instructions": note,
            "carrier_code": self.pickup_carrier_code,
        }

    def _booked(self, shipment: ShipmentRequest, day: date, zone: ZoneInfo, found: dict[str, Any],
                label: Label) -> Pickup:
        """Check Sendcloud's booking against the promise and keep it for repeats."""
        pickup_id = found.get("id")
        status = str(found.get("status") or "").upper()
        if not pickup_id or status in PICKUP_FAILED:
            raise CarrierRejected(f"Sendcloud could not book the pickup (status {status or 'unknown'})")
        slot = (found.get("time_slots") or [{}])[0]
        if not (slot.get("start_at") and slot.get("end_at")):
            raise CarrierRejected(f"Sendcloud booked pickup {pickup_id} without a time slot")
        start, end = (_parse_time(slot[k]).astimezone(zone) for k in ("start_at", "end_at"))
        if start.date() != day:
            self._cancel_quietly(pickup_id)
            raise CarrierRejected(f"Sendcloud booked the pickup for {start.date().isoformat()}, "
                                  f"not the promised {day.isoformat()}")
        booking = {"id": int(pickup_id), "day": day.isoformat(), "window": f"{start:%H:%M}-{end:%H:%M}"}
        self._note_booking(shipment.idempotency_key, booking)
        return _pickup(booking, label)

    def _note_booking(self, key: str, booking: dict[str, Any]) -> None:
        self.journal.put(key, {**(self.journal.get(key) or {}), "pickup": booking})

    def _cancel_quietly(self, pickup_id: Any) -> None:
        """Best effort: a booking on the wrong day is not left standing if Sendcloud lets us."""
        try:
            self._send("POST", f"/pickups/{int(pickup_id)}/cancel", accept=(409,))
        except (CarrierRetryable, CarrierRejected):
            pass

    def _find_pickup(self, key: str, since: datetime) -> dict[str, Any] | None:
        """The pickup booked with reference `key` since `since`. The list shows no reference, so
        each pickup of our carrier made since then is fetched and compared."""
        url: str | None = "/pickups"
        params: dict[str, Any] | None = {"page_size": PICKUP_PAGE_SIZE}
        for _ in range(PICKUP_SEARCH_PAGES):
            response = self._send("GET", url, params=params)
            for item in (_json(response).get("data") or []):
                created = item.get("created_at")
                if not item.get("id") or (created and _parse_time(created) < since):
                    continue
                if item.get("carrier_code") not in (None, self.pickup_carrier_code):
                    continue
                found = self._call("GET", f"/pickups/{int(item['id'])}").get("data") or {}
                if found.get("reference") == key:
                    return found
            url, params = (response.links.get("next") or {}).get("url"), None
            if not url or not self._own(urljoin(self.api_base + "/", url)):
                break  # no more pages; never follow a link off the API host
        return None


# ---------------------------------------------------------------------------- journal

class Journal:
    """Which Sendcloud return each idempotency key made, on this machine's disk: one JSON file per
    key (sha256 of it, so a key never names a path) and one per tracking number."""

    def __init__(self, folder: Path):
        self.folder = folder

    def _path(self, kind: str, name: str) -> Path:
        return self.folder / kind / (hashlib.sha256(name.encode("utf-8")).hexdigest() + ".json")

    def _read(self, path: Path) -> dict[str, Any] | None:
        try:
            return json.loads(path.read_text("utf-8"))
        except FileNotFoundError:
            return None

    def _write(self, path: Path, data: dict[str, Any]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data), "utf-8")
        os.replace(tmp, path)  # readers never see half a file

    def get(self, key: str) -> dict[str, Any] | None:
        return self._read(self._path("keys", key))

    def put(self, key: str, record: dict[str, Any]) -> None:
        self._write(self._path("keys", key), record)

    def note_tracking(self, tracking_number: str, return_id: int) -> None:
        self._write(self._path("tracking", tracking_number), {"return_id": return_id})

    def note_return(self, return_id: int, parcel_id: int | None) -> None:
        if parcel_id:
            self._write(self._path("returns", str(return_id)), {"parcel_id": parcel_id})

    def parcel_of(self, return_id: int) -> int | None:
        found = self._read(self._path("returns", str(return_id)))
        return found["parcel_id"] if found else None

    def by_tracking(self, tracking_number: str) -> dict[str, Any] | None:
        return self._read(self._path("tracking", tracking_number)) if tracking_number else None


# ---------------------------------------------------------------------------- mapping

def _address(address: Address) -> dict[str, str]:
    out = {"name": address.name, "address_line_1": address.line1, "postal_code": address.postcode,
           "city": address.city, "country_code": address.country.upper()}
    optional = {"address_line_2": address.line2, "state_province_code": address.region,
                "email": address.email, "phone_number": address.phone}
    out.update({k: v for k, v in optional.items() if v})
    return out


def _item(item, currency: str) -> dict[str, Any]:
    out = {"description": item.description, "quantity": item.quantity,
           "price": {"value": float(item.value), "currency": currency}}
    if item.sku:
        out["sku"] = item.sku
    return out


def _label_url(found: dict[str, Any]) -> str | None:
    """The A6 label URL of a return; None while the parcel is not announced."""
    label = found.get("label") or {}
    return label.get("label_printer") or found.get("label_url") or None


def history_events(history: list[dict[str, Any]]) -> list[TrackingEvent]:
    """Sendcloud's status_history as our events, oldest first; non-tracking statuses left out."""
    events = []
    for entry in history:
        ours = status_for(None, str(entry.get("parent_status") or ""))
        stamp = entry.get("carrier_update_timestamp")
        if ours is None or not stamp:
            continue
        events.append(TrackingEvent(at=_parse_time(stamp), status=ours,
                                    description=str(entry.get("carrier_message") or entry.get("parent_status") or "")))
    return sorted(events, key=lambda e: e.at)


def _yes(value: Any) -> bool:
    return value is True or str(value or "").strip().lower() in YES


def _parcel_in(url: str | None) -> int | None:
    """The parcel id in a label URL (``.../parcels/{id}/documents/label``)."""
    match = re.search(r"/parcels/(\d+)/documents/", url or "")
    return int(match.group(1)) if match else None


def _zone_of(country: str) -> ZoneInfo:
    """The main time zone of a country (the tz database's zone.tab, main zone first, through
    pytz); Europe/Berlin where it knows none."""
    try:
        return ZoneInfo(pytz.country_timezones[country.upper()][0])
    except (KeyError, IndexError):
        return ZoneInfo("Europe/Berlin")


def _utc_z(at: datetime) -> str:
    """'2022-04-06T12:00:00Z', the Pickups API's format."""
    return at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _pickup(booking: dict[str, Any], label: Label) -> Pickup:
    return Pickup(day=date.fromisoformat(booking["day"]), window=booking["window"], carrier_ref=str(booking["id"]),
                  tracking_number=label.tracking_number, label=label)


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _parse_time(text: str) -> datetime:
    at = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    return at if at.tzinfo else at.replace(tzinfo=timezone.utc)  # Sendcloud's naive times are UTC


def _from_epoch(value: Any) -> datetime:
    """Sendcloud's webhook timestamps; milliseconds when too large to be seconds."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return _utcnow()
    return datetime.fromtimestamp(number / 1000 if number > 1e11 else number, timezone.utc)


def _sc_time(at: datetime) -> str:
    """The list filter's format, '2022-04-06 00:00:00' (UTC)."""
    return at.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _json(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return {}
