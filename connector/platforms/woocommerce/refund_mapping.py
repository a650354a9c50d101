"""Pure functions: a RefundPlan and WooCommerce's order JSON -> the body of `POST orders/<id>/refunds`.

WooCommerce's refund request (wc/v3, WC_REST_Order_Refunds_Controller -> wc_create_refund):
    {"amount": "24.20",                 # text; takes precedence over the line items' sum
     "reason": "Returns Connector R-1042 [rc-1-7-1]",
     "api_refund": bool,                # through the payment gateway (default true!)
     "api_restock": bool,               # restock every refunded product line (default true!)
     "line_items": [{"id": 16, "quantity": 1, "refund_total": "20.00",          # net of tax
                     "refund_tax": [{"id": <tax rate id>, "refund_total": "4.20"}]}]}
Shipping is refunded as a line item too: the order's shipping line id with its refund_total and
refund_tax (WooCommerce refunds any order item by id; only product lines are restocked).

Amounts are sent as text (WordPress accepts numeric strings for "number" fields) so that no float
ever carries money. Each split (a line's tax over its tax rates, shipping over shipping lines) is
in proportion to what the order holds and sums exactly to the planned amount.
"""
from __future__ import annotations

from decimal import ROUND_DOWN, Decimal
from typing import Any, Iterable

from connector.returns.money import minor_unit
from connector.returns.ports import RefundPlan

REASON_PREFIX = "Returns Connector"
ZERO = Decimal("0")


class RefundMappingError(ValueError):
    """The plan names something the WooCommerce order does not hold (a line item id)."""


def refund_reason(rma: str | None, key: str) -> str:
    """The refund's reason in WooCommerce: readable for the merchant, our key in brackets."""
    return f"{REASON_PREFIX} {rma} [{key}]" if rma else f"{REASON_PREFIX} [{key}]"


def reason_has_key(reason: str | None, key: str) -> bool:
    return f"[{key}]" in (reason or "")


def refund_gateways(gateways: Iterable[dict[str, Any]]) -> list[str]:
    """Ids of the payment gateways (GET payment_gateways) that list "refunds" in method_supports."""
    return sorted(str(g.get("id")) for g in gateways or []
                  if isinstance(g, dict) and "refunds" in (g.get("method_supports") or []))


def amount_text(amount: Decimal, currency: str) -> str:
    """A money amount as WooCommerce reads it: text with the currency's decimals ("24.20")."""
    return str(Decimal(amount).quantize(minor_unit(currency)))


def split(total: Decimal, weights: list[Decimal], unit: Decimal) -> list[Decimal]:
    """`total` shared in proportion to `weights`, in multiples of `unit`, summing exactly to
    `total` (largest remainder). Equal shares when every weight is zero."""
    if not weights:
        return []
    if all(w == 0 for w in weights):
        weights = [Decimal(1)] * len(weights)
    whole = sum(weights, ZERO)
    raw = [total * w / whole for w in weights]
    shares = [r.quantize(unit, rounding=ROUND_DOWN) for r in raw]
    left = int(((total - sum(shares, ZERO)) / unit).to_integral_value())
    step = unit if left >= 0 else -unit
    order = sorted(range(len(raw)), key=lambda i: abs(raw[i] - shares[i]), reverse=True)
    for i in order[:abs(left)]:
        shares[i] += step
    return shares


def _taxes(item: dict[str, Any]) -> list[tuple[int, Decimal]]:
    """(tax rate id, tax total) of an order item's taxes[] that carry tax."""
    out = []
    for tax in item.get("taxes") or []:
        total = Decimal(str(tax.get("total") or "0"))
        if total != 0:
            out.append((int(tax["id"]), total))
    return out


def _item_refund(item_id: int, gross: Decimal, tax: Decimal, rates: list[tuple[int, Decimal]],
                 currency: str, quantity: int | None = None) -> dict[str, Any]:
    unit = minor_unit(currency)
    if not rates:  # an untaxed item: everything is its own total
        tax = ZERO
    parts = split(tax, [r[1] for r in rates], unit) if rates else []
    body: dict[str, Any] = {"id": item_id}
    if quantity is not None:
        body["quantity"] = quantity
    body["refund_total"] = amount_text(gross - tax, currency)
    body["refund_tax"] = [{"id": rate, "refund_total": amount_text(part, currency)}
                          for (rate, _total), part in zip(rates, parts)]
    return body


