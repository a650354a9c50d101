"""WooCommerce backfill: a 20,000-order store served page by page on 127.0.0.1, imported into SQLite.

A small http.server thread answers /wp-json/wc/v3/orders?page=N&per_page=100 with
X-WP-Total / X-WP-TotalPages headers, from page files written beforehand (orders shaped like the
recorded tests/fixtures/woocommerce/fixtures/order_created_v3.json, 1-3 line items each).
`sync.backfill` reads them through the real WooClient (plain http to 127.0.0.1: OAuth 1.0a signed,
as against a local store), maps and writes them into a freshly migrated SQLite database. Prints
orders/s, API calls made and peak memory, beside, in the same run, the raw time to fetch the same
pages (requests only: no mapping, no writing).

    .venv/bin/python bench/woocommerce_backfill.py                  # 20,000 orders
    .venv/bin/python bench/woocommerce_backfill.py --orders 5000    # quicker
"""
from __future__ import annotations

import argparse
import copy
import http.server
import json
import os
import random
import resource
import shutil
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RECORDED = json.loads((ROOT / "tests/fixtures/woocommerce/fixtures/order_created_v3.json").read_text())
TITLES = [("T-Shirt", "TS"), ("Mug", "MUG"), ("Rain Jacket", "RJ"), ("Wool Socks", "WS"), ("Cap", "CAP")]
PER_PAGE = 100


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


def make_order(i: int, rng: random.Random) -> dict:
    order = copy.deepcopy(RECORDED)
    order_id = 1000 + i
    created = datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(minutes=20 * i)
    stamp = created.replace(tzinfo=None).isoformat()
    order.update(id=order_id, number=str(order_id), date_created_gmt=stamp, date_modified_gmt=stamp,
                 date_created=stamp, date_modified=stamp, customer_id=rng.choice([0, 0, rng.randint(1, 5000)]))
    order["billing"]["email"] = f"buyer{i}@example.com"
    lines, net, tax = [], 0, 0
    template = order["line_items"][0]
    for n in range(rng.randint(1, 3)):
        title, sku = rng.choice(TITLES)
        qty, price = rng.randint(1, 3), rng.choice([8, 12, 20, 45])
        sub = price * qty
        line = copy.deepcopy(template)
        line.update(id=order_id * 10 + n, name=title, sku=f"{sku}-{n}", quantity=qty, price=price,
                    subtotal=f"{sub:.2f}", total=f"{sub:.2f}", subtotal_tax=f"{sub * 0.21:.2f}",
                    total_tax=f"{sub * 0.21:.2f}")
        line["taxes"] = [{"id": 1, "total": line["total_tax"], "subtotal": line["subtotal_tax"]}]
        lines.append(line)
        net, tax = net + sub, tax + sub * 0.21
    order["line_items"] = lines
    order.update(cart_tax=f"{tax:.2f}", total_tax=f"{tax + 1.05:.2f}", total=f"{net + tax + 6.05:.2f}")
    return order


def write_pages(folder: Path, orders: int) -> int:
    rng = random.Random(7)
    pages = (orders + PER_PAGE - 1) // PER_PAGE
    for page in range(pages):
        batch = [make_order(i, rng) for i in range(page * PER_PAGE, min(orders, (page + 1) * PER_PAGE))]
        (folder / f"page-{page + 1}.json").write_text(json.dumps(batch))
    return pages


