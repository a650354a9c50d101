"""The two ports the domain talks through, and the plain data that crosses them.

A platform adapter (Shopify, WooCommerce, standalone) and a carrier backend (sandbox, selfship,
Sendcloud, ...) implement these protocols. The domain and services see only these types; nothing
Shopify- or carrier-shaped passes this line.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Iterator, Protocol, runtime_checkable

# ---------------------------------------------------------------------------- platform data


@dataclass(frozen=True)
class OrderLineData:
    platform_id: str
    title: str
    quantity: int
    unit_price: Decimal
    sku: str = ""
    variant_title: str = ""
    product_type: str = ""
    product_tags: tuple[str, ...] = ()
    discount_total: Decimal = Decimal("0")
    tax_total: Decimal = Decimal("0")
    final_sale: bool = False
    refunded_quantity: int = 0
    image_url: str | None = None


@dataclass(frozen=True)
class OrderData:
    """An order as a platform reports it, before it is stored."""

    platform_id: str
    number: str
    email: str
    currency: str
    placed_at: datetime
    lines: tuple[OrderLineData, ...]
    customer_name: str = ""
    # The platform's id of the customer account that placed the order (Shopify: the Customer GID,
    # "gid://shopify/Customer/123"); None for guest orders and platforms without accounts.
    customer_id: str | None = None
    locale: str | None = None
    shipping_address: dict[str, Any] = field(default_factory=dict)
    taxes_included: bool = True
    shipping_total: Decimal = Decimal("0")
    shipping_tax: Decimal = Decimal("0")
    total: Decimal = Decimal("0")
    payment_gateway: str | None = None
    tags: tuple[str, ...] = ()
    fulfilled_at: datetime | None = None
    delivered_at: datetime | None = None
    cancelled_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class RefundPlanLine:
    """Money back for one returned order line: `amount` includes `tax`."""

    order_line_id: int
    platform_line_id: str
    quantity: int
    amount: Decimal
    tax: Decimal
    restock: bool = False


@dataclass(frozen=True)
class Deduction:
    code: str  # "return_fee" | "restocking_fee" | ...
    label: str
    amount: Decimal


@dataclass(frozen=True)
class RefundPlan:
    """What will be refunded, in Decimal, before anything is sent. total = lines + shipping - deductions."""

    currency: str
    lines: tuple[RefundPlanLine, ...]
    shipping: Decimal
    deductions: tuple[Deduction, ...]
    total: Decimal
    method: str = "original"  # original | store_credit
    capped: bool = False  # True when the total was cut to what is still refundable

    @property
    def lines_total(self) -> Decimal:
        return sum((line.amount for line in self.lines), Decimal("0"))


@dataclass(frozen=True)
class RefundResult:
    """The platform's answer. `manual` means recorded only: the merchant pays out themselves."""

    status: str  # succeeded | failed | unknown
    platform_refund_id: str | None = None
    message: str = ""
    manual: bool = False


@dataclass(frozen=True)
class PlatformCapabilities:
    refund_through_gateway: bool = False
    store_credit: bool = False
    native_returns: bool = False
    exchanges: bool = False
    manual_refunds_only: bool = False
    # The return's milestones are written to the platform's order as notes (`add_note`), from
    # services.platform.write_order_notes (WooCommerce: it has no native returns to keep in step).
    order_notes: bool = False
    # `refund(..., manual=True)` records a refund on the platform without moving money, for a
    # payment the platform cannot refund automatically (services.request_refund(manual=True)).
    manual_refunds: bool = False


class PlatformError(Exception):
    """A platform call failed. `retryable` tells the job runner whether to try again."""

    def __init__(self, message: str, *, retryable: bool = False):
        super().__init__(message)
        self.retryable = retryable


