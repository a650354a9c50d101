"""One backend for the carriers karrio speaks (https://karrio.io): DHL Parcel DE, UPS, GLS, DPD, ...

karrio is an optional extra (``pip install returns-connector[karrio]``) and is imported only when a
backend is built, so this module loads without it. The merchant picks the karrio carrier and
enters its karrio settings (karrio's ``<carrier>.Settings`` fields: username/password,
client_id/client_secret, account_number, ...) as one JSON object.

What karrio does and how this backend copes:

- Return labels go through ``karrio.Shipment.create`` with ``is_return=True``: karrio swaps the
  addresses (we give the outbound orientation, warehouse -> shopper) and calls the carrier's own
  returns operation (``create_return_shipment``: DHL's Returns API, UPS Print Return Label, ...).
- Capabilities are derived per carrier from what its karrio Mapper *and* Proxy really override
  (a method left to karrio's base class raises MethodNotSupportedError), plus the few facts the
  code cannot tell (see _CARRIER_FACTS).
- karrio calls have no timeout and never raise: each runs in a worker thread of a module-level
  pool and is waited for up to a deadline (setting ``deadline_seconds``, default 30); karrio's
  ``messages`` are turned into the port's errors (_raise_for).
- No duplicate labels: karrio cannot look a parcel up by our reference. A journal in
  ``<data_dir>/karrio-labels/<sha256 of idempotency_key>.json`` is written by the worker thread when
  the carrier returns a label - also after the caller's deadline passed - and read before any new
  call; a call still running for the same key in this process is waited for instead of repeated.
"""
from __future__ import annotations

import base64
import hashlib
import importlib
import json
import logging
import os
import pkgutil
import re
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable
from zoneinfo import ZoneInfo

from connector.returns.context import N_
from connector.returns.ports import (VOIDED, Address, CarrierAuthError, CarrierCapabilities,
                                     CarrierNotSupported, CarrierRejected, CarrierRetryable, Customs, Label,
                                     Pickup, SettingField, ShipmentRequest, TrackingEvent)

log = logging.getLogger(__name__)

EXTRA_HINT = "pip install returns-connector[karrio]"
JOURNAL_FOLDER = "karrio-labels"
DEFAULT_DEADLINE_SECONDS = 30.0
# Another process's label call for the same shipment (a retry the job runner started elsewhere) is
# taken to be still running this long after it began: the retry waits instead of buying a second
# label. karrio calls have no timeout of their own, so the wait ends after this.
IN_FLIGHT_ELSEWHERE_SECONDS = 600.0
PICKUP_READY, PICKUP_CLOSING = "09:00", "18:00"
PDF_MAGIC = b"%PDF"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# One pool for every karrio call in the process. A call that never returns keeps its worker, which
# is why the pool is bounded and shared rather than one thread per call.
_EXECUTOR = ThreadPoolExecutor(max_workers=8, thread_name_prefix="karrio")
# Label calls running now, by journal path: a retry for the same shipment waits for them.
_IN_FLIGHT: dict[str, Future] = {}
_IN_FLIGHT_LOCK = threading.RLock()

# The five carriers the project tests; other installed karrio carriers are offered too.
_KNOWN_LABELS = {
    "dhl_parcel_de": "DHL Parcel DE (Paket Deutschland)",
    "ups": "UPS",
    "gls": "GLS",
    "dpd_meta": "DPD (META API)",
    "dhl_express": "DHL Express",
}


@dataclass(frozen=True)
class _CarrierFacts:
    """What karrio's code does not say about a carrier's return labels."""

    service: str = ""  # karrio service code used for the return shipment
    options: dict = field(default_factory=dict)  # karrio shipment options for a return label
    # The return label comes from an API that karrio's cancel_shipment does not reach.
    return_label_not_voidable: str = ""
    # The returns API hands back a QR code (PNG) besides the PDF.
    qr: bool = False
    # Local time zone of carrier timestamps given without an offset.
    timezone: str = "UTC"
    # karrio writes the carrier's local wall time with a "Z" (DHL Parcel DE's tracking XML has
    # "17.03.2016 11:21", German time, which karrio's fiso_timestamp renders "...T11:21:00.000Z").
    local_times_marked_utc: bool = False
    # karrio's mapper sends address_line2 as the house number (GLS ShipIT's Street / StreetNumber).
    house_number_in_line2: bool = False


_CARRIER_FACTS: dict[str, _CarrierFacts] = {
    # karrio routes DHL returns to the Parcel DE Returns API (POST /returns/v1/orders, labelType BOTH:
    # PDF label and QR code). karrio's cancel_shipment deletes Shipping API orders (/v2/orders); the
    # Returns API has no cancellation (unused return labels are not charged).
    "dhl_parcel_de": _CarrierFacts(service="dhl_parcel_de_paket",
                                   return_label_not_voidable="DHL Parcel DE return labels (Returns API) "
                                                             "cannot be cancelled; unused ones are not charged",
                                   qr=True, timezone="Europe/Berlin", local_times_marked_utc=True),
    # karrio's UPS return defaults to Return Service 3-attempt (a driver brings the label on UPS's
    # own schedule); a shopper-printed label is "Print Return Label".
    "ups": _CarrierFacts(service="ups_standard", options={"ups_return_service": "ups_print_return_label"}),
    "gls": _CarrierFacts(service="gls_parcel", timezone="Europe/Berlin", house_number_in_line2=True),
    "dpd_meta": _CarrierFacts(service="dpd_meta_classic", timezone="Europe/Berlin"),
    "dhl_express": _CarrierFacts(service="dhl_express_worldwide"),
}

