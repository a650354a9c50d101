"""Keeping the platform's own return in step with ours (Shopify's native returns).

`sync_return` compares the return with what the platform was last told and sends only what is
missing, in order: open the native return, approve it when it was opened as a request and approved
here since, attach the label and tracking, report the graded lines, close it when it was cancelled or
rejected here. Each step records its result (platform ids on the rows) before the next, so running
it twice, out of order or after a crash sends nothing twice.
Platforms without native returns (standalone) make this a no-op.
"""
from __future__ import annotations

import logging

from datetime import timedelta

from sqlalchemy import or_, select, update

from connector.db import session
from connector.returns import lifecycle as lc
from connector.returns.context import _, runtime
from connector.returns.models import Refund, Return, Shop
from connector.returns.money import quantize
from connector.returns.ports import PlatformError
from connector.returns.services.base import _enqueue_all, _shop, now_utc

log = logging.getLogger("connector.platform_sync")

CLOSED_HERE = (lc.CANCELLED, lc.REJECTED)
OPENING = "OPENING"  # platform_status while the native return is being created
OPENING_STALE = timedelta(minutes=10)
REFUSED = "REFUSED"  # platform_status when the platform refused to open it; waits for the merchant


def platform_jobs(ret: Return) -> list[tuple[str, dict]]:
    """The jobs that bring the platform up to date with `ret`: the native return's sync when the
    platform keeps returns, the order notes when it takes notes (`note_jobs`)."""
    caps = _capabilities(ret)
    jobs = [("sync_platform", {"return_id": ret.id})] if caps and caps.native_returns else []
    return jobs + note_jobs(ret, caps)


def note_jobs(ret: Return, caps=None) -> list[tuple[str, dict]]:
    """The job that writes the return's milestones to the platform's order as notes, when the
    platform takes notes (capabilities.order_notes; WooCommerce)."""
    caps = caps or _capabilities(ret)
    return [("platform_notes", {"return_id": ret.id})] if caps and caps.order_notes else []


def _capabilities(ret: Return):
    shop = session.get(Shop, ret.shop_id)
    return runtime.adapter(shop).capabilities if shop is not None else None


def sync_return(return_id: int) -> Return | None:
    """Job body: send the platform what it has not been told about the return yet.

    Raises PlatformError when a retryable call fails (the job runner retries); a refusal is
    recorded on the timeline and the merchant alerted, and the step is not retried.
    """
    ret = session.get(Return, return_id)
    if ret is None or ret.state == lc.DRAFT:
        return ret
    shop = _shop(ret)
    adapter = runtime.adapter(shop)
    if not adapter.capabilities.native_returns:
        return ret
    try:
        _sync(adapter, ret)
    except PlatformError as exc:
        session.rollback()
        if exc.retryable:
            raise
        ret = session.get(Return, return_id)
        if ret.platform_id is None and ret.platform_status == OPENING:
            # Refused outright: retrying alone would only alert again; the merchant retries
            # (`retry_platform_sync`) once the cause is fixed.
            ret.platform_status = REFUSED
        lc.record(ret, "platform_sync_failed", actor="system", public=False, data={"error": str(exc)[:2000]})
        session.commit()
        runtime.enqueue("alert_merchant", shop_id=shop.id,
                        subject=f"{ret.rma}: the return could not be updated in your store", text=str(exc))
    return ret


def _claim_opening(ret: Return) -> bool:
    """Mark the return as being opened on the platform; False when another worker holds it."""
    claimed = session.execute(update(Return).where(Return.id == ret.id, Return.platform_id.is_(None),
                                                   Return.platform_status.is_(None))
                              .values(platform_status=OPENING, updated_at=now_utc())).rowcount
    session.commit()
    session.refresh(ret)
    return claimed == 1


