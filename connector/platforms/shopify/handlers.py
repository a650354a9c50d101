"""What each Shopify webhook topic does: the body of the `shopify_webhook` job.

`process_delivery(delivery_id)` reads a stored WebhookDelivery (webhooks.py wrote it), runs the
topic's handler and marks the delivery processed (`processed_at`), or records why not (`error`).
It is idempotent: a processed delivery is not run again, and every handler can run twice with the
same outcome (Shopify delivers at least once; the job is retried after a crash).

    orders/create, orders/updated, orders/cancelled
        rest_mapping.order_from_rest -> services.upsert_order, which never lets older data
        (the payload's updated_at) overwrite newer; delivery and fulfilment dates already known
        are kept, as the REST order shape carries no delivery time
    refunds/create
        a refund of ours (its GID is a Refund's platform_refund_id, or its note carries our
        idempotency key) settles that Refund; any other refund adds its units to the lines'
        refunded_quantity (what was refunded outside the connector)
    fulfillment_events/create (status delivered), fulfillments/create|update
        delivered_at / fulfilled_at of the order (delivery starts the return window)
    returns/request|approve|decline|cancel|close|reopen|process|update
        returns_mirror.mirror_return: a return made in Shopify's own interface is mirrored into
        the connector; one of ours gets its platform_status
    app/uninstalled
        tokens revoked, shop.active = False, platform_data["uninstalled_at"]
    customers/data_request, customers/redact, shop/redact
        compliance.py (export mailed to the merchant, anonymisation, deletion)

Where work stops for an uninstalled shop: here, every topic but the four app/compliance ones is
skipped while `shop.active` is False; `platforms.shopify.client` raises ReconnectRequired for a
shop without tokens, so any other job that calls Shopify (refund, sync_platform) fails with a
"reconnect" error instead of calling out; the reconciler only re-drives returns of active shops
(`services.platform.unsynced_returns`).

Failure: a payload we cannot map (PayloadError) or a refusal Shopify will repeat (a PlatformError
that is not retryable) is recorded and the delivery closed, kept for inspection; anything else is
recorded and re-raised so the job runner retries it.
"""
from __future__ import annotations

import json
import logging
from dataclasses import replace
from datetime import datetime
from typing import Any, Callable

from flask_babel import force_locale
from flask_babel import gettext as _
from sqlalchemy import select

from connector.db import session
from connector.platforms import deliveries
from connector.dbtypes import utcnow
from connector.platforms.shopify import compliance, credentials, rest_mapping
from connector.platforms.shopify.rest_mapping import PayloadError, RestRefund
from connector.returns import services
from connector.returns.context import runtime
from connector.returns.services.refunds import shop_refund_keys
from connector.returns.models import Order, Refund, Return, Shop, WebhookDelivery
from connector.returns.ports import PlatformError

log = logging.getLogger("connector.shopify.handlers")

# Run even for a shop that is no longer active: the uninstall itself, and the privacy topics
# Shopify sends after it (shop/redact comes 48 hours later).
ALWAYS = frozenset({"app/uninstalled", "customers/data_request", "customers/redact", "shop/redact"})
DELETED = object()  # a handler's answer when the delivery's own row went with the shop


def process_delivery(delivery_id: int) -> WebhookDelivery | None:
    """Run the handler of a stored delivery once; see the module docstring for the outcomes."""
    delivery = session.get(WebhookDelivery, delivery_id)
    if delivery is None or delivery.processed_at is not None:
        return delivery
    shop = session.get(Shop, delivery.shop_id) if delivery.shop_id else None
    handler = HANDLERS.get(delivery.topic)
    if shop is None or handler is None:
        return deliveries.close(delivery, None if shop is not None else "no shop",
                      note=None if handler else f"topic {delivery.topic} is not handled")
    if not shop.active and delivery.topic not in ALWAYS:
        return deliveries.close(delivery, None, note="shop not active (uninstalled): skipped")
    try:
        payload = json.loads(delivery.payload)
        if not isinstance(payload, dict):
            raise PayloadError("the body is not a JSON object")
        outcome = handler(shop, payload, delivery)
    except (PayloadError, json.JSONDecodeError) as exc:
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
    if outcome is DELETED:
        return None
    return deliveries.close(session.get(WebhookDelivery, delivery_id), None)


def redrive_deliveries(now: datetime | None = None, limit: int = 500) -> int:
    """Enqueue this platform's lost deliveries again (connector.platforms.deliveries.redrive)."""
    return deliveries.redrive("shopify", "shopify_webhook", now, limit)


def _order(shop: Shop, platform_id: str, *, lock: bool = True) -> Order | None:
    """The shop's copy of an order, row-locked on PostgreSQL so that two deliveries of the same
    order apply one after the other (the second then sees the first's updated_at)."""
    query = select(Order).where(Order.shop_id == shop.id, Order.platform_id == platform_id)
    return session.scalar(query.with_for_update() if lock else query)