# The operations a capability needs: (karrio Mapper methods, karrio Proxy method).
_OPERATIONS = {
    "label": (("create_return_shipment_request", "parse_return_shipment_response"), "create_return_shipment"),
    "void": (("create_cancel_shipment_request", "parse_cancel_shipment_response"), "cancel_shipment"),
    "pickup": (("create_pickup_request", "parse_pickup_response"), "schedule_pickup"),
    "cancel_pickup": (("create_cancel_pickup_request", "parse_cancel_pickup_response"), "cancel_pickup"),
    "tracking": (("create_tracking_request", "parse_tracking_response"), "get_tracking"),
}

# karrio's normalised tracking statuses -> ports.TRACKING_STATUSES.
_STATUSES = {
    "pending": "info_received",
    "picked_up": "in_transit",
    "in_transit": "in_transit",
    "ready_for_pickup": "in_transit",
    "delivery_delayed": "in_transit",
    "out_for_delivery": "out_for_delivery",
    "delivered": "delivered",
    "on_hold": "exception",
    "cancelled": "exception",
    "delivery_failed": "exception",
    "return_to_sender": "exception",
}

_AUTH_HTTP_CODES = {"401", "403"}
# DHL Parcel DE tracking: login failed, too many invalid logins, authorization error. UPS: its
# authentication errors 250001-250009 (karrio's UPS parser drops the HTTP 401 and keeps only these;
# e.g. a refused OAuth token is "250003 Invalid Access License number").
_AUTH_CARRIER_CODES = {"dhl_parcel_de": {"5", "6", "62"},
                       "ups": {"250001", "250002", "250003", "250004", "250005", "250006", "250007",
                               "250009"}}
_AUTH_WORDS = ("unauthori", "forbidden", "authenticat", "credential", "invalid_grant", "invalid_client",
               "login failed", "log-in failed", "access token", "access denied",
               "'password'",  # DHL Express XML-PI refusing the configured password (condition 111)
               "returned no token")  # karrio's token cache, when the login gave no token
_RETRY_WORDS = ("timed out", "timeout", "urlopen error", "connection refused", "connection reset",
                "connection aborted", "remote end closed", "name or service not known", "temporarily",
                "service unavailable", "too many requests", "rate limit", "bad gateway", "gateway time")
# What the shopper can fix, by the words a carrier uses for the field it refuses (first match wins;
# the refused property is read before the prose).
_FIELD_WORDS = (
    ("postcode", ("postal", "postcode", "zip", "plz", "postleitzahl")),
    ("phone", ("phone", "telefon")),
    ("email", ("email", "e-mail")),
    ("weight", ("weight", "gewicht", "too heavy")),
    ("size", ("dimension", "length", "width", "height", "girth", "too large")),
    ("country", ("country", "cannot ship from origin", "not serviced")),
    ("address", ("address", "street", "strasse", "straße", "house", "city", "name1", "name2")),
)


def installed_carriers() -> tuple[str, ...]:
    """karrio carrier ids installed here (the karrio.mappers.* packages), without importing karrio's SDK."""
    try:
        mappers = importlib.import_module("karrio.mappers")
    except ImportError:
        return ()
    return tuple(sorted(m.name for m in pkgutil.iter_modules(mappers.__path__) if not m.name.startswith("_")))


def _carrier_choices() -> tuple[tuple[str, str], ...]:
    ids = installed_carriers() or tuple(_KNOWN_LABELS)
    return tuple((cid, _KNOWN_LABELS.get(cid, cid.replace("_", " ").title())) for cid in ids)


def _karrio():
    """karrio's SDK, imported on first use; a clear error naming the extra when it is missing."""
    try:
        return importlib.import_module("karrio.sdk")
    except ImportError as exc:
        raise ImportError(f"the karrio carrier backend needs karrio: {EXTRA_HINT} ({exc})") from exc


def _models():
    return importlib.import_module("karrio.core.models")