def _open(adapter, ret: Return) -> None:
    """Open the native return exactly once. A worker that died between the platform's answer and
    our commit left OPENING behind: after OPENING_STALE the platform is asked whether it holds
    the return (`find_return`) before it is opened again."""
    if ret.platform_status == OPENING:
        if ret.updated_at and now_utc() - ret.updated_at < OPENING_STALE:
            return  # another worker is opening it right now
        platform_id = adapter.find_return(ret)
    elif _claim_opening(ret):
        platform_id = adapter.open_return(ret)
    else:
        return
    if platform_id is None:
        if ret.platform_status == OPENING:
            ret.platform_status = None  # the platform has none: the next run opens it
            session.commit()
        return
    ret.platform_id = platform_id
    if ret.platform_status == OPENING:
        ret.platform_status = "OPEN"
    lc.record(ret, "platform_opened", actor="system", public=False, data={"platform_id": platform_id})
    session.commit()


def _sync(adapter, ret: Return) -> None:
    if ret.platform_id is None:
        if ret.platform_status == REFUSED:
            return
        if ret.state in CLOSED_HERE and ret.platform_status is None:
            return  # it never existed on the platform: nothing to open or close
        _open(adapter, ret)
        if ret.platform_id is None:
            return
    if ret.state in CLOSED_HERE:
        if ret.platform_status not in ("CANCELED", "DECLINED", "CLOSED"):
            adapter.close_return(ret)
            session.commit()
        return
    if ret.platform_status == "REQUESTED" and ret.state != lc.REQUESTED:
        adapter.approve_return(ret)  # approved here after it was opened as a request
        session.commit()
    shipment = ret.shipment
    if shipment is not None and shipment.tracking_number and shipment.platform_id is None:
        adapter.attach_tracking(ret, shipment)
        session.commit()
    graded = [line for line in ret.lines
              if (line.grade or line.disposition == "missing") and not (line.platform_data or {}).get("disposed")]
    if graded:
        adapter.restock(ret, graded)
        session.commit()


def unsynced_returns(limit: int = 200) -> list[int]:
    """Confirmed returns of native-return shops that have not reached the platform ten minutes
    after they were confirmed (a lost job, or a worker that died while opening them)."""
    shops = [s for s in session.scalars(select(Shop).where(Shop.platform != "standalone", Shop.active.is_(True)))
             if runtime.adapter(s).capabilities.native_returns]
    if not shops:
        return []
    return list(session.scalars(select(Return.id).where(
        Return.shop_id.in_([s.id for s in shops]), Return.platform_id.is_(None),
        Return.state.not_in((lc.DRAFT, *CLOSED_HERE)),
        or_(Return.platform_status.is_(None), Return.platform_status == OPENING),
        Return.confirmed_at < now_utc() - OPENING_STALE).limit(limit)))


def retry_platform_sync(ret: Return, actor: str) -> None:
    """The merchant's "send to the store again" after a refusal: clear the mark and queue the sync."""
    if ret.platform_status == REFUSED:
        ret.platform_status = None
    lc.record(ret, "platform_sync_retried", actor=actor, public=False)
    session.commit()
    _enqueue_all(platform_jobs(ret))


# ---------------------------------------------------------------------------- order notes
#
# A platform without native returns (WooCommerce) gets the return's milestones as order notes, so
# the merchant's own system has them: created (items, reasons, comments), label and tracking,
# received, graded, refunded. Which milestones are due is read from the return itself, so one job
# body serves every hook (platform_jobs runs after confirm, approve, label, selfship tracking,
# grading; note_jobs after receipt and refund) and a lost job is made up by the next one.
# Each note sent is recorded as an Event "platform_note" {"kind": ...} after the platform took it:
# at-least-once (a worker dying between the two, or two workers on the same return at the same
# moment, may write a note twice), which is acceptable for notes and never loses one.

NOTE_KINDS = ("created", "label", "received", "graded", "refunded")


