"""The demo: the seeded shop holds what the README promises, and `connector demo` serves it.

The command test runs the real console entry point in a subprocess on a free port, reads the
URLs it prints, checks the portal answers and the worker sends the seeded mails, moves the
sandbox parcel with the printed command, then stops the demo with Ctrl-C (SIGINT).
"""
from __future__ import annotations

import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import select
from werkzeug.security import check_password_hash

from connector import db
from connector.demo import MARKER, DemoError, _reset
from connector.returns import services
from connector.returns.models import Order, Return, ReturnReason
from connector.seed import _plan_orders, seed_demo_shop

EU = {"DE", "AT", "FR", "ES", "NL"}


# --------------------------------------------------------------------------- the seed


@pytest.fixture
def demo(app):
    return seed_demo_shop(password="a long demo password")


def test_demo_logo_is_served_by_the_portal(client, demo):
    resp = client.get(demo[0].branding["logo_url"])
    assert resp.status_code == 200 and resp.data.startswith(b"<svg")


def test_demo_shop_is_a_branded_standalone_shop_in_leipzig(demo):
    shop, password, _sample = demo
    assert (shop.handle, shop.platform, shop.currency, shop.locale, shop.country, shop.timezone) == \
        ("demo", "standalone", "EUR", "en", "DE", "Europe/Berlin")
    assert re.fullmatch(r"#[0-9a-f]{6}", shop.branding["primary_color"])
    assert shop.branding["logo_url"] == "/portal/static/demo-logo.svg"
    assert shop.return_address["city"] == "Leipzig"
    assert password == "a long demo password"
    assert check_password_hash(shop.admin_password_hash, password)
    policy = services.policy_of(shop)
    assert policy.methods["DE"] == ["pickup", "dropoff", "carrier_label", "selfship"]
    assert policy.methods["FR"] == ["dropoff", "selfship"]
    assert policy.methods["*"] == ["dropoff", "selfship"]
    assert {"AT", "ES"} <= set(policy.methods)


def test_generated_password_is_long_and_not_fixed(app):
    _shop, password, _sample = seed_demo_shop()
    assert len(password) >= 12


def test_reasons_are_nested_flagged_and_in_four_languages(demo):
    shop = demo[0]
    tree = {parent.code: [child.code for child in children] for parent, children in services.reasons_tree(shop)}
    assert tree["size"] == ["too_small", "too_big"]
    assert {"changed_mind", "damaged", "wrong_item", "other"} <= set(tree)
    reasons = {r.code: r for r in db.session.scalars(select(ReturnReason).where(ReturnReason.shop_id == shop.id))}
    damaged = reasons["damaged"]
    assert damaged.photo_required and damaged.comment_required and damaged.shop_fault
    assert reasons["wrong_item"].shop_fault and reasons["other"].comment_required
    assert all(set(r.labels) >= {"en", "de", "es", "fr"} for r in reasons.values())


def test_orders_cover_countries_currencies_taxes_and_the_awkward_cases(demo):
    shop = demo[0]
    orders = list(db.session.scalars(select(Order).where(Order.shop_id == shop.id)))
    now = datetime.now(timezone.utc)
    assert len(orders) >= 40
    assert all(now - timedelta(days=61) <= o.placed_at <= now for o in orders)
    assert {"DE", "AT", "FR", "ES", "NL", "US"} <= {o.country for o in orders}
    assert {"EUR", "USD", "CHF"} <= {o.currency for o in orders}
    assert all(o.taxes_included for o in orders if o.country in EU)
    assert any(not o.taxes_included and o.country == "US" for o in orders)
    lines = [line for o in orders for line in o.lines]
    assert any(line.discount_total > 0 for line in lines)
    assert any(line.quantity > 1 for line in lines)
    assert any(line.final_sale for line in lines)
    assert all(line.sku and line.tax_total > 0 for line in lines)
    assert len({line.variant_title for line in lines}) > 10
    assert any(o.fulfilled_at is None for o in orders)  # unfulfilled
    blocked = {opt.blocked for o in orders for opt in services.line_options(shop, o)}
    assert {"window_passed", "final_sale", "not_fulfilled"} <= blocked
    names = " ".join(o.customer_name for o in orders)
    assert "ä" in names or "ö" in names or "ü" in names  # German
    assert "é" in names or "è" in names  # French
    assert "í" in names or "ñ" in names  # Spanish
    for order in orders:  # totals add up, in Decimal
        goods = sum((line.unit_price * line.quantity - line.discount_total for line in order.lines), Decimal("0"))
        taxes = Decimal("0") if order.taxes_included else sum((line.tax_total for line in order.lines), Decimal("0"))
        assert order.total == goods + order.shipping_total + taxes


def test_sample_order_is_german_fresh_and_has_several_returnable_lines(demo):
    shop, _password, sample = demo
    order = services.find_order_for_login(shop, sample["order_number"], sample["email"])
    assert order is not None
    assert services.find_order_for_login(shop, sample["order_number"], sample["postcode"]) is order
    assert order.country == "DE" and order.currency == "EUR"
    returnable = [o for o in services.line_options(shop, order) if o.returnable_quantity > 0]
    assert len(returnable) >= 2