class KarrioBackend:
    """A karrio carrier as a CarrierBackend (see the module docstring for how karrio is driven)."""

    key = "karrio"
    pickup_window = f"{PICKUP_READY}-{PICKUP_CLOSING}"
    name = "karrio"
    # The union over karrio's carriers, for the registry's listing; an instance states its carrier's.
    capabilities = CarrierCapabilities(label=True, qr=True, pickup=True, void=True, tracking=True,
                                       international=True)
    settings_fields = (
        SettingField("carrier", N_("Carrier (karrio)"), choices=_carrier_choices()),
        SettingField("credentials", N_("karrio carrier settings (JSON)"), secret=True,
                     help=N_('The carrier\'s karrio settings as a JSON object, e.g. {"username": "...", '
                          '"password": "...", "client_id": "...", "client_secret": "..."} for DHL Parcel DE.')),
        SettingField("account_country", N_("Account country (ISO code, e.g. DE)"), required=False),
        SettingField("service", N_("karrio service code for returns"), required=False),
        SettingField("deadline_seconds", N_("Seconds to wait for the carrier (default 30)"), required=False),
    )

    def __init__(self, settings: dict | None = None):
        settings = dict(settings or {})
        self._sdk = _karrio()
        self.carrier = (settings.get("carrier") or "").strip()
        if not self.carrier:
            raise ValueError("karrio setting 'carrier' is missing")
        if self.carrier not in installed_carriers():
            raise ValueError(f"karrio setting 'carrier': {self.carrier!r} is not an installed karrio carrier "
                             f"(installed: {', '.join(installed_carriers()) or 'none'})")
        self.credentials = _parse_credentials(settings.get("credentials"))
        self.account_country = (settings.get("account_country") or "").strip().upper() or None
        self.test_mode = bool(settings.get("test_mode", False))
        self.data_dir = Path(settings.get("data_dir") or os.environ.get("DATA_DIR") or "var")
        self.deadline = _deadline(settings.get("deadline_seconds"))
        self.facts = _CARRIER_FACTS.get(self.carrier, _CarrierFacts())
        self.service = (settings.get("service") or "").strip() or self.facts.service
        self.gateway = self._new_gateway()
        self.operations = self._supported_operations()
        self.capabilities = self._derive_capabilities()

    # ------------------------------------------------------------------ setup

    def _new_gateway(self):
        """A karrio gateway with its own token cache (check_credentials needs an uncached login)."""
        config = {**self.credentials, "test_mode": self.test_mode}
        if self.account_country:
            config["account_country_code"] = self.account_country
        try:
            gateway = self._sdk.gateway[self.carrier].create(config)
        except Exception as exc:  # karrio wraps the settings' TypeError; name no values, they are secret
            cause = exc.__cause__ or exc
            raise ValueError(f"karrio setting 'credentials' does not fit karrio's {self.carrier} settings: "
                             f"{type(cause).__name__}") from None
        _allow_foreign_return_origin(gateway)
        return gateway

    def _supported_operations(self) -> set[str]:
        """The operations whose karrio Mapper and Proxy methods this carrier overrides."""
        mapper_base = importlib.import_module("karrio.api.mapper").Mapper
        proxy_base = importlib.import_module("karrio.api.proxy").Proxy
        mapper_cls, proxy_cls = type(self.gateway.mapper), type(self.gateway.proxy)
        found = set()
        for operation, (mapper_methods, proxy_method) in _OPERATIONS.items():
            if all(_overrides(mapper_cls, mapper_base, m) for m in mapper_methods) \
                    and _overrides(proxy_cls, proxy_base, proxy_method):
                found.add(operation)
        return found

    def _derive_capabilities(self) -> CarrierCapabilities:
        ops = self.operations
        label = "label" in ops
        return CarrierCapabilities(
            label=label,
            qr=label and self.facts.qr,
            pickup=label and "pickup" in ops,
            # karrio drives no carrier's "driver brings the label" return with a bookable day: UPS's
            # Return Service 1/3-attempt picks up on UPS's schedule, GLS's PickAndReturn option is not
            # sent by karrio's GLS mapper.
            carrier_brings_label=False,
            void=label and "void" in ops and not self.facts.return_label_not_voidable,
            tracking="tracking" in ops,
            international=label,
        )

    # ------------------------------------------------------------------ the port

    def create_return_label(self, shipment: ShipmentRequest) -> Label:
        """The shipment's return label: from the journal when one was made for its idempotency key,
        else from the carrier (once, even across a timed-out call that the carrier completed)."""
        if not self.capabilities.label:
            raise CarrierNotSupported(f"karrio's {self.carrier} integration makes no return labels")
        return self._label_once(shipment)

    def schedule_pickup(self, shipment: ShipmentRequest, day: date) -> Pickup:
        """Book the carrier's pickup of the shipment's return parcel on `day` exactly.

        The label is made first (idempotently); the booking is journalled next to it, so the same
        request again returns the same booking and another day for a booked parcel is refused.
        """
        if not self.capabilities.pickup:
            raise CarrierNotSupported(f"karrio's {self.carrier} integration books no pickups")
        if shipment.method == "carrier_label" and not self.capabilities.carrier_brings_label:
            raise CarrierNotSupported(f"{self.carrier} via karrio cannot send a driver with the label")
        if day < datetime.now(timezone.utc).date():
            raise CarrierRejected(f"pickup day {day.isoformat()} is in the past")
        label = self._label_once(shipment)
        booking_path = self._journal_path(shipment.idempotency_key).with_suffix(".pickup.json")
        booked = _read_json(booking_path)
        if booked:
            if booked["day"] != day.isoformat():
                raise CarrierRejected(f"parcel {label.tracking_number} already has a pickup on {booked['day']}")
            return _pickup(booked, label)
        details = self._call(self._sdk.Pickup.schedule(self._pickup_request(shipment, day, label)))
        booked_day = _parse_day(details.pickup_date) or day
        if booked_day != day:
            self._cancel_quietly(details.confirmation_number)
            raise CarrierRejected(f"{self.carrier} offered a pickup on {booked_day.isoformat()}, "
                                  f"not on {day.isoformat()}")
        window = _window(_hhmm(details.ready_time), _hhmm(details.closing_time))
        record = {"day": day.isoformat(), "window": window, "carrier_ref": details.confirmation_number}
        _write_json(booking_path, record)
        # cancel_pickup gets the confirmation number only; DHL Express's cancellation also names the day
        # and the requestor (the shopper) and country.
        _write_json(self._booking_by_ref(details.confirmation_number),
                    {"day": day.isoformat(), "name": shipment.sender.name, "country": shipment.sender.country.upper()})
        return _pickup(record, label)

    def _booking_by_ref(self, carrier_ref: str) -> Path:
        digest = hashlib.sha256(f"pickup:{carrier_ref}".encode("utf-8")).hexdigest()
        return self.data_dir / JOURNAL_FOLDER / f"{digest}.pickup-ref.json"

    def cancel_pickup(self, carrier_ref: str) -> str | None:
        if not self.capabilities.pickup or "cancel_pickup" not in self.operations:
            raise CarrierNotSupported(f"karrio's {self.carrier} integration cannot cancel pickups")
        models = _models()
        booked = _read_json(self._booking_by_ref(carrier_ref)) or {}
        request = models.PickupCancelRequest(
            confirmation_number=carrier_ref,
            pickup_date=booked.get("day"),
            address=models.Address(person_name=booked.get("name"), country_code=booked.get("country"))
            if booked else None,
        )
        confirmation = self._call(self._sdk.Pickup.cancel(request))
        _confirm(confirmation, f"pickup {carrier_ref}")
        return VOIDED

    def void_label(self, tracking_number: str, carrier_ref: str | None = None) -> str | None:
        if not self.capabilities.void:
            reason = self.facts.return_label_not_voidable or f"karrio's {self.carrier} integration voids no labels"
            raise CarrierNotSupported(reason)
        models = _models()
        request = models.ShipmentCancelRequest(shipment_identifier=carrier_ref or tracking_number)
        confirmation = self._call(self._sdk.Shipment.cancel(request))
        _confirm(confirmation, f"label {tracking_number}")
        return VOIDED

    def track(self, tracking_number: str, carrier_ref: str | None = None) -> list[TrackingEvent]:
        """The parcel's events, oldest first, in TRACKING_STATUSES and timezone-aware."""
        if not self.capabilities.tracking:
            raise CarrierNotSupported(f"karrio's {self.carrier} integration has no tracking")
        models = _models()
        details = self._call(self._sdk.Tracking.fetch(models.TrackingRequest(tracking_numbers=[tracking_number])),
                             allow_empty=True) or []
        mine = [d for d in details if str(d.tracking_number) == tracking_number] or list(details)[:1]
        zone = ZoneInfo(self.facts.timezone)
        by_code = _statuses_by_code(self.carrier)
        events = [_event(e, zone, self.facts.local_times_marked_utc, by_code) for d in mine for e in (d.events or [])]
        return sorted((e for e in events if e is not None), key=lambda e: e.at)

    def check_credentials(self) -> None:
        """Log in with a fresh gateway (no cached token); CarrierAuthError when refused.

        Carriers whose karrio proxy has no login step are probed with a tracking request, whose
        refusal for a made-up number is ignored unless it is about the credentials."""
        gateway = self._new_gateway()
        proxy_base = importlib.import_module("karrio.api.proxy").Proxy
        if _overrides(type(gateway.proxy), proxy_base, "authenticate"):
            self._run(lambda: _login(gateway))
            return
        if "tracking" in self.operations:
            models = _models()
            request = self._sdk.Tracking.fetch(models.TrackingRequest(tracking_numbers=["00340434161094042557"]))
            _, messages = self._run(lambda: request.from_(gateway).parse())
            if any(_is_auth(m) for m in messages or []):
                _raise_for(messages, self.carrier)

    # ------------------------------------------------------------------ labels, once

    def _journal_path(self, idempotency_key: str) -> Path:
        digest = hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()
        return self.data_dir / JOURNAL_FOLDER / f"{digest}.json"

    def _label_once(self, shipment: ShipmentRequest) -> Label:
        path = self._journal_path(shipment.idempotency_key)
        for _attempt in range(2):  # an earlier call that failed leaves the field to this one
            recorded = _read_json(path)
            if recorded:
                return _label(recorded)
            with _IN_FLIGHT_LOCK:
                future = _IN_FLIGHT.get(str(path))
                ours = future is None
                if ours:
                    # A call that finished since the read above wrote the journal before it left
                    # the in-flight table, so this second read cannot miss its label.
                    recorded = _read_json(path)
                    if recorded:
                        return _label(recorded)
                    _refuse_while_running_elsewhere(path)
                    _write_json(_started_path(path), {"at": datetime.now(timezone.utc).isoformat(),
                                                      "pid": os.getpid()})
                    future = _EXECUTOR.submit(self._create_and_record, shipment, path)
                    _IN_FLIGHT[str(path)] = future
                    future.add_done_callback(lambda done, key=str(path): _forget(key, done))
            label, messages = self._wait(future, after="; a label the carrier makes meanwhile is kept for the retry")
            if label is not None:
                return label
            if ours:
                _raise_for(messages, self.carrier)
        _raise_for(messages, self.carrier)
        raise AssertionError("unreachable")  # pragma: no cover

    def _create_and_record(self, shipment: ShipmentRequest, path: Path) -> tuple[Label | None, list]:
        """In a worker thread: ask the carrier for the label and journal it the moment it arrives,
        whether or not the caller is still waiting."""
        try:
            details, messages = self._sdk.Shipment.create(self._shipment_request(shipment)).from_(self.gateway).parse()
        except Exception as exc:  # karrio's payload validation runs before its fail_safe wrapper
            _started_path(path).unlink(missing_ok=True)
            return None, [_internal_message(self.carrier, exc)]
        if details is None or not details.tracking_number:
            _started_path(path).unlink(missing_ok=True)  # the carrier answered without a label: a retry may ask again
            return None, list(messages or []) or [_unreadable_label_message(self.carrier)]
        record = _record(shipment, details)
        _write_json(path, record)
        _started_path(path).unlink(missing_ok=True)
        return _label(record), list(messages or [])

    # ------------------------------------------------------------------ karrio calls

    def _wait(self, future: Future, after: str = ""):
        """The worker's result within the deadline; past it CarrierRetryable (the worker runs on)."""
        try:
            return future.result(timeout=self.deadline)
        except FutureTimeout:
            raise CarrierRetryable(f"{self.carrier} (karrio) gave no answer within {self.deadline:g} s{after}") from None

    def _run(self, work: Callable[[], Any]):
        return self._wait(_EXECUTOR.submit(work))

    def _call(self, lazy_request, *, allow_empty: bool = False):
        """Send a karrio request (IRequestFrom) through the gateway within the deadline; the result,
        or the port's error for karrio's messages. With `allow_empty` (tracking), refusals other
        than credentials and outages mean "nothing yet" and give the (empty) result."""
        result, messages = self._run(lambda: lazy_request.from_(self.gateway).parse())
        errors = [m for m in messages or [] if not _is_warning(m)]
        if allow_empty:
            if any(_is_auth(m) or _is_retryable(m) for m in errors):
                _raise_for(errors, self.carrier)
            return result
        if result is None:
            _raise_for(errors, self.carrier)  # no messages either: an answer karrio could not read
        return result

    def _cancel_quietly(self, confirmation_number: str | None) -> None:
        if not confirmation_number or "cancel_pickup" not in self.operations:
            return
        try:
            self.cancel_pickup(confirmation_number)
        except Exception:  # the refusal below is what matters; the stray booking is logged
            log.warning("karrio %s: could not cancel pickup %s booked on another day", self.carrier,
                        confirmation_number)

    # ------------------------------------------------------------------ karrio payloads

    def _shipment_request(self, shipment: ShipmentRequest):
        """karrio's ShipmentRequest in the outbound orientation (warehouse -> shopper) with
        is_return=True: karrio swaps the addresses and calls the carrier's returns operation."""
        models = _models()
        return models.ShipmentRequest(
            service=self.service,
            is_return=True,
            shipper=_address(shipment.recipient, company=True, number_in_line2=self.facts.house_number_in_line2),
            recipient=_address(shipment.sender, number_in_line2=self.facts.house_number_in_line2),
            parcels=[_parcel(shipment)],
            customs=_customs(shipment.customs) if shipment.customs else None,
            options={"currency": shipment.currency, **self.facts.options},
            reference=shipment.reference,
            metadata={"idempotency_key": shipment.idempotency_key},
        )

    def _pickup_request(self, shipment: ShipmentRequest, day: date, label: Label):
        models = _models()
        return models.PickupRequest(
            pickup_date=day.isoformat(),
            ready_time=PICKUP_READY,
            closing_time=PICKUP_CLOSING,
            address=_address(shipment.sender),
            parcels=[_parcel(shipment)],
            shipment_identifiers=[label.carrier_ref or label.tracking_number],
            instruction=f"Return {shipment.reference}",
        )


