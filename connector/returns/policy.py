"""A shop's return policy and the rules that read it: window, eligibility, methods, fees, auto-approval.

Pure functions over model objects and plain values: no Flask, no database session. The policy is
stored as JSON in `Shop.policy`; `ReturnPolicy.from_dict` reads whatever is there (missing keys take
the defaults, unknown keys are ignored) and `to_dict` writes it back JSON-safe (Decimals as strings).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from connector.returns.money import ZERO
from connector.returns.models import Order, OrderLine
from connector.returns.ports import METHODS

REFUND_SHIPPING = ("never", "shop_fault", "full_return", "always")
REFUND_TRIGGERS = ("manual", "received", "inspected")

# Why a line cannot be returned (Eligibility.blocked); the portal shows a sentence for each.
CANCELLED = "cancelled"
NOT_FULFILLED = "not_fulfilled"
WINDOW_PASSED = "window_passed"
FINAL_SALE = "final_sale"
EXCLUDED = "excluded"
ALREADY_RETURNED = "already_returned"


def _default_fees() -> dict[str, Decimal]:
    return {"pickup": Decimal("4.95"), "dropoff": Decimal("3.95"),
            "carrier_label": Decimal("4.95"), "selfship": Decimal("0")}


@dataclass
class ReturnPolicy:
    window_days: int = 30
    transit_allowance_days: int = 5  # added to the fulfilment date when the delivery date is unknown
    excluded_tags: list[str] = field(default_factory=list)  # OrderLine.product_tags, case-insensitive
    excluded_skus: list[str] = field(default_factory=list)
    excluded_product_types: list[str] = field(default_factory=list)
    final_sale_tags: list[str] = field(default_factory=lambda: ["final-sale"])  # plus OrderLine.final_sale
    methods: dict[str, list[str]] = field(
        default_factory=lambda: {"*": ["pickup", "dropoff", "selfship"]})  # country code or "*"
    carriers: dict[str, str] = field(default_factory=lambda: {
        "pickup": "sandbox", "dropoff": "sandbox", "carrier_label": "sandbox", "selfship": "selfship"})
    fees: dict[str, Decimal] = field(default_factory=_default_fees)
    restocking_fee_percent: Decimal = ZERO
    refund_shipping: str = "never"  # one of REFUND_SHIPPING
    store_credit: bool = False
    reason_required: bool = True
    auto_approve: bool = True
    auto_approve_max_total: Decimal | None = None  # auto-approve only up to this return value
    auto_approve_reason_codes: list[str] | None = None  # None: any reason
    refund_trigger: str = "manual"  # one of REFUND_TRIGGERS
    # The carrier's "delivered" marks the return received; False: it waits for the warehouse to
    # receive (count) it, and "delivered" only shows on the return.
    receive_on_delivery: bool = True
    ship_by_days: int = 14

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: Decimals become strings, everything else is already JSON."""
        return _jsonable(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "ReturnPolicy":
        """Read a stored policy. Missing keys take the defaults, unknown keys are ignored.

        Amounts may be strings, ints or Decimals (JSON numbers are read through their text, so
        4.95 stays 4.95). Raises ValueError when a present value cannot be read at all; the admin
        checks input with `validate_policy_dict` before saving.
        """
        data = data or {}
        return cls(**{f.name: _read(f.name, data[f.name]) for f in fields(cls)
                       if f.name in data and (data[f.name] is not None or f.name in _NULLABLE)})


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _decimal(value: Any) -> Decimal:
    if isinstance(value, bool):
        raise ValueError(f"not an amount: {value!r}")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"not an amount: {value!r}") from None
    if not amount.is_finite():
        raise ValueError(f"not an amount: {value!r}")
    return amount


def _int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"not a whole number: {value!r}")
    amount = _decimal(value)
    if amount != amount.to_integral_value():
        raise ValueError(f"not a whole number: {value!r}")
    return int(amount)


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):  # a comma-separated field from a form
        value = value.split(",")
    return [str(v).strip() for v in value if str(v).strip()]


_NULLABLE = {"auto_approve_max_total", "auto_approve_reason_codes"}
_READERS = {
    "window_days": _int, "transit_allowance_days": _int, "ship_by_days": _int,
    "excluded_tags": _strings, "excluded_skus": _strings, "excluded_product_types": _strings,
    "final_sale_tags": _strings,
    "methods": lambda d: {str(k).strip().upper(): _strings(v) for k, v in d.items()},  # "*".upper() is "*"
    "carriers": lambda d: {str(k): str(v) for k, v in d.items()},
    "fees": lambda d: {str(k): _decimal(v) for k, v in d.items()},
    "restocking_fee_percent": _decimal,
    "refund_shipping": str, "refund_trigger": str,
    "store_credit": _bool, "reason_required": _bool, "auto_approve": _bool, "receive_on_delivery": _bool,
    "auto_approve_max_total": lambda v: None if v in (None, "") else _decimal(v),
    "auto_approve_reason_codes": lambda v: None if v is None else _strings(v),
}


def _read(name: str, value: Any) -> Any:
    try:
        return _READERS[name](value)
    except (ValueError, TypeError, AttributeError):
        raise ValueError(f"{name}: cannot read {value!r}") from None