def due_notes(ret: Return) -> list[tuple[str, str]]:
    """(kind, text) of the milestones `ret` has reached whose note was not written yet, in order.
    A refund's kind carries its id ("refunded-7"): each refund gets its note."""
    done = {(e.data or {}).get("kind") for e in ret.events if e.kind == "platform_note"}
    notes: list[tuple[str, str]] = []
    if ret.state == lc.DRAFT or ret.confirmed_at is None:
        return notes
    reached = {(e.data or {}).get("to") for e in ret.events if e.kind == "state"}
    notes.append(("created", _note_created(ret)))
    shipment = ret.shipment
    if shipment is not None and shipment.tracking_number:
        notes.append(("label", _note_tracking(ret, shipment)))
    if lc.RECEIVED in reached:
        notes.append(("received", _note_received(ret)))
    if ret.lines and all(line.grade for line in ret.lines):
        notes.append(("graded", _note_graded(ret)))
    # Queried, not `ret.refunds`: loading that collection here would leave it stale in the
    # session (objects outlive commits) for the refund code that runs after.
    for refund in session.scalars(select(Refund).where(Refund.shop_id == ret.shop_id, Refund.return_id == ret.id,
                                                       Refund.state == "succeeded").order_by(Refund.id)):
        notes.append((f"refunded-{refund.id}", _note_refunded(ret, refund)))
    return [(kind, text) for kind, text in notes if kind not in done]


def write_order_notes(return_id: int) -> Return | None:
    """Job body: write the due milestone notes of the return on its platform order, each once.

    Raises PlatformError when a retryable call fails (the job runner retries); a refused note is
    recorded on the timeline ("platform_note_failed") and not retried. The caller sets the
    shop's language (tasks.platform_notes uses force_locale)."""
    ret = session.get(Return, return_id)
    if ret is None:
        return None
    adapter = runtime.adapter(_shop(ret))
    if not adapter.capabilities.order_notes:
        return ret
    for kind, text in due_notes(ret):
        try:
            adapter.add_note(ret.order, text)
        except PlatformError as exc:
            session.rollback()
            if exc.retryable:
                raise
            lc.record(ret, "platform_note_failed", actor="system", public=False,
                      data={"kind": kind, "error": str(exc)[:2000]})
            session.commit()
            log.warning("return %s: order note %s refused: %s", ret.id, kind, exc)
            continue
        lc.record(ret, "platform_note", actor="system", public=False, data={"kind": kind})
        session.commit()
    return ret


def _items(ret: Return, quantity) -> str:
    return "; ".join(f"{quantity(line)} × {line.order_line.title}" for line in ret.lines)


def _note_created(ret: Return) -> str:
    locale = _shop(ret).locale or "en"  # the merchant reads the notes: the shop's language
    parts = []
    for line in ret.lines:
        text = f"{line.quantity} × {line.order_line.title}"
        if line.reason is not None:
            text += f" ({line.reason.label(locale)})"
        if line.comment:
            text += f": “{line.comment}”"
        parts.append(text)
    if ret.is_withdrawal:
        return _("Return %(rma)s requested (withdrawal from the contract): %(items)s", rma=ret.rma,
                 items="; ".join(parts))
    return _("Return %(rma)s requested: %(items)s", rma=ret.rma, items="; ".join(parts))


def _note_tracking(ret: Return, shipment) -> str:
    carrier = shipment.carrier_ref if shipment.method == "selfship" and shipment.carrier_ref else shipment.carrier
    text = _("Return %(rma)s: return label created, tracking number %(tracking)s (%(carrier)s)", rma=ret.rma,
             tracking=shipment.tracking_number, carrier=carrier)
    return f"{text} {shipment.tracking_url}" if shipment.tracking_url else text


def _note_received(ret: Return) -> str:
    return _("Return %(rma)s received: %(items)s", rma=ret.rma, items=_items(
        ret, lambda line: line.quantity if line.received_quantity is None else line.received_quantity))


def _note_graded(ret: Return) -> str:
    items = "; ".join(f"{line.order_line.title}: {line.grade}, {line.disposition or ''}".rstrip(", ")
                      for line in ret.lines)
    return _("Return %(rma)s graded: %(items)s", rma=ret.rma, items=items)


def _note_refunded(ret: Return, refund) -> str:
    if refund.manual:
        return _("Return %(rma)s: manual refund of %(amount)s %(currency)s recorded; the customer is paid "
                 "back outside the payment gateway", rma=ret.rma, amount=quantize(refund.amount, refund.currency),
                 currency=refund.currency)
    return _("Return %(rma)s refunded: %(amount)s %(currency)s", rma=ret.rma,
             amount=quantize(refund.amount, refund.currency),
             currency=refund.currency)
