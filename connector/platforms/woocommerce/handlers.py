"""What each WooCommerce webhook topic does: the body of the `woocommerce_webhook` job.

`process_delivery(delivery_id)` reads a stored WebhookDelivery (webhooks.py wrote it), runs the
topic's handler and marks the delivery processed (`processed_at`), or records why not (`error`).
It is idempotent: a processed delivery is not run again, and every handler can run twice with the
same outcome (the job is retried after a crash; a store may send one change twice).

    order.created, order.updated, order.restored
        our refunds among the order's `refunds[]` (their reason carries one of this shop's
        idempotency keys, "[rc-<shop id>-<return id>-<n>]", written by the adapter) are settled
        through services.mark_refund_succeeded (seen_in="order.updated"); when the order lists
        refunds that are not ours, their line quantities are read from orders/<id>/refunds (the
        order JSON does not carry them); then mapping.order_from_json -> services.upsert_order,
        which never lets older data (date_modified_gmt) overwrite newer
    order.deleted (trashed or deleted for good; the body is only {"id": N})
        the order is marked cancelled (cancelled_at) and keeps its returns; a later order.restored
        carries a newer date_modified_gmt and brings the order back
    action.woocommerce_order_refunded (body {"action": ..., "arg": <order id>})
        the order is read from WooCommerce and handled as order.updated

Nothing is done for a shop that is not active (disconnected): the delivery is closed as skipped.

Failure: a payload we cannot map (PayloadError, mapping.MappingError) or a refusal WooCommerce will
repeat (a PlatformError that is not retryable, ReconnectRequired included) is recorded and the
delivery closed, kept for inspection; anything else is recorded and re-raised so that the job
runner retries it (and the reconciler leaves it alone: it re-drives only deliveries without error).
"""
from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any, Callable

from sqlalchemy import select

from connector.db import session
from connector.platforms import deliveries
from connector.dbtypes import utcnow
from connector.platforms.woocommerce import mapping
from connector.returns import services
from connector.returns.context import runtime
from connector.returns.services.refunds import shop_refund_keys, shop_restock_keys
from connector.returns.models import Order, Refund, Return, Shop, WebhookDelivery
from connector.returns.ports import PlatformError

log = logging.getLogger("connector.woocommerce.handlers")

PLATFORM = "woocommerce"
JOB = "woocommerce_webhook"


class PayloadError(ValueError):
    """The stored body is not what its topic promises; retrying cannot help."""


def process_delivery(delivery_id: int) -> WebhookDelivery | None:
    """Run the handler of a stored delivery once; see the module docstring for the outcomes."""
    delivery = session.get(WebhookDelivery, delivery_id)
    if delivery is None or delivery.processed_at is not None or delivery.platform != PLATFORM:
        return delivery
    shop = session.get(Shop, delivery.shop_id) if delivery.shop_id else None
    handler = HANDLERS.get(delivery.topic)
    if shop is None or handler is None:
        return deliveries.close(delivery, None if shop is not None else "no shop",
                      note=None if handler else f"topic {delivery.topic} is not handled")
    if not shop.active:
        return deliveries.close(delivery, None, note="shop not active (disconnected): skipped")
    try:
        payload = json.loads(delivery.payload)
        if not isinstance(payload, dict):
            raise PayloadError("the body is not a JSON object")
        handler(shop, payload, delivery)
    except (PayloadError, mapping.MappingError, json.JSONDecodeError) as exc:
        session.rollback()
        return deliveries.close(session.get(WebhookDelivery, delivery_id), f"payload: {exc}"[:2000])
    except PlatformError as exc:
        session.rollback()
        if not exc.retryable:
            return deliveries.close(session.get(WebhookDelivery, delivery_id), str(exc)[:2000])
        deliveries.record_error(delivery_id, str(exc))
        raise
    except Exception as exc:
        session.rollback()
        deliveries.record_error(delivery_id, f"{type(exc).__name__}: {exc}")
        raise
    return deliveries.close(session.get(WebhookDelivery, delivery_id), None)


def redrive_deliveries(now: datetime | None = None, limit: int = 500) -> int:
    """Enqueue this platform's lost deliveries again (connector.platforms.deliveries.redrive)."""
    return deliveries.redrive(PLATFORM, JOB, now, limit)


def _order(shop: Shop, platform_id: str) -> Order | None:
    """The shop's copy of an order, row-locked on PostgreSQL so that two deliveries of the same
    order apply one after the other."""
    return session.scalar(select(Order).where(Order.shop_id == shop.id, Order.platform_id == platform_id)
                          .with_for_update())


def _order_id(payload: dict[str, Any], field: str = "id") -> str:
    value = payload.get(field)
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).isdigit():
        raise PayloadError(f"no order id in `{field}`")
    return str(int(value))


# ---------------------------------------------------------------------------- refunds


def _keys_in(shop: Shop, reason: Any) -> list[str]:
    """The idempotency keys of this shop in a refund's reason (another shop's are not ours)."""
    return shop_refund_keys(shop.id, reason)


def _ours(shop: Shop, refund: dict[str, Any]) -> bool:
    """A refund the connector made: a money refund under one of our keys, or a return's
    restock-only refund of 0.00 (adapter._restock_once), which settles nothing but is not foreign."""
    reason = refund.get("reason")
    return bool(_keys_in(shop, reason) or shop_restock_keys(shop.id, reason))


