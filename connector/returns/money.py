"""Decimal money helpers: rounding to a currency's minor unit (0, 2 or 3 decimals)."""
from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from babel.numbers import get_currency_precision

ZERO = Decimal("0")


def minor_unit(currency: str) -> Decimal:
    """The smallest amount of `currency`: 1 for JPY, 0.01 for EUR, 0.001 for KWD."""
    return Decimal(1).scaleb(-get_currency_precision(currency.upper()))


def quantize(amount: Decimal, currency: str) -> Decimal:
    """Round half up to the currency's minor unit."""
    return Decimal(amount).quantize(minor_unit(currency), rounding=ROUND_HALF_UP)


def to_decimal(value) -> Decimal:
    """Parse an amount given as str, int or Decimal; floats are refused (they are not money)."""
    if isinstance(value, float):
        raise TypeError("money must not be a float; pass a string or Decimal")
    return Decimal(str(value)) if value is not None else ZERO
