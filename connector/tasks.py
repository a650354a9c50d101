"""The queue's jobs. Each body is a thin wrapper over a service; the services hold the logic.

Jobs are addressed by name through `JOBS` so that the domain enqueues without importing Huey
(`connector.returns.context.runtime.enqueue`). Periodic tasks: the reconciler every minute,
tracking polls every 30 minutes.
"""
from __future__ import annotations

import logging

from huey import crontab
from sqlalchemy import select

from connector import db
from connector.jobs import huey, in_app_context
from connector.returns import services
from connector.returns.models import Return, Shipment, Shop

log = logging.getLogger("connector.tasks")


@huey.task(retries=3, retry_delay=30)
@in_app_context
def fulfil_shipment(shipment_id: int):
    services.fulfil_shipment(shipment_id)


@huey.task(retries=3, retry_delay=30)
@in_app_context
def execute_refund(refund_id: int):
    services.execute_refund(refund_id)


@huey.task(retries=3, retry_delay=30)
@in_app_context
def void_shipment(shipment_id: int):
    services.void_shipment(shipment_id)


@huey.task(retries=3, retry_delay=30)
@in_app_context
def fetch_label(shipment_id: int):
    """A label the carrier makes later (services.fetch_late_label; the reconciler re-drives it)."""
    services.fetch_late_label(shipment_id)


@huey.task(retries=3, retry_delay=30)
@in_app_context
def carrier_webhook(connection_id: int, updates: list[dict]):
    """Apply what a carrier's verified webhook said (connector.carriers.webhooks) to our shipments."""
    from connector.carriers.webhooks import apply_updates

    apply_updates(connection_id, updates)


@huey.task(retries=5, retry_delay=60)
@in_app_context
def notify(return_id: int, kind: str):
    """Mail the shopper about `kind` (confirmed, withdrawal, or a state) in their language."""
    from connector import notify as mail

    ret = db.session.get(Return, return_id)
    if ret is None:
        return
    if kind == "confirmed":
        mail.return_confirmed(ret)
    elif kind == "withdrawal":
        mail.withdrawal_received(ret)
    else:
        mail.status_changed(ret, kind)


@huey.task(retries=5, retry_delay=60)
@in_app_context
def send_signin_link(shop_id: int, email: str, link: str, locale: str):
    from connector import notify as mail

    shop = db.session.get(Shop, shop_id)
    if shop is not None:
        mail.send_signin_link(shop, email, link, locale)


@huey.task(retries=5, retry_delay=60)
@in_app_context
def alert_merchant(shop_id: int, subject: str, text: str):
    from connector import notify as mail

    shop = db.session.get(Shop, shop_id)
    if shop is not None:
        mail.merchant_alert(shop, subject, text)


@huey.task(retries=5, retry_delay=60)
@in_app_context
def sync_platform(return_id: int):
    """Tell the shop's platform what it has not been told about the return (native returns)."""
    services.sync_return(return_id)


@huey.task(retries=5, retry_delay=60)
@in_app_context
def platform_notes(return_id: int):
    """Write the return's milestones on the platform's order as notes (capabilities.order_notes),
    in the shop's language."""
    from flask_babel import force_locale

    ret = db.session.get(Return, return_id)
    if ret is None:
        return
    shop = db.session.get(Shop, ret.shop_id)
    with force_locale((shop.locale if shop else None) or "en"):
        services.write_order_notes(return_id)


@huey.task(retries=5, retry_delay=60)
@in_app_context
def shopify_webhook(delivery_id: int):
    """Process one stored Shopify webhook delivery (connector.platforms.shopify.handlers)."""
    from connector.platforms.shopify.handlers import process_delivery

    process_delivery(delivery_id)


@huey.task(retries=5, retry_delay=60)
@in_app_context
def woocommerce_webhook(delivery_id: int):
    """Process one stored WooCommerce webhook delivery (connector.platforms.woocommerce.handlers)."""
    from connector.platforms.woocommerce.handlers import process_delivery

    process_delivery(delivery_id)


@huey.task()
@in_app_context
def poll_tracking(shipment_id: int):
    shipment = db.session.get(Shipment, shipment_id)
    if shipment is not None:
        services.refresh_tracking(shipment)


@huey.periodic_task(crontab(minute="*"))
@in_app_context
def reconcile():
    from connector import ratelimit
    from connector.platforms.shopify.handlers import redrive_deliveries
    from connector.platforms.woocommerce.handlers import redrive_deliveries as redrive_woocommerce

    counts = services.reconcile()
    counts["shopify_webhooks"] = redrive_deliveries()
    counts["woocommerce_webhooks"] = redrive_woocommerce()
    ratelimit.purge()
    if any(counts.values()):
        log.info("reconciler re-drove %s", counts)


@huey.periodic_task(crontab(hour="3", minute="17"))
@in_app_context
def purge_deliveries():
    """Daily: forget processed webhook deliveries after the retention period (they hold customer data)."""
    from connector.returns.services.reconcile import purge_deliveries as purge

    gone = purge()
    if gone:
        log.info("purged %d old webhook deliveries", gone)


@huey.periodic_task(crontab(minute="*/30"))
@in_app_context
def poll_all_tracking():
    """Queue a tracking poll for every parcel that is waiting or on its way and due (each poll sets
    the next one: services.shipments.poll_interval backs off while nothing happens)."""
    from sqlalchemy import or_

    from connector.returns.services.base import now_utc

    ids = db.session.scalars(select(Shipment.id).where(
        Shipment.status.in_(("label_ready", "pickup_booked", "in_transit", "void_pending")),
        Shipment.tracking_number.is_not(None),
        or_(Shipment.next_poll_at.is_(None), Shipment.next_poll_at <= now_utc())).limit(5000))
    for shipment_id in ids:
        poll_tracking(shipment_id)