def own_refunds(shop: Shop, refunds: list[dict[str, Any]]) -> dict[str, Refund]:
    """Our Refund rows among WooCommerce `refunds` (order JSON `refunds[]` or refund objects), by
    the WooCommerce refund id: the ones whose id we recorded, or whose reason carries our key."""
    ids = {str(r.get("id")): r for r in refunds if isinstance(r, dict) and r.get("id") is not None}
    if not ids:
        return {}
    found = {row.platform_refund_id: row for row in session.scalars(
        select(Refund).where(Refund.shop_id == shop.id, Refund.platform_refund_id.in_(list(ids))))}
    keyed: dict[str, str] = {}
    for refund_id, refund in ids.items():
        if refund_id not in found:
            for key in _keys_in(shop, refund.get("reason")):
                keyed[key] = refund_id
    if keyed:
        for row in session.scalars(select(Refund).where(Refund.shop_id == shop.id,
                                                        Refund.idempotency_key.in_(list(keyed)))):
            found[keyed[row.idempotency_key]] = row
    return found


def _settle(shop: Shop, refund: Refund, platform_refund_id: str, seen_in: str) -> None:
    """WooCommerce shows our refund applied: record it as succeeded, once (the service's
    conditional update makes a second delivery, or the refund job finishing meanwhile, a no-op)."""
    was = refund.state
    if not services.mark_refund_succeeded(refund, platform_refund_id, manual=refund.manual, seen_in=seen_in):
        return
    if was == "failed":
        # Recorded as failed, yet WooCommerce has it: a later attempt may have refunded again.
        ret = session.get(Return, refund.return_id)
        runtime.enqueue("alert_merchant", shop_id=shop.id,
                        subject=f"{ret.rma}: a refund recorded as failed was applied by WooCommerce",
                        text=f"WooCommerce shows refund {platform_refund_id} ({refund.amount} {refund.currency}) "
                             f"for key {refund.idempotency_key}. Check the order's refunds in WooCommerce.")


def _refund_objects(shop: Shop, order_id: str) -> list[dict[str, Any]]:
    """The order's refund objects with their line items (orders/<id>/refunds), read from the store."""
    from connector.platforms.woocommerce.client import WooClient  # HTTP only where it is needed

    with WooClient.for_shop(shop) as client:
        return [refund for page in client.paged(f"orders/{order_id}/refunds") for refund in page]


# ---------------------------------------------------------------------------- orders


def order_changed(shop: Shop, payload: dict[str, Any], delivery: WebhookDelivery,
                  seen_in: str | None = None) -> None:
    """order.created|updated|restored: settle our refunds it shows, store the order unless ours is newer."""
    order_id = _order_id(payload)
    listed = [r for r in payload.get("refunds") or [] if isinstance(r, dict)]
    own = own_refunds(shop, listed)
    for refund_id, row in own.items():
        if row.state != "succeeded":
            _settle(shop, row, refund_id, seen_in or delivery.topic)
    # Units refunded outside the connector are only in the refund objects: read them when the
    # order lists a refund that is not ours (ours the domain counts from its own Refund rows).
    foreign = [r for r in listed if str(r.get("id")) not in own and not _ours(shop, r)]
    refunds = _refund_objects(shop, order_id) if foreign else []
    own_ids = set(own)
    try:
        data = mapping.order_from_json(
            payload, refunds, own_refund=lambda r: str(r.get("id")) in own_ids or _ours(shop, r))
    except (ValueError, TypeError) as exc:  # a date or a quantity in a shape the mapping cannot read
        raise PayloadError(str(exc)) from exc
    _order(shop, data.platform_id)  # lock the row (PostgreSQL) before comparing dates
    services.upsert_order(shop, data)


def order_deleted(shop: Shop, payload: dict[str, Any], delivery: WebhookDelivery) -> None:
    """order.deleted: the order is cancelled; its returns stay as they are."""
    order = _order(shop, _order_id(payload))
    if order is None or order.cancelled_at is not None:
        session.rollback()
        return
    # The body has no date (it is {"id": N}); the delivery's arrival is when we learnt it.
    order.cancelled_at = delivery.received_at or utcnow()
    session.commit()


def order_refunded_action(shop: Shop, payload: dict[str, Any], delivery: WebhookDelivery) -> None:
    """action.woocommerce_order_refunded: the body names the order only; read it and apply it."""
    order_id = _order_id(payload, "arg")
    from connector.platforms.woocommerce.client import WooClient

    with WooClient.for_shop(shop) as client:
        order, _headers = client.get(f"orders/{order_id}")
    if not isinstance(order, dict):
        raise PayloadError(f"orders/{order_id} did not answer an order")
    order_changed(shop, order, delivery, seen_in=delivery.topic)


Handler = Callable[[Shop, dict, WebhookDelivery], Any]
HANDLERS: dict[str, Handler] = {
    "order.created": order_changed,
    "order.updated": order_changed,
    "order.restored": order_changed,
    "order.deleted": order_deleted,
    "action.woocommerce_order_refunded": order_refunded_action,
}
TOPICS = tuple(HANDLERS)
"""The topics handled here: the four order.* topics connect.py subscribes, and the refund action
(recorded from a live store; handled for a store where a webhook of that topic exists)."""
