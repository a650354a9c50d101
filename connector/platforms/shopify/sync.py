"""Orders read from Shopify page by page: the adapter's iter_orders / get_order, and the periodic
catch-up that fetches whatever a webhook missed.

The catch-up keeps its cursor in `shop.platform_data["caught_up_at"]` (ISO 8601, UTC): the moment
the last successful run started. The next run asks for orders updated after the cursor minus
OVERLAP, so clock skew between Shopify and us and orders saved while a run was paging are read
again rather than lost; reading an order twice is harmless (`upsert_order` keeps the newer copy).
The cursor moves only when every page was read.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Iterator

from sqlalchemy import select

from connector.db import session
from connector.platforms.shopify import mapping
from connector.platforms.shopify.client import ShopifyClient
from connector.platforms.shopify.errors import ShopifyError
from connector.returns.services.refunds import shop_refund_keys
from connector.returns.models import Order, Refund, Return, Shop
from connector.returns.ports import OrderData

log = logging.getLogger("connector.shopify.sync")

PAGE_SIZE = 10  # orders per OrdersCatchUp page (each with up to 50 line items: ~550 cost points)
OVERLAP = timedelta(minutes=5)
FIRST_WINDOW = timedelta(days=1)  # without any cursor, install time or backfill: look back this far


def search_time(moment: datetime) -> str:
    """A moment in Shopify's search syntax (UTC, seconds)."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def iter_orders(shop: Shop, since: datetime | None = None, *, client: ShopifyClient | None = None,
                page_size: int = PAGE_SIZE) -> Iterator[OrderData]:
    """Every order of `shop` updated after `since` (all orders when None), oldest change first."""
    client = client or ShopifyClient.for_shop(shop)
    query = f"updated_at:>'{search_time(since)}'" if since else None
    after = None
    while True:
        data = client.execute("OrdersCatchUp", {"first": page_size, "after": after, "query": query})
        orders = data["orders"]
        for node in orders["nodes"]:
            yield settle_own_refunds(shop, client, mapping.order_from_node(node, lines=all_line_items(client, node)))
        page = orders["pageInfo"]
        if not page["hasNextPage"]:
            return
        after = page["endCursor"]


def fetch_order(shop: Shop, gid: str, *, client: ShopifyClient | None = None) -> OrderData | None:
    """One order by its GID; None when Shopify has no such order (or does not show it to the app)."""
    client = client or ShopifyClient.for_shop(shop)
    node = client.execute("OrderGet", {"id": gid}).get("order")
    if node is None:
        return None
    return settle_own_refunds(shop, client, mapping.order_from_node(node, lines=all_line_items(client, node)))


def all_line_items(client: ShopifyClient, node: dict[str, Any]) -> list[dict[str, Any]]:
    """The order node's line items, with the further pages fetched when there are more."""
    connection = node.get("lineItems") or {}
    items = mapping.connection_nodes(connection)
    page = connection.get("pageInfo") or {}
    while page.get("hasNextPage"):
        data = client.execute("OrderLineItems", {"id": node["id"], "after": page["endCursor"]})
        more = (data.get("order") or {}).get("lineItems") or {}
        items += mapping.connection_nodes(more)
        page = more.get("pageInfo") or {}
    return items


def settle_own_refunds(shop: Shop, client: ShopifyClient, data: OrderData) -> OrderData:
    """`data` with the connector's own refunds out of `refunded_quantity`. Shopify is asked for
    the order's refunds only when units are gone from a line and the order holds refunds of ours."""
    if not any(line.refunded_quantity for line in data.lines):
        return data
    if not orders_with_own_refunds(shop, [data.platform_id]):
        return data
    answer = client.execute("OrderRefundLines", {"id": data.platform_id})
    refunds = (answer.get("order") or {}).get("refunds") or []
    own = own_refund_gids(shop, [(r["id"], r.get("note")) for r in refunds])
    units: dict[str, int] = {}
    for refund in refunds:
        if refund["id"] in own:
            for gid, qty in mapping.refund_line_units(refund).items():
                units[gid] = units.get(gid, 0) + qty
    return mapping.without_own_refunds(data, units)