def validate_policy_dict(data: dict[str, Any]) -> list[str]:
    """Problems in a policy as submitted on the admin settings page; empty when it can be saved.

    Each problem is one English sentence naming the setting. Unknown keys are not problems
    (from_dict ignores them).
    """
    problems: list[str] = []
    for name in [n for n in _READERS if data.get(n) is not None]:  # None takes the default
        try:
            _read(name, data[name])
        except ValueError as exc:
            problems.append(str(exc))
    if problems:
        return problems
    policy = ReturnPolicy.from_dict(data)
    for name in ("window_days", "transit_allowance_days", "ship_by_days"):
        if getattr(policy, name) < 0:
            problems.append(f"{name}: must not be negative")
    if not ZERO <= policy.restocking_fee_percent <= 100:
        problems.append("restocking_fee_percent: must be between 0 and 100")
    for country, methods in policy.methods.items():
        for method in methods:
            if method not in METHODS:
                problems.append(f"methods.{country}: unknown return method {method!r}")
    for method, fee in policy.fees.items():
        if method not in METHODS:
            problems.append(f"fees: unknown return method {method!r}")
        elif fee < 0:
            problems.append(f"fees.{method}: must not be negative")
    for method in policy.carriers:
        if method not in METHODS:
            problems.append(f"carriers: unknown return method {method!r}")
    if policy.auto_approve_max_total is not None and policy.auto_approve_max_total < 0:
        problems.append("auto_approve_max_total: must not be negative")
    if policy.refund_shipping not in REFUND_SHIPPING:
        problems.append(f"refund_shipping: must be one of {', '.join(REFUND_SHIPPING)}")
    if policy.refund_trigger not in REFUND_TRIGGERS:
        problems.append(f"refund_trigger: must be one of {', '.join(REFUND_TRIGGERS)}")
    return problems


# ---------------------------------------------------------------------------- eligibility


def window_end(order: Order, policy: ReturnPolicy) -> datetime | None:
    """When the return window closes: delivery + window, else fulfilment + transit allowance +
    window; None while the order is unfulfilled."""
    if order.delivered_at is not None:
        return order.delivered_at + timedelta(days=policy.window_days)
    if order.fulfilled_at is not None:
        return order.fulfilled_at + timedelta(days=policy.transit_allowance_days + policy.window_days)
    return None


@dataclass(frozen=True)
class Eligibility:
    returnable_quantity: int
    blocked: str | None  # None, or one of the codes above


def _folded(values: list[str] | None) -> set[str]:
    return {v.strip().casefold() for v in values or ()}


def line_eligibility(line: OrderLine, order: Order, policy: ReturnPolicy, *, already_returned: int,
                     now: datetime) -> Eligibility:
    """How many units of `line` may still be returned at `now`, or why none may.

    `already_returned` counts units in this order's other open or finished returns. The first
    blocking rule wins, in this order: cancelled, not_fulfilled, final_sale, excluded,
    window_passed (the window end itself is still inside), already_returned.
    """
    end = window_end(order, policy)
    tags = _folded(line.product_tags)
    remaining = line.quantity - (line.refunded_quantity or 0) - already_returned
    if order.cancelled_at is not None:
        blocked = CANCELLED
    elif end is None or line.fulfilled_quantity == 0:
        blocked = NOT_FULFILLED
    elif line.final_sale or tags & _folded(policy.final_sale_tags):
        blocked = FINAL_SALE
    elif (tags & _folded(policy.excluded_tags)
          or (line.sku or "").strip().casefold() in _folded(policy.excluded_skus) - {""}
          or (line.product_type or "").strip().casefold() in _folded(policy.excluded_product_types) - {""}):
        blocked = EXCLUDED
    elif now > end:
        blocked = WINDOW_PASSED
    elif remaining <= 0:
        blocked = ALREADY_RETURNED
    else:
        return Eligibility(returnable_quantity=remaining, blocked=None)
    return Eligibility(returnable_quantity=0, blocked=blocked)


# ---------------------------------------------------------------------------- methods, fees, approval


def allowed_methods(policy: ReturnPolicy, country: str) -> list[str]:
    """The methods offered to a shopper in `country`: that country's entry, else the "*" entry."""
    methods = policy.methods.get((country or "").strip().upper())
    if methods is None:
        methods = policy.methods.get("*", [])
    return list(methods)


def return_fee(policy: ReturnPolicy, method: str, *, shop_fault: bool) -> Decimal:
    """The fee the shopper pays for `method`; nothing when the shop is at fault, nothing when the
    policy sets no fee for it. Raises ValueError for a method that does not exist."""
    if method not in METHODS:
        raise ValueError(f"unknown return method {method!r}")
    if shop_fault:
        return ZERO
    return policy.fees.get(method, ZERO)


def should_auto_approve(policy: ReturnPolicy, *, value: Decimal, reason_codes: list[str],
                        is_withdrawal: bool) -> bool:
    """Whether a confirmed return is approved without a merchant looking at it.

    A statutory withdrawal is always approved: the shopper needs no reason and the shop cannot
    refuse, so there is nothing to decide. Otherwise the policy must allow auto-approval, the
    value must be within `auto_approve_max_total`, and, when the policy lists reason codes, every
    reason given must be among them (a return with no reason then needs a look).
    """
    if is_withdrawal:
        return True
    if not policy.auto_approve:
        return False
    if policy.auto_approve_max_total is not None and value > policy.auto_approve_max_total:
        return False
    if policy.auto_approve_reason_codes is not None:
        allowed = set(policy.auto_approve_reason_codes)
        return bool(reason_codes) and all(code in allowed for code in reason_codes)
    return True