# ---------------------------------------------------------------------------- orders


def _own_refunds(shop: Shop, refunds: list[RestRefund]) -> dict[str, Refund]:
    """Our Refund rows among `refunds`, by the refund's GID: the ones whose GID we recorded, or
    whose note carries one of this shop's idempotency keys."""
    if not refunds:
        return {}
    gids = [r.platform_id for r in refunds]
    found = {r.platform_refund_id: r for r in session.scalars(
        select(Refund).where(Refund.shop_id == shop.id, Refund.platform_refund_id.in_(gids)))}
    keyed: dict[str, str] = {}
    for refund in refunds:
        if refund.platform_id in found:
            continue
        for key in shop_refund_keys(shop.id, refund.note):
            keyed[key] = refund.platform_id
    if keyed:
        for row in session.scalars(select(Refund).where(Refund.shop_id == shop.id,
                                                        Refund.idempotency_key.in_(list(keyed)))):
            found[keyed[row.idempotency_key]] = row
    return found


def order_changed(shop: Shop, payload: dict[str, Any], delivery: WebhookDelivery) -> None:
    """orders/create|updated|cancelled: store the order unless ours is newer."""
    own = _own_refunds(shop, rest_mapping.order_refunds(payload))
    data = rest_mapping.order_from_rest(payload, is_own_refund=lambda refund: refund.platform_id in own)
    existing = _order(shop, data.platform_id)
    if existing is not None:
        # The REST order has no delivery time: a delivered_at learnt from a fulfilment event
        # stays unless a later parcel's delivery moves it on (as fulfilled_at follows the last
        # parcel sent).
        data = replace(data, delivered_at=_latest(existing.delivered_at, data.delivered_at),
                       fulfilled_at=_latest(existing.fulfilled_at, data.fulfilled_at))
    services.upsert_order(shop, data)


def _latest(a: datetime | None, b: datetime | None) -> datetime | None:
    return max(a, b) if a and b else a or b


# ---------------------------------------------------------------------------- refunds


def refund_created(shop: Shop, payload: dict[str, Any], delivery: WebhookDelivery) -> None:
    """refunds/create: settle our own refund, or count a foreign one on the order's lines."""
    refund = rest_mapping.refund_from_rest(payload)
    own = _own_refunds(shop, [refund]).get(refund.platform_id)
    if own is not None:
        _settle(shop, own, refund)
        return
    order = _order(shop, refund.order_id)
    if order is None:
        return  # not synced yet: the order's own sync brings its refunds with it
    # The refund is part of the order as of its created_at: a copy at least that new has it
    # already (orders/updated carries every refund, and follows each one).
    if refund.created_at is not None and order.platform_updated_at is not None \
            and refund.created_at <= order.platform_updated_at:
        session.rollback()
        return
    for line in order.lines:
        units = refund.line_quantities.get(line.platform_id, 0)
        if units:
            line.refunded_quantity = min(line.quantity, line.refunded_quantity + units)
    if refund.created_at is not None:
        order.platform_updated_at = refund.created_at  # an older orders/updated must not undo it
    session.commit()


def _settle(shop: Shop, refund: Refund, seen: RestRefund) -> None:
    """Shopify shows our refund applied: record it as succeeded, once (the service's conditional
    update makes a second delivery, or the refund job finishing at the same time, a no-op)."""
    was = refund.state
    if not services.mark_refund_succeeded(refund, seen.platform_id, manual=refund.manual, seen_in="refunds/create"):
        return
    if was == "failed":
        # Recorded as failed, yet Shopify applied it: a later attempt may have refunded again.
        ret = session.get(Return, refund.return_id)
        runtime.enqueue("alert_merchant", shop_id=shop.id,
                        subject=f"{ret.rma}: a refund recorded as failed was applied by Shopify",
                        text=f"Shopify shows refund {seen.platform_id} ({refund.amount} {refund.currency}) "
                             f"for key {refund.idempotency_key}. Check the order's refunds in Shopify.")


# ---------------------------------------------------------------------------- fulfilments


def fulfilment_event(shop: Shop, payload: dict[str, Any], delivery: WebhookDelivery) -> None:
    """fulfillment_events/create: a `delivered` event sets delivered_at (the last parcel's)."""
    event = rest_mapping.fulfilment_event_from_rest(payload)
    if event.status != "delivered" or event.happened_at is None:
        return
    order = _order(shop, event.order_id)
    if order is None:
        return
    order.delivered_at = _latest(order.delivered_at, event.happened_at)
    session.commit()


def fulfilment_changed(shop: Shop, payload: dict[str, Any], delivery: WebhookDelivery) -> None:
    """fulfillments/create|update: fulfilled_at follows the last parcel sent, delivered_at the
    last parcel delivered."""
    fulfilment = rest_mapping.fulfilment_from_rest(payload)
    order = _order(shop, fulfilment.order_id)
    if order is None:
        return
    if fulfilment.status not in rest_mapping.NOT_SHIPPED:
        order.fulfilled_at = _latest(order.fulfilled_at, fulfilment.created_at)
        if fulfilment.shipment_status == "delivered":
            order.delivered_at = _latest(order.delivered_at, fulfilment.updated_at)
    session.commit()


