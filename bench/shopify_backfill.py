"""Shopify install backfill: a bulk operation's JSONL file imported into SQLite, streamed.

Writes N orders (1-3 line items each) as Shopify's grouped bulk JSONL to a file, serves it from a
local HTTP server on 127.0.0.1 (http.server in a thread, read from disk as it is sent), and imports
it through `backfill.import_jsonl` into a freshly migrated SQLite database. Prints orders/s and
peak memory (ru_maxrss of the process; with --tracemalloc also Python's own peak), beside, in the
same run:
  - a raw SQL baseline: sqlite3 `executemany` of the very same order and line rows (prepared before
    the clock starts) into another fresh database;
  - the per-order path: `services.upsert_order` for --compare-upsert orders.

    .venv/bin/python bench/shopify_backfill.py                  # 100,000 orders
    .venv/bin/python bench/shopify_backfill.py --orders 20000   # quicker
"""
from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import random
import resource
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
import tracemalloc
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

DOMAIN = "bench-shop.myshopify.com"
TITLES = ["Trail Runner", "Wool Socks", "Rain Jacket", "Hiking Boots", "Fleece Pullover", "Merino Shirt"]
CITIES = [("10115", "Berlin", "DE", "BE"), ("28013", "Madrid", "ES", "M"), ("75001", "Paris", "FR", "IDF"),
          ("1010", "Wien", "AT", "9"), ("8001", "Zürich", "CH", "ZH")]


def rss_mb() -> float:
    """Peak resident set size of this process so far (ru_maxrss: kilobytes on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return rss_mb()


def reset_peak() -> bool:
    """Start a new peak (Linux: clear_refs 5 resets VmHWM and ru_maxrss), so that the peak read
    after the import is the import's, not the app start-up's."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


def money(amount: Decimal) -> dict:
    return {"shopMoney": {"amount": str(amount), "currencyCode": "EUR"}}