# ---------------------------------------------------------------------- settings


def _parse_credentials(raw: Any) -> dict:
    if isinstance(raw, dict):
        data = raw
    else:
        if not (raw or "").strip():
            raise ValueError("karrio setting 'credentials' is missing")
        try:
            data = json.loads(raw)
        except ValueError:
            raise ValueError("karrio setting 'credentials' is not valid JSON") from None
    if not isinstance(data, dict):
        raise ValueError("karrio setting 'credentials' must be a JSON object")
    # test_mode comes from the connection, not from the pasted JSON.
    return {k: v for k, v in data.items() if k != "test_mode"}


def _deadline(raw: Any) -> float:
    if raw in (None, ""):
        return DEFAULT_DEADLINE_SECONDS
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ValueError("karrio setting 'deadline_seconds' is not a number") from None
    if value <= 0:
        raise ValueError("karrio setting 'deadline_seconds' must be positive")
    return value


def _overrides(cls: type, base: type, method: str) -> bool:
    """True when `cls` (or a class between it and `base`) defines `method` itself."""
    impl = getattr(cls, method, None)
    return impl is not None and impl is not getattr(base, method, None)


def _allow_foreign_return_origin(gateway) -> None:
    """karrio refuses a shipment whose origin differs from the account's country. For a return the
    origin is the shopper's country, never the account's, so that check alone is dropped (only for
    the return-label operation; every other check of karrio's stays)."""
    original = gateway.check

    def check(request: str, origin_country_code: str = None):
        messages = original(request, origin_country_code=origin_country_code)
        if request != "create_return_shipment":
            return messages
        return [m for m in messages if m.code != "SHIPPING_SDK_ORIGIN_NOT_SERVICED_ERROR"]

    gateway.check = check


