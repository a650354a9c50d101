"""Refunds: the preview, the exactly-once request, and the job that executes it."""
from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError

from connector.db import session
from connector.returns import lifecycle as lc
from connector.returns.context import _, runtime
from connector.returns.models import Refund, Return
from connector.returns.money import ZERO
from connector.returns.ports import PlatformError, RefundPlan, RefundPlanLine
from connector.returns.refunds import LineInput, plan_refund
from connector.returns.services.base import (ServiceError, _backoff, _enqueue_all, _set_pending, _shop, now_utc,
                                             policy_of)
from connector.returns.services.drafts import _shop_fault
from connector.returns.services.orders import _units_held
from connector.returns.services.platform import note_jobs


def _order_refunds(ret: Return) -> list[Refund]:
    return list(session.scalars(select(Refund).join(Return, Return.id == Refund.return_id)
                                .where(Refund.shop_id == ret.shop_id, Return.order_id == ret.order_id,
                                       Refund.state.in_(("pending", "succeeded", "unknown")))))


def refund_preview(ret: Return) -> RefundPlan:
    """The refund this return would make now, in Decimal, capped at what the order still allows."""
    shop = _shop(ret)
    policy = policy_of(shop)
    order = ret.order
    earlier = [r for r in _order_refunds(ret) if r.return_id != ret.id or r.state != "pending"]
    refunded_units: dict[int, int] = {}
    for refund in earlier:
        for line in refund.lines:
            refunded_units[line["order_line_id"]] = refunded_units.get(line["order_line_id"], 0) + line["quantity"]
    inputs = []
    for line in ret.lines:
        qty = line.quantity if line.received_quantity is None else line.received_quantity
        if line.disposition == "missing":
            qty = 0
        if qty <= 0:
            continue
        ol = line.order_line
        inputs.append(LineInput(
            order_line_id=ol.id, platform_line_id=ol.platform_id, quantity_bought=ol.quantity, quantity=qty,
            quantity_previously_refunded=refunded_units.get(ol.id, 0) + ol.refunded_quantity,
            unit_price=ol.unit_price, discount_total=ol.discount_total, tax_total=ol.tax_total,
            restock=line.grade == "A" and line.disposition == "restock"))
    shipping = ZERO
    shipping_refunded = any(r.shipping_amount > 0 for r in earlier)
    fault = _shop_fault(ret)
    if not shipping_refunded:
        if policy.refund_shipping == "always" or (policy.refund_shipping == "shop_fault" and fault):
            shipping = order.shipping_total + (ZERO if order.taxes_included else order.shipping_tax)
        elif policy.refund_shipping == "full_return":
            held = _units_held(shop, order)
            if all(held.get(ol.id, 0) + ol.refunded_quantity >= ol.quantity for ol in order.lines):
                shipping = order.shipping_total + (ZERO if order.taxes_included else order.shipping_tax)
    already = sum((r.amount for r in earlier), ZERO)
    return plan_refund(currency=ret.currency, taxes_included=order.taxes_included, lines=inputs, shipping=shipping,
                       return_fee=ZERO if fault else ret.fee,
                       restocking_fee_percent=ZERO if fault else policy.restocking_fee_percent,
                       refundable_remaining=max(order.total - already, ZERO), method=ret.refund_method)


# The longest one refund attempt may take (platform calls with their retries); a worker that died
# mid-attempt holds the refund this long before the reconciler's next attempt may start.
ATTEMPT_LEASE = timedelta(minutes=10)

# A refund's idempotency key: rc-<shop id>-<return id>-<attempt>. Platforms keep it on their
# refund (Shopify's note, WooCommerce's reason), so an unknown outcome is settled by finding it.
_REFUND_KEY_RE = re.compile(r"\brc-(\d+)-\d+-\d+\b")


def refund_key(shop_id: int, return_id: int, attempt: int) -> str:
    return f"rc-{shop_id}-{return_id}-{attempt}"


def restock_key(shop_id: int, return_id: int) -> str:
    """The key of a return's restock-only refund (WooCommerce, mixed grades: refund_mapping.restock_body).
    One per return, not per attempt: units go back on sale once, however often the money is retried."""
    return f"rc-{shop_id}-{return_id}-restock"


_RESTOCK_KEY_RE = re.compile(r"\brc-(\d+)-\d+-restock\b")


def shop_restock_keys(shop_id: int, text: object) -> list[str]:
    """The restock keys of shop `shop_id` in a platform's refund text (`restock_key`)."""
    return [m.group(0) for m in _RESTOCK_KEY_RE.finditer(text if isinstance(text, str) else "")
            if int(m.group(1)) == shop_id]


