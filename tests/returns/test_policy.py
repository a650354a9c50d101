"""Return policy: window, eligibility per line, methods, fees, auto-approval, storage as JSON."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from connector.returns.models import Order, OrderLine
from connector.returns.policy import (Eligibility, ReturnPolicy, allowed_methods, line_eligibility,
                                      return_fee, should_auto_approve, validate_policy_dict,
                                      window_end)

PLACED = datetime(2025, 3, 1, 9, 0, tzinfo=timezone.utc)
FULFILLED = datetime(2025, 3, 2, 12, 0, tzinfo=timezone.utc)
DELIVERED = datetime(2025, 3, 4, 15, 30, tzinfo=timezone.utc)


def make_order(**kw) -> Order:
    values = dict(shop_id=1, platform_id="o1", number="1001", email="a@example.com", currency="EUR",
                  placed_at=PLACED, fulfilled_at=FULFILLED, delivered_at=DELIVERED)
    return Order(**{**values, **kw})


def make_line(**kw) -> OrderLine:
    values = dict(shop_id=1, platform_id="l1", title="Shirt", sku="SH-1", quantity=3,
                  unit_price=Decimal("20.00"), product_tags=["Summer"], product_type="Shirts",
                  refunded_quantity=0, final_sale=False)
    return OrderLine(**{**values, **kw})


def check(line=None, order=None, policy=None, *, already_returned=0, now=DELIVERED + timedelta(days=1)):
    return line_eligibility(line or make_line(), order or make_order(), policy or ReturnPolicy(),
                            already_returned=already_returned, now=now)


# ---------------------------------------------------------------------------- window


def test_window_runs_from_delivery():
    assert window_end(make_order(), ReturnPolicy(window_days=14)) == DELIVERED + timedelta(days=14)


def test_window_runs_from_fulfilment_plus_transit_when_delivery_unknown():
    order = make_order(delivered_at=None)
    policy = ReturnPolicy(window_days=14, transit_allowance_days=3)
    assert window_end(order, policy) == FULFILLED + timedelta(days=17)


def test_no_window_before_fulfilment():
    assert window_end(make_order(fulfilled_at=None, delivered_at=None), ReturnPolicy()) is None


def test_line_is_returnable_up_to_and_including_the_window_end():
    policy = ReturnPolicy(window_days=30)
    end = DELIVERED + timedelta(days=30)
    assert check(policy=policy, now=end) == Eligibility(returnable_quantity=3, blocked=None)
    assert check(policy=policy, now=end + timedelta(microseconds=1)) == Eligibility(0, "window_passed")


def test_window_from_fulfilment_blocks_after_transit_allowance():
    order = make_order(delivered_at=None)
    policy = ReturnPolicy(window_days=10, transit_allowance_days=5)
    assert check(order=order, policy=policy, now=FULFILLED + timedelta(days=15)).blocked is None
    late = FULFILLED + timedelta(days=15, seconds=1)
    assert check(order=order, policy=policy, now=late).blocked == "window_passed"


# ---------------------------------------------------------------------------- blocks


def test_unfulfilled_order_is_blocked():
    assert check(order=make_order(fulfilled_at=None, delivered_at=None)) == Eligibility(0, "not_fulfilled")


def test_line_with_nothing_fulfilled_is_blocked():
    assert check(line=make_line(fulfilled_quantity=0)).blocked == "not_fulfilled"


def test_cancelled_order_is_blocked_before_anything_else():
    order = make_order(cancelled_at=DELIVERED)
    assert check(line=make_line(final_sale=True), order=order) == Eligibility(0, "cancelled")


@pytest.mark.parametrize("line_kw, policy_kw", [
    ({"product_tags": ["Gift-Card"]}, {"excluded_tags": ["gift-card"]}),
    ({"product_tags": ["gift-card"]}, {"excluded_tags": [" GIFT-CARD "]}),
    ({"sku": "SH-1"}, {"excluded_skus": ["SH-1"]}),
    ({"product_type": "Underwear"}, {"excluded_product_types": ["underwear"]}),
])
def test_excluded_by_tag_sku_or_product_type(line_kw, policy_kw):
    assert check(line=make_line(**line_kw), policy=ReturnPolicy(**policy_kw)) == Eligibility(0, "excluded")


def test_empty_sku_or_type_is_never_excluded_by_an_empty_entry():
    policy = ReturnPolicy(excluded_skus=[""], excluded_product_types=[""])
    assert check(line=make_line(sku="", product_type=""), policy=policy).blocked is None


def test_final_sale_by_flag():
    assert check(line=make_line(final_sale=True)) == Eligibility(0, "final_sale")


def test_final_sale_by_tag_case_insensitive():
    assert check(line=make_line(product_tags=["Final-Sale"])).blocked == "final_sale"
    policy = ReturnPolicy(final_sale_tags=["clearance"])
    assert check(line=make_line(product_tags=["CLEARANCE"]), policy=policy).blocked == "final_sale"
    assert check(line=make_line(product_tags=["final-sale"]), policy=policy).blocked is None


def test_line_without_tags_or_flags_set_is_eligible():
    line = OrderLine(quantity=2, unit_price=Decimal("10"))  # unsaved: columns are None, not defaults
    assert check(line=line) == Eligibility(2, None)


# ---------------------------------------------------------------------------- quantities


def test_returnable_quantity_subtracts_refunded_and_already_returned():
    assert check(line=make_line(quantity=5, refunded_quantity=1), already_returned=2) == Eligibility(2, None)


def test_everything_refunded_or_returned_is_blocked():
    assert check(line=make_line(quantity=3, refunded_quantity=3)) == Eligibility(0, "already_returned")
    line = make_line(quantity=3, refunded_quantity=1)
    assert check(line=line, already_returned=2) == Eligibility(0, "already_returned")
    assert check(line=make_line(quantity=3), already_returned=5) == Eligibility(0, "already_returned")


# ---------------------------------------------------------------------------- methods and fees


def test_allowed_methods_by_country_else_fallback():
    policy = ReturnPolicy(methods={"ES": ["dropoff"], "*": ["pickup", "selfship"]})
    assert allowed_methods(policy, "ES") == ["dropoff"]
    assert allowed_methods(policy, "es") == ["dropoff"]
    assert allowed_methods(policy, "FR") == ["pickup", "selfship"]


def test_no_methods_when_neither_country_nor_fallback():
    assert allowed_methods(ReturnPolicy(methods={"DE": ["pickup"]}), "AT") == []


def test_allowed_methods_returns_a_copy():
    policy = ReturnPolicy()
    allowed_methods(policy, "DE").append("carrier_label")
    assert policy.methods["*"] == ["pickup", "dropoff", "selfship"]


def test_fee_per_method():
    policy = ReturnPolicy()
    assert return_fee(policy, "pickup", shop_fault=False) == Decimal("4.95")
    assert return_fee(policy, "dropoff", shop_fault=False) == Decimal("3.95")
    assert return_fee(policy, "selfship", shop_fault=False) == Decimal("0")


def test_fee_is_free_when_the_shop_is_at_fault():
    assert return_fee(ReturnPolicy(), "pickup", shop_fault=True) == Decimal("0")


def test_method_without_a_fee_set_is_free():
    assert return_fee(ReturnPolicy(fees={"pickup": Decimal("5")}), "dropoff", shop_fault=False) == 0


def test_unknown_method_is_refused():
    with pytest.raises(ValueError):
        return_fee(ReturnPolicy(), "teleport", shop_fault=False)


# ---------------------------------------------------------------------------- auto-approval


def approve(policy, value="50", reasons=("too_small",), withdrawal=False):
    return should_auto_approve(policy, value=Decimal(value), reason_codes=list(reasons),
                               is_withdrawal=withdrawal)


def test_auto_approve_by_default_and_not_when_switched_off():
    assert approve(ReturnPolicy()) is True
    assert approve(ReturnPolicy(auto_approve=False)) is False


def test_auto_approve_up_to_max_total():
    policy = ReturnPolicy(auto_approve_max_total=Decimal("100"))
    assert approve(policy, value="100.00") is True
    assert approve(policy, value="100.01") is False


def test_auto_approve_only_listed_reasons():
    policy = ReturnPolicy(auto_approve_reason_codes=["too_small", "too_big"])
    assert approve(policy, reasons=["too_small", "too_big"]) is True
    assert approve(policy, reasons=["too_small", "damaged"]) is False
    assert approve(policy, reasons=[]) is False


def test_withdrawal_is_always_approved():
    policy = ReturnPolicy(auto_approve=False, auto_approve_max_total=Decimal("10"),
                          auto_approve_reason_codes=["too_small"])
    assert approve(policy, value="500", reasons=[], withdrawal=True) is True


# ---------------------------------------------------------------------------- storage


def test_round_trip_through_json():
    policy = ReturnPolicy(window_days=14, excluded_tags=["gift"],
                          methods={"DE": ["pickup"], "*": ["selfship"]},
                          fees={"pickup": Decimal("5.50"), "selfship": Decimal("0")},
                          restocking_fee_percent=Decimal("12.5"), refund_shipping="shop_fault",
                          auto_approve_max_total=Decimal("150.00"), auto_approve_reason_codes=["too_big"],
                          refund_trigger="inspected", ship_by_days=7, store_credit=True)
    stored = json.loads(json.dumps(policy.to_dict()))
    assert stored["fees"]["pickup"] == "5.50"
    assert stored["restocking_fee_percent"] == "12.5"
    assert ReturnPolicy.from_dict(stored) == policy


def test_defaults_round_trip():
    assert ReturnPolicy.from_dict(json.loads(json.dumps(ReturnPolicy().to_dict()))) == ReturnPolicy()


def test_from_dict_tolerates_missing_extra_and_null_keys():
    policy = ReturnPolicy.from_dict({"window_days": "21", "legacy_setting": True, "fees": None,
                                     "auto_approve_max_total": None})
    assert policy.window_days == 21
    assert policy.fees == ReturnPolicy().fees
    assert policy.auto_approve_max_total is None
    assert ReturnPolicy.from_dict({}) == ReturnPolicy()
    assert ReturnPolicy.from_dict(None) == ReturnPolicy()


def test_from_dict_reads_amounts_exactly():
    policy = ReturnPolicy.from_dict({"fees": {"pickup": 4.95, "dropoff": "3.10"},
                                     "restocking_fee_percent": 10})
    assert policy.fees == {"pickup": Decimal("4.95"), "dropoff": Decimal("3.10")}
    assert all(isinstance(v, Decimal) for v in policy.fees.values())
    assert policy.restocking_fee_percent == Decimal("10")


@pytest.mark.parametrize("data", [{"window_days": "a month"}, {"fees": ["pickup"]}, {"methods": 3}])
def test_from_dict_refuses_unreadable_values(data):
    with pytest.raises(ValueError, match=next(iter(data))):
        ReturnPolicy.from_dict(data)


def test_policies_do_not_share_mutable_defaults():
    a, b = ReturnPolicy(), ReturnPolicy()
    a.excluded_tags.append("x")
    a.fees["pickup"] = Decimal("1")
    assert b.excluded_tags == [] and b.fees["pickup"] == Decimal("4.95")


# ---------------------------------------------------------------------------- validation


def test_valid_policy_has_no_problems():
    assert validate_policy_dict(ReturnPolicy().to_dict()) == []
    assert validate_policy_dict({}) == []
    assert validate_policy_dict({"window_days": None, "unknown": "x"}) == []


def test_validation_lists_every_problem():
    problems = validate_policy_dict({"window_days": -1, "fees": {"pickup": "-1"}, "refund_trigger": "x"})
    assert len(problems) == 3


@pytest.mark.parametrize("data, mentions", [
    ({"methods": {"*": ["pickup", "teleport"]}}, "teleport"),
    ({"fees": {"teleport": "1"}}, "teleport"),
    ({"carriers": {"teleport": "sandbox"}}, "teleport"),
    ({"fees": {"pickup": "-1.00"}}, "fees.pickup"),
    ({"window_days": -1}, "window_days"),
    ({"transit_allowance_days": -2}, "transit_allowance_days"),
    ({"restocking_fee_percent": "100.01"}, "restocking_fee_percent"),
    ({"restocking_fee_percent": "-5"}, "restocking_fee_percent"),
    ({"auto_approve_max_total": "-1"}, "auto_approve_max_total"),
    ({"refund_shipping": "sometimes"}, "refund_shipping"),
    ({"refund_trigger": "moon"}, "refund_trigger"),
    ({"window_days": "soon"}, "window_days"),
    ({"fees": {"pickup": "cheap"}}, "fees"),
    ({"fees": ["pickup"]}, "fees"),
])
def test_validation_names_each_problem(data, mentions):
    problems = validate_policy_dict(data)
    assert len(problems) == 1
    assert mentions in problems[0]


def test_validation_accepts_the_percent_bounds():
    assert validate_policy_dict({"restocking_fee_percent": "0"}) == []
    assert validate_policy_dict({"restocking_fee_percent": "100"}) == []
