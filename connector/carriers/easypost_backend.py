"""EasyPost as a carrier backend, through EasyPost's official Python SDK (``easypost``).

EasyPost is a multi-carrier shipping API: one shipment is rated across the merchant's carrier
accounts and one rate is bought, which makes the label. A return is an ordinary shipment with
``is_return=True``: we pass the addresses as on the original outbound parcel (to = the shopper,
from = the warehouse) and EasyPost swaps them, so the label carries the parcel from the shopper to
the warehouse (docs.easypost.com/docs/shipments/returns).

No duplicate labels: EasyPost has no idempotency key, so the shipment's idempotency key goes into
the shipment's (and pickup's) ``reference`` and, before creating anything, the most recent
shipments are searched for that reference. A found shipment is reused (and bought if the first
attempt died between create and buy), so a retry after a timeout makes no second label.

Voiding is EasyPost's refund: ``refund_status`` "submitted" -> VOID_REQUESTED (the carrier
confirms later, reported by a ``refund.successful`` webhook), "refunded" -> VOIDED, "rejected" /
"not_applicable" -> CarrierRejected. A parcel the tracker already shows moving is not refunded.

Tracking changes arrive as ``tracker.updated`` events signed with ``X-Hmac-Signature:
hmac-sha256-hex=<hex>`` over the raw body, keyed with the NFKD-normalised webhook secret (as the
SDK's ``easypost.util.validate_webhook`` does it; reimplemented here to compare in constant time
and to read the header case-insensitively).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import unicodedata
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any, Callable, Iterable, TypeVar

import requests
from easypost import EasyPostClient
from easypost import errors as ep_errors
from easypost.constant import API_BASE

from connector.returns.context import N_
from connector.returns.ports import (VOID_REQUESTED, VOIDED, Address, CarrierAuthError, CarrierCapabilities,
                                     CarrierNotSupported, CarrierRejected, CarrierRetryable, Customs, Label,
                                     Pickup, SettingField, ShipmentRequest, TrackingEvent, TrackingUpdate,
                                     WebhookRejected)


TIMEOUT = (5, 30)  # connect, read (seconds)
# How far back the idempotency search looks: pages of the newest shipments / pickups. A retry
# comes minutes to hours after the first attempt; 5 x 100 covers that for busy accounts too.
SEARCH_PAGES = 5
PAGE_SIZE = 100
# Requested pickup window on the day; EasyPost takes min/max_datetime and echoes them back.
PICKUP_FROM, PICKUP_UNTIL = "09:00", "17:00"
SIGNATURE_HEADER = "x-hmac-signature"
SIGNATURE_PREFIX = "hmac-sha256-hex="

# Tracker / TrackingDetail statuses (docs.easypost.com/docs/trackers) -> ports.TRACKING_STATUSES.
# "unknown" is left out: an event without a known status keeps the status before it.
_STATUSES = {
    "pre_transit": "info_received",
    "in_transit": "in_transit",
    "out_for_delivery": "out_for_delivery",
    # At a pickup point near the warehouse, waiting to be collected: the last leg.
    "available_for_pickup": "out_for_delivery",
    "delivered": "delivered",
    "return_to_sender": "exception",
    "failure": "exception",
    "cancelled": "exception",
    "error": "exception",
}
# Refund states after which a label must not be handed out again.
_REFUNDING = ("submitted", "refunded")
# Tracker statuses before the carrier has the parcel: a label may still be refunded.
_NOT_MOVING = ("unknown", "pre_transit", None, "")

# The last part of an EasyPost field error's name -> what the shopper can fix (ports.SHOPPER_FIELDS).
_FIELD_NAMES = {
    "zip": "postcode", "postal_code": "postcode",
    "phone": "phone", "email": "email", "country": "country",
    "street1": "address", "street2": "address", "city": "address", "state": "address",
    "name": "address", "company": "address", "address": "address",
    "weight": "weight", "length": "size", "width": "size", "height": "size",
}

T = TypeVar("T")


def _value(obj: Any, key: str, default: Any = None) -> Any:
    """`key` of an EasyPostObject or a plain dict (webhook bodies are plain JSON)."""
    if obj is None:
        return default
    getter = getattr(obj, "get", None)
    return getter(key, default) if getter is not None else default


def _split_ids(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


class EasyPostBackend:
    """Return labels, pickups, refunds (void) and tracking through one EasyPost account."""

    key = "easypost"
    pickup_window = f"{PICKUP_FROM}-{PICKUP_UNTIL}"
    name = "EasyPost"
    capabilities = CarrierCapabilities(label=True, qr=False, pickup=True, carrier_brings_label=False, void=True,
                                       tracking=True, international=True, tracking_webhook=True)
    settings_fields = (
        SettingField("api_key", N_("Production API key"), secret=True,
                     help=N_("EasyPost dashboard > Account settings > API keys (starts with EZAK).")),
        SettingField("test_api_key", N_("Test API key"), secret=True, required=False,
                     help=N_("Used instead of the production key while the connection is in test mode (EZTK...).")),
        SettingField("carrier_accounts", N_("Carrier account ids"), required=False,
                     help=N_("Comma-separated ca_... ids to rate with; empty: all accounts of the EasyPost user.")),
        SettingField("carrier", N_("Preferred carrier"), required=False,
                     help=N_("Buy this carrier's rate (as EasyPost names it, e.g. DHLExpress, UPS); empty: the cheapest.")),
        SettingField("service", N_("Preferred service"), required=False,
                     help=N_("Buy this service's rate (e.g. ExpressWorldwide); empty: the cheapest of the carrier.")),
        SettingField("webhook_secret", N_("Webhook secret"), secret=True, required=False,
                     help=N_("The webhook_secret of the EasyPost webhook pointing at this connector; "
                          "needed to accept tracking updates.")),
    )

    def __init__(self, settings: dict | None = None):
        settings = dict(settings or {})
        self.test_mode = bool(settings.get("test_mode"))
        api_key = (settings.get("api_key") or "").strip()
        if not api_key:
            raise ValueError("EasyPost setting api_key is missing")
        if self.test_mode:
            # A production key in test mode would buy real postage: insist on the test key.
            api_key = (settings.get("test_api_key") or "").strip()
            if not api_key:
                raise ValueError("EasyPost setting test_api_key is missing (needed in test mode)")
        self.carrier_accounts = _split_ids(settings.get("carrier_accounts"))
        self.carrier = (settings.get("carrier") or "").strip()
        self.service = (settings.get("service") or "").strip()
        self.webhook_secret = settings.get("webhook_secret") or ""
        self.client = _client(api_key)

    # ------------------------------------------------------------------ the port

    def create_return_label(self, shipment: ShipmentRequest) -> Label:
        """The return label for `shipment`: the shipment with this idempotency key if EasyPost has
        it (bought now if it is not yet), else a new one, created and bought."""
        return self._label(self._bought_shipment(shipment))

    def schedule_pickup(self, shipment: ShipmentRequest, day: date) -> Pickup:
        """Book a carrier pickup of the return parcel at the shopper's on `day`, with its label.

        EasyPost's carriers pick up parcels with a printed label only, so method "carrier_label"
        (the driver brings the label) is not supported. The pickup carries the shipment's
        idempotency key as reference: a repeated request returns the booked pickup; a pickup booked
        for another day is refused (cancel it first)."""
        if shipment.method == "carrier_label":
            raise CarrierNotSupported("EasyPost pickups need a printed label; the driver brings none")
        bought = self._bought_shipment(shipment)
        pickup = self._find_pickup(shipment.idempotency_key)
        if pickup is not None and _day_of(_value(pickup, "min_datetime")) != day:
            if _value(pickup, "status") == "scheduled":
                raise CarrierRejected(f"EasyPost pickup {pickup.id} of this return is booked for "
                                      f"{_day_of(_value(pickup, 'min_datetime'))}; cancel it before booking {day}")
            pickup = None  # an unbought pickup request for another day books nothing: ask afresh
        if pickup is None:
            pickup = self._call(self.client.pickup.create, **_pickup_payload(shipment, bought, day))
        if _value(pickup, "status") != "scheduled":
            pickup = self._buy_pickup(pickup, bought)
        booked_day = _day_of(_value(pickup, "min_datetime"))
        if booked_day != day:
            # The shopper was promised `day`: a pickup the carrier moved is called off, not kept.
            self._call(self.client.pickup.cancel, pickup.id)
            raise CarrierRejected(f"EasyPost booked pickup {pickup.id} for {booked_day}, not {day}; it was cancelled")
        return Pickup(day=day, window=_window(pickup), carrier_ref=pickup.id,
                      tracking_number=_value(bought, "tracking_code"), label=self._label(bought))

    def cancel_pickup(self, carrier_ref: str) -> str | None:
        """Cancel the pickup (the label stays valid for a drop-off; void it separately)."""
        pickup = self._call(self.client.pickup.cancel, carrier_ref)
        if _value(pickup, "status") != "canceled":
            raise CarrierRejected(f"EasyPost did not cancel pickup {carrier_ref} (status {_value(pickup, 'status')!r})")
        return VOIDED

    def void_label(self, tracking_number: str, carrier_ref: str | None = None) -> str | None:
        """Refund the label. `carrier_ref` is the shipment id (shp_...); without it the shipment is
        found through its tracker. Refused once the tracker shows the parcel moving."""
        shipment_id = carrier_ref if (carrier_ref or "").startswith("shp_") else self._shipment_id_of(tracking_number)
        shipment = self._call(self.client.shipment.retrieve, shipment_id)
        status = _value(shipment, "refund_status")
        # EasyPost: a "rejected" refund (e.g. asked for right after the label was made) may be
        # submitted again; "submitted" / "refunded" ones are not asked twice.
        if status in (None, "rejected"):
            tracker_status = _value(_value(shipment, "tracker"), "status")
            if tracker_status not in _NOT_MOVING:
                raise CarrierRejected(f"EasyPost: parcel {tracking_number} is already {tracker_status}; "
                                      "its label can no longer be refunded")
            status = _value(self._call(self.client.shipment.refund, shipment_id), "refund_status")
        return _void_outcome(status, tracking_number)

    def void_status(self, tracking_number: str, carrier_ref: str | None = None) -> bool | None:
        """After void_label: True once EasyPost's refund_status is "refunded", False when it is
        "rejected" or "not_applicable", None while it is "submitted"."""
        shipment_id = carrier_ref if (carrier_ref or "").startswith("shp_") else self._shipment_id_of(tracking_number)
        status = _value(self._call(self.client.shipment.retrieve, shipment_id), "refund_status")
        return {"refunded": True, "rejected": False, "not_applicable": False}.get(status)

    def track(self, tracking_number: str, carrier_ref: str | None = None) -> list[TrackingEvent]:
        """The parcel's events, oldest first: from the shipment's tracker when `carrier_ref` is the
        shipment id, else from the tracker of this tracking number (created if EasyPost has none)."""
        if (carrier_ref or "").startswith("shp_"):
            tracker = _value(self._call(self.client.shipment.retrieve, carrier_ref), "tracker")
        else:
            tracker = self._tracker_of(tracking_number)
        return _events(_value(tracker, "tracking_details") or [])

    def check_credentials(self) -> None:
        """One cheap authenticated read (the newest shipment); CarrierAuthError when refused."""
        self._call(self.client.shipment.all, page_size=1)

    def parse_webhook(self, headers: dict[str, str], body: bytes) -> list[TrackingUpdate]:
        """Verify an EasyPost Event delivery and turn it into tracking updates.

        ``tracker.*`` events give the tracker's events; ``refund.successful`` confirms (or, with
        status "rejected", refuses) a requested void. Other events give no update."""
        event = self._verified_event(headers, body)
        description = str(event.get("description") or "")
        result = event.get("result") or {}
        if description.startswith("tracker.") and isinstance(result, dict):
            return [TrackingUpdate(tracking_number=result.get("tracking_code"), carrier_ref=result.get("shipment_id"),
                                   events=tuple(_events(result.get("tracking_details") or [])))]
        if description.startswith("refund.") and isinstance(result, dict):
            status = result.get("status")
            if status in ("refunded", "rejected"):
                return [TrackingUpdate(tracking_number=result.get("tracking_code"),
                                       carrier_ref=result.get("shipment_id"), cancelled=status == "refunded")]
        return []

    # ------------------------------------------------------------------ shipments

    def _bought_shipment(self, request: ShipmentRequest) -> Any:
        """The bought EasyPost shipment for `request`, made at most once per idempotency key."""
        shipment = self._find_shipment(request.idempotency_key)
        if shipment is not None and _value(shipment, "refund_status") in _REFUNDING:
            raise CarrierRejected(f"EasyPost shipment {shipment.id} of this return was voided; "
                                  "a new shipment needs a new key")
        if shipment is None:
            shipment = self._call(self.client.shipment.create, **_shipment_payload(request, self.carrier_accounts))
        if not _value(shipment, "postage_label"):
            rate = _choose_rate(shipment, self.carrier, self.service)
            shipment = self._call(self.client.shipment.buy, shipment.id, rate={"id": rate.id})
        return shipment

    def _find_shipment(self, idempotency_key: str) -> Any | None:
        return self._find(self.client.shipment.all, self.client.shipment.get_next_page, "shipments", idempotency_key)

    def _find_pickup(self, idempotency_key: str) -> Any | None:
        found = self._find(self.client.pickup.all, self.client.pickup.get_next_page, "pickups", idempotency_key)
        return None if found is None or _value(found, "status") == "canceled" else found

    def _find(self, list_all: Callable, next_page: Callable, key: str, reference: str) -> Any | None:
        """The newest object of a list whose reference is `reference`, searching SEARCH_PAGES pages."""
        page = self._call(list_all, page_size=PAGE_SIZE)
        for number in range(SEARCH_PAGES):
            for item in page.get(key) or []:
                if _value(item, "reference") == reference:
                    return item
            if not page.get("has_more") or not page.get(key) or number == SEARCH_PAGES - 1:
                return None
            page = self._call(next_page, page, PAGE_SIZE)
        return None

    def _label(self, shipment: Any) -> Label:
        tracker = _value(shipment, "tracker")
        return Label(tracking_number=_value(shipment, "tracking_code"), pdf=self._label_pdf(shipment),
                     carrier_ref=shipment.id, tracking_url=_value(tracker, "public_url"))

    def _label_pdf(self, shipment: Any) -> bytes:
        """The label as PDF bytes: bought as PDF, else converted by EasyPost (GET .../label)."""
        url = _pdf_url(_value(shipment, "postage_label"))
        if not url:
            converted = self._call(self.client.shipment.label, shipment.id, file_format="PDF")
            url = _pdf_url(_value(converted, "postage_label"))
        if not url:
            raise CarrierRetryable(f"EasyPost gave no PDF label for shipment {shipment.id}")
        try:
            response = requests.get(url, timeout=TIMEOUT)
        except requests.RequestException as exc:
            raise CarrierRetryable(f"EasyPost label download failed: {type(exc).__name__}") from None
        if response.status_code != 200 or not response.content.startswith(b"%PDF"):
            raise CarrierRetryable(f"EasyPost label download for shipment {shipment.id} gave "
                                   f"HTTP {response.status_code}, not a PDF")
        return response.content

    def _shipment_id_of(self, tracking_number: str) -> str:
        tracker = self._tracker_of(tracking_number, create=False)
        shipment_id = _value(tracker, "shipment_id")
        if not shipment_id:
            raise CarrierRejected(f"EasyPost knows no shipment with tracking number {tracking_number!r}")
        return shipment_id

    def _tracker_of(self, tracking_number: str, create: bool = True) -> Any | None:
        trackers = self._call(self.client.tracker.all, tracking_code=tracking_number, page_size=1).get("trackers") or []
        if trackers:
            return trackers[0]
        # EasyPost returns the existing tracker for a known code instead of making a second one.
        return self._call(self.client.tracker.create, tracking_code=tracking_number) if create else None

    # ------------------------------------------------------------------ pickups

    def _buy_pickup(self, pickup: Any, shipment: Any) -> Any:
        """Buy the cheapest pickup rate of the label's carrier."""
        carrier = _value(_value(shipment, "selected_rate"), "carrier")
        rates = [r for r in _value(pickup, "pickup_rates") or [] if not carrier or _value(r, "carrier") == carrier]
        if not rates:
            raise CarrierRejected(_messages(pickup) or f"EasyPost: {carrier or 'no carrier'} offers no pickup "
                                  "for this address and day")
        rate = min(rates, key=lambda r: Decimal(str(_value(r, "rate") or "0")))
        return self._call(self.client.pickup.buy, pickup.id, carrier=rate.carrier, service=rate.service)

    # ------------------------------------------------------------------ webhooks

    def _verified_event(self, headers: dict[str, str], body: bytes) -> dict[str, Any]:
        if not self.webhook_secret:
            raise WebhookRejected("EasyPost webhook_secret is not set: deliveries cannot be verified")
        signature = next((v for k, v in (headers or {}).items() if k.lower() == SIGNATURE_HEADER), None)
        if not signature:
            raise WebhookRejected("EasyPost delivery without X-Hmac-Signature")
        if not hmac.compare_digest(signature.encode("utf-8"), webhook_signature(self.webhook_secret, body).encode()):
            raise WebhookRejected("EasyPost delivery with a wrong signature")
        try:
            event = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise WebhookRejected("EasyPost delivery is not JSON") from None
        if not isinstance(event, dict) or event.get("object") != "Event":
            raise WebhookRejected("EasyPost delivery is not an Event")
        return event

    # ------------------------------------------------------------------ errors

    def _call(self, method: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call the SDK, translating its errors into the port's."""
        try:
            return method(*args, **kwargs)
        except ep_errors.ApiError as exc:
            raise _port_error(exc) from None


# ---------------------------------------------------------------------- the SDK client

def _client(api_key: str) -> EasyPostClient:
    """An SDK client with our timeouts and without the SDK's own connection retries (the job
    runner retries with backoff; retrying inside would hide outages and stretch the job)."""
    client = EasyPostClient(api_key, timeout=TIMEOUT)  # passed to requests as (connect, read)
    session = getattr(client, "_requests_session", None)
    if session is not None:
        session.mount(API_BASE, requests.adapters.HTTPAdapter(max_retries=0))
    return client


def webhook_signature(secret: str, body: bytes) -> str:
    """The X-Hmac-Signature EasyPost sends for `body` (see easypost.util.validate_webhook)."""
    key = unicodedata.normalize("NFKD", secret).encode("utf-8")
    return SIGNATURE_PREFIX + hmac.new(key, body, hashlib.sha256).hexdigest()


_RETRYABLE = (ep_errors.TimeoutError, ep_errors.HttpError, ep_errors.InternalServerError,
              ep_errors.ServiceUnavailableError, ep_errors.GatewayTimeoutError, ep_errors.RateLimitError,
              ep_errors.JsonError)


def _port_error(exc: ep_errors.ApiError) -> Exception:
    """EasyPost's error -> the port's. JsonError is an unreadable answer (a proxy's HTML page)."""
    message = f"EasyPost: {exc.message or type(exc).__name__}"
    status = getattr(exc, "http_status", None) or 0
    if isinstance(exc, _RETRYABLE) or status >= 500:
        return CarrierRetryable(message)
    if isinstance(exc, (ep_errors.UnauthorizedError, ep_errors.ForbiddenError)):
        return CarrierAuthError(message)
    details = _field_errors(exc.errors)
    if details:
        message = f"{message} ({details})"
    return CarrierRejected(message, field=_shopper_field(exc.code, exc.errors))


def _field_errors(errors: Any) -> str:
    parts = []
    for error in errors or []:
        if isinstance(error, dict):
            parts.append(f"{error.get('field')}: {error.get('message')}")
        else:
            parts.append(str(error))
    return "; ".join(parts)


def _shopper_field(code: str | None, errors: Any) -> str | None:
    """What the shopper can fix, from EasyPost's field errors. Errors naming the from_address
    (the warehouse, on a return) are the merchant's, so they map to nothing."""
    for error in errors or []:
        name = str(error.get("field") or "") if isinstance(error, dict) else ""
        if not name or "from_address" in name or "return_address" in name:
            continue
        field = _FIELD_NAMES.get(name.rsplit(".", 1)[-1].rsplit("[", 1)[0])
        if field:
            return field
    if (code or "").upper().startswith("ADDRESS."):
        return "address"
    return None


def _void_outcome(refund_status: str | None, tracking_number: str) -> str:
    if refund_status == "refunded":
        return VOIDED
    if refund_status == "submitted":
        return VOID_REQUESTED
    if refund_status == "not_applicable":
        raise CarrierRejected(f"EasyPost: the carrier of {tracking_number} bills on scan and takes no refunds "
                              "(refund_status not_applicable); an unused label costs nothing")
    raise CarrierRejected(f"EasyPost refused the refund of {tracking_number} (refund_status {refund_status!r})")


# ---------------------------------------------------------------------- payloads

def _address(address: Address) -> dict[str, str]:
    payload = {"name": address.name, "street1": address.line1, "street2": address.line2, "city": address.city,
               "state": address.region, "zip": address.postcode, "country": address.country.upper(),
               "phone": address.phone, "email": address.email}
    return {key: value for key, value in payload.items() if value}


def _ounces(grams: int) -> float:
    """EasyPost weighs in ounces (to one decimal)."""
    return max(0.1, round(grams / 28.349523125, 1))


def _customs_info(customs: Customs) -> dict[str, Any]:
    """A CustomsInfo for a return (contents_type "returned_goods"): one CustomsItem per line;
    values are per line in the declaration's currency, weights per line in ounces."""
    return {
        "contents_type": customs.contents_type,
        "contents_explanation": customs.reason,
        "customs_certify": True,
        "restriction_type": "none",
        "non_delivery_option": "return",
        "customs_items": [
            {"description": item.description, "quantity": item.quantity, "value": str(item.value),
             "currency": customs.currency, "weight": _ounces(item.weight_grams),
             "hs_tariff_number": item.hs_code or None, "origin_country": item.origin_country or None,
             "code": item.sku or None}
            for item in customs.items
        ],
    }


def _shipment_payload(request: ShipmentRequest, carrier_accounts: list[str]) -> dict[str, Any]:
    """The Shipment to create. On a return EasyPost swaps the addresses, so they are given as on
    the outbound parcel: to = the shopper (request.sender), from = the warehouse."""
    options: dict[str, Any] = {"label_format": "PDF", "print_custom_1": request.reference}
    payload: dict[str, Any] = {
        "to_address": _address(request.sender),
        "from_address": _address(request.recipient),
        "parcel": {"weight": _ounces(request.weight_grams)},
        "is_return": True,
        "reference": request.idempotency_key,
        "options": options,
    }
    if request.customs is not None:
        payload["customs_info"] = _customs_info(request.customs)
        options["invoice_number"] = request.customs.invoice_number
        options["currency"] = request.customs.currency
    if carrier_accounts:
        payload["carrier_accounts"] = carrier_accounts
    return payload


def _pickup_payload(request: ShipmentRequest, shipment: Any, day: date) -> dict[str, Any]:
    return {
        "address": _address(request.sender),
        "shipment": {"id": shipment.id},
        "reference": request.idempotency_key,
        "min_datetime": f"{day.isoformat()} {PICKUP_FROM}:00",
        "max_datetime": f"{day.isoformat()} {PICKUP_UNTIL}:00",
        "is_account_address": False,
        "instructions": f"Return parcel {request.reference}",
    }


# ---------------------------------------------------------------------- answers

def _choose_rate(shipment: Any, carrier: str, service: str) -> Any:
    """The cheapest rate, of the preferred carrier / service when set."""
    def fits(rate: Any) -> bool:
        return ((not carrier or str(_value(rate, "carrier", "")).lower() == carrier.lower())
                and (not service or str(_value(rate, "service", "")).lower() == service.lower()))

    rates = [rate for rate in _value(shipment, "rates") or [] if fits(rate)]
    if not rates:
        wanted = " ".join(filter(None, (carrier, service))) or "any carrier"
        raise CarrierRejected(_messages(shipment) or f"EasyPost found no rate of {wanted} for this return")
    return min(rates, key=lambda rate: Decimal(str(_value(rate, "rate") or "0")))


def _messages(obj: Any) -> str:
    """The carriers' own rating errors of a shipment or pickup, for the merchant."""
    parts = [f"{_value(m, 'carrier')}: {_value(m, 'message')}" for m in _value(obj, "messages") or []]
    return ("EasyPost: " + "; ".join(parts)) if parts else ""


def _pdf_url(postage_label: Any) -> str | None:
    if not postage_label:
        return None
    if _value(postage_label, "label_pdf_url"):
        return _value(postage_label, "label_pdf_url")
    if _value(postage_label, "label_file_type") == "application/pdf":
        return _value(postage_label, "label_url")
    return None


def _parse_datetime(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    # "When location information is incomplete, timestamps default to UTC" (EasyPost trackers).
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _day_of(text: str | None) -> date | None:
    parsed = _parse_datetime(text)
    return parsed.date() if parsed else None


def _window(pickup: Any) -> str:
    start, end = _parse_datetime(_value(pickup, "min_datetime")), _parse_datetime(_value(pickup, "max_datetime"))
    if start and end and end > start:
        return f"{start:%H:%M}-{end:%H:%M}"
    return f"{PICKUP_FROM}-{PICKUP_UNTIL}"


def _location(detail: Any) -> str:
    place = _value(detail, "tracking_location")
    parts = [_value(place, key) for key in ("city", "state", "country")]
    return ", ".join(str(part) for part in parts if part)


def _events(details: Iterable[Any]) -> list[TrackingEvent]:
    """TrackingDetails -> TrackingEvents, oldest first; undated details are dropped."""
    dated = [(when, detail) for detail in details if (when := _parse_datetime(_value(detail, "datetime")))]
    dated.sort(key=lambda pair: pair[0])
    events: list[TrackingEvent] = []
    for when, detail in dated:
        status = _STATUSES.get(_value(detail, "status")) or (events[-1].status if events else "info_received")
        description = _value(detail, "message") or _value(detail, "description") or ""
        events.append(TrackingEvent(at=when, status=status, description=str(description), location=_location(detail)))
    return events
