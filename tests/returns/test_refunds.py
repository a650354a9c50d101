"""Refund plans: exact Decimal money per line, fees, shipping, the cap, and no rounding drift."""
from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.returns.ports import Deduction, RefundPlanLine
from connector.returns.refunds import LineInput, plan_refund

D = Decimal
PLENTY = D("100000")


def line(quantity=1, *, bought=3, before=0, unit="10.00", discount="1.00", tax="0", line_id=1, restock=False):
    return LineInput(order_line_id=line_id, platform_line_id=f"gid://line/{line_id}", quantity_bought=bought,
                     quantity=quantity, quantity_previously_refunded=before, unit_price=D(unit),
                     discount_total=D(discount), tax_total=D(tax), restock=restock)


def plan(*lines, currency="EUR", taxes_included=True, remaining=PLENTY, **kw):
    return plan_refund(currency=currency, taxes_included=taxes_included, lines=list(lines),
                       refundable_remaining=remaining, **kw)


# ---------------------------------------------------------------------------- lines


def test_full_line_refunds_price_times_quantity_minus_discount():
    result = plan(line(3))
    assert result.lines == (RefundPlanLine(1, "gid://line/1", 3, D("29.00"), D("0.00")),)
    assert result.total == D("29.00")
    assert result.shipping == D("0.00") and result.deductions == ()
    assert result.capped is False and result.method == "original" and result.currency == "EUR"


def test_awkward_split_three_units_with_a_discount_adds_up_exactly():
    """29.00 over 3 units: 9.67 + 9.66 + 9.67, never 9.67 * 3 = 29.01."""
    amounts = [plan(line(1, before=n)).total for n in range(3)]
    assert amounts == [D("9.67"), D("9.66"), D("9.67")]
    assert sum(amounts) == plan(line(3)).total == D("29.00")


def test_two_partial_refunds_equal_one_full_refund():
    first = plan(line(2, bought=7, unit="19.99", discount="5.00", tax="21.53"))
    second = plan(line(5, bought=7, before=2, unit="19.99", discount="5.00", tax="21.53"))
    full = plan(line(7, bought=7, unit="19.99", discount="5.00", tax="21.53"))
    assert first.total + second.total == full.total == D("134.93")
    assert first.lines[0].tax + second.lines[0].tax == full.lines[0].tax == D("21.53")


def test_taxes_included_tax_is_the_share_inside_the_price():
    """Gross prices: 29.00 already holds 4.63 of tax; the amount does not grow by it."""
    result = plan(line(1, tax="4.63"), taxes_included=True)
    assert (result.lines[0].amount, result.lines[0].tax) == (D("9.67"), D("1.54"))
    rest = plan(line(2, before=1, tax="4.63"), taxes_included=True)
    assert (rest.lines[0].amount, rest.lines[0].tax) == (D("19.33"), D("3.09"))


def test_taxes_excluded_tax_is_added_to_the_amount():
    result = plan(line(1, bought=2, unit="10.00", discount="0", tax="3.80"), taxes_included=False)
    assert (result.lines[0].amount, result.lines[0].tax) == (D("11.90"), D("1.90"))
    assert result.total == D("11.90")


def test_taxes_excluded_with_discount():
    result = plan(line(3, tax="5.51"), taxes_included=False)
    assert result.total == D("34.51")


def test_several_lines_and_restock_flag():
    result = plan(line(1, line_id=1, restock=True), line(2, bought=2, unit="5.00", discount="0", line_id=2))
    assert [(pl.order_line_id, pl.amount, pl.restock) for pl in result.lines] == [
        (1, D("9.67"), True), (2, D("10.00"), False)]
    assert result.lines_total == result.total == D("19.67")


# ---------------------------------------------------------------------------- currencies


def test_yen_has_no_decimals():
    parts = [plan(line(1, before=n, unit="1000", discount="100", tax="264"), currency="JPY")
             for n in range(3)]
    assert [p.total for p in parts] == [D("967"), D("966"), D("967")]
    assert [p.lines[0].tax for p in parts] == [D("88"), D("88"), D("88")]
    assert sum(p.total for p in parts) == D("2900")
    assert all(p.total.as_tuple().exponent == 0 for p in parts)


@pytest.mark.parametrize("currency", ["KWD", "BHD"])
def test_three_decimal_currencies(currency):
    parts = [plan(line(1, before=n, unit="1.250", discount="0.100"), currency=currency) for n in range(3)]
    assert [p.total for p in parts] == [D("1.217"), D("1.216"), D("1.217")]
    assert sum(p.total for p in parts) == D("3.650")


def test_amounts_are_rounded_to_the_minor_unit_half_up():
    assert plan(line(1, bought=2, unit="0.005", discount="0")).total == D("0.01")


# ---------------------------------------------------------------------------- shipping, fees, cap


def test_shipping_is_added_as_given():
    result = plan(line(3), shipping=D("4.90"))
    assert result.shipping == D("4.90")
    assert result.total == D("33.90")


def test_return_fee_is_deducted():
    result = plan(line(3), return_fee=D("4.95"))
    assert result.deductions == (Deduction("return_fee", "Return shipping fee", D("4.95")),)
    assert result.total == D("24.05")


