"""The returns domain's tables. Every row belongs to one shop (`shop_id`); queries filter by it.

Money columns are `Amount` (Decimal) beside a currency; times are aware UTC (`UTCDateTime`).
The state column of `Return` is only ever written by `connector.returns.lifecycle.transition`.
"""
from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (Boolean, Date, ForeignKey, Index, Integer, LargeBinary, String, Text,
                        UniqueConstraint, text)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from connector.db import Base
from connector.dbtypes import Amount, JSONType, UTCDateTime, utcnow


class Shop(Base):
    """One installation: a store on a platform (or none), its credentials, settings and policy."""

    __tablename__ = "shops"

    id: Mapped[int] = mapped_column(primary_key=True)
    handle: Mapped[str] = mapped_column(String(64), unique=True)  # the portal URL's slug
    name: Mapped[str] = mapped_column(String(200))
    platform: Mapped[str] = mapped_column(String(20), default="standalone")
    domain: Mapped[str | None] = mapped_column(String(255), index=True)
    credentials: Mapped[bytes | None] = mapped_column(LargeBinary)  # Fernet-encrypted JSON
    api_key_hash: Mapped[str | None] = mapped_column(String(128))  # sha256 hex of the API key
    admin_password_hash: Mapped[str | None] = mapped_column(String(255))
    timezone: Mapped[str] = mapped_column(String(64), default="Europe/Berlin")
    currency: Mapped[str] = mapped_column(String(3), default="EUR")
    locale: Mapped[str] = mapped_column(String(8), default="en")
    country: Mapped[str] = mapped_column(String(2), default="DE")
    support_email: Mapped[str | None] = mapped_column(String(255))
    branding: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)  # logo_url, primary_color, ...
    policy: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)  # see returns.policy.ReturnPolicy
    return_address: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    return_seq: Mapped[int] = mapped_column(Integer, default=1000)  # last RMA number given out
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Non-secret facts the platform connector keeps (scopes, locations, sync cursors, install and
    # uninstall times); secrets go to `credentials`.
    platform_data: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Order(Base):
    """A synced copy of a platform order (platform ids are opaque strings)."""

    __tablename__ = "orders"
    __table_args__ = (
        UniqueConstraint("shop_id", "platform_id", name="uq_orders_shop_platform_id"),
        Index("ix_orders_shop_number", "shop_id", "number"),
        Index("ix_orders_shop_email", "shop_id", "email"),
        Index("ix_orders_shop_customer", "shop_id", "customer_platform_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"), index=True)
    platform_id: Mapped[str] = mapped_column(String(64))
    number: Mapped[str] = mapped_column(String(64))  # what the shopper sees, without '#'
    email: Mapped[str] = mapped_column(String(255))  # lower-cased
    customer_name: Mapped[str] = mapped_column(String(255), default="")
    # The platform's customer account id (OrderData.customer_id), opaque; None for guest orders.
    customer_platform_id: Mapped[str | None] = mapped_column(String(64))
    locale: Mapped[str | None] = mapped_column(String(8))
    currency: Mapped[str] = mapped_column(String(3))
    shipping_address: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    postcode: Mapped[str] = mapped_column(String(32), default="")  # normalised: upper, no spaces
    country: Mapped[str] = mapped_column(String(2), default="")
    taxes_included: Mapped[bool] = mapped_column(Boolean, default=True)
    shipping_total: Mapped[Decimal] = mapped_column(Amount, default=Decimal("0"))
    shipping_tax: Mapped[Decimal] = mapped_column(Amount, default=Decimal("0"))
    total: Mapped[Decimal] = mapped_column(Amount, default=Decimal("0"))
    payment_gateway: Mapped[str | None] = mapped_column(String(64))
    tags: Mapped[list[str]] = mapped_column(JSONType, default=list)
    placed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    fulfilled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    platform_updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    synced_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    lines: Mapped[list["OrderLine"]] = relationship(
        back_populates="order", cascade="all, delete-orphan", order_by="OrderLine.id")

    @property
    def display_number(self) -> str:
        return f"#{self.number}"


class OrderLine(Base):
    __tablename__ = "order_lines"

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"), index=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    platform_id: Mapped[str] = mapped_column(String(64))
    sku: Mapped[str] = mapped_column(String(128), default="")
    title: Mapped[str] = mapped_column(String(255))
    variant_title: Mapped[str] = mapped_column(String(255), default="")
    product_type: Mapped[str] = mapped_column(String(128), default="")
    product_tags: Mapped[list[str]] = mapped_column(JSONType, default=list)
    image_url: Mapped[str | None] = mapped_column(String(1024))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[Decimal] = mapped_column(Amount)  # before discounts; gross if order.taxes_included
    discount_total: Mapped[Decimal] = mapped_column(Amount, default=Decimal("0"))  # for all units
    tax_total: Mapped[Decimal] = mapped_column(Amount, default=Decimal("0"))  # for all units, after discounts
    final_sale: Mapped[bool] = mapped_column(Boolean, default=False)
    refunded_quantity: Mapped[int] = mapped_column(Integer, default=0)  # refunded on the platform outside returns
    fulfilled_quantity: Mapped[int | None] = mapped_column(Integer)

    order: Mapped[Order] = relationship(back_populates="lines")


class ReturnReason(Base):
    """A shop's return reason; optionally nested under a parent. Labels per language."""

    __tablename__ = "return_reasons"
    __table_args__ = (UniqueConstraint("shop_id", "code", name="uq_reasons_shop_code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"), index=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("return_reasons.id", ondelete="CASCADE"))
    code: Mapped[str] = mapped_column(String(64))
    labels: Mapped[dict[str, str]] = mapped_column(JSONType, default=dict)  # {"en": "...", "de": "..."}
    comment_required: Mapped[bool] = mapped_column(Boolean, default=False)
    photo_required: Mapped[bool] = mapped_column(Boolean, default=False)
    shop_fault: Mapped[bool] = mapped_column(Boolean, default=False)  # free return
    position: Mapped[int] = mapped_column(Integer, default=0)
    active: Mapped[bool] = mapped_column(Boolean, default=True)

    def label(self, locale: str) -> str:
        return self.labels.get(locale) or self.labels.get("en") or next(iter(self.labels.values()), self.code)


class Return(Base):
    """A return (RMA). `number` is per shop; shoppers and merchants see `rma` (e.g. R-1042)."""

    __tablename__ = "returns"
    __table_args__ = (
        UniqueConstraint("shop_id", "number", name="uq_returns_shop_number"),
        Index("ix_returns_shop_state", "shop_id", "state"),
        Index("ix_returns_pending", "pending_step", "pending_until"),
        UniqueConstraint("shop_id", "platform_id", name="uq_returns_shop_platform_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"), index=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    number: Mapped[int | None] = mapped_column(Integer)  # given when the draft is confirmed
    email: Mapped[str] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(24), default="draft")
    method: Mapped[str | None] = mapped_column(String(24))  # pickup | dropoff | carrier_label | selfship
    carrier: Mapped[str | None] = mapped_column(String(64))
    # The merchant's carrier account chosen with the method (None: the built-in backends).
    carrier_connection_id: Mapped[int | None] = mapped_column(ForeignKey("carrier_connections.id", ondelete="SET NULL"))
    refund_method: Mapped[str] = mapped_column(String(24), default="original")  # original | store_credit
    currency: Mapped[str] = mapped_column(String(3))
    fee: Mapped[Decimal] = mapped_column(Amount, default=Decimal("0"))  # return shipping fee charged
    locale: Mapped[str] = mapped_column(String(8), default="en")
    address: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)  # pickup / sender address
    checklist: Mapped[list[str]] = mapped_column(JSONType, default=list)
    is_withdrawal: Mapped[bool] = mapped_column(Boolean, default=False)  # EU withdrawal (Art. 11a)
    withdrawal_name: Mapped[str | None] = mapped_column(String(255))
    deadline: Mapped[datetime | None] = mapped_column(UTCDateTime)  # ship-by date
    # The platform's own return (Shopify Return GID) once it exists there; `origin` says where the
    # return was started: portal | admin | platform (mirrored from the platform's interface).
    platform_id: Mapped[str | None] = mapped_column(String(128))
    origin: Mapped[str] = mapped_column(String(16), default="portal")
    # The return's status on the platform as last written or read (Shopify: REQUESTED, OPEN,
    # CLOSED, DECLINED, CANCELED); None while it exists only here.
    platform_status: Mapped[str | None] = mapped_column(String(24))
    # The outside step the database is waiting for (label, pickup, refund, mail...) and until when;
    # the reconciler re-drives rows whose pending_until has passed.
    pending_step: Mapped[str | None] = mapped_column(String(24))
    pending_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    order: Mapped[Order] = relationship()
    lines: Mapped[list["ReturnLine"]] = relationship(
        back_populates="return_", cascade="all, delete-orphan", order_by="ReturnLine.id")
    shipments: Mapped[list["Shipment"]] = relationship(
        back_populates="return_", cascade="all, delete-orphan", order_by="Shipment.id")
    refunds: Mapped[list["Refund"]] = relationship(
        back_populates="return_", cascade="all, delete-orphan", order_by="Refund.id")
    events: Mapped[list["Event"]] = relationship(
        back_populates="return_", cascade="all, delete-orphan", order_by="Event.id")

    @property
    def rma(self) -> str:
        return f"R-{self.number}" if self.number else f"draft-{self.id}"

    @property
    def shipment(self) -> "Shipment | None":
        """The current (latest, not voided) shipment."""
        live = [s for s in self.shipments if s.status != "voided"]
        return live[-1] if live else None