def _order_item(order: dict[str, Any], platform_line_id: Any) -> dict[str, Any]:
    for item in order.get("line_items") or []:
        if str(item.get("id")) == str(platform_line_id):
            return item
    raise RefundMappingError(f"line item {platform_line_id} is not on WooCommerce order {order.get('id')}")


def line_items(plan: RefundPlan, order: dict[str, Any], *, restocked: bool = False) -> list[dict[str, Any]]:
    """The plan's product lines, then its shipping, as refund line items of `order` (WooCommerce JSON).
    `restocked`: the restock lines' units went back in a restock refund (`restock_body`) already,
    so here they carry their money without a quantity (WooCommerce restocks by quantity)."""
    out = []
    for line in plan.lines:
        item = _order_item(order, line.platform_line_id)
        quantity = None if restocked and line.restock else line.quantity
        out.append(_item_refund(int(item["id"]), line.amount, line.tax, _taxes(item), plan.currency,
                                quantity=quantity))
    if plan.shipping > 0:
        out += shipping_items(plan.shipping, order, plan.currency)
    return out


def shipping_items(amount: Decimal, order: dict[str, Any], currency: str) -> list[dict[str, Any]]:
    """`amount` (tax included) back from the order's shipping lines, in proportion to what each
    cost with its tax; each share's tax in proportion to the line's tax. No shipping line: the
    amount stays in the refund's total only (WooCommerce takes `amount` over the line items)."""
    lines = [s for s in order.get("shipping_lines") or []]
    if not lines:
        return []
    unit = minor_unit(currency)
    gross = [Decimal(str(s.get("total") or "0")) + Decimal(str(s.get("total_tax") or "0")) for s in lines]
    out = []
    for line, line_gross, share in zip(lines, gross, split(amount, gross, unit)):
        if share == 0:
            continue
        line_tax = Decimal(str(line.get("total_tax") or "0"))
        tax = (share * line_tax / line_gross).quantize(unit) if line_gross else ZERO
        out.append(_item_refund(int(line["id"]), share, tax, _taxes(line), currency))
    return out


def restock(plan: RefundPlan) -> bool:
    """WooCommerce's `api_restock` is one flag for the whole refund (it restocks every refunded
    line by its quantity), so one refund restocks only when every line of the plan is to be
    restocked (graded A); a mixed plan needs a restock refund first (`mixed_restock`)."""
    return bool(plan.lines) and all(line.restock for line in plan.lines)


def mixed_restock(plan: RefundPlan) -> bool:
    """Some lines go back on sale and some do not: the A lines' units go back through a restock
    refund of their own (`restock_body`) and the money refund restocks nothing."""
    return any(line.restock for line in plan.lines) and not restock(plan)


def restock_body(plan: RefundPlan, order: dict[str, Any], *, key: str, rma: str | None) -> dict[str, Any]:
    """A refund of no money that puts the plan's restock lines back in stock: their quantities with
    refund_total 0, `api_restock` true, `api_refund` false (no gateway is asked for 0.00).
    WooCommerce (wc_create_refund) accepts an amount of 0 and restocks each line by its `qty`; the
    money refund then carries these lines' money without a quantity."""
    zero = amount_text(ZERO, plan.currency)
    items = [{"id": int(_order_item(order, line.platform_line_id)["id"]), "quantity": line.quantity,
              "refund_total": zero} for line in plan.lines if line.restock]
    return {"amount": zero, "reason": refund_reason(rma, key), "api_refund": False, "api_restock": True,
            "line_items": items}


def refund_body(plan: RefundPlan, order: dict[str, Any], *, key: str, rma: str | None,
                api_refund: bool, restocked: bool = False) -> dict[str, Any]:
    """The whole request body of `POST orders/<id>/refunds` for `plan`. `restocked`: a restock
    refund (`restock_body`) already put the restock lines back, so this one restocks nothing."""
    return {"amount": amount_text(plan.total, plan.currency), "reason": refund_reason(rma, key),
            "api_refund": api_refund, "api_restock": restock(plan) and not restocked,
            "line_items": line_items(plan, order, restocked=restocked)}
