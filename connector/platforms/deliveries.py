"""Stored webhook deliveries, whatever the platform: closing one, noting a failure, and
re-driving the ones whose job was lost. Each platform's `handlers` module calls these."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select, update

from connector.db import session
from connector.dbtypes import utcnow
from connector.returns.context import runtime
from connector.returns.models import WebhookDelivery

log = logging.getLogger("connector.webhooks")

# A delivery still unprocessed this long after it arrived lost its job (an enqueue that failed
# after the commit, a queue that lost its last writes): the reconciler enqueues it again, for as
# long as Shopify itself would retry (48 hours). Older gaps are each platform's periodic sync's;
# WooCommerce never retries, so its poll covers what is older.
REDRIVE_AFTER = timedelta(minutes=5)
REDRIVE_WINDOW = timedelta(hours=48)


def redrive(platform: str, job: str, now: datetime | None = None, limit: int = 500) -> int:
    """Enqueue `job(delivery_id=…)` again for `platform`'s deliveries never processed nor failed
    (no error) that arrived between REDRIVE_WINDOW and REDRIVE_AFTER ago; how many. Safe to run at
    any time: the jobs are idempotent. A delivery whose job failed keeps its error for inspection."""
    now = now or utcnow()
    # Read through the partial index of unprocessed rows (ix_webhooks_pending); the platform is
    # checked on those few rows, as an equality on it would lead the planner to the unique index
    # (platform, dedupe_key) and a scan of every stored body.
    rows = session.execute(select(WebhookDelivery.id, WebhookDelivery.platform).where(
        WebhookDelivery.processed_at.is_(None), WebhookDelivery.error.is_(None),
        WebhookDelivery.received_at < now - REDRIVE_AFTER, WebhookDelivery.received_at > now - REDRIVE_WINDOW)
        .order_by(WebhookDelivery.received_at).limit(limit))
    ids = [row.id for row in rows if row.platform == platform]
    session.rollback()  # end the read before the jobs run (inline in immediate mode)
    for delivery_id in ids:
        runtime.enqueue(job, delivery_id=delivery_id)
    return len(ids)


def close(delivery: WebhookDelivery | None, error: str | None, note: str | None = None) -> WebhookDelivery | None:
    """Mark `delivery` processed (with `error` when it cannot be handled) and commit."""
    if delivery is None:
        return None
    delivery.processed_at = utcnow()
    delivery.error = error
    session.commit()
    if error or note:
        log.info("%s webhook %s (delivery %s): %s", delivery.platform, delivery.topic, delivery.id, error or note)
    return delivery


def record_error(delivery_id: int, message: str) -> None:
    """Note why a delivery's job failed, leaving it unprocessed for the job runner's retry."""
    session.execute(update(WebhookDelivery).where(WebhookDelivery.id == delivery_id).values(error=message[:2000]))
    session.commit()