class ReturnLine(Base):
    __tablename__ = "return_lines"

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"), index=True)
    return_id: Mapped[int] = mapped_column(ForeignKey("returns.id", ondelete="CASCADE"), index=True)
    order_line_id: Mapped[int] = mapped_column(ForeignKey("order_lines.id", ondelete="CASCADE"), index=True)
    quantity: Mapped[int] = mapped_column(Integer)
    reason_id: Mapped[int | None] = mapped_column(ForeignKey("return_reasons.id", ondelete="SET NULL"))
    comment: Mapped[str] = mapped_column(Text, default="")
    photos: Mapped[list[str]] = mapped_column(JSONType, default=list)  # storage keys
    received_quantity: Mapped[int | None] = mapped_column(Integer)
    grade: Mapped[str | None] = mapped_column(String(1))  # A | B | C
    disposition: Mapped[str | None] = mapped_column(String(16))  # restock | refurbish | dispose | missing
    inspection_note: Mapped[str] = mapped_column(Text, default="")
    inspection_photos: Mapped[list[str]] = mapped_column(JSONType, default=list)
    # The platform's line of the return (Shopify ReturnLineItem GID) and the platform facts the
    # connector needs later (e.g. reverse fulfillment order line ids for the disposition).
    platform_id: Mapped[str | None] = mapped_column(String(128))
    platform_data: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)

    return_: Mapped[Return] = relationship(back_populates="lines")
    order_line: Mapped[OrderLine] = relationship()
    reason: Mapped[ReturnReason | None] = relationship()