@huey.task(retries=3, retry_delay=60)
@in_app_context
def shopify_backfill(shop_id: int):
    """A Shopify shop's install backfill: start the bulk operation, then come back every
    POLL_SECONDS until its orders are imported (connector.platforms.shopify.backfill)."""
    from connector.platforms.shopify import backfill
    from connector.platforms.shopify.errors import ShopifyError

    shop = db.session.get(Shop, shop_id)
    if shop is None or not shop.active or shop.platform != "shopify":
        return
    try:
        status = backfill.run(shop)
    except ShopifyError as exc:
        if exc.retryable:
            raise
        log.warning("shopify backfill for shop %s stopped: %s", shop_id, exc)
        return
    # Immediate mode (tests, one-off scripts) cannot wait: the caller polls by hand there.
    if status in backfill.PENDING and not huey.immediate:
        shopify_backfill.schedule((shop_id,), delay=backfill.POLL_SECONDS)


@huey.task(retries=2, retry_delay=120)
@in_app_context
def shopify_catch_up(shop_id: int):
    """Read the orders of one Shopify shop updated since its last catch-up."""
    from connector.platforms.shopify import sync
    from connector.platforms.shopify.errors import ShopifyError

    shop = db.session.get(Shop, shop_id)
    if shop is None or not shop.active or shop.platform != "shopify":
        return
    try:
        sync.catch_up(shop)
    except ShopifyError as exc:
        db.session.rollback()
        sync.record_catch_up_error(shop, exc)
        if exc.retryable:
            raise


@huey.periodic_task(crontab(minute="*/15"))
@in_app_context
def shopify_catch_up_all():
    """Every 15 minutes: a catch-up job per active Shopify shop (what webhooks missed), and the
    backfill job again for shops whose backfill stopped moving (a lost job or a dead worker)."""
    from connector.platforms.shopify import backfill, sync

    for shop_id in sync.catch_up_shop_ids():
        shopify_catch_up(shop_id)
    for shop_id in backfill.stalled_shop_ids():
        shopify_backfill(shop_id)


@huey.task(retries=3, retry_delay=60)
@in_app_context
def woocommerce_setup(shop_id: int):
    """After a store delivered its keys: check them, create the webhooks, start the backfill
    (connector.platforms.woocommerce.connect.first_setup)."""
    from connector.platforms.woocommerce import connect

    shop = db.session.get(Shop, shop_id)
    if shop is not None and shop.platform == "woocommerce":
        connect.first_setup(shop)


@huey.task(retries=3, retry_delay=60)
@in_app_context
def woocommerce_backfill(shop_id: int):
    """A WooCommerce store's order backfill, page by page (connector.platforms.woocommerce.sync);
    a retry resumes at the page it had reached."""
    from connector.platforms.woocommerce import connect, sync
    from connector.platforms.woocommerce.errors import ReconnectRequired, WooError

    shop = db.session.get(Shop, shop_id)
    if shop is None or not shop.active or shop.platform != "woocommerce":
        return
    try:
        sync.backfill(shop)
    except ReconnectRequired as exc:
        connect.keys_refused(shop, exc)
    except WooError as exc:
        if exc.retryable:
            raise
        log.warning("woocommerce backfill for shop %s stopped: %s", shop_id, exc)


@huey.task(retries=2, retry_delay=120)
@in_app_context
def woocommerce_poll(shop_id: int):
    """Read a store's orders changed since its last poll (WooCommerce never retries a webhook);
    about hourly, check its webhooks too and repair them. Keys the store refuses are marked and
    the merchant mailed once (connect.keys_refused)."""
    from connector.platforms.woocommerce import connect, sync
    from connector.platforms.woocommerce.errors import ReconnectRequired, WooError

    shop = db.session.get(Shop, shop_id)
    if shop is None or not shop.active or shop.platform != "woocommerce":
        return
    try:
        if sync.setup_due(shop):
            connect.setup(shop)
        sync.poll(shop)
    except ReconnectRequired as exc:
        connect.keys_refused(shop, exc)
    except WooError as exc:
        db.session.rollback()
        if exc.retryable:
            raise
        log.warning("woocommerce poll for shop %s failed: %s", shop_id, exc)


@huey.periodic_task(crontab(minute="*/5"))
@in_app_context
def woocommerce_poll_all():
    """Every 5 minutes: a poll job per active WooCommerce store."""
    from connector.platforms.woocommerce import sync

    for shop_id in sync.poll_shop_ids():
        woocommerce_poll(shop_id)


JOBS = {
    "fulfil_shipment": fulfil_shipment,
    "execute_refund": execute_refund,
    "void_shipment": void_shipment,
    "notify": notify,
    "send_signin_link": send_signin_link,
    "alert_merchant": alert_merchant,
    "poll_tracking": poll_tracking,
    "sync_platform": sync_platform,
    "platform_notes": platform_notes,
    "shopify_backfill": shopify_backfill,
    "shopify_catch_up": shopify_catch_up,
    "shopify_catch_up_all": shopify_catch_up_all,
    "shopify_webhook": shopify_webhook,
    "woocommerce_webhook": woocommerce_webhook,
    "fetch_label": fetch_label,
    "carrier_webhook": carrier_webhook,
    "woocommerce_setup": woocommerce_setup,
    "woocommerce_backfill": woocommerce_backfill,
    "woocommerce_poll": woocommerce_poll,
    "woocommerce_poll_all": woocommerce_poll_all,
}


def enqueue(name: str, **kwargs) -> None:
    """Hand job `name` to the queue (inline in immediate mode)."""
    JOBS[name](**kwargs)