def _login(gateway) -> None:
    """Run the proxy's login; refusals (karrio raises ParsedMessagesError) become CarrierAuthError."""
    errors = importlib.import_module("karrio.core.errors")
    try:
        token = gateway.proxy.authenticate().deserialize()
    except errors.ParsedMessagesError as exc:
        messages = list(exc.messages or [])
        if any(_is_retryable(m) for m in messages):
            _raise_for(messages, gateway.settings.carrier_name)
        raise CarrierAuthError(f"{gateway.settings.carrier_name}: login refused: {_words(messages)}") from None
    except (TimeoutError, ConnectionError, OSError) as exc:
        raise CarrierRetryable(f"{gateway.settings.carrier_name}: login failed: {type(exc).__name__}") from None
    except Exception as exc:  # karrio's token cache raises ValueError when the login gave no token
        raise CarrierAuthError(f"{gateway.settings.carrier_name}: login refused: {exc}") from None
    if not token or (isinstance(token, dict) and not token.get("access_token")):
        raise CarrierAuthError(f"{gateway.settings.carrier_name}: login refused (no access token)")


# ---------------------------------------------------------------------- errors


def _internal_message(carrier: str, exc: Exception):
    return _models().Message(carrier_name=carrier, carrier_id=carrier, code="SHIPPING_SDK_INTERNAL_ERROR",
                             message=f"{type(exc).__name__}: {exc}")


