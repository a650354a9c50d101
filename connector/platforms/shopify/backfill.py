"""The install backfill: a year of orders through one bulk operation, imported from a JSONL stream.

    start(shop)   bulkOperationRunQuery with graphql/bulk/BulkOrders.graphql (orders created in the
                  last `config.shopify_backfill_days` days and their line items)
    poll(shop)    asks Shopify how the operation does; once COMPLETED, downloads and imports it
    run(shop)     start when never started, else poll: the `shopify_backfill` job's body

Progress lives in `shop.platform_data["backfill"]` for the admin to show:
    {id, status, started_at, since, imported, object_count, progress_at, finished_at, error}
where status is Shopify's (CREATED, RUNNING, CANCELING, COMPLETED, FAILED, CANCELED, EXPIRED) until
the import starts, then IMPORTING and finally IMPORTED. COMPLETED means "Shopify is done, the import
has not finished": the next poll imports (again; re-importing is harmless).

The import streams: `requests` with `stream=True`, one JSONL line at a time. Shopify writes each
order, then its line items (`"__parentId": <order GID>`), because the operation asks for
`groupObjects: true`; the importer keeps only the current batch in memory. A line item whose
order is not in the current batch (Shopify did not group it after all) is not guessed at: its
order is fetched again through OrderGet once the file is done.

Batches are written with a few statements each (`write_orders`) instead of one `upsert_order` per
order, with the same result: same columns, same normalisation, and an order never overwritten by
an older copy (`updatedAt` against `Order.platform_updated_at`). bench/shopify_backfill.py measures
both.
"""
from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable

import requests
from flask import current_app
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from connector.db import session
from connector.platforms.shopify import documents, mapping
from connector.platforms.shopify.client import CONNECT_TIMEOUT, ShopifyClient
from connector.platforms.shopify.errors import ShopifyError, UserErrors
from connector.platforms.shopify.sync import fetch_order, orders_with_own_refunds, save_state
from connector.returns.models import Order, OrderLine, Shop
from connector.returns.ports import OrderData
from connector.returns.services.orders import normalise_postcode

log = logging.getLogger("connector.shopify.backfill")

BATCH_SIZE = 500
LOG_EVERY = 1000
POLL_SECONDS = 15  # between two looks at a running bulk operation
STALE_IMPORT = timedelta(minutes=10)  # an IMPORTING without progress for this long died with its worker
DOWNLOAD_READ_TIMEOUT = 120.0
CHUNK_BYTES = 64 * 1024
MAX_LINE_BYTES = 8 * 1024 * 1024  # one JSONL object; anything larger is not an order

RUNNING = ("CREATED", "RUNNING", "CANCELING")
FAILED = ("FAILED", "CANCELED", "EXPIRED")
PENDING = RUNNING + ("COMPLETED", "IMPORTING")  # the job comes back for these
BUSY_CODES = {"OPERATION_IN_PROGRESS", "LIMIT_REACHED"}


class BackfillError(ShopifyError):
    """The backfill cannot go on (the bulk file is not what Shopify documents)."""


def state(shop: Shop) -> dict[str, Any]:
    return dict((shop.platform_data or {}).get("backfill") or {})


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _record(shop: Shop, **changes: Any) -> dict[str, Any]:
    current = state(shop)
    current.update(changes)
    save_state(shop, backfill=current)
    return current


# ---------------------------------------------------------------------------- start, poll, run


def bulk_query(since: datetime) -> str:
    """The bulk query text for orders created since `since` (anonymous, as Shopify's examples)."""
    text = documents.load("bulk/BulkOrders")
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    moment = since.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return body.replace("query BulkOrders", "", 1).replace("BACKFILL_SINCE", moment).strip()


def start(shop: Shop, *, client: ShopifyClient | None = None, now: datetime | None = None,
          restart: bool = False) -> str:
    """Start the bulk operation (once: a running or importing backfill is left alone unless
    `restart`); its GID. Shopify busy with another bulk query is a retryable ShopifyError."""
    current = state(shop)
    if current.get("id") and current.get("status") in PENDING and not restart:
        return current["id"]
    now = now or _now()
    days = current_app.config["CONNECTOR"].shopify_backfill_days
    since = now - timedelta(days=days)
    client = client or ShopifyClient.for_shop(shop)
    try:
        payload = client.mutate("BulkOrdersRun", {"query": bulk_query(since), "groupObjects": True},
                                field="bulkOperationRunQuery")
    except UserErrors as exc:
        if any(e.get("code") in BUSY_CODES for e in exc.errors):
            raise ShopifyError(f"Shopify is running another bulk operation for this store: {exc}",
                               retryable=True) from exc
        _fail(shop, "START_REFUSED", str(exc), now)
        raise
    operation = payload["bulkOperation"]
    save_state(shop, backfill={"id": operation["id"], "status": operation.get("status") or "CREATED",
                               "started_at": now.isoformat(), "since": since.isoformat(), "days": days,
                               "imported": 0, "object_count": 0, "progress_at": now.isoformat(),
                               "finished_at": None, "error": None})
    log.info("shopify %s: backfill started (%s, orders since %s)", shop.domain, operation["id"], since.date())
    return operation["id"]


