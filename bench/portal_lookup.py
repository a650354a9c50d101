"""Portal order lookup (order number + email) with many orders in SQLite.

Seeds N orders across M shops through the migrations plus a raw bulk insert, then times the
sign-in request (POST /portal/<shop>/ -> 302) through the Flask app, beside a raw indexed SQL
lookup of the same rows in the same run. Prints p50/p99 in milliseconds.

    .venv/bin/python bench/portal_lookup.py                 # 1,000,000 orders, 1,000 shops
    .venv/bin/python bench/portal_lookup.py --orders 100000 # quicker
"""
from __future__ import annotations

import argparse
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def seed(db_path: Path, orders: int, shops: int) -> None:
    from connector.migrate import upgrade

    upgrade(f"sqlite:///{db_path}")
    conn = sqlite3.connect(db_path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    conn.executemany(
        "INSERT INTO shops (id, handle, name, platform, timezone, currency, locale, country, branding, policy,"
        " return_address, return_seq, active, created_at) VALUES (?, ?, ?, 'standalone', 'Europe/Berlin', 'EUR',"
        " 'en', 'DE', '{}', '{}', '{}', 1000, 1, '2026-01-01 00:00:00')",
        [(s, f"shop-{s}", f"Shop {s}") for s in range(1, shops + 1)])
    per_shop = orders // shops
    batch = []
    for i in range(orders):
        shop_id = i % shops + 1
        number = str(1000 + i // shops)
        batch.append((shop_id, f"p{i}", number, f"c{i}@example.com", "Kim Doe", "EUR", "{}", "10115", "DE", 1,
                      "4.90", "0", "59.90", "[]", "2026-10-01 10:00:00", "2026-10-03 10:00:00",
                      "2026-10-04 10:00:00", "2026-10-04 10:00:00"))
        if len(batch) == 50_000:
            _insert_orders(conn, batch)
            batch.clear()
            print(f"  seeded {i + 1:,} orders", file=sys.stderr)
    _insert_orders(conn, batch)
    conn.commit()
    conn.execute("ANALYZE")
    conn.close()
    print(f"  {orders:,} orders in {shops:,} shops ({per_shop:,} per shop)", file=sys.stderr)


def _insert_orders(conn, rows) -> None:
    conn.executemany(
        "INSERT INTO orders (shop_id, platform_id, number, email, customer_name, currency, shipping_address,"
        " postcode, country, taxes_included, shipping_total, shipping_tax, total, tags, placed_at, fulfilled_at,"
        " delivered_at, synced_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--shops", type=int, default=1_000)
    parser.add_argument("--requests", type=int, default=2_000)
    parser.add_argument("--data-dir", default=None, help="keep the seeded database here")
    args = parser.parse_args()

    data_dir = Path(args.data_dir or tempfile.mkdtemp(prefix="bench-lookup-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    db_path = data_dir / "connector.db"
    os.environ.update(DATA_DIR=str(data_dir), JOBS_IMMEDIATE="1")
    if not db_path.exists():
        started = time.perf_counter()
        seed(db_path, args.orders, args.shops)
        print(f"  seeding took {time.perf_counter() - started:.1f} s", file=sys.stderr)

    from connector import create_app
    from connector.config import Config

    app = create_app(Config.from_env(data_dir=data_dir, database_url=f"sqlite:///{db_path}", jobs_immediate=True))
    app.config.update(WTF_CSRF_ENABLED=False)
    client = app.test_client()
    rng = random.Random(7)
    per_shop = args.orders // args.shops
    samples = []
    for _ in range(args.requests):
        i = rng.randrange(per_shop * args.shops)
        samples.append((i % args.shops + 1, str(1000 + i // args.shops), f"c{i}@example.com"))

    raw = sqlite3.connect(db_path)
    raw_times = []
    for shop_id, number, email in samples:
        t0 = time.perf_counter()
        row = raw.execute("SELECT id, email FROM orders WHERE shop_id = ? AND number = ?", (shop_id, number)).fetchone()
        raw_times.append((time.perf_counter() - t0) * 1000)
        assert row and row[1] == email
    raw.close()

    for shop_id, number, email in samples[:50]:  # warm-up: templates, connection pool
        client.post(f"/portal/shop-{shop_id}/", data={"order_number": number, "contact": email},
                    environ_overrides={"REMOTE_ADDR": "10.9.9.9"})
    app_times = []
    for n, (shop_id, number, email) in enumerate(samples):
        client.delete_cookie("session")
        t0 = time.perf_counter()
        resp = client.post(f"/portal/shop-{shop_id}/", data={"order_number": number, "contact": email},
                           environ_overrides={"REMOTE_ADDR": f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"})
        app_times.append((time.perf_counter() - t0) * 1000)
        if resp.status_code != 302:
            raise SystemExit(f"lookup failed: {resp.status_code} for shop-{shop_id} #{number}")

    print(f"portal lookup, {args.orders:,} orders / {args.shops:,} shops, {args.requests:,} requests (SQLite)")
    print(f"  raw indexed SQL   p50 {statistics.median(raw_times):7.3f} ms   p99 {percentile(raw_times, 99):7.3f} ms")
    print(f"  Flask sign-in     p50 {statistics.median(app_times):7.3f} ms   p99 {percentile(app_times, 99):7.3f} ms"
          f"   (goal: p99 < 20 ms)")


if __name__ == "__main__":
    main()