def _unreadable_label_message(carrier: str):
    """The carrier answered the label call, but karrio found neither a label nor an error in it (e.g.
    karrio-gls 2026.1 reads another answer shape than GLS ShipIT's). The carrier may have made the
    parcel, so this is a refusal, not a retry that would buy another label each time."""
    return _models().Message(carrier_name=carrier, carrier_id=carrier, code="UNREADABLE_ANSWER",
                             message="the carrier answered with no label karrio could read; it may have made "
                                     "one: check the carrier's portal before trying again")


def _text(message) -> str:
    return f"{getattr(message, 'message', '') or ''}"


def _is_auth(message) -> bool:
    code = str(getattr(message, "code", "") or "")
    text = _text(message).lower()
    carrier_codes = _AUTH_CARRIER_CODES.get(str(getattr(message, "carrier_name", "") or ""), set())
    return code in _AUTH_HTTP_CODES or code in carrier_codes \
        or any(w in text or w in code.lower() for w in _AUTH_WORDS)


def _is_retryable(message) -> bool:
    code = str(getattr(message, "code", "") or "")
    text = _text(message).lower()
    return code == "429" or (code.isdigit() and len(code) == 3 and code.startswith("5")) \
        or any(w in text for w in _RETRY_WORDS)


def _is_warning(message) -> bool:
    details = getattr(message, "details", None) or {}
    state = str(details.get("validationState", "") if isinstance(details, dict) else "").lower()
    return str(getattr(message, "level", "") or "").lower() in ("warning", "info") or state == "warning"


def _field_of(messages) -> str | None:
    # DHL names the refused property in "property", GLS in "field".
    properties = " ".join(str(details.get("property") or details.get("field") or "")
                          for details in ((getattr(m, "details", None) or {}) for m in messages)
                          if isinstance(details, dict))
    prose = " ".join(f"{_text(m)} {getattr(m, 'code', '') or ''}" for m in messages)
    for haystack in (properties.lower(), prose.lower()):
        for name, words in _FIELD_WORDS:
            if any(w in haystack for w in words):
                return name
    return None


def _words(messages) -> str:
    return "; ".join(f"{_text(m)} ({m.code})" if getattr(m, "code", None) else _text(m) for m in messages) \
        or "no details"