def shop_refund_keys(shop_id: int, text: object) -> list[str]:
    """The refund keys of shop `shop_id` found in a platform's refund text (another shop's are not ours)."""
    return [m.group(0) for m in _REFUND_KEY_RE.finditer(text if isinstance(text, str) else "")
            if int(m.group(1)) == shop_id]


REFUNDABLE_STATES = (lc.RECEIVED, lc.INSPECTED)


def manual_refund_offered(ret: Return, refunds: list[Refund]) -> bool:
    """After a refund the payment method could not make, the merchant may record one paid back by
    hand: the return's latest refund (`refunds`, oldest first) failed, and the platform can record
    a manual refund (capabilities.manual_refunds, e.g. WooCommerce without the gateway)."""
    return (bool(refunds) and refunds[-1].state == "failed" and ret.state in REFUNDABLE_STATES
            and runtime.adapter(_shop(ret)).capabilities.manual_refunds)


def request_refund(ret: Return, actor: str, *, manual: bool = False) -> Refund:
    """Create the return's refund exactly once and queue its execution.

    The row, with its idempotency key, is committed before the platform is called. A second click,
    a second tab or a race finds the same row: the key is derived from the return and the count of
    failed attempts, and is unique in the table.
    `manual` (platforms with `capabilities.manual_refunds`, e.g. a WooCommerce gateway that cannot
    refund automatically): the refund is recorded on the platform without moving money, and the
    merchant pays the customer back.
    """
    if manual and not runtime.adapter(_shop(ret)).capabilities.manual_refunds:
        raise ServiceError(_("This shop's platform cannot record a manual refund."))
    live = session.scalar(select(Refund).where(Refund.shop_id == ret.shop_id, Refund.return_id == ret.id,
                                               Refund.state.in_(("pending", "succeeded", "unknown"))))
    if live is not None:
        return live
    if ret.state not in REFUNDABLE_STATES:
        raise ServiceError(_("A refund can be made once the return has been received."))
    plan = refund_preview(ret)
    failed = session.scalar(select(func.count()).select_from(Refund).where(
        Refund.shop_id == ret.shop_id, Refund.return_id == ret.id, Refund.state == "failed"))
    refund = Refund(shop_id=ret.shop_id, return_id=ret.id, amount=plan.total, currency=plan.currency,
                    lines=[{"order_line_id": l.order_line_id, "platform_line_id": l.platform_line_id,
                            "quantity": l.quantity, "amount": str(l.amount), "tax": str(l.tax), "restock": l.restock}
                           for l in plan.lines],
                    shipping_amount=plan.shipping,
                    deductions=[{"code": d.code, "label": d.label, "amount": str(d.amount)} for d in plan.deductions],
                    method=plan.method, idempotency_key=refund_key(ret.shop_id, ret.id, failed + 1),
                    state="pending", requested_by=actor, manual=manual)
    session.add(refund)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        return session.scalar(select(Refund).where(Refund.shop_id == ret.shop_id, Refund.return_id == ret.id)
                              .order_by(Refund.id.desc()))
    lc.record(ret, "refund_requested", actor=actor, data={"amount": str(plan.total), "currency": plan.currency,
                                                          "key": refund.idempotency_key,
                                                          **({"manual": True} if manual else {})})
    _set_pending(ret, "refund")
    session.commit()
    runtime.enqueue("execute_refund", refund_id=refund.id)
    return refund


def plan_of(refund: Refund) -> RefundPlan:
    """Rebuild the committed plan from the refund row (what was shown is what is sent)."""
    from connector.returns.ports import Deduction

    return RefundPlan(
        currency=refund.currency,
        lines=tuple(RefundPlanLine(order_line_id=l["order_line_id"], platform_line_id=l["platform_line_id"],
                                   quantity=l["quantity"], amount=Decimal(l["amount"]), tax=Decimal(l["tax"]),
                                   restock=l.get("restock", False)) for l in refund.lines),
        shipping=refund.shipping_amount,
        deductions=tuple(Deduction(d["code"], d["label"], Decimal(d["amount"])) for d in refund.deductions),
        total=refund.amount, method=refund.method)


