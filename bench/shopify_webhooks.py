"""Shopify webhook intake: signed orders/create deliveries per second through gunicorn.

Starts gunicorn on 127.0.0.1 (a free port) with the app on a fresh SQLite database (or the
PostgreSQL database in TEST_DATABASE_URL / --database-url) holding one installed Shopify shop,
and fires N signed `orders/create` deliveries (Shopify's documented sample payload, a unique
X-Shopify-Event-Id each) from client threads. Each request is verified (HMAC), deduped, stored as
a WebhookDelivery and enqueued on the real queue (SqliteHuey in DATA_DIR; no worker runs, so the
jobs stay queued). In the same run, a bare Flask app with one route that reads the body and
answers 200, served by the same gunicorn settings, is measured the same way. Prints requests/s and
p50/p99 latency of both, and the ratio.

    .venv/bin/python bench/shopify_webhooks.py                      # 5,000 deliveries, 2 sync workers
    .venv/bin/python bench/shopify_webhooks.py --requests 20000 --concurrency 8 --worker-class gthread
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import http.client
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-shopify-secret"
DOMAIN = "bench-shop.myshopify.com"
SAMPLE = ROOT / "tests" / "fixtures" / "shopify" / "webhooks" / "orders_create.json"


def bare_app():
    """The baseline: one route that reads the body and answers 200 (gunicorn loads it by name)."""
    from flask import Flask, request

    app = Flask("bare")

    @app.post("/shopify/webhooks")
    def receive():
        request.get_data(cache=False)
        return "ok"

    @app.get("/healthz")
    def healthz():
        return "ok"

    return app


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare(data_dir: Path, database_url: str) -> None:
    """Migrate the database and install one Shopify shop (the domain the deliveries name)."""
    from connector import create_app, db
    from connector.config import Config
    from connector.migrate import upgrade
    from connector.returns.models import Shop

    upgrade(database_url)
    app = create_app(Config.from_env({}, data_dir=data_dir, database_url=database_url, shopify_api_key="bench",
                                     shopify_api_secret=SECRET))
    with app.app_context():
        old = db.session.query(Shop).filter_by(domain=DOMAIN).one_or_none()
        if old is not None:  # an earlier run on the same PostgreSQL database
            db.session.delete(old)
            db.session.commit()
        db.session.add(Shop(handle=f"bench-{uuid.uuid4().hex[:8]}", name="Bench Shop", platform="shopify",
                            domain=DOMAIN, currency="USD", platform_data={}))
        db.session.commit()
    db.session.remove()


def start_gunicorn(spec: str, port: int, env: dict[str, str], args) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "gunicorn", "-w", str(args.workers), "-k", args.worker_class,
           "-b", f"127.0.0.1:{port}", "--backlog", "2048", "--log-level", "warning",
           "--pythonpath", f"{ROOT},{ROOT / 'bench'}"]
    if args.worker_class == "gthread":
        cmd += ["--threads", str(args.threads)]
    proc = subprocess.Popen(cmd + [spec], env=env, cwd=str(ROOT))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"gunicorn ({spec}) did not start on port {port}")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


def deliveries(n: int, body: bytes) -> list[dict[str, str]]:
    """Headers of n signed orders/create deliveries, each with its own event id."""
    signature = base64.b64encode(hmac.new(SECRET.encode(), body, hashlib.sha256).digest()).decode()
    return [{"Content-Type": "application/json", "X-Shopify-Topic": "orders/create",
             "X-Shopify-Hmac-Sha256": signature, "X-Shopify-Shop-Domain": DOMAIN,
             "X-Shopify-API-Version": "2026-04", "X-Shopify-Webhook-Id": str(uuid.uuid4()),
             "X-Shopify-Event-Id": str(uuid.uuid4())} for _ in range(n)]


def fire(port: int, body: bytes, requests: list[dict[str, str]], concurrency: int) -> tuple[float, list[float]]:
    """Send every request from `concurrency` threads; (seconds for all, per-request ms)."""
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    queue = iter(requests)

    def worker():
        local = []
        while True:
            with lock:
                headers = next(queue, None)
            if headers is None:
                break
            t0 = time.perf_counter()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            try:  # gunicorn's sync workers close each connection: one connection per request
                conn.request("POST", "/shopify/webhooks", body=body, headers=headers)
                resp = conn.getresponse()
                resp.read()
                status = resp.status
            finally:
                conn.close()
            local.append((time.perf_counter() - t0) * 1000)
            if status != 200:
                with lock:
                    failures.append(str(status))
        with lock:
            latencies.extend(local)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    if failures:
        raise SystemExit(f"{len(failures)} requests failed, e.g. HTTP {failures[0]}")
    return elapsed, latencies


def measure(spec: str, env: dict[str, str], body: bytes, args) -> tuple[float, list[float]]:
    """(requests/s, latencies in ms) of one endpoint, after a warm-up, on a fresh gunicorn."""
    port = free_port()
    proc = start_gunicorn(spec, port, env, args)
    try:
        fire(port, body, deliveries(args.warmup, body), args.concurrency)  # imports, connections, caches
        elapsed, latencies = fire(port, body, deliveries(args.requests, body), args.concurrency)
    finally:
        stop(proc)
    return len(latencies) / elapsed, latencies


def line(name: str, rate: float, latencies: list[float]) -> str:
    return (f"  {name:<33} {rate:6.0f} req/s   p50 {statistics.median(latencies):6.2f} ms"
            f"   p99 {percentile(latencies, 99):6.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of both endpoints")
    parser.add_argument("--concurrency", type=int, default=8, help="client threads")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker-class", default="sync", choices=("sync", "gthread"))
    parser.add_argument("--threads", type=int, default=4, help="threads per gthread worker")
    parser.add_argument("--database-url", default=os.environ.get("TEST_DATABASE_URL"),
                        help="PostgreSQL URL (default: a fresh SQLite file)")
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="bench-webhooks-"))
    database_url = args.database_url or f"sqlite:///{data_dir / 'connector.db'}"
    os.environ["DATA_DIR"] = str(data_dir)
    prepare(data_dir, database_url)
    body = SAMPLE.read_bytes()
    env = {**os.environ, "DATA_DIR": str(data_dir), "DATABASE_URL": database_url, "SHOPIFY_API_KEY": "bench",
           "SHOPIFY_API_SECRET": SECRET, "JOBS_IMMEDIATE": "0", "PYTHONPATH": str(ROOT)}
    env.pop("REDIS_URL", None)  # the SQLite queue in DATA_DIR, as a default install runs it

    store = "PostgreSQL" if database_url.startswith("postgres") else "SQLite"
    print(f"shopify webhooks: {args.requests:,} signed orders/create ({len(body):,} bytes) per endpoint and round, "
          f"gunicorn -w {args.workers} -k {args.worker_class}, {args.concurrency} client threads, {store}, "
          f"{args.rounds} rounds (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)", flush=True)
    # Rounds alternate the two endpoints, so that a change in the machine's load hits both alike.
    results: dict[str, list[tuple[float, list[float]]]] = {"bare": [], "app": []}
    for n in range(1, args.rounds + 1):
        for key, name, spec in (("bare", "bare Flask (200)", "shopify_webhooks:bare_app()"),
                                ("app", "POST /shopify/webhooks", "connector:create_app()")):
            rate, latencies = measure(spec, env, body, args)
            results[key].append((rate, latencies))
            print(line(f"{name} #{n}", rate, latencies), flush=True)
    summary = {}
    for key, name in (("bare", "bare Flask (200)"), ("app", "POST /shopify/webhooks")):
        runs = results[key]
        rate = statistics.median(r for r, _ in runs)
        latencies = [ms for _, lat in runs for ms in lat]
        summary[key] = (rate, percentile(latencies, 99))
        print(line(f"{name} (median)", rate, latencies))
    bare, app = summary["bare"], summary["app"]
    print(f"  ratio {app[0] / bare[0]:.2f} of the bare rate (goal >= 0.50), p99 {app[1]:.1f} ms (goal < 100 ms)")

    from sqlalchemy import create_engine, text
    engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT count(*) FROM webhook_deliveries w JOIN shops s ON s.id = w.shop_id "
                                   "WHERE s.domain = :d"), {"d": DOMAIN}).scalar()
    engine.dispose()
    import sqlite3
    queued = sqlite3.connect(data_dir / "jobs.db").execute("SELECT count(*) FROM task").fetchone()[0]
    expected = (args.requests + args.warmup) * args.rounds
    print(f"  stored {stored:,} deliveries, {queued:,} jobs queued (expected {expected:,} each)")


if __name__ == "__main__":
    main()