@runtime_checkable
class PlatformAdapter(Protocol):
    """A shop's platform. With `capabilities.native_returns` the services keep the platform's own
    return in step (`services.sync_return`): `open_return` creates it and gives its id (the caller
    stores it on `Return.platform_id`), `find_return` looks for one a crashed worker may have
    created, `approve_return` approves one opened as a request (`Return.platform_status`
    "REQUESTED") once the return was approved here, `close_return` cancels or declines it,
    `attach_tracking` sets `shipment.platform_id`,
    `restock` reports graded lines and marks each `line.platform_data["disposed"]`. `refund` sends
    `plan` once under `key`; `find_refund` tells whether a refund with `key` already exists.
    Adapters with `capabilities.manual_refunds` also take `refund(..., manual=True)`; with
    `capabilities.order_notes`, `add_note` writes the return's milestones on the order."""

    key: str
    capabilities: PlatformCapabilities

    def iter_orders(self, since: datetime | None) -> Iterator[OrderData]: ...
    def get_order(self, platform_id: str) -> OrderData | None: ...
    def parse_webhook(self, request: Any) -> list[Any]: ...
    def open_return(self, ret: Any) -> str | None: ...
    def find_return(self, ret: Any) -> str | None: ...
    def approve_return(self, ret: Any) -> None: ...
    def close_return(self, ret: Any) -> None: ...
    def attach_tracking(self, ret: Any, shipment: Any) -> None: ...
    def restock(self, ret: Any, lines: list[Any]) -> None: ...
    def refund(self, order: Any, plan: RefundPlan, key: str, ret: Any = None) -> RefundResult: ...
    def find_refund(self, order: Any, key: str) -> RefundResult | None: ...
    def add_note(self, order: Any, text: str) -> None: ...


# ---------------------------------------------------------------------------- carrier data

METHODS = ("pickup", "dropoff", "carrier_label", "selfship")
"""Return methods: carrier pickup with a printed label; drop-off with a label (PDF or QR);
carrier pickup where the driver brings the label; the shopper ships it with any carrier."""


@dataclass(frozen=True)
class CarrierCapabilities:
    label: bool = False
    qr: bool = False
    pickup: bool = False
    carrier_brings_label: bool = False
    void: bool = False
    tracking: bool = False
    international: bool = False
    # The carrier reports parcel changes to our webhook (parse_webhook); without it we poll `track`.
    tracking_webhook: bool = False
    # A label may come back without its PDF (made later by the carrier): fetch_label gets it.
    late_label: bool = False

    def serves(self, method: str) -> bool:
        return {
            "pickup": self.pickup and self.label,
            "dropoff": self.label,
            "carrier_label": self.pickup and self.carrier_brings_label,
            "selfship": not self.label and not self.pickup,
        }.get(method, False)


@dataclass(frozen=True)
class Address:
    name: str
    line1: str
    postcode: str
    city: str
    country: str  # ISO 3166-1 alpha-2
    line2: str = ""
    region: str = ""
    phone: str = ""
    email: str = ""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Address":
        names = cls.__dataclass_fields__
        return cls(**{k: (v or "") for k, v in data.items() if k in names})


@dataclass(frozen=True)
class ParcelItem:
    description: str
    quantity: int
    value: Decimal
    sku: str = ""


@dataclass(frozen=True)
class CustomsItem:
    description: str
    quantity: int
    value: Decimal  # for the whole quantity, in Customs.currency
    weight_grams: int  # for the whole quantity
    hs_code: str = ""
    origin_country: str = ""  # ISO 3166-1 alpha-2
    sku: str = ""


@dataclass(frozen=True)
class Customs:
    """A customs declaration for a return crossing the EU customs border (from CH, GB, NO, US, ...),
    built from the order lines (connector.carriers.customs.declaration)."""

    currency: str
    items: tuple[CustomsItem, ...]
    invoice_number: str  # the order number the goods were sold under
    contents_type: str = "returned_goods"
    reason: str = "Return of goods"


@dataclass(frozen=True)
class SettingField:
    """One setting a merchant enters for a carrier connection; the admin form is built from a
    backend's `settings_fields`. A `secret` is sealed at rest, never shown again and never logged."""

    name: str
    label: str
    secret: bool = False
    required: bool = True
    choices: tuple[tuple[str, str], ...] = ()  # (value, label); empty: free text
    help: str = ""


@dataclass(frozen=True)
class ShipmentRequest:
    """Everything a carrier needs for one return parcel. `idempotency_key` is one per shipment:
    a backend sends it to the carrier (or finds its earlier parcel by it) so that a retried or
    doubled request makes one label."""

    idempotency_key: str
    reference: str  # the RMA, printed on the label
    method: str
    sender: Address
    recipient: Address
    items: tuple[ParcelItem, ...]
    currency: str
    weight_grams: int = 1000
    pickup_date: date | None = None
    customs: Customs | None = None


