"""The reconciler: re-drive every outside step pending past its deadline."""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, select

from connector.db import session
from connector.returns import lifecycle as lc
from connector.returns.context import runtime
from connector.returns.models import Return, WebhookDelivery
from connector.returns.services.base import STEP_DEADLINE, _enqueue_all, now_utc
from connector.returns.services.platform import unsynced_returns


DRAFT_LIFETIME = timedelta(days=7)
# Received webhooks hold customer data; they are kept for dedupe and inspection this long. The
# platforms resend for at most 48 hours, so a month is far beyond any redelivery.
DELIVERY_RETENTION = timedelta(days=30)


def reconcile(now: datetime | None = None) -> dict[str, int]:
    """Re-drive every return whose outside step is pending past its deadline; purge stale drafts.

    Safe to run at any time and from several workers: each job body is idempotent.
    """
    now = now or now_utc()
    counts = {"shipment": 0, "label": 0, "refund": 0, "void": 0, "drafts": 0, "platform": 0}
    stuck = list(session.scalars(select(Return).where(Return.pending_step.is_not(None),
                                                      Return.pending_until < now).limit(500)))
    jobs = []
    for ret in stuck:
        if ret.pending_step == "shipment":
            for shipment in ret.shipments:
                if shipment.status == "requested":
                    jobs.append(("fulfil_shipment", {"shipment_id": shipment.id}))
        elif ret.pending_step == "refund":
            for refund in ret.refunds:
                if refund.state in ("pending", "unknown"):
                    jobs.append(("execute_refund", {"refund_id": refund.id}))
        elif ret.pending_step == "label":
            for shipment in ret.shipments:
                if shipment.status == "label_pending":
                    jobs.append(("fetch_label", {"shipment_id": shipment.id}))
        elif ret.pending_step == "void":
            for shipment in ret.shipments:
                if shipment.status == "void_requested":
                    jobs.append(("void_shipment", {"shipment_id": shipment.id}))
        counts[ret.pending_step] = counts.get(ret.pending_step, 0) + 1
        # Push the deadline out so that a slow job is not driven twice by the next pass.
        ret.pending_until = now + STEP_DEADLINE
    old_drafts = list(session.scalars(select(Return).where(Return.state == lc.DRAFT,
                                                           Return.created_at < now - DRAFT_LIFETIME).limit(500)))
    photos = [key for draft in old_drafts for line in draft.lines for key in line.photos]
    for draft in old_drafts:
        session.delete(draft)
    counts["drafts"] = len(old_drafts)
    session.commit()
    for key in photos:
        runtime.storage.delete(key)
    unsynced = unsynced_returns()
    counts["platform"] = len(unsynced)
    jobs += [("sync_platform", {"return_id": return_id}) for return_id in unsynced]
    _enqueue_all(jobs)
    return counts


def purge_deliveries(now: datetime | None = None) -> int:
    """Delete processed webhook deliveries older than DELIVERY_RETENTION; how many went."""
    cutoff = (now or now_utc()) - DELIVERY_RETENTION
    gone = session.execute(delete(WebhookDelivery).where(WebhookDelivery.processed_at.is_not(None),
                                                         WebhookDelivery.received_at < cutoff)).rowcount
    session.commit()
    return gone