def poll(shop: Shop, *, client: ShopifyClient | None = None, http: requests.Session | None = None,
         now: datetime | None = None) -> str:
    """Look at the bulk operation and act on it; the backfill's status afterwards."""
    current = state(shop)
    status = current.get("status")
    if not current.get("id"):
        return "NONE"
    if status == "IMPORTED" or status in FAILED:
        return status
    now = now or _now()
    if status == "IMPORTING" and not _stale(current, now):
        return status  # another worker is importing
    client = client or ShopifyClient.for_shop(shop)
    operation = client.execute("BulkOperationGet", {"id": current["id"]}).get("node")
    if not operation:
        _fail(shop, "NOT_FOUND", "Shopify does not know the bulk operation any more", now)
        return "FAILED"
    status = operation["status"]
    object_count = int(operation.get("objectCount") or 0)
    if status in RUNNING:
        _record(shop, status=status, object_count=object_count, progress_at=now.isoformat())
        return status
    if status in FAILED:
        _fail(shop, operation.get("errorCode") or status, f"the bulk operation ended {status}", now,
              status=status, object_count=object_count)
        return status
    if status != "COMPLETED":
        raise BackfillError(f"unknown bulk operation status {status!r}", retryable=True)
    _record(shop, status="IMPORTING", object_count=object_count, progress_at=now.isoformat(), imported=0)
    try:
        imported = import_jsonl(shop, operation["url"], http=http, client=client) if operation.get("url") else 0
    except Exception as exc:
        session.rollback()
        if isinstance(exc, BackfillError) and not exc.retryable:
            _fail(shop, "BAD_FILE", str(exc), now)
            return "FAILED"
        # Back to COMPLETED: the next poll downloads again (the file stays for seven days).
        _record(shop, status="COMPLETED", error=f"import interrupted: {exc}"[:500])
        if isinstance(exc, ShopifyError):
            raise
        raise ShopifyError(f"the backfill import was interrupted: {exc}", retryable=True) from exc
    _record(shop, status="IMPORTED", imported=imported, finished_at=_now().isoformat(), error=None)
    log.info("shopify %s: backfill imported %d orders", shop.domain, imported)
    return "IMPORTED"


def run(shop: Shop, **kwargs) -> str:
    """The job's step: start the backfill when there is none, else poll it."""
    if not state(shop).get("id"):
        start(shop, client=kwargs.get("client"), now=kwargs.get("now"))
        return "CREATED"
    return poll(shop, **kwargs)


def stalled_shop_ids(now: datetime | None = None, quiet_for: timedelta = STALE_IMPORT) -> list[int]:
    """Active Shopify shops whose backfill is pending but has not moved for `quiet_for`: a lost
    or crashed job. The periodic catch-up queues their backfill job again."""
    now = now or _now()
    ids = []
    for shop_id, data in session.execute(select(Shop.id, Shop.platform_data).where(
            Shop.platform == "shopify", Shop.active.is_(True), Shop.credentials.is_not(None))):
        current = (data or {}).get("backfill") or {}
        if current.get("status") in PENDING and _stale(current, now, quiet_for):
            ids.append(shop_id)
    return ids


def _stale(current: dict[str, Any], now: datetime, quiet_for: timedelta = STALE_IMPORT) -> bool:
    moment = current.get("progress_at") or current.get("started_at")
    return not moment or now - datetime.fromisoformat(moment) > quiet_for


def _fail(shop: Shop, code: str, message: str, now: datetime, **extra: Any) -> None:
    """Record why the backfill stopped and tell the merchant."""
    from flask_babel import force_locale

    from connector.returns.context import _, runtime

    _record(shop, status=extra.pop("status", "FAILED"), error=f"{code}: {message}"[:500],
            finished_at=now.isoformat(), **extra)
    log.warning("shopify %s: backfill failed: %s %s", shop.domain, code, message)
    with force_locale(shop.locale or "en"):
        subject = _("Your past orders could not be imported from Shopify")
        text = _("Returns Connector could not import your store's past orders from Shopify (%(reason)s). "
                 "New and updated orders still arrive as usual, but shoppers cannot find older orders in "
                 "the returns portal until the import has run again.", reason=code)
    runtime.enqueue("alert_merchant", shop_id=shop.id, subject=subject, text=text)


# ---------------------------------------------------------------------------- the import