def test_restocking_fee_is_a_percent_of_the_lines_rounded():
    result = plan(line(1), shipping=D("5.00"), restocking_fee_percent=D("12.5"))
    assert [(d.code, d.amount) for d in result.deductions] == [("restocking_fee", D("1.21"))]  # 1.20875
    assert result.total == D("9.67") + D("5.00") - D("1.21")


def test_both_fees_and_shipping_together():
    result = plan(line(3), shipping=D("4.90"), return_fee=D("3.95"), restocking_fee_percent=D("10"))
    assert [(d.code, d.amount) for d in result.deductions] == [("return_fee", D("3.95")),
                                                              ("restocking_fee", D("2.90"))]
    assert result.total == D("29.00") + D("4.90") - D("3.95") - D("2.90")


def test_zero_fees_make_no_deductions():
    assert plan(line(3), return_fee=D("0"), restocking_fee_percent=D("0")).deductions == ()


def test_total_is_never_negative():
    result = plan(line(1, bought=1, unit="2.00", discount="0"), return_fee=D("4.95"))
    assert str(result.total) == "0.00"
    assert result.capped is False


def test_total_is_capped_at_what_is_still_refundable():
    result = plan(line(3), shipping=D("4.90"), remaining=D("20.00"))
    assert result.total == D("20.00")
    assert result.capped is True
    assert result.lines_total == D("29.00")  # the lines still say what was returned


def test_exactly_the_remaining_amount_is_not_capped():
    result = plan(line(3), remaining=D("29.00"))
    assert (result.total, result.capped) == (D("29.00"), False)


def test_nothing_left_to_refund_gives_zero():
    result = plan(line(3), remaining=D("0"))
    assert (result.total, result.capped) == (D("0.00"), True)


def test_store_credit_method_is_carried():
    assert plan(line(1), method="store_credit").method == "store_credit"


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize("bad_line", [
    line(0),
    line(-1),
    line(4),
    line(2, before=2),
    line(1, before=-1),
    line(1, unit="-10.00"),
    line(1, discount="-1"),
    line(1, tax="-0.01"),
    line(1, bought=1, unit="10.00", discount="10.01"),
    LineInput(1, "l1", 3, 1, 0, 10.0, D("0"), D("0")),
    LineInput(1, "l1", 3, 1, 0, D("10"), 0.5, D("0")),
    LineInput(1, "l1", 3, 1.0, 0, D("10"), D("0"), D("0")),
    LineInput(1, "l1", 3, 1, 0, D("NaN"), D("0"), D("0")),
])
def test_bad_lines_are_refused(bad_line):
    with pytest.raises(ValueError):
        plan(bad_line)


@pytest.mark.parametrize("kw", [
    {"shipping": D("-1")},
    {"shipping": 4.9},
    {"return_fee": D("-0.01")},
    {"return_fee": 1.5},
    {"restocking_fee_percent": D("-1")},
    {"restocking_fee_percent": D("100.1")},
    {"restocking_fee_percent": 10.0},
    {"remaining": D("-1")},
    {"remaining": 100.0},
])
def test_bad_amounts_are_refused(kw):
    with pytest.raises(ValueError):
        plan(line(1), **kw)


def test_the_same_order_line_twice_is_refused():
    with pytest.raises(ValueError):
        plan(line(1), line(1, before=1))


# ---------------------------------------------------------------------------- no drift, ever


@st.composite
def split_line(draw):
    currency = draw(st.sampled_from(["EUR", "JPY", "KWD"]))
    places = {"EUR": 2, "JPY": 0, "KWD": 3}[currency]
    bought = draw(st.integers(min_value=1, max_value=40))
    cents = st.integers(min_value=0, max_value=10 ** (places + 5))
    unit = D(draw(cents)).scaleb(-places)
    discount = min(D(draw(cents)).scaleb(-places), unit * bought)
    tax = D(draw(cents)).scaleb(-places)
    cuts = draw(st.lists(st.integers(min_value=1, max_value=bought - 1), unique=True)) if bought > 1 else []
    bounds = [0, *sorted(cuts), bought]
    parts = [b - a for a, b in zip(bounds, bounds[1:])]
    return currency, draw(st.booleans()), bought, unit, discount, tax, parts


@given(split_line())
def test_any_split_of_a_line_adds_up_to_the_one_shot_refund(case):
    currency, taxes_included, bought, unit, discount, tax, parts = case

    def refund(quantity, before):
        lone = LineInput(1, "l1", bought, quantity, before, unit, discount, tax)
        return plan_refund(currency=currency, taxes_included=taxes_included, lines=[lone],
                           refundable_remaining=D("1e12")).lines[0]

    full = refund(bought, 0)
    refunded, amount, tax_sum = 0, D(0), D(0)
    for quantity in parts:
        piece = refund(quantity, refunded)
        assert piece.amount >= 0 and piece.tax >= 0
        refunded, amount, tax_sum = refunded + quantity, amount + piece.amount, tax_sum + piece.tax
        assert amount <= full.amount and tax_sum <= full.tax
    assert (amount, tax_sum) == (full.amount, full.tax)
