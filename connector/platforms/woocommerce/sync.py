"""Order sync from a WooCommerce store: the first backfill and the periodic poll.

Backfill (`backfill(shop)`): GET orders page by page (`page=N`, 100 per page, up to
`X-WP-TotalPages` re-read from each answer; never by following `Link`), oldest change first
(`orderby=modified&order=asc`), every status (`status=any`), changed in the last
`woocommerce_backfill_days` (`modified_after`). Progress is kept in
`shop.platform_data["backfill"]` = {status: running|done|failed, page, pages, imported, since,
started_at, finished_at, error} and logged after every page; a backfill that stopped (a dead
worker) starts again at the page it had reached.

Poll (`poll(shop)`): WooCommerce never retries a webhook, so every few minutes the orders changed
since the last poll (minus OVERLAP, for clocks and slow writes) are read again and upserted; the
cursor is `shop.platform_data["polled_at"]` (ISO 8601, UTC), moved only when the poll succeeded.
Both write through `write_orders` (batch upsert; older data never overwrites newer, as in
`services.upsert_order`).

Refunds made in WooCommerce: when an order lists refunds, its refund objects are read
(`orders/<id>/refunds`) to know which units went back; the connector's own refunds (its
idempotency key in the reason, or a platform_refund_id it stored) are left out, the domain counts
those from its Refund rows.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator

from flask import current_app
from sqlalchemy import select

from connector.db import session
from connector.platforms.woocommerce import mapping
from connector.platforms.woocommerce.client import WooClient
from connector.platforms.woocommerce.mapping import MappingError
from connector.returns.models import Order, Refund, Return, Shop
from connector.returns.ports import OrderData

log = logging.getLogger("connector.woocommerce.sync")

OVERLAP = timedelta(minutes=10)
FIRST_POLL_LOOKBACK = timedelta(hours=1)
SETUP_CHECK_EVERY = timedelta(hours=1)
BACKFILL_STATE = "backfill"


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(moment: datetime) -> str:
    """WooCommerce's date parameters: ISO 8601 without an offset; with `dates_are_gmt` it reads them as UTC."""
    return moment.astimezone(timezone.utc).replace(tzinfo=None, microsecond=0).isoformat()


# ---------------------------------------------------------------------------- backfill