def orders_with_own_refunds(shop: Shop, gids: Iterable[str]) -> set[str]:
    """Which of these order GIDs have Refund rows of the connector."""
    gids = list(gids)
    if not gids:
        return set()
    return set(session.scalars(select(Order.platform_id).distinct()
                               .join(Return, Return.order_id == Order.id)
                               .join(Refund, Refund.return_id == Return.id)
                               .where(Order.shop_id == shop.id, Order.platform_id.in_(gids))))


def own_refund_gids(shop: Shop, refunds: list[tuple[str, str | None]]) -> set[str]:
    """The GIDs among `refunds` ((gid, note) pairs) that are the connector's own: recorded on a
    Refund row, or noted with one of this shop's idempotency keys."""
    gids = [gid for gid, _ in refunds]
    if not gids:
        return set()
    found = set(session.scalars(select(Refund.platform_refund_id).where(
        Refund.shop_id == shop.id, Refund.platform_refund_id.in_(gids))))
    keyed: dict[str, str] = {}
    for gid, note in refunds:
        if gid in found:
            continue
        for key in shop_refund_keys(shop.id, note):
            keyed[key] = gid
    if keyed:
        for key in session.scalars(select(Refund.idempotency_key).where(
                Refund.shop_id == shop.id, Refund.idempotency_key.in_(list(keyed)))):
            found.add(keyed[key])
    return found


def catch_up(shop: Shop, *, client: ShopifyClient | None = None, now: datetime | None = None) -> int:
    """Upsert the orders updated since the shop's cursor, then move the cursor; the count read."""
    from connector.returns import services

    started = now or datetime.now(timezone.utc)
    since = cursor(shop, started) - OVERLAP
    count = 0
    for data in iter_orders(shop, since, client=client):
        services.upsert_order(shop, data)
        count += 1
    save_state(shop, caught_up_at=started.isoformat(), catch_up_error=None)
    if count:
        log.info("shopify %s: catch-up read %d orders updated since %s", shop.domain, count, search_time(since))
    return count


def cursor(shop: Shop, now: datetime) -> datetime:
    """Where the next catch-up starts: the last run, else the backfill's snapshot, else the install."""
    data = shop.platform_data or {}
    for value in (data.get("caught_up_at"), (data.get("backfill") or {}).get("started_at"), data.get("installed_at")):
        if value:
            moment = datetime.fromisoformat(value)
            return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    return now - FIRST_WINDOW


def catch_up_shop_ids() -> list[int]:
    """The shops the periodic catch-up serves: active Shopify shops that hold tokens."""
    return list(session.scalars(select(Shop.id).where(Shop.platform == "shopify", Shop.active.is_(True),
                                                      Shop.credentials.is_not(None)).order_by(Shop.id)))


def catch_up_all() -> dict[int, int | str]:
    """Run the catch-up for every shop in turn (the CLI; the periodic job queues one job per shop).
    A shop that fails is recorded and skipped: {shop_id: orders read, or the error}."""
    results: dict[int, int | str] = {}
    for shop_id in catch_up_shop_ids():
        shop = session.get(Shop, shop_id)
        try:
            results[shop_id] = catch_up(shop)
        except ShopifyError as exc:
            session.rollback()
            record_catch_up_error(shop, exc)
            results[shop_id] = str(exc)
    return results


def record_catch_up_error(shop: Shop, exc: Exception) -> None:
    log.warning("shopify %s: catch-up failed: %s", shop.domain, exc)
    save_state(shop, catch_up_error={"message": str(exc)[:500],
                                     "at": datetime.now(timezone.utc).isoformat()})


def save_state(shop: Shop, **changes: Any) -> dict[str, Any]:
    """Merge `changes` into `shop.platform_data` and commit (None removes a key).

    The row is read again under a row lock first, so that keys other code writes meanwhile
    (install facts, the backfill's progress) are kept rather than overwritten by a stale copy.
    """
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