def _raise_for(messages, carrier: str):
    """Raise the port's error for karrio's messages: credentials refused -> CarrierAuthError;
    network, 5xx, 429 -> CarrierRetryable; an operation karrio lacks -> CarrierNotSupported; anything
    else is the carrier refusing the parcel -> CarrierRejected, with the shopper's field when the
    words name one."""
    messages = list(messages or [])
    words = f"{carrier}: {_words(messages)}"
    if any(_is_auth(m) for m in messages):
        raise CarrierAuthError(words)
    if not messages or any(_is_retryable(m) for m in messages):
        raise CarrierRetryable(words)
    if any(str(m.code) == "SHIPPING_SDK_NON_SUPPORTED_ERROR" for m in messages):
        raise CarrierNotSupported(words)
    raise CarrierRejected(words, field=_field_of(messages))


def _confirm(confirmation, what: str) -> None:
    if confirmation is not None and not getattr(confirmation, "success", True):
        raise CarrierRejected(f"the carrier did not confirm cancelling {what}")


# ---------------------------------------------------------------------- mapping


_NUMBER_LAST = re.compile(r"^(?P<street>.*\D)\s+(?P<number>\d+\s*[a-zA-Z]?(?:[-/]\d+\s*[a-zA-Z]?)?)$")
_NUMBER_FIRST = re.compile(r"^(?P<number>\d+\s*[a-zA-Z]?(?:[-/]\d+)?),?\s+(?P<street>\D.*)$")


def _street_number(line1: str) -> str | None:
    """The house number in a street line: "Hauptstraße 12" -> "12", "12 rue de la Paix" -> "12"."""
    line1 = (line1 or "").strip()
    match = _NUMBER_LAST.match(line1) or _NUMBER_FIRST.match(line1)
    return match.group("number").replace(" ", "") if match else None


def _street_and_number(line1: str) -> tuple[str, str] | None:
    """ "Hauptstraße 12" -> ("Hauptstraße", "12"); None when the line holds no house number."""
    line1 = (line1 or "").strip()
    match = _NUMBER_LAST.match(line1) or _NUMBER_FIRST.match(line1)
    return (match.group("street").strip(), match.group("number").replace(" ", "")) if match else None


def _address(address: Address, *, company: bool = False, number_in_line2: bool = False):
    """karrio's Address. With `number_in_line2` (GLS: karrio sends address_line2 as StreetNumber) the
    house number goes to address_line2 and the street, with the address's own second line, to line 1."""
    models = _models()
    line1, line2 = address.line1, address.line2 or None
    split = _street_and_number(address.line1) if number_in_line2 else None
    if split:
        line1, line2 = ", ".join(filter(None, (split[0], address.line2))), split[1]
    return models.Address(
        person_name=address.name,
        company_name=address.name if company else None,
        address_line1=line1,
        address_line2=line2,
        street_number=_street_number(address.line1),
        postal_code=address.postcode,
        city=address.city,
        country_code=address.country.upper(),
        state_code=address.region or None,
        phone_number=address.phone or None,
        email=address.email or None,
    )


def _parcel(shipment: ShipmentRequest):
    models = _models()
    return models.Parcel(
        weight=round(shipment.weight_grams / 1000, 3),
        weight_unit="KG",
        description=", ".join(item.description for item in shipment.items)[:100] or None,
        reference_number=shipment.reference,
    )


def _customs(customs: Customs):
    """ports.Customs as karrio's Customs: every item a Commodity, contents "return merchandise"."""
    models = _models()
    return models.Customs(
        commodities=[
            models.Commodity(
                title=item.description[:35],
                description=item.description,
                quantity=item.quantity,
                value_amount=float(Decimal(item.value)),
                value_currency=customs.currency,
                weight=round(item.weight_grams / 1000, 3),
                weight_unit="KG",
                hs_code=item.hs_code or None,
                origin_country=item.origin_country.upper() or None,
                sku=item.sku or None,
            )
            for item in customs.items
        ],
        content_type="return_merchandise",
        content_description=customs.reason,
        invoice=customs.invoice_number,
        commercial_invoice=True,
    )


def _b64(data: str | None) -> bytes | None:
    if not data:
        return None
    try:
        return base64.b64decode(data)
    except (ValueError, TypeError):
        return None


def _record(shipment: ShipmentRequest, details) -> dict[str, Any]:
    """The journal entry for a label the carrier made: everything needed to hand it out again."""
    docs = details.docs
    pdf = _b64(getattr(docs, "label", None))
    qr = next((_b64(d.base64) for d in (getattr(docs, "extra_documents", None) or [])
               if d.category == "qr_label" and (_b64(d.base64) or b"").startswith(PNG_MAGIC)), None)
    meta = details.meta or {}
    return {
        "idempotency_key": shipment.idempotency_key,
        "reference": shipment.reference,
        "carrier": details.carrier_name,
        "tracking_number": str(details.tracking_number),
        "carrier_ref": str(details.shipment_identifier or details.tracking_number),
        "tracking_url": meta.get("carrier_tracking_link") or meta.get("tracking_url"),
        "label_format": details.label_type,
        "label_pdf": base64.b64encode(pdf).decode("ascii") if pdf else None,
        "qr_png": base64.b64encode(qr).decode("ascii") if qr else None,
        "created_at": datetime.now(timezone.utc).isoformat(),
    }


