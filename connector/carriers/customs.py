"""Customs declarations for returns that cross the EU customs border.

A return from Switzerland, the United Kingdom, Norway or the United States into an EU warehouse
(or the other way round) is an export and an import: the carrier needs a declaration of the
goods, built here from the returned order lines (value = what the shopper paid for them, the
order number as the invoice, contents "returned goods", so the import can be duty-relieved as a
return). Parcels within the customs union need none.
"""
from __future__ import annotations

from typing import Any

from connector.returns.money import quantize
from connector.returns.ports import Customs, CustomsItem

# The EU customs territory by ISO country: the 27 member states, plus Monaco (in the French
# customs territory). Not in it: Switzerland, Norway, the United Kingdom, Iceland, Liechtenstein,
# the Channel Islands and everything else.
EU_CUSTOMS = frozenset({
    "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IT", "LV", "LT",
    "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE", "MC",
})

DEFAULT_UNIT_WEIGHT_GRAMS = 500  # a unit whose product has no weight on the order
PACKAGING_GRAMS = 200


def needs_customs(sender_country: str | None, recipient_country: str | None) -> bool:
    """True when the parcel crosses the EU customs border (either way); False within the union, or
    within one country outside it (a Swiss shopper sending to a Swiss return address)."""
    a, b = (sender_country or "").upper(), (recipient_country or "").upper()
    if not a or not b or a == b:
        return False
    return not (a in EU_CUSTOMS and b in EU_CUSTOMS)


def _unit_weight(line: Any) -> int:
    grams = (getattr(line.order_line, "weight_grams", None) or 0)
    return int(grams) if grams > 0 else DEFAULT_UNIT_WEIGHT_GRAMS


def _paid(line: Any) -> Any:
    """What the shopper paid for the returned units: the unit price less the line's discount share."""
    ol = line.order_line
    per_unit_discount = (ol.discount_total / ol.quantity) if ol.quantity else 0
    return (ol.unit_price - per_unit_discount) * line.quantity


def declaration(ret: Any) -> Customs:
    """The declaration of a return's goods from its order lines (ret: models.Return)."""
    items = tuple(CustomsItem(
        description=(line.order_line.title + (f" - {line.order_line.variant_title}" if line.order_line.variant_title
                                              else ""))[:200],
        quantity=line.quantity,
        value=quantize(_paid(line), ret.currency),
        weight_grams=_unit_weight(line) * line.quantity,
        hs_code=str((line.order_line.product_tags and _hs_code(line.order_line.product_tags)) or ""),
        sku=line.order_line.sku or "",
    ) for line in ret.lines)
    return Customs(currency=ret.currency, items=items, invoice_number=ret.order.number)


def _hs_code(tags: list[str]) -> str:
    """An HS code a merchant keeps as a product tag "hs:6109100010" (platforms have no common field)."""
    for tag in tags:
        if str(tag).lower().startswith("hs:"):
            code = str(tag)[3:].strip().replace(".", "")
            if code.isdigit() and 6 <= len(code) <= 10:
                return code
    return ""


def parcel_weight(ret: Any) -> int:
    """The parcel's weight in grams: the units' weights plus packaging."""
    return sum(_unit_weight(line) * line.quantity for line in ret.lines) + PACKAGING_GRAMS