def import_jsonl(shop: Shop, url: str, *, http: requests.Session | None = None,
                 client: ShopifyClient | None = None, batch_size: int = BATCH_SIZE,
                 on_batch: Callable[[int], None] | None = None) -> int:
    """Stream the bulk file at `url` into the shop's orders; the number of orders read.

    The download is never held whole: lines are read as they arrive and written every
    `batch_size` orders (each batch one transaction). `on_batch(count)` is called after each.
    """
    http = http or requests.Session()
    importer = _Importer(shop, batch_size, on_batch)
    # The URL is a signed storage link: no Shopify token goes with it.
    with http.get(url, stream=True, timeout=(CONNECT_TIMEOUT, DOWNLOAD_READ_TIMEOUT)) as resp:
        if resp.status_code != 200:
            raise ShopifyError(f"the bulk file could not be downloaded (HTTP {resp.status_code})",
                               retryable=resp.status_code >= 500 or resp.status_code in (403, 404, 429))
        for raw in resp.iter_lines(chunk_size=CHUNK_BYTES):
            if not raw:
                continue
            if len(raw) > MAX_LINE_BYTES:
                raise BackfillError("a line of the bulk file is larger than any order", retryable=False)
            try:
                obj = json.loads(raw)
            except ValueError as exc:
                raise BackfillError(f"a line of the bulk file is not JSON ({exc})", retryable=False) from exc
            if not isinstance(obj, dict) or "id" not in obj and "__parentId" not in obj:
                raise BackfillError("a line of the bulk file is not an object with an id", retryable=False)
            importer.feed(obj)
    importer.finish()
    if importer.strays or importer.deferred:
        importer.refetch(client or ShopifyClient.for_shop(shop))
    return importer.count


class _Importer:
    """Reassembles orders from JSONL objects and writes them batch by batch."""

    def __init__(self, shop: Shop, batch_size: int, on_batch: Callable[[int], None] | None):
        self.shop = shop
        self.batch_size = batch_size
        self.on_batch = on_batch
        self.batch: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
        self.count = 0
        self.skipped = 0
        self.strays: set[str] = set()  # orders whose line items came outside their batch
        self.deferred: set[str] = set()  # orders holding refunds of ours, left to OrderGet

    def feed(self, obj: dict[str, Any]) -> None:
        parent = obj.get("__parentId")
        if parent is None:
            if len(self.batch) >= self.batch_size:
                self.flush()
            self.batch[obj["id"]] = (obj, [])
            return
        held = self.batch.get(parent)
        if held is None:
            self.strays.add(parent)
        else:
            held[1].append(obj)

    def finish(self) -> None:
        if self.batch:
            self.flush()

    def flush(self) -> None:
        orders = []
        for gid, (node, lines) in self.batch.items():
            try:
                orders.append(mapping.order_from_node(node, lines=lines))
            except (mapping.MappingError, KeyError, ValueError) as exc:
                self.skipped += 1
                log.warning("shopify %s: backfill skipped order %s: %s", self.shop.domain, gid, exc)
        self.batch = {}
        # Orders holding refunds of ours need those refunds read (sync.settle_own_refunds):
        # they are fetched whole afterwards instead (none at a first install).
        gone = [o.platform_id for o in orders if any(line.refunded_quantity for line in o.lines)]
        ours = orders_with_own_refunds(self.shop, gone)
        if ours:
            self.deferred |= ours
            orders = [o for o in orders if o.platform_id not in ours]
        write_orders(self.shop, orders)
        before, self.count = self.count, self.count + len(orders)
        _record(self.shop, imported=self.count, skipped=self.skipped, progress_at=_now().isoformat())
        if self.count // LOG_EVERY > before // LOG_EVERY:
            log.info("shopify %s: backfill: %d orders imported", self.shop.domain, self.count)
        if self.on_batch:
            self.on_batch(self.count)

    def refetch(self, client: ShopifyClient) -> None:
        """Orders the file could not settle alone (line items out of place, refunds of ours):
        each read whole through OrderGet and stored with `upsert_order`."""
        from connector.returns import services

        log.info("shopify %s: fetching %d orders the bulk file could not settle alone",
                 self.shop.domain, len(self.strays | self.deferred))
        for gid in sorted(self.strays | self.deferred):
            data = fetch_order(self.shop, gid, client=client)
            if data is not None:
                services.upsert_order(self.shop, data)
                if gid in self.deferred:
                    self.count += 1
        self.strays.clear()
        self.deferred.clear()
        _record(self.shop, imported=self.count, progress_at=_now().isoformat())


# ---------------------------------------------------------------------------- the batch writer

_orders = Order.__table__
_lines = OrderLine.__table__