def _label(record: dict[str, Any]) -> Label:
    pdf = _b64(record.get("label_pdf"))
    if not pdf or not pdf.startswith(PDF_MAGIC):
        raise CarrierRejected(f"{record.get('carrier')} made label {record['tracking_number']} but not as a PDF "
                              f"(format {record.get('label_format') or 'unknown'}); check the label settings")
    return Label(tracking_number=record["tracking_number"], pdf=pdf, qr_png=_b64(record.get("qr_png")),
                 carrier_ref=record.get("carrier_ref"), tracking_url=record.get("tracking_url"))


def _pickup(record: dict[str, Any], label: Label) -> Pickup:
    return Pickup(day=date.fromisoformat(record["day"]), window=record["window"], carrier_ref=record["carrier_ref"],
                  tracking_number=label.tracking_number, label=label)


def _window(ready: str | None, closing: str | None) -> str:
    """ "HH:MM-HH:MM" from the carrier's times, ours where it gives none. A closing time not after
    the ready time is no closing time (DHL Express's CallInTime, the latest time to call, which
    karrio reads as closing_time): ours stays then."""
    ready = ready or PICKUP_READY
    closing = closing if closing and closing > ready else PICKUP_CLOSING
    return f"{ready}-{closing}"


def _parse_day(value: str | None) -> date | None:
    try:
        return date.fromisoformat(str(value)[:10]) if value else None
    except ValueError:
        return None


def _hhmm(value: str | None) -> str | None:
    match = re.match(r"^(\d{1,2}):(\d{2})", value or "")
    return f"{int(match.group(1)):02d}:{match.group(2)}" if match else None


def _statuses_by_code(carrier: str) -> Callable[[str | None], str | None]:
    """karrio's status for a carrier event code, from the carrier's karrio TrackingStatus table: for
    carriers whose karrio parser leaves the event status empty (GLS: "INTIAL.PREADVICE" -> pending)."""
    try:
        table = importlib.import_module(f"karrio.providers.{carrier}.units").TrackingStatus
    except (ImportError, AttributeError):
        return lambda code: None

    def status(code: str | None) -> str | None:
        parts = set(str(code or "").upper().split("."))
        return next((s.name for s in table
                     if parts & set(s.value if isinstance(s.value, (list, tuple)) else [s.value])), None)

    return status


def _event(event, zone: ZoneInfo, local_times_marked_utc: bool = False,
           by_code: Callable[[str | None], str | None] = lambda code: None) -> TrackingEvent | None:
    at = _when(event, zone, local_times_marked_utc)
    if at is None:
        return None
    status = _STATUSES.get(str(event.status or by_code(event.code) or ""), "in_transit")
    return TrackingEvent(at=at, status=status, description=(event.description or "").strip(),
                         location=(event.location or "").strip())


def _when(event, zone: ZoneInfo, local_times_marked_utc: bool = False) -> datetime | None:
    """The event's moment, timezone-aware: karrio's ISO timestamp, else its date and time. A
    carrier's local time (no offset, or one karrio marked "Z" wrongly) is read in the carrier's zone."""
    candidates = [event.timestamp, f"{event.date}T{event.time}" if event.date and event.time else None,
                  event.date]
    for value in filter(None, candidates):
        text = str(value).replace("Z", "+00:00")
        for parse in (datetime.fromisoformat, lambda t: datetime.strptime(t, "%Y-%m-%dT%I:%M %p")):
            try:
                at = parse(text)
            except ValueError:
                continue
            if local_times_marked_utc:
                at = at.replace(tzinfo=None)
            return at if at.tzinfo else at.replace(tzinfo=zone)
    return None


# ---------------------------------------------------------------------- journal files


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return None


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(data, indent=1), "utf-8")
    os.replace(tmp, path)  # readers never see half a file


def _started_path(path: Path) -> Path:
    """The marker a label call leaves while it runs (beside the journal entry it will write)."""
    return path.with_suffix(".started")


def _refuse_while_running_elsewhere(path: Path) -> None:
    """CarrierRetryable while another process's call for this label began less than
    IN_FLIGHT_ELSEWHERE_SECONDS ago and has not finished: it may still be making the label."""
    started = _read_json(_started_path(path))
    if not started:
        return
    try:
        age = (datetime.now(timezone.utc) - datetime.fromisoformat(started["at"])).total_seconds()
    except (KeyError, TypeError, ValueError):
        return
    if 0 <= age < IN_FLIGHT_ELSEWHERE_SECONDS:
        raise CarrierRetryable(f"an earlier request for this label began {age:.0f} s ago and may still be "
                               "running; trying again later instead of buying a second label")


def _forget(key: str, future: Future) -> None:
    with _IN_FLIGHT_LOCK:
        if _IN_FLIGHT.get(key) is future:
            del _IN_FLIGHT[key]