def serve(folder: Path, orders: int, pages: int) -> tuple[http.server.ThreadingHTTPServer, str]:
    class Store(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            parts = urlsplit(self.path)
            query = parse_qs(parts.query)
            if parts.path != "/wp-json/wc/v3/orders" or query.get("per_page") != [str(PER_PAGE)]:
                self.send_error(400)
                return
            page = int(query.get("page", ["1"])[0])
            path = folder / f"page-{page}.json"
            body = path.read_bytes() if path.exists() else b"[]"
            self.send_response(200)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-WP-Total", str(orders))
            self.send_header("X-WP-TotalPages", str(pages))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Store)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=20_000)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    data_dir = Path(args.data_dir or tempfile.mkdtemp(prefix="bench-woo-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    os.environ.update(DATA_DIR=str(data_dir), JOBS_IMMEDIATE="1")
    pages_dir = data_dir / "pages"
    pages_dir.mkdir(exist_ok=True)
    t0 = time.perf_counter()
    pages = write_pages(pages_dir, args.orders)
    size = sum(p.stat().st_size for p in pages_dir.iterdir()) / 1e6
    print(f"  wrote {args.orders:,} orders in {pages} pages ({size:.0f} MB) in {time.perf_counter() - t0:.1f} s",
          file=sys.stderr)

    from connector import create_app, db
    from connector.config import Config
    from connector.migrate import upgrade
    from connector.platforms.woocommerce import sync
    from connector.platforms.woocommerce.client import WooClient
    from connector.returns.models import Order, OrderLine, Shop

    app_db = data_dir / "connector.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{app_db}{suffix}").unlink(missing_ok=True)
    upgrade(f"sqlite:///{app_db}")
    app = create_app(Config.from_env(data_dir=data_dir, database_url=f"sqlite:///{app_db}", jobs_immediate=True))
    server, store_url = serve(pages_dir, args.orders, pages)
    key, secret = "ck_" + "a" * 40, "cs_" + "b" * 40

    # raw: the same pages fetched with requests only
    import requests
    session = requests.Session()
    t0 = time.perf_counter()
    raw_calls = 0
    for page in range(1, pages + 1):
        resp = session.get(f"{store_url}/wp-json/wc/v3/orders", params={"per_page": PER_PAGE, "page": page},
                           timeout=(5, 30))
        resp.json()
        raw_calls += 1
    raw = time.perf_counter() - t0

    with app.app_context():
        shop = Shop(handle="bench-woo", name="Bench Woo", platform="woocommerce", domain="127.0.0.1",
                    currency="EUR", platform_data={"store_url": store_url}, policy={}, branding={},
                    return_address={})
        db.session.add(shop)
        db.session.commit()
        startup_peak = rss_mb()
        was_reset = reset_peak()
        client = WooClient(store_url, key, secret)
        t0 = time.perf_counter()
        state = sync.backfill(shop, client=client)
        elapsed = time.perf_counter() - t0
        peak = rss_mb()
        stored = db.session.query(Order).filter_by(shop_id=shop.id).count()
        lines = db.session.query(OrderLine).filter_by(shop_id=shop.id).count()
        assert stored == args.orders == state["imported"], (stored, state)

        # the per-order path for comparison, on a sample
        from connector.platforms.woocommerce.mapping import order_from_json
        from connector.returns import services
        sample = json.loads((pages_dir / "page-1.json").read_text()) * 5
        shop2 = Shop(handle="bench-woo-2", name="B2", platform="woocommerce", domain="127.0.0.2",
                     currency="EUR", platform_data={}, policy={}, branding={}, return_address={})
        db.session.add(shop2)
        db.session.commit()
        t1 = time.perf_counter()
        for n, order in enumerate(sample):
            services.upsert_order(shop2, order_from_json(dict(order, id=order["id"] + 10_000_000 * n)))
        upsert_rate = len(sample) / (time.perf_counter() - t1)
    server.shutdown()

    print(f"woocommerce backfill, {args.orders:,} orders / {lines:,} line items, {pages} pages of {PER_PAGE} "
          f"over HTTP on 127.0.0.1 (SQLite, WAL)")
    print(f"  raw fetch (requests only)   {args.orders / raw:>8,.0f} orders/s   ({raw:.1f} s, {raw_calls} calls)")
    print(f"  sync.backfill               {args.orders / elapsed:>8,.0f} orders/s   ({elapsed:.1f} s, {client.calls} "
          f"API calls: fetch, OAuth 1.0a signing, mapping, batch writes)   ratio {elapsed / raw:.1f}x the raw fetch")
    print(f"  services.upsert_order       {upsert_rate:>8,.0f} orders/s   (one by one, {len(sample)} orders)")
    print(f"  peak RSS during the backfill {peak:.0f} MB" + ("" if was_reset else " (peak not reset: includes start-up)")
          + f" (app start-up peak {startup_peak:.0f} MB)")
    if not args.data_dir:
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