class CarrierConnection(Base):
    """A merchant's account with a carrier backend (connector.carriers.connections): its settings
    (secrets sealed in `credentials`), the methods it serves per destination country, and where
    parcels go back to per country."""

    __tablename__ = "carrier_connections"

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"), index=True)
    backend: Mapped[str] = mapped_column(String(64))  # registry key: sendcloud, easypost, karrio, ...
    name: Mapped[str] = mapped_column(String(200))
    credentials: Mapped[bytes | None] = mapped_column(LargeBinary)  # Fernet-sealed JSON of the secret fields
    settings: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)  # the other fields, cutoff_hour
    test_mode: Mapped[bool] = mapped_column(Boolean, default=True)
    methods: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)  # {method: ["DE", "AT"] | ["*"]}
    return_addresses: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)  # {country | "*": address}
    position: Mapped[int] = mapped_column(Integer, default=0)  # the first that serves a method wins
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    webhook_token: Mapped[str] = mapped_column(String(64), unique=True)  # in the carrier's webhook URL
    checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    check_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Shipment(Base):
    """The parcel's way back: carrier, label, pickup, tracking."""

    __tablename__ = "shipments"

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"), index=True)
    return_id: Mapped[int] = mapped_column(ForeignKey("returns.id", ondelete="CASCADE"), index=True)
    carrier: Mapped[str] = mapped_column(String(64))
    connection_id: Mapped[int | None] = mapped_column(ForeignKey("carrier_connections.id", ondelete="SET NULL"),
                                                      index=True)
    method: Mapped[str] = mapped_column(String(24))
    # requested -> label_ready | pickup_booked | awaiting_shipment -> in_transit -> delivered; voided; failed
    status: Mapped[str] = mapped_column(String(24), default="requested")
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    carrier_ref: Mapped[str | None] = mapped_column(String(128))
    tracking_number: Mapped[str | None] = mapped_column(String(128), index=True)
    tracking_url: Mapped[str | None] = mapped_column(String(1024))
    label_key: Mapped[str | None] = mapped_column(String(255))  # storage key of the PDF
    qr_key: Mapped[str | None] = mapped_column(String(255))  # storage key of the QR image
    pickup_date: Mapped[date | None] = mapped_column(Date)
    pickup_window: Mapped[str | None] = mapped_column(String(32))  # e.g. "09:00-18:00"
    events: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)  # normalised tracking
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    platform_id: Mapped[str | None] = mapped_column(String(128))  # e.g. Shopify ReverseDelivery GID
    next_poll_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # tracking poll backoff
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    return_: Mapped[Return] = relationship(back_populates="shipments")


