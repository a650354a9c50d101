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
from connector.returns.context import runtime
from connector.returns.models import Return, Shop
from connector.returns.ports import PlatformError
from connector.returns.services.base import _enqueue_all, _shop, now_utc

log = logging.getLogger("connector.platform_sync")

CLOSED_HERE = (lc.CANCELLED, lc.REJECTED)
OPENING = "OPENING"  # platform_status while the native return is being created
OPENING_STALE = timedelta(minutes=10)
REFUSED = "REFUSED"  # platform_status when the platform refused to open it; waits for the merchant


def platform_jobs(ret: Return) -> list[tuple[str, dict]]:
    """The job that brings the platform up to date with `ret`, when its platform keeps returns."""
    shop = session.get(Shop, ret.shop_id)
    if shop is None or not runtime.adapter(shop).capabilities.native_returns:
        return []
    return [("sync_platform", {"return_id": ret.id})]


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