@dataclass(frozen=True)
class Label:
    tracking_number: str
    pdf: bytes | None = None
    qr_png: bytes | None = None
    carrier_ref: str | None = None
    tracking_url: str | None = None


@dataclass(frozen=True)
class Pickup:
    day: date
    window: str  # "09:00-18:00"
    carrier_ref: str | None = None
    tracking_number: str | None = None
    label: Label | None = None


TRACKING_STATUSES = ("info_received", "in_transit", "out_for_delivery", "delivered", "exception")


@dataclass(frozen=True)
class TrackingEvent:
    at: datetime
    status: str  # one of TRACKING_STATUSES
    description: str = ""
    location: str = ""


@dataclass(frozen=True)
class TrackingUpdate:
    """What a carrier's webhook said about one parcel (parse_webhook). `cancelled`: True when a
    requested cancellation is confirmed, False when the carrier refused it, None when not about that."""

    tracking_number: str | None = None
    carrier_ref: str | None = None
    events: tuple[TrackingEvent, ...] = ()
    cancelled: bool | None = None
    label: Label | None = None  # a late label that is ready now


# Void/cancel outcomes: done now, or asked for and confirmed later (from the status or a webhook).
VOIDED = "voided"
VOID_REQUESTED = "requested"

# CarrierRejected.field values the shopper can act on (connector.carriers.refusals translates them).
SHOPPER_FIELDS = ("address", "postcode", "phone", "email", "weight", "size", "country")


class CarrierError(Exception):
    """Base of the carrier errors; `message` is the carrier's own words."""


class CarrierRetryable(CarrierError):
    """Timeout, 5xx, rate limit: try again later."""


class CarrierRejected(CarrierError):
    """The carrier refused the request; the message is the carrier's own words (for the merchant).
    `field` (one of SHOPPER_FIELDS) says what the shopper can fix; `shopper_message` overrides the
    translated message that field maps to."""

    def __init__(self, message: str, *, shopper_message: str | None = None, field: str | None = None):
        super().__init__(message)
        self.shopper_message = shopper_message
        self.field = field


class CarrierAuthError(CarrierError):
    """Credentials are wrong or expired: the merchant must reconnect the carrier."""


class CarrierNotSupported(CarrierError):
    """The backend cannot do this (e.g. void on a carrier without cancellation)."""


class WebhookRejected(CarrierError):
    """A webhook delivery that is not the carrier's: bad or missing signature, unreadable body."""


@runtime_checkable
class CarrierBackend(Protocol):
    """A carrier, built as ``cls(settings)``: `settings` holds the connection's fields (see
    `settings_fields`, secrets already opened), "test_mode" (bool) and "data_dir".

    Optional class attribute `settings_fields: tuple[SettingField, ...]` (what the merchant enters)
    and attribute `pickup_window` ("HH:MM-HH:MM", the window a pickup is booked in: shown before booking).
    Optional methods, by capability: `fetch_label(carrier_ref, tracking_number) -> Label | None`
    (late_label: None while the carrier has not made it), `parse_webhook(headers, body) ->
    list[TrackingUpdate]` (tracking_webhook: raises WebhookRejected for a delivery that is not the
    carrier's, checked in constant time), `void_status(tracking_number, carrier_ref) -> bool | None`
    (for void_label's VOID_REQUESTED: True cancelled, False refused, None not decided yet; the
    tracking poll asks it where no webhook reports the outcome)."""

    key: str
    name: str
    capabilities: CarrierCapabilities

    def create_return_label(self, shipment: ShipmentRequest) -> Label: ...
    def schedule_pickup(self, shipment: ShipmentRequest, day: date) -> Pickup: ...
    def cancel_pickup(self, carrier_ref: str) -> str | None: ...
    def void_label(self, tracking_number: str, carrier_ref: str | None = None) -> str | None: ...
    def track(self, tracking_number: str, carrier_ref: str | None = None) -> list[TrackingEvent]: ...
    def check_credentials(self) -> None: ...