def generate(path: Path, orders: int, seed: int = 7) -> tuple[int, int]:
    """Write the bulk file line by line (Shopify's grouped format); (orders, line items)."""
    rng = random.Random(seed)
    base = datetime(2025, 6, 1, tzinfo=timezone.utc)
    items = 0
    with path.open("w", encoding="utf-8") as out:
        for i in range(orders):
            number = 100000 + i
            gid = f"gid://shopify/Order/{7000000000 + i}"
            created = base + timedelta(minutes=5 * i)
            zip_code, city, country, province = CITIES[i % len(CITIES)]
            lines = []
            for position in range(1, rng.randint(1, 3) + 1):
                price = Decimal(rng.randrange(500, 20000)) / 100
                quantity = rng.randint(1, 3)
                tax = (price * quantity * Decimal("0.19") / Decimal("1.19")).quantize(Decimal("0.01"))
                discount = Decimal("5.00") if rng.random() < 0.2 else None
                lines.append({
                    "id": f"gid://shopify/LineItem/{(7000000000 + i) * 10 + position}",
                    "title": TITLES[(i + position) % len(TITLES)], "variantTitle": "M / Blue",
                    "sku": f"SKU-{number}-{position}", "quantity": quantity, "currentQuantity": quantity,
                    "isGiftCard": False, "originalUnitPriceSet": money(price),
                    "discountAllocations": [{"allocatedAmountSet": money(discount)}] if discount else [],
                    "taxLines": [{"priceSet": money(tax)}],
                    "image": {"url": f"https://cdn.shopify.com/s/files/1/0001/{position}.jpg"},
                    "product": {"productType": "Outdoor", "tags": ["summer"]},
                    "__parentId": gid,
                })
            total = sum(Decimal(li["originalUnitPriceSet"]["shopMoney"]["amount"]) * li["quantity"] for li in lines)
            order = {
                "id": gid, "name": f"#{number}", "email": f"customer{i}@example.com", "currencyCode": "EUR",
                "createdAt": created.strftime("%Y-%m-%dT%H:%M:%SZ"), "processedAt": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "updatedAt": (created + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ"), "cancelledAt": None,
                "customerLocale": "de", "customer": {"id": f"gid://shopify/Customer/{8000000 + i % 40000}"},
                "tags": [], "taxesIncluded": True, "paymentGatewayNames": ["shopify_payments"],
                "totalPriceSet": money(total + Decimal("4.90")), "totalShippingPriceSet": money(Decimal("4.90")),
                "shippingLine": {"discountedPriceSet": money(Decimal("4.90")),
                                 "taxLines": [{"priceSet": money(Decimal("0.78"))}]},
                "shippingAddress": {"name": f"Kim Doe {i}", "firstName": "Kim", "lastName": "Doe",
                                    "address1": "Musterstraße 1", "address2": None, "zip": zip_code, "city": city,
                                    "countryCodeV2": country, "provinceCode": province, "phone": None},
                "billingAddress": {"name": f"Kim Doe {i}", "firstName": "Kim", "lastName": "Doe"},
                "fulfillments": [{"status": "SUCCESS", "displayStatus": "DELIVERED",
                                  "createdAt": (created + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                                  "updatedAt": (created + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                                  "deliveredAt": (created + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")}],
            }
            out.write(json.dumps(order, separators=(",", ":")) + "\n")
            for line in lines:
                out.write(json.dumps(line, separators=(",", ":")) + "\n")
            items += len(lines)
    return orders, items


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # no access log on stderr
        pass


def serve(directory: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def make_shop():
    from connector import db
    from connector.returns.models import Shop

    shop = Shop(handle="bench-shop", name="Bench Shop", platform="shopify", domain=DOMAIN, currency="EUR",
                locale="en", country="DE", timezone="Europe/Berlin", platform_data={}, policy={}, branding={},
                return_address={})
    db.session.add(shop)
    db.session.commit()
    return shop


# ---------------------------------------------------------------------------- the raw SQL baseline

def _sql(value):
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).replace(tzinfo=None).isoformat(sep=" ")
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return value


def raw_insert(jsonl_path: Path, db_path: Path, batch: int) -> tuple[float, int]:
    """Seconds spent in executemany (+ commit) for the same rows the import writes, ids known up front."""
    from connector.platforms.shopify import backfill
    from connector.platforms.shopify.mapping import order_from_node

    conn = sqlite3.connect(db_path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("INSERT INTO shops (id, handle, name, platform, domain, timezone, currency, locale, country, branding,"
                 " policy, return_address, return_seq, active, platform_data, created_at) VALUES (1, 'raw', 'Raw',"
                 " 'shopify', 'raw.myshopify.com', 'Europe/Berlin', 'EUR', 'en', 'DE', '{}', '{}', '{}', 1000, 1, '{}',"
                 " '2026-01-01 00:00:00')")
    conn.commit()
    now = datetime.now(timezone.utc)
    order_cols = list(backfill.order_values(1, _sample_order(), now))
    line_cols = list(backfill.line_values(1, 1, _sample_order().lines[0]))
    insert_order = (f"INSERT INTO orders (id, {', '.join(order_cols)}) "
                    f"VALUES (?, {', '.join('?' for _ in order_cols)})")
    insert_line = f"INSERT INTO order_lines ({', '.join(line_cols)}) VALUES ({', '.join('?' for _ in line_cols)})"
    spent = 0.0
    count = 0
    orders_rows, lines_rows = [], []

    def flush():
        nonlocal spent
        t0 = time.perf_counter()
        conn.executemany(insert_order, orders_rows)
        conn.executemany(insert_line, lines_rows)
        conn.commit()
        spent += time.perf_counter() - t0
        orders_rows.clear()
        lines_rows.clear()

    current, children = None, []
    with jsonl_path.open("rb") as handle:
        for raw in handle:
            obj = json.loads(raw)
            if "__parentId" in obj:
                children.append(obj)
                continue
            if current is not None:
                count += 1
                _rows(order_from_node(current, children), count, order_cols, line_cols, now, orders_rows, lines_rows)
                if len(orders_rows) >= batch:
                    flush()
            current, children = obj, []
    if current is not None:
        count += 1
        _rows(order_from_node(current, children), count, order_cols, line_cols, now, orders_rows, lines_rows)
    flush()
    conn.close()
    return spent, count


def _rows(data, order_id, order_cols, line_cols, now, orders_rows, lines_rows):
    from connector.platforms.shopify import backfill

    values = backfill.order_values(1, data, now)
    orders_rows.append((order_id, *(_sql(values[c]) for c in order_cols)))
    for item in data.lines:
        line = backfill.line_values(1, order_id, item)
        lines_rows.append(tuple(_sql(line[c]) for c in line_cols))


def _sample_order():
    from connector.returns.ports import OrderData, OrderLineData

    return OrderData(platform_id="x", number="1", email="a@b.c", currency="EUR",
                     placed_at=datetime.now(timezone.utc),
                     lines=(OrderLineData(platform_id="l", title="t", quantity=1, unit_price=Decimal("1")),))


# ---------------------------------------------------------------------------- main

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500, help="orders per write (backfill.BATCH_SIZE)")
    parser.add_argument("--compare-upsert", type=int, default=2_000,
                        help="orders sent through services.upsert_order one by one (0: skip)")
    parser.add_argument("--tracemalloc", action="store_true",
                        help="also trace Python allocations (slows the import down about 2x)")
    parser.add_argument("--data-dir", default=None, help="work here (kept) instead of a temporary folder")
    args = parser.parse_args()

    data_dir = Path(args.data_dir or tempfile.mkdtemp(prefix="bench-backfill-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    os.environ.update(DATA_DIR=str(data_dir), JOBS_IMMEDIATE="1")
    files = data_dir / "files"
    files.mkdir(exist_ok=True)
    jsonl_path = files / "bulk.jsonl"
    t0 = time.perf_counter()
    orders, items = generate(jsonl_path, args.orders)
    print(f"  wrote {orders:,} orders / {items:,} line items ({jsonl_path.stat().st_size / 1e6:.0f} MB) "
          f"in {time.perf_counter() - t0:.1f} s", file=sys.stderr)

    from connector import create_app
    from connector.config import Config
    from connector.migrate import upgrade

    template = data_dir / "template.db"
    if template.exists():
        template.unlink()
    upgrade(f"sqlite:///{template}")
    app_db = data_dir / "connector.db"
    raw_db = data_dir / "raw.db"
    for path in (app_db, raw_db):
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        shutil.copy(template, path)

    app = create_app(Config.from_env(data_dir=data_dir, database_url=f"sqlite:///{app_db}", jobs_immediate=True,
                                     shopify_api_key="bench", shopify_api_secret="bench"))
    server, base_url = serve(files)
    from connector.platforms.shopify import backfill

    with app.app_context():
        shop = make_shop()
        startup_peak = rss_mb()
        peak_was_reset = reset_peak()
        rss_before = current_rss_mb()
        if args.tracemalloc:
            tracemalloc.start()
        t0 = time.perf_counter()
        count = backfill.import_jsonl(shop, f"{base_url}/bulk.jsonl", batch_size=args.batch)
        elapsed = time.perf_counter() - t0
        traced_peak = tracemalloc.get_traced_memory()[1] / 1e6 if args.tracemalloc else None
        if args.tracemalloc:
            tracemalloc.stop()
        rss_after = rss_mb()
        assert count == orders, (count, orders)
        upsert_rate = None
        if args.compare_upsert:
            from connector.platforms.shopify.mapping import order_from_node
            from connector.returns import services

            sample = []
            with jsonl_path.open("rb") as handle:
                current, children = None, []
                for raw in handle:
                    obj = json.loads(raw)
                    if "__parentId" in obj:
                        children.append(obj)
                        continue
                    if current is not None:
                        sample.append(order_from_node(current, children))
                        if len(sample) == args.compare_upsert:
                            break
                    current, children = obj, []
            fresh = [_renamed(d, n) for n, d in enumerate(sample)]
            t1 = time.perf_counter()
            for data in fresh:
                services.upsert_order(shop, data)
            upsert_rate = len(fresh) / (time.perf_counter() - t1)
    server.shutdown()

    t0 = time.perf_counter()
    raw_seconds, raw_count = raw_insert(jsonl_path, raw_db, args.batch)
    raw_total = time.perf_counter() - t0

    print(f"shopify backfill, {orders:,} orders / {items:,} line items, bulk JSONL over HTTP (SQLite, WAL)")
    print(f"  raw SQL executemany        {raw_count / raw_seconds:10,.0f} orders/s   ({raw_seconds:.1f} s in executemany;"
          f" {raw_count / raw_total:,.0f} orders/s with reading and mapping the file)")
    print(f"  backfill.import_jsonl      {count / elapsed:10,.0f} orders/s   ({elapsed:.1f} s: download, parse, map, write)")
    if upsert_rate:
        print(f"  services.upsert_order      {upsert_rate:10,.0f} orders/s   (one by one, {args.compare_upsert:,} orders)")
    what = "during the import" if peak_was_reset else "of the process"
    print(f"  peak RSS {what} {rss_after:.0f} MB (RSS when it began {rss_before:.0f} MB; app start-up peak "
          f"{startup_peak:.0f} MB)   (goal: peak < 200 MB)")
    if traced_peak is not None:
        print(f"  tracemalloc peak during the import {traced_peak:.1f} MB")


def _renamed(data, n):
    """The same order under new GIDs, so that the per-order path inserts as the import did."""
    from dataclasses import replace

    lines = tuple(replace(line, platform_id=f"{line.platform_id}-u") for line in data.lines)
    return replace(data, platform_id=f"{data.platform_id}-u", number=f"U{n}", lines=lines)


if __name__ == "__main__":
    main()