class Refund(Base):
    """Money back. Committed as `pending` with its idempotency key before the platform is called."""

    __tablename__ = "refunds"

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"), index=True)
    return_id: Mapped[int] = mapped_column(ForeignKey("returns.id", ondelete="CASCADE"), index=True)
    amount: Mapped[Decimal] = mapped_column(Amount)
    currency: Mapped[str] = mapped_column(String(3))
    lines: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)  # the plan's lines, as text
    shipping_amount: Mapped[Decimal] = mapped_column(Amount, default=Decimal("0"))
    deductions: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    method: Mapped[str] = mapped_column(String(24), default="original")  # original | store_credit
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending | succeeded | failed | unknown
    manual: Mapped[bool] = mapped_column(Boolean, default=False)  # recorded; the merchant pays out
    platform_refund_id: Mapped[str | None] = mapped_column(String(128))
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Set while one worker's attempt is in flight (cleared when it ends): another worker may not
    # start an attempt until it ends or its lease (services.refunds.ATTEMPT_LEASE) runs out, since a
    # platform without idempotency keys (WooCommerce) cannot tell two sends of one refund apart.
    attempt_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    requested_by: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    return_: Mapped[Return] = relationship(back_populates="refunds")


class Event(Base):
    """Append-only timeline entry of a return. `public` ones are shown to the shopper."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"), index=True)
    return_id: Mapped[int] = mapped_column(ForeignKey("returns.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(255))  # shopper | merchant:<name> | system | carrier
    kind: Mapped[str] = mapped_column(String(48))  # e.g. "state", "note", "label", "refund"
    data: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    public: Mapped[bool] = mapped_column(Boolean, default=True)

    return_: Mapped[Return] = relationship(back_populates="events")


class WebhookDelivery(Base):
    """A received webhook, kept for dedupe and inspection (malformed ones too)."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("platform", "dedupe_key", name="uq_webhooks_dedupe"),
        # The rows still to process, for the reconciler's re-drive (partial: processed rows are
        # most of the table, and each holds a body the scan would have to read past).
        Index("ix_webhooks_pending", "received_at", sqlite_where=text("processed_at IS NULL"),
              postgresql_where=text("processed_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int | None] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"), index=True)
    platform: Mapped[str] = mapped_column(String(20))
    topic: Mapped[str] = mapped_column(String(64))
    dedupe_key: Mapped[str] = mapped_column(String(255))
    payload: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(Text)


class UsedToken(Base):
    """Single-use tokens (sign-in links) that have been spent."""

    __tablename__ = "used_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    used_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RateLimitHit(Base):
    """Fixed-window counters for rate limits shared by every web process."""

    __tablename__ = "rate_limits"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)


class StoredFile(Base):
    """Labels, QR codes and photos kept in the database when machines share no disk."""

    __tablename__ = "stored_files"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
