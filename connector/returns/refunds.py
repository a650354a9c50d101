"""The refund plan: what goes back for the returned units, in Decimal, to the currency's minor unit.

Each line's money is shared out over its units cumulatively: the units refunded now get
round(total * (before + now) / bought) - round(total * before / bought). Rounding therefore never
drifts: however a line is split over several refunds, the parts add up to the one-shot full refund
to the last cent (or yen, or fils).
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal, InvalidOperation

from connector.returns.money import ZERO, minor_unit, quantize
from connector.returns.ports import Deduction, RefundPlan, RefundPlanLine


@dataclass(frozen=True)
class LineInput:
    order_line_id: int
    platform_line_id: str
    quantity_bought: int
    quantity: int  # units refunded now
    quantity_previously_refunded: int  # units of this line already refunded by earlier refunds
    unit_price: Decimal  # before discounts; includes tax when the order's taxes are included
    discount_total: Decimal  # for all units bought
    tax_total: Decimal  # for all units bought, after discounts
    restock: bool = False


def plan_refund(*, currency: str, taxes_included: bool, lines: list[LineInput],
                shipping: Decimal = ZERO, return_fee: Decimal = ZERO,
                restocking_fee_percent: Decimal = ZERO, refundable_remaining: Decimal,
                method: str = "original") -> RefundPlan:
    """Plan a refund of `lines`, plus `shipping`, minus the return fee and the restocking fee.

    A line's money is unit_price * bought - discount_total, plus tax_total when taxes are not
    included in the price; each plan line's `amount` includes its `tax` share. The restocking fee
    is `restocking_fee_percent` of the lines' total. The total is never negative and never more
    than `refundable_remaining` (then `capped` is set).

    Raises ValueError for a float or negative amount, a quantity that is not positive or is more
    than is left to refund on its line, or the same order line twice.
    """
    shipping = quantize(_amount(shipping, "shipping"), currency)
    return_fee = quantize(_amount(return_fee, "return_fee"), currency)
    # Rounded down: the cap must never let through a fraction more than is left.
    remaining = _amount(refundable_remaining, "refundable_remaining").quantize(
        minor_unit(currency), rounding=ROUND_DOWN)
    percent = _amount(restocking_fee_percent, "restocking_fee_percent")
    if percent > 100:
        raise ValueError("restocking_fee_percent must be at most 100")
    if len({line.order_line_id for line in lines}) != len(lines):
        raise ValueError("each order line may appear only once in a refund")

    plan_lines = tuple(_plan_line(line, currency, taxes_included) for line in lines)
    lines_total = sum((line.amount for line in plan_lines), ZERO)

    deductions = []
    if return_fee > 0:
        deductions.append(Deduction("return_fee", "Return shipping fee", return_fee))
    restocking = quantize(lines_total * percent / 100, currency)
    if restocking > 0:
        label = f"Restocking fee ({percent.normalize():f}%)"
        deductions.append(Deduction("restocking_fee", label, restocking))

    total = quantize(max(lines_total + shipping - sum((d.amount for d in deductions), ZERO), ZERO), currency)
    capped = total > remaining
    return RefundPlan(currency=currency, lines=plan_lines, shipping=shipping,
                      deductions=tuple(deductions), total=min(total, remaining),
                      method=method, capped=capped)


def _plan_line(line: LineInput, currency: str, taxes_included: bool) -> RefundPlanLine:
    bought, now, before = line.quantity_bought, line.quantity, line.quantity_previously_refunded
    for name, value in (("quantity_bought", bought), ("quantity", now),
                        ("quantity_previously_refunded", before)):
        if type(value) is not int:
            raise ValueError(f"line {line.order_line_id}: {name} must be a whole number")
    if now <= 0:
        raise ValueError(f"line {line.order_line_id}: quantity must be positive")
    if before < 0 or before + now > bought:
        raise ValueError(f"line {line.order_line_id}: only {max(bought - before, 0)} of {bought} "
                         f"units are left to refund, not {now}")
    unit_price = _amount(line.unit_price, "unit_price")
    discount = _amount(line.discount_total, "discount_total")
    tax = _amount(line.tax_total, "tax_total")
    total = unit_price * bought - discount + (ZERO if taxes_included else tax)
    if total < 0:
        raise ValueError(f"line {line.order_line_id}: the discount is more than the line is worth")

    def share(whole: Decimal) -> Decimal:
        return (quantize(whole * (before + now) / bought, currency)
                - quantize(whole * before / bought, currency))

    return RefundPlanLine(order_line_id=line.order_line_id, platform_line_id=line.platform_line_id,
                          quantity=now, amount=share(total), tax=share(tax), restock=line.restock)


def _amount(value: Decimal | int | str, name: str) -> Decimal:
    """A non-negative, finite Decimal from a Decimal, int or numeric string; floats are not money."""
    if isinstance(value, (float, bool)) or not isinstance(value, (Decimal, int, str)):
        raise ValueError(f"{name} must be a Decimal, not {type(value).__name__}")
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"{name} is not an amount: {value!r}") from None
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"{name} must be a finite amount of at least 0, not {value!r}")
    return amount