def order_values(shop_id: int, data: OrderData, now: datetime) -> dict[str, Any]:
    """The order columns `services.upsert_order` writes for `data`, normalised the same way."""
    address = dict(data.shipping_address or {})
    return {
        "shop_id": shop_id, "platform_id": data.platform_id,
        "number": data.number.lstrip("#").strip(), "email": data.email.strip().lower(),
        "customer_name": data.customer_name, "customer_platform_id": data.customer_id or None,
        "locale": data.locale, "currency": data.currency.upper(),
        "shipping_address": address, "postcode": normalise_postcode(address.get("postcode", "")),
        "country": (address.get("country") or "").upper()[:2], "taxes_included": data.taxes_included,
        "shipping_total": data.shipping_total, "shipping_tax": data.shipping_tax, "total": data.total,
        "payment_gateway": data.payment_gateway, "tags": list(data.tags), "placed_at": data.placed_at,
        "fulfilled_at": data.fulfilled_at, "delivered_at": data.delivered_at,
        "cancelled_at": data.cancelled_at, "platform_updated_at": data.updated_at, "synced_at": now,
    }


def line_values(shop_id: int, order_id: int, item) -> dict[str, Any]:
    """The line columns `services.upsert_order` writes for one OrderLineData."""
    return {
        "shop_id": shop_id, "order_id": order_id, "platform_id": item.platform_id, "sku": item.sku,
        "title": item.title, "variant_title": item.variant_title, "product_type": item.product_type,
        "product_tags": list(item.product_tags), "image_url": item.image_url, "quantity": item.quantity,
        "unit_price": item.unit_price, "discount_total": item.discount_total, "tax_total": item.tax_total,
        "final_sale": item.final_sale, "refunded_quantity": item.refunded_quantity,
    }


def write_orders(shop: Shop, orders: Iterable[OrderData]) -> int:
    """Upsert `orders` like `services.upsert_order`, a batch in a few statements and one commit;
    the number written (older copies of stored orders are skipped).

    A concurrent insert of one of these orders (a webhook) makes the batch fall back to
    `upsert_order` order by order, which settles it the usual way.
    """
    newest: dict[str, OrderData] = {}
    for data in orders:
        held = newest.get(data.platform_id)
        if held is None or _newer(data, held):
            newest[data.platform_id] = data
    if not newest:
        return 0
    try:
        written = _write(shop.id, newest)
        session.commit()
    except IntegrityError:
        session.rollback()
        from connector.returns import services

        log.info("shopify %s: a batch met concurrent writes; writing it order by order", shop.domain)
        for data in newest.values():
            services.upsert_order(shop, data)
        return len(newest)
    _expire_orders_in_session()
    return written


def _expire_orders_in_session() -> None:
    """The statements above bypass the ORM: orders and lines this session holds are read again."""
    for obj in list(session.identity_map.values()):
        if isinstance(obj, (Order, OrderLine)):
            session.expire(obj)


def _newer(a: OrderData, b: OrderData) -> bool:
    return bool(a.updated_at and (b.updated_at is None or a.updated_at >= b.updated_at))


def _write(shop_id: int, newest: dict[str, OrderData]) -> int:
    now = _now()
    stored = {pid: (oid, updated) for oid, pid, updated in session.execute(
        select(Order.id, Order.platform_id, Order.platform_updated_at)
        .where(Order.shop_id == shop_id, Order.platform_id.in_(list(newest))))}
    inserts, updates, order_ids = [], [], {}
    for pid, data in newest.items():
        row = stored.get(pid)
        if row is not None:
            oid, updated = row
            if updated and data.updated_at and data.updated_at < updated:
                continue  # never overwrite newer data with older
            updates.append({"b_id": oid, **order_values(shop_id, data, now)})
            order_ids[pid] = oid
        else:
            inserts.append(order_values(shop_id, data, now))
    if inserts:
        for oid, pid in session.execute(insert(_orders).returning(_orders.c.id, _orders.c.platform_id), inserts):
            order_ids[pid] = oid
    if updates:
        session.execute(update(_orders).where(_orders.c.id == bindparam("b_id")), updates)
    existing_lines: dict[tuple[int, str], int] = {}
    updated_ids = [u["b_id"] for u in updates]
    if updated_ids:
        for lid, oid, lpid in session.execute(select(OrderLine.id, OrderLine.order_id, OrderLine.platform_id)
                                              .where(OrderLine.shop_id == shop_id,
                                                     OrderLine.order_id.in_(updated_ids))):
            existing_lines[(oid, lpid)] = lid
    line_inserts, line_updates = [], []
    for pid, oid in order_ids.items():
        for item in newest[pid].lines:
            values = line_values(shop_id, oid, item)
            lid = existing_lines.get((oid, item.platform_id))
            if lid is None:
                line_inserts.append(values)
            else:
                line_updates.append({"b_id": lid, **values})
    if line_inserts:
        session.execute(insert(_lines), line_inserts)
    if line_updates:
        session.execute(update(_lines).where(_lines.c.id == bindparam("b_id")), line_updates)
    return len(order_ids)