def test_seeded_returns_fill_the_admin_list_in_different_states(demo):
    shop = demo[0]
    returns = list(db.session.scalars(select(Return).where(Return.shop_id == shop.id).order_by(Return.number)))
    assert [r.rma for r in returns] == ["R-1001", "R-1002", "R-1003", "R-1004"]
    states = [r.state for r in returns]
    assert states == ["label_ready", "received", "refunded", "requested"]
    first = returns[0]
    assert first.shipment.carrier == "sandbox" and first.shipment.tracking_number  # `sandbox advance R-1001`
    assert services.label_bytes(first).startswith(b"%PDF")


def test_seed_uses_its_own_random_numbers_only():
    """Deterministic: the plan depends on Random(42) alone, not on the global random state."""
    random.seed(1)
    first = _plan_orders(random.Random(42))
    random.seed(2)
    assert _plan_orders(random.Random(42)) == first


def test_seeding_twice_is_refused(demo):
    with pytest.raises(ValueError, match="already exists"):
        seed_demo_shop()


# --------------------------------------------------------------------------- the command


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def demo_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("JOBS_IMMEDIATE", "DATA_DIR", "DATABASE_URL", "REDIS_URL", "MAIL_URL", "BASE_URL")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def http_get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


class Output:
    """Collects a process's stdout in a thread, so reading never blocks the test."""

    def __init__(self, stream):
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream):
        for line in stream:
            self.lines.append(line.rstrip("\n"))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def test_demo_command_serves_the_portal_runs_the_worker_and_stops_on_ctrl_c(tmp_path):
    port = free_port()
    data_dir = tmp_path / "demo"
    stderr = open(tmp_path / "stderr.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "connector.cli", "demo", "--port", str(port),
                             "--data-dir", str(data_dir)], cwd=tmp_path, env=demo_env(),
                            stdout=subprocess.PIPE, stderr=stderr, text=True)
    out = Output(proc.stdout)
    try:
        assert wait_for(lambda: "Press Ctrl-C to stop." in out.text or proc.poll() is not None, 120), out.text
        assert proc.poll() is None, f"demo exited early:\n{out.text}\n{(tmp_path / 'stderr.log').read_text()}"
        portal = re.search(r"Shopper portal:\s+(\S+)", out.text).group(1)
        admin = re.search(r"Merchant admin:\s+(\S+)", out.text).group(1)
        assert portal == f"http://127.0.0.1:{port}/portal/demo/"
        assert admin == f"http://127.0.0.1:{port}/admin/demo/"
        assert re.search(r"try order \d+ with \S+@\S+ \(or postcode \w+\)", out.text)
        assert re.search(r"password: \S{12,}", out.text)
        outbox = data_dir / "outbox"
        assert str(outbox) in out.text

        assert wait_for(lambda: http_get(f"http://127.0.0.1:{port}/healthz") == 200, 30)
        assert http_get(portal) == 200
        assert http_get(admin) == 200  # the sign-in page
        # The worker (main thread) sends the mails the seeded returns queued.
        assert wait_for(lambda: len(list(outbox.glob("*.eml"))) >= 4, 60), list(outbox.iterdir())

        command = re.search(r"(DATA_DIR=\S+) connector sandbox advance (R-1001)", out.text)
        assert command, out.text
        env = demo_env()
        env["DATA_DIR"] = command.group(1).split("=", 1)[1].strip("'")
        advanced = subprocess.run([sys.executable, "-m", "connector.cli", "sandbox", "advance", "R-1001"],
                                  cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert advanced.returncode == 0, advanced.stderr
        assert "in_transit" in advanced.stdout
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail("the demo did not stop on SIGINT")
        stderr.close()
    assert proc.returncode == 0, (tmp_path / "stderr.log").read_text()[-3000:]
    assert wait_for(lambda: "Demo stopped." in out.text, 5), out.text
    assert (data_dir / MARKER).exists()


def test_demo_on_a_busy_port_says_so_and_touches_nothing(tmp_path):
    data_dir = tmp_path / "demo"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "connector.cli", "demo", "--port", str(port),
                                 "--data-dir", str(data_dir)], cwd=tmp_path, env=demo_env(),
                                capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
    assert "--port" in result.stderr
    assert not data_dir.exists()


def test_demo_never_wipes_a_folder_it_did_not_make(tmp_path):
    folder = tmp_path / "precious"
    folder.mkdir()
    (folder / "thesis.tex").write_text("years of work")
    with pytest.raises(DemoError, match="not made by `connector demo`"):
        _reset(folder)
    assert (folder / "thesis.tex").read_text() == "years of work"


def test_demo_rewipes_its_own_folder(tmp_path):
    folder = tmp_path / "demo"
    _reset(folder)
    (folder / "connector.db").write_text("old")
    _reset(folder)
    assert (folder / MARKER).exists() and not (folder / "connector.db").exists()