# ---------------------------------------------------------------------------- returns


def return_changed(shop: Shop, payload: dict[str, Any], delivery: WebhookDelivery) -> None:
    """returns/*: mirror the Shopify return (read back through the Admin API by the mirror)."""
    return_gid = rest_mapping.gid(payload, "Return")
    from connector.platforms.shopify import returns_mirror  # the mirror reads Shopify; loaded on use

    returns_mirror.mirror_return(shop, return_gid)


# ---------------------------------------------------------------------------- app and privacy


def app_uninstalled(shop: Shop, payload: dict[str, Any], delivery: WebhookDelivery) -> None:
    """Revoke the tokens and deactivate the shop; its data stays until shop/redact."""
    data = dict(shop.platform_data or {})
    installed = _parse_time(data.get("installed_at"))
    if installed is not None and delivery.received_at is not None and installed > delivery.received_at:
        log.info("app/uninstalled for %s predates its reinstall: ignored", shop.domain)
        return  # a late delivery about an earlier installation must not revoke the new one
    credentials.save(shop, None)
    if shop.active or not data.get("uninstalled_at"):
        data["uninstalled_at"] = (delivery.received_at or utcnow()).isoformat()
    shop.platform_data = data
    shop.active = False
    session.commit()


def _parse_time(value: Any) -> datetime | None:
    try:
        return rest_mapping.moment(value, "installed_at")
    except PayloadError:
        return None


def customers_data_request(shop: Shop, payload: dict[str, Any], delivery: WebhookDelivery) -> None:
    """Gather the customer's data in this shop, store it, and mail it to the merchant."""
    customer = compliance.Customer.from_payload(payload, "orders_requested")
    data_request = payload.get("data_request") if isinstance(payload.get("data_request"), dict) else {}
    request_id = str(data_request.get("id") or f"delivery-{delivery.id}")
    request = {"topic": delivery.topic, "data_request_id": data_request.get("id"),
               "orders_requested": list(customer.order_ids), "received_at": delivery.received_at}
    document = compliance.export_customer(shop, customer, request)
    key = compliance.store_export(shop, request_id, document)
    with force_locale(shop.locale or "en"):
        subject = _("Customer data request from Shopify: %(email)s", email=customer.email or customer.shopify_id)
        text = _("A customer asked your shop, through Shopify, for the personal data held about them "
                 "(Shopify data request %(request)s). Returns Connector holds %(orders)s order(s) and "
                 "%(returns)s return(s) of %(email)s. All of it is in the JSON document below: send it "
                 "to the customer with the data Shopify gives you. A copy is kept in the app's file "
                 "storage as %(key)s.",
                 request=request_id, orders=len(document["orders"]), returns=len(document["returns"]),
                 email=customer.email or customer.shopify_id, key=key)
    runtime.enqueue("alert_merchant", shop_id=shop.id, subject=subject,
                    text=text + "\n\n" + json.dumps(document, ensure_ascii=False, indent=2))


def customers_redact(shop: Shop, payload: dict[str, Any], delivery: WebhookDelivery) -> None:
    """Anonymise the customer's orders and returns in this shop (compliance.redact_customer)."""
    customer = compliance.Customer.from_payload(payload, "orders_to_redact")
    done = compliance.redact_customer(shop, customer)
    log.info("customers/redact for shop %s: %s orders, %s returns, %s files, %s webhook bodies",
             shop.id, done.orders, done.returns, done.files, done.deliveries)


def shop_redact(shop: Shop, payload: dict[str, Any], delivery: WebhookDelivery):
    """Delete the shop and all it owns, unless it has been installed again since."""
    if shop.active and credentials.load(shop) is not None:
        log.warning("shop/redact for %s, which is installed again: nothing deleted", shop.domain)
        return None
    compliance.delete_shop(shop)
    return DELETED


Handler = Callable[[Shop, dict, WebhookDelivery], Any]
HANDLERS: dict[str, Handler] = {
    "orders/create": order_changed,
    "orders/updated": order_changed,
    "orders/cancelled": order_changed,
    "refunds/create": refund_created,
    "fulfillment_events/create": fulfilment_event,
    "fulfillments/create": fulfilment_changed,
    "fulfillments/update": fulfilment_changed,
    **{f"returns/{action}": return_changed
       for action in ("request", "approve", "decline", "cancel", "close", "reopen", "process", "update")},
    "app/uninstalled": app_uninstalled,
    "customers/data_request": customers_data_request,
    "customers/redact": customers_redact,
    "shop/redact": shop_redact,
}
TOPICS = tuple(HANDLERS)
"""The topics handled here: the ones shopify.app.toml subscribes."""