def _claim_attempt(refund: Refund) -> bool:
    """Start an attempt with a conditional UPDATE: of two workers that read the same attempt
    count, exactly one goes on (a plain `attempts += 1` lets both write 1, and neither would look
    the refund up on the platform before sending it). While an attempt is in flight no other may
    start, until it ends or its lease runs out (a dead worker): a second worker would otherwise
    look the refund up before the first one's send landed, find nothing, and send it again, which
    a platform without idempotency keys (WooCommerce) would apply twice."""
    session.refresh(refund)  # the session keeps objects across commits: read the count afresh
    seen = refund.attempts
    now = now_utc()
    claimed = session.execute(update(Refund).where(
        Refund.id == refund.id, Refund.attempts == seen, Refund.state.in_(("pending", "unknown")),
        or_(Refund.attempt_started_at.is_(None), Refund.attempt_started_at < now - ATTEMPT_LEASE))
        .values(attempts=seen + 1, attempt_started_at=now).execution_options(synchronize_session=False)).rowcount
    session.commit()
    session.refresh(refund)
    return claimed == 1


def execute_refund(refund_id: int) -> Refund | None:
    """Job body: send the refund through the shop's platform adapter, exactly once.

    A refund whose outcome is unknown (timeout, crash) is first looked up on the platform by its
    key; only when the platform has none is it sent again, with the same key.
    """
    refund = session.get(Refund, refund_id)
    if refund is None or refund.state in ("succeeded", "failed"):
        return refund
    ret = refund.return_
    shop = _shop(ret)
    adapter = runtime.adapter(shop)
    if not _claim_attempt(refund):
        return refund  # another worker took this attempt at the same moment
    try:
        result = adapter.find_refund(ret.order, refund.idempotency_key) if refund.attempts > 1 else None
        if result is None:
            extra = {"manual": True} if refund.manual else {}  # only adapters with manual_refunds take it
            result = adapter.refund(ret.order, plan_of(refund), refund.idempotency_key, ret=ret, **extra)
    except PlatformError as exc:
        state, error, result = ("unknown" if exc.retryable else "failed"), str(exc)[:2000], None
    else:
        if result.status == "succeeded":
            mark_refund_succeeded(refund, result.platform_refund_id, manual=result.manual)
            return refund
        state, error = result.status, result.message
    # Conditional, like the success: the platform's webhook may have settled it meanwhile.
    moved = session.execute(update(Refund).where(Refund.id == refund.id, Refund.state.in_(("pending", "unknown")))
                            .values(state=state, error=error, attempt_started_at=None,
                                    platform_refund_id=result.platform_refund_id if result else None)
                            .execution_options(synchronize_session=False)).rowcount
    if moved != 1:
        session.rollback()
        return refund
    session.refresh(refund)
    if state == "failed":
        lc.record(ret, "refund_failed", actor="system", data={"error": error})
        _set_pending(ret, None)
    else:
        _set_pending(ret, "refund", _backoff(refund.attempts))
    session.commit()
    return refund


def mark_refund_succeeded(refund: Refund, platform_refund_id: str | None, *, manual: bool = False,
                          seen_in: str | None = None) -> bool:
    """Record `refund` as applied by the platform, exactly once; True when this call recorded it.

    Both the refund job and the platform's own report of the refund (Shopify's refunds/create
    webhook, `seen_in`) come here; the conditional UPDATE from the state this worker read makes the
    second of two simultaneous reports a no-op, so the timeline, the state change and the shopper's
    mail happen once.
    """
    session.refresh(refund)
    was = refund.state
    if was == "succeeded":
        if platform_refund_id and not refund.platform_refund_id:
            refund.platform_refund_id = platform_refund_id
            session.commit()
        return False
    claimed = session.execute(update(Refund).where(Refund.id == refund.id, Refund.state == was).values(
        state="succeeded", platform_refund_id=platform_refund_id, manual=manual, completed_at=now_utc(), error=None,
        attempt_started_at=None)
        .execution_options(synchronize_session=False)).rowcount
    if claimed != 1:
        session.rollback()
        return False
    session.refresh(refund)
    ret = session.get(Return, refund.return_id)
    session.refresh(ret)
    data = {"amount": str(refund.amount), "currency": refund.currency, "manual": manual,
            "platform_refund_id": platform_refund_id}
    lc.record(ret, "refund", actor="system", public=False, data={**data, "seen_in": seen_in} if seen_in else data)
    refunded = ret.state in REFUNDABLE_STATES
    if refunded:
        lc.transition(ret, lc.REFUNDED, actor="system", data={"amount": str(refund.amount),
                                                               "currency": refund.currency})
    if ret.pending_step == "refund":
        _set_pending(ret, None)
    session.commit()
    if refunded:
        runtime.enqueue("notify", return_id=ret.id, kind=lc.REFUNDED)
    _enqueue_all(note_jobs(ret))  # the "refunded" order note, on platforms that take notes
    return True