def backfill(shop: Shop, *, client: WooClient | None = None, restart: bool = False,
             progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Import the store's orders changed in the backfill window; the final progress state.
    Raises the client's WooError (the state then says `failed` and why)."""
    client = client or WooClient.for_shop(shop)
    state = dict((shop.platform_data or {}).get(BACKFILL_STATE) or {})
    if restart or state.get("status") in (None, "done") or not state.get("since"):
        days = current_app.config["CONNECTOR"].woocommerce_backfill_days
        state = {"status": "running", "page": 0, "pages": None, "imported": 0,
                 "since": _iso(_now() - timedelta(days=days)), "started_at": _now().isoformat()}
    else:
        state["status"] = "running"
    state.pop("error", None)
    save_state(shop, **{BACKFILL_STATE: state})
    if not (shop.platform_data or {}).get("polled_at"):
        # The poll then covers what changed while the backfill ran (pages move under it).
        save_state(shop, polled_at=state["started_at"])
    params = {"orderby": "modified", "order": "asc", "status": "any", "modified_after": state["since"],
              "dates_are_gmt": True}

    reading = {"page": 0}

    def on_page(page: int, pages: int, total: int) -> None:
        reading["page"] = page
        state.update(pages=pages, total=total)

    try:
        for items in client.paged("orders", params, start_page=int(state.get("page") or 0) + 1, on_page=on_page):
            state["imported"] = int(state.get("imported") or 0) + write_orders(shop, _map_page(shop, client, items))
            state["page"] = reading["page"]  # the last page written: a restart goes on after it
            save_state(shop, **{BACKFILL_STATE: state})
            log.info("woocommerce %s: backfill page %s/%s, %s orders imported", shop.domain, state["page"],
                     state["pages"], state["imported"])
            if progress:
                progress(dict(state))
    except Exception as exc:
        session.rollback()
        state.update(status="failed", error=str(exc)[:500])
        save_state(shop, **{BACKFILL_STATE: state})
        raise
    state.update(status="done", finished_at=_now().isoformat())
    save_state(shop, **{BACKFILL_STATE: state})
    return state


# ---------------------------------------------------------------------------- poll


def poll(shop: Shop, *, client: WooClient | None = None) -> int:
    """Upsert the orders changed since the last poll (minus OVERLAP); the number written."""
    client = client or WooClient.for_shop(shop)
    started = _now()
    last = (shop.platform_data or {}).get("polled_at")
    since = (datetime.fromisoformat(last) - OVERLAP) if last else started - FIRST_POLL_LOOKBACK
    params = {"orderby": "modified", "order": "asc", "status": "any", "modified_after": _iso(since),
              "dates_are_gmt": True}
    written = 0
    try:
        for items in client.paged("orders", params):
            written += write_orders(shop, _map_page(shop, client, items))
    except Exception as exc:
        session.rollback()
        save_state(shop, poll_error={"message": str(exc)[:500], "at": _now().isoformat()})
        raise
    save_state(shop, polled_at=started.isoformat(), poll_error=None)
    if written:
        log.info("woocommerce %s: poll wrote %d orders", shop.domain, written)
    return written


def setup_due(shop: Shop) -> bool:
    """Whether the webhooks were last checked more than SETUP_CHECK_EVERY ago."""
    checked = (shop.platform_data or {}).get("webhooks_checked_at")
    return not checked or datetime.fromisoformat(checked) < _now() - SETUP_CHECK_EVERY


def poll_shop_ids() -> list[int]:
    return list(session.scalars(select(Shop.id).where(Shop.platform == "woocommerce", Shop.active.is_(True))))


# ---------------------------------------------------------------------------- single orders


def iter_orders(shop: Shop, since: datetime | None, *, client: WooClient | None = None) -> Iterator[OrderData]:
    """The store's orders changed since `since` (all when None), oldest change first."""
    client = client or WooClient.for_shop(shop)
    params: dict[str, Any] = {"orderby": "modified", "order": "asc", "status": "any"}
    if since is not None:
        params.update(modified_after=_iso(since), dates_are_gmt=True)
    for items in client.paged("orders", params):
        yield from _map_page(shop, client, items)


def get_order(shop: Shop, platform_id: str, *, client: WooClient | None = None) -> OrderData | None:
    """One order read from the store, None when WooCommerce does not know it."""
    from connector.platforms.woocommerce.errors import WooError

    client = client or WooClient.for_shop(shop)
    try:
        order, _ = client.get(f"orders/{int(platform_id)}")
    except WooError as exc:
        if exc.status == 404:
            return None
        raise
    return order_data(shop, client, order)


def order_data(shop: Shop, client: WooClient, order: dict[str, Any]) -> OrderData:
    """`order` mapped, its refunds read first when it lists any."""
    if not (order.get("refunds") or order.get("status") == "refunded"):
        return mapping.order_from_json(order)
    refunds, _ = client.get(f"orders/{int(order['id'])}/refunds", {"per_page": 100})
    return mapping.order_from_json(order, refunds, own_refund=own_refund_test(shop, str(order["id"])))


def own_refund_test(shop: Shop, order_platform_id: str) -> Callable[[dict[str, Any]], bool]:
    """A test telling the connector's own refunds of this order apart: the refund id it stored,
    or its idempotency key in the refund's reason."""
    rows = session.execute(
        select(Refund.idempotency_key, Refund.platform_refund_id)
        .join(Return, Return.id == Refund.return_id).join(Order, Order.id == Return.order_id)
        .where(Refund.shop_id == shop.id, Order.shop_id == shop.id, Order.platform_id == order_platform_id)).all()
    keys = [key for key, _ in rows if key]
    ids = {str(rid) for _, rid in rows if rid}

    def test(refund: dict[str, Any]) -> bool:
        reason = str(refund.get("reason") or "")
        return str(refund.get("id")) in ids or any(key in reason for key in keys)
    return test


def _map_page(shop: Shop, client: WooClient, items: list[dict[str, Any]]) -> list[OrderData]:
    result = []
    for order in items:
        try:
            result.append(order_data(shop, client, order))
        except (MappingError, KeyError, TypeError, ValueError) as exc:  # one bad order never stops a sync
            log.warning("woocommerce %s: order %s skipped: %s", shop.domain, order.get("id"), exc)
    return result


def write_orders(shop: Shop, orders: list[OrderData]) -> int:
    """Batch upsert (the Shopify backfill's platform-neutral writer: a few statements and one
    commit per page, older data never overwriting newer, falling back to services.upsert_order on
    a concurrent insert)."""
    from connector.platforms.shopify.backfill import write_orders as write

    return write(shop, orders)


def save_state(shop: Shop, **changes: Any) -> dict[str, Any]:
    """Merge `changes` into `shop.platform_data` (None removes a key) and commit, re-reading the
    row under a lock first so that keys other code wrote meanwhile are kept."""
    fresh = session.scalars(select(Shop).where(Shop.id == shop.id).with_for_update()
                            .execution_options(populate_existing=True)).one()
    data = dict(fresh.platform_data or {})
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    fresh.platform_data = data
    session.commit()
    return data
