"""Orders sent by a standalone shop (API JSON, CSV rows) turned into `ports.OrderData`.

Pure functions: no Flask, no database. Every problem is collected (not only the first) as a
`FieldError(field, message)`, so the sender can fix a payload in one go. Amounts must be strings
("19.90"): a JSON number is a binary float and cannot carry cents exactly.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Iterable

from babel.numbers import list_currencies

from connector.returns.money import ZERO
from connector.returns.ports import OrderData, OrderLineData

MAX_LINES = 500
MAX_TAGS = 50
AMOUNT_RE = re.compile(r"^\d{1,14}(\.\d{1,4})?$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
COUNTRY_RE = re.compile(r"^[A-Z]{2}$")
LOCALE_RE = re.compile(r"^[a-z]{2}([-_][A-Za-z]{2})?$")
CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
FLOAT_MESSAGE = 'send amounts as strings, e.g. "19.90" (a JSON number cannot carry cents exactly)'

ORDER_FIELDS = {"id", "number", "email", "currency", "placed_at", "lines", "customer_name",
                "shipping_address", "taxes_included", "shipping_total", "shipping_tax", "total",
                "fulfilled_at", "delivered_at", "cancelled_at", "updated_at", "tags", "locale"}
LINE_FIELDS = {"id", "title", "quantity", "unit_price", "sku", "variant", "product_type", "tags",
               "discount_total", "tax_total", "final_sale"}
ADDRESS_FIELDS = {"name": 255, "line1": 255, "line2": 255, "postcode": 32, "city": 255, "country": 2}


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class MappingError(ValueError):
    """The input cannot become an order; `errors` lists every problem found."""

    def __init__(self, errors: list[FieldError]):
        super().__init__("; ".join(str(e) for e in errors))
        self.errors = errors


class _Reader:
    """Reads typed values out of loosely typed input, collecting problems instead of raising.

    `text_input` is True for CSV, where every cell is a string and an empty cell means absent.
    """

    def __init__(self, *, text_input: bool):
        self.text_input = text_input
        self.errors: list[FieldError] = []

    def fail(self, field: str, message: str) -> None:
        self.errors.append(FieldError(field, message))

    def _absent(self, value: Any) -> bool:
        return value is None or (self.text_input and isinstance(value, str) and value.strip() == "")

    def text(self, value: Any, field: str, *, max_len: int, required: bool = False) -> str:
        if self._absent(value):
            if required:
                self.fail(field, "is required")
            return ""
        if not isinstance(value, str):
            self.fail(field, "must be a string")
            return ""
        value = value.strip()
        if required and not value:
            self.fail(field, "is required")
        elif len(value) > max_len:
            self.fail(field, f"is longer than {max_len} characters")
        elif CONTROL_RE.search(value):
            self.fail(field, "contains control characters")
        return value

    def ident(self, value: Any, field: str, *, max_len: int = 64) -> str:
        """A required platform id or number: a string, or a whole number (ids often are)."""
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        return self.text(value, field, max_len=max_len, required=True)

    def amount(self, value: Any, field: str, *, required: bool = False) -> Decimal:
        if self._absent(value):
            if required:
                self.fail(field, "is required")
            return ZERO
        if isinstance(value, float):
            self.fail(field, FLOAT_MESSAGE)
            return ZERO
        if not isinstance(value, str):
            self.fail(field, 'must be an amount as a string, e.g. "19.90"')
            return ZERO
        if not AMOUNT_RE.match(value.strip()):
            self.fail(field, 'is not an amount: use digits and a dot, e.g. "19.90", not negative')
            return ZERO
        return Decimal(value.strip())

    def quantity(self, value: Any, field: str) -> int:
        if self._absent(value):
            self.fail(field, "is required")
            return 0
        if self.text_input and isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(field, "must be a whole number of at least 1")
            return 0
        if not 1 <= value <= 100_000:
            self.fail(field, "must be between 1 and 100000")
            return 0
        return value

    def flag(self, value: Any, field: str, *, default: bool) -> bool:
        if self._absent(value):
            return default
        if isinstance(value, bool):
            return value
        if self.text_input and isinstance(value, str):
            folded = value.strip().lower()
            if folded in ("1", "true", "yes", "y"):
                return True
            if folded in ("0", "false", "no", "n"):
                return False
        self.fail(field, "must be true or false")
        return default

    def moment(self, value: Any, field: str, *, required: bool = False) -> datetime | None:
        if self._absent(value):
            if required:
                self.fail(field, "is required")
            return None
        if not isinstance(value, str):
            self.fail(field, "must be an ISO-8601 date and time string")
            return None
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            self.fail(field, "is not an ISO-8601 date and time, e.g. 2025-03-01T10:00:00+01:00")
            return None
        if parsed.tzinfo is None:
            self.fail(field, "needs a UTC offset, e.g. 2025-03-01T10:00:00+01:00 or ...Z")
            return None
        return parsed.astimezone(timezone.utc)

    def currency(self, value: Any, field: str) -> str:
        code = self.text(value, field, max_len=3, required=True).upper()
        if code and code not in _currencies():
            self.fail(field, "is not an ISO 4217 currency code, e.g. EUR")
        return code

    def email(self, value: Any, field: str) -> str:
        email = self.text(value, field, max_len=255, required=True)
        if email and not EMAIL_RE.match(email):
            self.fail(field, "is not an email address")
        return email.lower()

    def country(self, value: Any, field: str) -> str:
        code = self.text(value, field, max_len=2).upper()
        if code and not COUNTRY_RE.match(code):
            self.fail(field, "must be a two-letter ISO country code, e.g. DE")
        return code

    def tags(self, value: Any, field: str) -> tuple[str, ...]:
        if self._absent(value):
            return ()
        if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
            self.fail(field, "must be a list of strings")
            return ()
        if len(value) > MAX_TAGS:
            self.fail(field, f"may hold at most {MAX_TAGS} tags")
            return ()
        tags = tuple(t.strip() for t in value if t.strip())
        if any(len(t) > 100 or CONTROL_RE.search(t) for t in tags):
            self.fail(field, "each tag must be at most 100 plain characters")
            return ()
        return tags


def _currencies() -> frozenset[str]:
    global _CURRENCIES
    if _CURRENCIES is None:
        _CURRENCIES = frozenset(list_currencies())
    return _CURRENCIES


_CURRENCIES: frozenset[str] | None = None


def order_total(lines: Iterable[OrderLineData], *, taxes_included: bool, shipping_total: Decimal,
                shipping_tax: Decimal) -> Decimal:
    """What the shopper paid: lines after discounts (plus their tax when prices are net), plus shipping."""
    total = shipping_total + (ZERO if taxes_included else shipping_tax)
    for line in lines:
        total += line.unit_price * line.quantity - line.discount_total
        if not taxes_included:
            total += line.tax_total
    return total


def _check_line_money(r: _Reader, line: OrderLineData, prefix: str) -> None:
    if line.quantity and line.discount_total > line.unit_price * line.quantity:
        r.fail(f"{prefix}discount_total", "is more than unit_price × quantity")


# ---------------------------------------------------------------------------- API JSON


def order_from_json(payload: Any) -> OrderData:
    """Map the body of POST /api/v1/orders to OrderData; raises MappingError listing every problem."""
    r = _Reader(text_input=False)
    if not isinstance(payload, dict):
        raise MappingError([FieldError("body", "must be a JSON object")])
    for key in sorted(set(payload) - ORDER_FIELDS, key=str):
        r.fail(str(key)[:64], "is not a known field")

    platform_id = r.ident(payload.get("id"), "id")
    number = r.ident(payload.get("number"), "number").lstrip("#").strip()
    if "number" in payload and payload["number"] is not None and not number:
        r.fail("number", "is required")
    email = r.email(payload.get("email"), "email")
    currency = r.currency(payload.get("currency"), "currency")
    placed_at = r.moment(payload.get("placed_at"), "placed_at", required=True)
    locale = r.text(payload.get("locale"), "locale", max_len=8) or None
    if locale and not LOCALE_RE.match(locale):
        r.fail("locale", "must be a language code like de or de-DE")
    address = _address_from_json(r, payload.get("shipping_address"))
    taxes_included = r.flag(payload.get("taxes_included"), "taxes_included", default=True)
    shipping_total = r.amount(payload.get("shipping_total"), "shipping_total")
    shipping_tax = r.amount(payload.get("shipping_tax"), "shipping_tax")
    lines = _lines_from_json(r, payload.get("lines"))

    total = r.amount(payload.get("total"), "total") if payload.get("total") is not None else None
    if total is None:
        total = order_total(lines, taxes_included=taxes_included, shipping_total=shipping_total,
                            shipping_tax=shipping_tax)
    data = OrderData(
        platform_id=platform_id, number=number, email=email, currency=currency,
        placed_at=placed_at, lines=lines,
        customer_name=r.text(payload.get("customer_name"), "customer_name", max_len=255),
        locale=locale, shipping_address=address, taxes_included=taxes_included,
        shipping_total=shipping_total, shipping_tax=shipping_tax, total=total,
        tags=r.tags(payload.get("tags"), "tags"),
        fulfilled_at=r.moment(payload.get("fulfilled_at"), "fulfilled_at"),
        delivered_at=r.moment(payload.get("delivered_at"), "delivered_at"),
        cancelled_at=r.moment(payload.get("cancelled_at"), "cancelled_at"),
        updated_at=r.moment(payload.get("updated_at"), "updated_at"),
    )
    if r.errors:
        raise MappingError(r.errors)
    return data


def _address_from_json(r: _Reader, value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        r.fail("shipping_address", "must be an object")
        return {}
    for key in sorted(set(value) - set(ADDRESS_FIELDS), key=str):
        r.fail(f"shipping_address.{str(key)[:64]}", "is not a known field")
    address = {}
    for key, max_len in ADDRESS_FIELDS.items():
        field = f"shipping_address.{key}"
        text = r.country(value.get(key), field) if key == "country" else r.text(value.get(key), field, max_len=max_len)
        if text:
            address[key] = text
    return address


def _lines_from_json(r: _Reader, value: Any) -> tuple[OrderLineData, ...]:
    if value is None:
        r.fail("lines", "is required")
        return ()
    if not isinstance(value, list) or not value:
        r.fail("lines", "must be a non-empty list")
        return ()
    if len(value) > MAX_LINES:
        r.fail("lines", f"may hold at most {MAX_LINES} lines")
        return ()
    lines = []
    seen: set[str] = set()
    for i, item in enumerate(value):
        prefix = f"lines[{i}]."
        if not isinstance(item, dict):
            r.fail(f"lines[{i}]", "must be an object")
            continue
        for key in sorted(set(item) - LINE_FIELDS, key=str):
            r.fail(prefix + str(key)[:64], "is not a known field")
        line = OrderLineData(
            platform_id=r.ident(item.get("id"), prefix + "id"),
            title=r.text(item.get("title"), prefix + "title", max_len=255, required=True),
            quantity=r.quantity(item.get("quantity"), prefix + "quantity"),
            unit_price=r.amount(item.get("unit_price"), prefix + "unit_price", required=True),
            sku=r.text(item.get("sku"), prefix + "sku", max_len=128),
            variant_title=r.text(item.get("variant"), prefix + "variant", max_len=255),
            product_type=r.text(item.get("product_type"), prefix + "product_type", max_len=128),
            product_tags=r.tags(item.get("tags"), prefix + "tags"),
            discount_total=r.amount(item.get("discount_total"), prefix + "discount_total"),
            tax_total=r.amount(item.get("tax_total"), prefix + "tax_total"),
            final_sale=r.flag(item.get("final_sale"), prefix + "final_sale", default=False),
        )
        if line.platform_id and line.platform_id in seen:
            r.fail(prefix + "id", "appears twice in this order")
        seen.add(line.platform_id)
        _check_line_money(r, line, prefix)
        lines.append(line)
    return tuple(lines)


# ---------------------------------------------------------------------------- CSV rows

CSV_COLUMNS = ("order_id", "order_number", "email", "currency", "placed_at", "customer_name", "country",
               "postcode", "city", "line1", "line_id", "sku", "title", "variant", "quantity", "unit_price",
               "discount_total", "tax_total", "final_sale", "fulfilled_at", "delivered_at", "taxes_included",
               "shipping_total")
CSV_REQUIRED = ("order_id", "order_number", "email", "currency", "placed_at", "line_id", "title", "quantity",
                "unit_price")
# Order-level columns: read from an order's first row; later rows must agree where they are filled.
CSV_ORDER_COLUMNS = ("order_number", "email", "currency", "placed_at", "customer_name", "country", "postcode",
                     "city", "line1", "fulfilled_at", "delivered_at", "taxes_included", "shipping_total")


def missing_csv_columns(header: Iterable[str] | None) -> list[str]:
    """Required columns absent from a CSV header."""
    present = {h.strip() for h in header or () if h}
    return [c for c in CSV_REQUIRED if c not in present]


def order_from_csv_rows(rows: list[tuple[int, dict[str, str | None]]]) -> OrderData:
    """Map the rows of one order (row number, DictReader row) to OrderData.

    Each problem's field reads "row N: column". Raises MappingError.
    """
    r = _Reader(text_input=True)
    first_no, first = rows[0]

    def at(no: int, column: str) -> str:
        return f"row {no}: {column}"

    for no, row in rows:
        if None in row:
            r.fail(f"row {no}", "has more cells than the header has columns")
        if no != first_no:
            for column in CSV_ORDER_COLUMNS:
                value = (row.get(column) or "").strip()
                if value and value != (first.get(column) or "").strip():
                    r.fail(at(no, column), f"differs from row {first_no} of the same order")

    lines = []
    seen: set[str] = set()
    for no, row in rows:
        line = OrderLineData(
            platform_id=r.text(row.get("line_id"), at(no, "line_id"), max_len=64, required=True),
            title=r.text(row.get("title"), at(no, "title"), max_len=255, required=True),
            quantity=r.quantity(row.get("quantity"), at(no, "quantity")),
            unit_price=r.amount(row.get("unit_price"), at(no, "unit_price"), required=True),
            sku=r.text(row.get("sku"), at(no, "sku"), max_len=128),
            variant_title=r.text(row.get("variant"), at(no, "variant"), max_len=255),
            discount_total=r.amount(row.get("discount_total"), at(no, "discount_total")),
            tax_total=r.amount(row.get("tax_total"), at(no, "tax_total")),
            final_sale=r.flag(row.get("final_sale"), at(no, "final_sale"), default=False),
        )
        if line.platform_id and line.platform_id in seen:
            r.fail(at(no, "line_id"), "appears twice in this order")
        seen.add(line.platform_id)
        _check_line_money(r, line, f"row {no}: ")
        lines.append(line)

    address = {
        "name": r.text(first.get("customer_name"), at(first_no, "customer_name"), max_len=255),
        "line1": r.text(first.get("line1"), at(first_no, "line1"), max_len=255),
        "postcode": r.text(first.get("postcode"), at(first_no, "postcode"), max_len=32),
        "city": r.text(first.get("city"), at(first_no, "city"), max_len=255),
        "country": r.country(first.get("country"), at(first_no, "country")),
    }
    taxes_included = r.flag(first.get("taxes_included"), at(first_no, "taxes_included"), default=True)
    shipping_total = r.amount(first.get("shipping_total"), at(first_no, "shipping_total"))
    lines_t = tuple(lines)
    data = OrderData(
        platform_id=r.text(first.get("order_id"), at(first_no, "order_id"), max_len=64, required=True),
        number=r.text(first.get("order_number"), at(first_no, "order_number"), max_len=64,
                      required=True).lstrip("#").strip(),
        email=r.email(first.get("email"), at(first_no, "email")),
        currency=r.currency(first.get("currency"), at(first_no, "currency")),
        placed_at=r.moment(first.get("placed_at"), at(first_no, "placed_at"), required=True),
        lines=lines_t,
        customer_name=address["name"],
        shipping_address={k: v for k, v in address.items() if v},
        taxes_included=taxes_included,
        shipping_total=shipping_total,
        total=order_total(lines_t, taxes_included=taxes_included, shipping_total=shipping_total,
                          shipping_tax=ZERO),
        fulfilled_at=r.moment(first.get("fulfilled_at"), at(first_no, "fulfilled_at")),
        delivered_at=r.moment(first.get("delivered_at"), at(first_no, "delivered_at")),
    )
    if r.errors:
        raise MappingError(r.errors)
    return data
