"""Refunds through WooCommerce's `POST orders/<id>/refunds`, exactly once.

WooCommerce has no idempotency key: the refund's reason carries ours, and an unknown outcome is
settled by listing the order's refunds. `WooRefunds` below plays the store with the recorded
shapes (fixtures/order_created_v3.json, refund_created_with_line_items.json, order_notes.json,
vectors.json "refund_errors_live"); it keeps the refunds it created even when the answer is lost.
The payment_gateways answer has no recording: it follows WooCommerce's documented shape
(wc/v3 payment_gateways: id, title, description, order, enabled, method_title,
method_description, method_supports, settings).
"""
from __future__ import annotations

import copy
import fcntl
import json
import multiprocessing
import os
import re
import threading
from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select

from connector import db
from connector.platforms.woocommerce.client import WooClient
from connector.returns import lifecycle as lc
from connector.returns import services
from connector.returns.models import Order, Refund, Return, ReturnReason
from tests.factories import now
from tests.woocommerce.conftest import API

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "woocommerce"
REFUSALS = json.loads((FIXTURES / "vectors.json").read_text())["refund_errors_live"]


def recorded(name: str):
    return json.loads((FIXTURES / "fixtures" / name).read_text())


def gateway(gid: str, title: str, supports: list[str]) -> dict:
    return {"id": gid, "title": title, "description": "", "order": 0, "enabled": True, "method_title": title,
            "method_description": "", "method_supports": supports, "settings": {}}


GATEWAYS = [gateway("bacs", "Direct bank transfer", ["products"]),
            gateway("stripe", "Credit card (Stripe)", ["products", "refunds", "tokenization"])]


class WorkerDied(BaseException):
    """The worker process is killed: nothing after this point runs or commits."""


class WooRefunds:
    """The store's order 1001 (recorded order shape) with its refunds and notes.

    `faults` is consumed one per refund POST: "timeout_after_create" (the refund is made, the
    answer lost), a name of vectors.json refund_errors_live (the refusal, nothing made), or a
    BaseException raised after the refund is made (a worker dying)."""

    def __init__(self, rsps, order_id: int = 1001, payment_method: str = "stripe", *, state_file: Path | None = None):
        self.order = self._order(order_id, payment_method)
        self.state_file = state_file  # the refunds and posts in a file under a lock: one store for many processes
        self._memory: dict = {"refunds": [], "posts": []}
        self.notes: list[dict] = []
        self.faults: list = []
        self.gateway_reads = 0
        self.lock = threading.Lock()
        base = re.escape(f"{API}/orders/{order_id}")
        rsps.add_callback("GET", re.compile(base + r"(\?.*)?$"), callback=self._get_order)
        rsps.add_callback("GET", re.compile(base + r"/refunds(\?.*)?$"), callback=self._list)
        rsps.add_callback("POST", re.compile(base + r"/refunds(\?.*)?$"), callback=self._create)
        rsps.add_callback("POST", re.compile(base + r"/notes(\?.*)?$"), callback=self._note)
        rsps.add_callback("GET", re.compile(re.escape(f"{API}/payment_gateways") + r"(\?.*)?$"),
                          callback=self._gateways)

    @staticmethod
    def _order(order_id: int, payment_method: str) -> dict:
        order = recorded("order_created_v3.json")
        order.update(id=order_id, number=str(order_id), payment_method=payment_method,
                     payment_method_title={g["id"]: g["title"] for g in GATEWAYS}.get(payment_method, ""))
        shirt, mug = order["line_items"]
        jacket = copy.deepcopy(shirt)  # Trail Jacket, 129.00 with 20.60 tax: two rates, 3 : 1
        jacket.update(id=1, name="Trail Jacket", quantity=1, total="108.40", total_tax="20.60", subtotal="108.40",
                      subtotal_tax="20.60", sku="JKT-M-BLU",
                      taxes=[{"id": 1, "total": "15.45", "subtotal": "15.45"}, {"id": 2, "total": "5.15", "subtotal": "5.15"}])
        socks = copy.deepcopy(mug)
        socks.update(id=2, name="Merino Socks", quantity=3, total="34.04", total_tax="6.46", sku="SCK-4244",
                     taxes=[{"id": 1, "total": "6.46", "subtotal": "6.46"}])
        gift = copy.deepcopy(mug)
        gift.update(id=3, name="Gift Card", quantity=1, total="25.00", total_tax="0.00", sku="GIFT-25", taxes=[])
        order["line_items"] = [jacket, socks, gift]
        order["shipping_lines"][0].update(id=4, total="4.12", total_tax="0.78",
                                          taxes=[{"id": 1, "total": "0.78", "subtotal": ""}])
        return order

    @contextmanager
    def _state(self):
        """The store's refunds and the refund POSTs it received, changed under a lock."""
        if self.state_file is None:
            with self.lock:
                yield self._memory
            return
        with open(self.state_file.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state = json.loads(self.state_file.read_text()) if self.state_file.exists() else {"refunds": [], "posts": []}
            yield state
            self.state_file.write_text(json.dumps(state))

    @property
    def refunds(self) -> list[dict]:
        with self._state() as state:
            return list(state["refunds"])

    @property
    def posts(self) -> list[dict]:
        with self._state() as state:
            return list(state["posts"])

    # -- the store's answers

    def _get_order(self, request):
        return 200, {}, json.dumps(self.order)

    def _gateways(self, request):
        self.gateway_reads += 1
        return 200, {}, json.dumps(GATEWAYS)

    def _list(self, request):
        body = list(reversed(self.refunds))  # newest first, as WooCommerce lists them
        return 200, {"X-WP-Total": str(len(body)), "X-WP-TotalPages": "1"}, json.dumps(body)

    def _create(self, request):
        sent = json.loads(request.body)
        with self._state() as state:
            state["posts"].append(sent)
            fault = self.faults.pop(0) if self.faults else None
            if isinstance(fault, str) and fault in REFUSALS:
                refusal = REFUSALS[fault]
                return refusal["status"], {}, json.dumps(refusal["json"])
            refund = self._make(sent, len(state["refunds"]))
            state["refunds"].append(refund)
        if fault == "timeout_after_create":
            raise requests.ReadTimeout("read timed out")
        if isinstance(fault, BaseException):
            raise fault
        return 201, {}, json.dumps(refund)

    def _make(self, sent: dict, made: int) -> dict:
        """The refund as WooCommerce answers it (refund_created_with_line_items.json), the `made`+1th."""
        refund = recorded("refund_created_with_line_items.json")
        template = refund["line_items"][0]
        refund.update(id=100 + made, amount=sent["amount"], reason=sent.get("reason", ""),
                      refunded_payment=bool(sent.get("api_refund", True)))
        items = {i["id"]: i for i in self.order["line_items"]}
        lines = []
        for item in sent.get("line_items", []):
            if item["id"] not in items:
                continue
            line = copy.deepcopy(template)
            tax = sum(Decimal(t["refund_total"]) for t in item.get("refund_tax", []))
            line.update(id=500 + len(lines), name=items[item["id"]]["name"], quantity=-item.get("quantity", 0),
                        total=f"-{item['refund_total']}", total_tax=f"-{tax:.2f}",
                        taxes=[{"id": t["id"], "total": f"-{t['refund_total']}", "subtotal": f"-{t['refund_total']}"}
                               for t in item.get("refund_tax", [])])
            line["meta_data"][0]["value"] = str(item["id"])
            lines.append(line)
        refund["line_items"] = lines
        return refund

    def _note(self, request):
        sent = json.loads(request.body)
        note = copy.deepcopy(recorded("order_notes.json")[0])
        note.update(id=900 + len(self.notes), note=sent["note"], customer_note=sent["customer_note"])
        self.notes.append(note)
        return 201, {}, json.dumps(note)


# ---------------------------------------------------------------------------- helpers


@pytest.fixture
def shop(woo_shop):
    """The connected store; order 1001's lines carry WooCommerce's line item ids 1, 2, 3."""
    order = db.session.scalars(select(Order).where(Order.shop_id == woo_shop.id, Order.number == "1001")).one()
    for i, line in enumerate(order.lines, start=1):
        line.platform_id = str(i)
    db.session.commit()
    return woo_shop


@pytest.fixture
def woo(rsps, monkeypatch):
    monkeypatch.setattr(WooClient, "_backoff", lambda self, failures, retry_after=None: 0.0)
    return WooRefunds(rsps)


def portal_return(shop, quantities=None, *, method="dropoff", reason="changed_mind", comment=""):
    """A shopper's confirmed return on order 1001 through the real services (default: one jacket)."""
    order = db.session.scalars(select(Order).where(Order.shop_id == shop.id, Order.number == "1001")).one()
    reason_row = db.session.scalars(select(ReturnReason).where(ReturnReason.shop_id == shop.id,
                                                                ReturnReason.code == reason)).one()
    ret = services.start_draft(shop, order, email=order.email, locale="en")
    photos = ["shop-1/photos/x.jpg"] if reason_row.photo_required else []
    comment = comment or ("Seam split" if reason_row.comment_required else "")
    services.set_items(ret, [services.ItemChoice(order.lines[i].id, q, reason_row.id, comment=comment, photos=photos)
                             for i, q in (quantities or {0: 1}).items()])
    services.set_method(ret, method)
    services.set_instructions(ret, dict(order.shipping_address), [code for code, _t in services.checklist_items(ret)])
    services.confirm(ret)
    return ret


def received(shop, **kw):
    ret = portal_return(shop, **kw)
    services.mark_received(ret, "merchant:anna")
    return ret


def refund_rows(ret) -> list[Refund]:
    return list(db.session.scalars(select(Refund).where(Refund.return_id == ret.id)))


def hold_jobs(monkeypatch, *names):
    from connector.returns.context import runtime

    real = runtime.enqueue
    monkeypatch.setattr(runtime, "enqueue", lambda name, **kw: None if name in names else real(name, **kw))


def assert_exactly_one_refund(woo, refund):
    db.session.refresh(refund)
    assert len(woo.refunds) == 1
    assert woo.refunds[0]["reason"].endswith(f"[{refund.idempotency_key}]")
    assert {p["reason"] for p in woo.posts} == {woo.refunds[0]["reason"]}
    assert refund.state == "succeeded" and refund.platform_refund_id == str(woo.refunds[0]["id"])
    assert db.session.scalar(select(func.count()).select_from(Refund)) == 1


# ---------------------------------------------------------------------------- what is sent


def test_the_refund_body_splits_tax_per_rate_refunds_shipping_and_goes_through_the_gateway(shop, woo):
    shop.policy = {"refund_shipping": "always"}
    db.session.commit()
    ret = received(shop)
    refund = services.request_refund(ret, "merchant:anna")
    (sent,) = woo.posts
    assert sent == {
        "amount": "129.95",  # 129.00 jacket + 4.90 shipping - 3.95 drop-off fee
        "reason": f"Returns Connector {ret.rma} [{refund.idempotency_key}]",
        "api_refund": True,  # stripe lists "refunds" in method_supports
        "api_restock": False,  # not graded: nothing goes back on sale
        "line_items": [
            {"id": 1, "quantity": 1, "refund_total": "108.40",
             "refund_tax": [{"id": 1, "refund_total": "15.45"}, {"id": 2, "refund_total": "5.15"}]},
            {"id": 4, "refund_total": "4.12", "refund_tax": [{"id": 1, "refund_total": "0.78"}]},
        ]}
    assert_exactly_one_refund(woo, refund)
    assert refund.manual is False
    assert ret.state == lc.REFUNDED


def test_restock_only_when_every_refunded_line_is_graded_a(shop, woo):
    ret = received(shop, quantities={0: 1, 1: 2})
    jacket, socks = ret.lines
    services.inspect(ret, "merchant:anna", {jacket.id: {"grade": "A", "disposition": "restock"},
                                            socks.id: {"grade": "A", "disposition": "restock"}})
    services.request_refund(ret, "merchant:anna")
    assert woo.posts[-1]["api_restock"] is True
    socks_line = next(i for i in woo.posts[-1]["line_items"] if i["id"] == 2)
    assert socks_line["quantity"] == 2


def mixed_grades(shop):
    """One jacket graded A (back on sale) and two socks graded B (refurbish), received."""
    ret = received(shop, quantities={0: 1, 1: 2})
    jacket, socks = ret.lines
    services.inspect(ret, "merchant:anna", {jacket.id: {"grade": "A", "disposition": "restock"},
                                            socks.id: {"grade": "B", "disposition": "refurbish"}})
    return ret


def test_mixed_grades_restock_only_the_a_lines_through_a_refund_of_no_money_first(shop, woo):
    ret = mixed_grades(shop)
    refund = services.request_refund(ret, "merchant:anna")
    stock, money = woo.posts  # WooCommerce restocks every line of a refund by its quantity, or none
    assert stock == {"amount": "0.00", "reason": f"Returns Connector {ret.rma} [rc-{shop.id}-{ret.id}-restock]",
                     "api_refund": False, "api_restock": True,
                     "line_items": [{"id": 1, "quantity": 1, "refund_total": "0.00"}]}
    assert money["api_restock"] is False and money["api_refund"] is True
    assert money["reason"].endswith(f"[{refund.idempotency_key}]")
    jacket, socks = money["line_items"][:2]
    assert "quantity" not in jacket and jacket["refund_total"] == "108.40"  # its money, its units went back above
    assert socks["quantity"] == 2
    db.session.refresh(refund)
    assert refund.state == "succeeded" and refund.platform_refund_id == str(woo.refunds[1]["id"])
    assert Decimal(money["amount"]) == refund.amount


def test_the_restock_refund_is_made_once_however_often_the_money_is_retried(shop, woo):
    woo.faults = [None, "refund_gateway_error"]  # the restock refund goes in, the gateway declines the money
    ret = mixed_grades(shop)
    first = services.request_refund(ret, "merchant:anna")
    assert first.state == "failed" and first.error == "Gateway declined the refund"
    assert len(woo.refunds) == 1  # the units are back on sale: they were received and graded A
    woo.faults = ["timeout_after_create"]
    second = services.request_refund(ret, "merchant:anna")
    assert second.id != first.id and second.state == "unknown"
    services.reconcile(now=now() + timedelta(hours=1))
    db.session.refresh(second)
    assert second.state == "succeeded"
    restocks = [p for p in woo.posts if p["api_restock"]]
    assert len(restocks) == 1 and len(woo.refunds) == 2
    assert [Decimal(r["amount"]) for r in woo.refunds] == [Decimal("0.00"), second.amount]


def test_a_refused_restock_refund_leaves_the_restock_to_the_merchant_and_the_money_still_goes(shop, woo):
    woo.faults = ["refund_too_large"]
    ret = mixed_grades(shop)
    refund = services.request_refund(ret, "merchant:anna")
    assert refund.state == "succeeded"
    stock_try, money = woo.posts
    assert stock_try["api_restock"] is True and len(woo.refunds) == 1
    assert money["api_restock"] is False and all("quantity" in i for i in money["line_items"][:2])
    assert any("could not put the items graded A back in stock: Invalid refund amount." in n["note"]
               for n in woo.notes)


def test_the_gateway_list_is_read_once_a_day(shop, woo):
    from connector.platforms.woocommerce.adapter import WooCommerceAdapter

    adapter = WooCommerceAdapter(shop)
    assert adapter.refund_gateways() == ["stripe"]
    assert WooCommerceAdapter(shop).refund_gateways() == ["stripe"]
    assert woo.gateway_reads == 1
    shop.platform_data = {**shop.platform_data, "payment_gateways": {
        **shop.platform_data["payment_gateways"], "checked_at": (now() - timedelta(days=2)).isoformat()}}
    assert WooCommerceAdapter(shop).refund_gateways() == ["stripe"]
    assert woo.gateway_reads == 2


def test_a_gateway_that_cannot_refund_blocks_the_refund_until_the_merchant_records_it_manually(shop, woo):
    woo.order.update(payment_method="bacs", payment_method_title="Direct bank transfer")
    ret = received(shop)
    refund = services.request_refund(ret, "merchant:anna")
    assert refund.state == "failed" and woo.posts == []
    assert refund.error.startswith("This payment method cannot refund automatically: Direct bank transfer")
    assert ret.state == lc.RECEIVED

    manual = services.request_refund(ret, "merchant:anna", manual=True)
    assert manual.id != refund.id and manual.idempotency_key.endswith("-2")
    (sent,) = woo.posts
    assert sent["api_refund"] is False and sent["reason"].endswith(f"[{manual.idempotency_key}]")
    db.session.refresh(manual)
    assert manual.state == "succeeded" and manual.manual is True
    assert ret.state == lc.REFUNDED


def test_a_manual_refund_is_refused_where_the_platform_cannot_record_one(app):
    from tests.factories import make_shop

    standalone = make_shop(handle="plain-shop")
    ret = portal_return(standalone)
    services.mark_received(ret, "merchant:anna")
    with pytest.raises(services.ServiceError):
        services.request_refund(ret, "merchant:anna", manual=True)


@pytest.mark.parametrize("refusal", sorted(REFUSALS))
def test_woocommerces_refusal_reaches_the_merchant_verbatim_and_the_return_stays_unrefunded(shop, woo, refusal):
    woo.faults = [refusal]
    ret = received(shop)
    refund = services.request_refund(ret, "merchant:anna")
    words = REFUSALS[refusal]["json"]["message"]
    assert refund.state == "failed" and refund.error == words
    assert ret.state == lc.RECEIVED and ret.pending_step is None
    assert [e.data["error"] for e in ret.events if e.kind == "refund_failed"] == [words]
    assert woo.refunds == []


def test_a_refusal_is_final_only_when_no_refund_under_the_key_exists(shop, woo):
    """A racing worker made the refund; this worker's POST is refused as too large: the refund exists."""
    ret = received(shop)
    key = f"rc-{ret.shop_id}-{ret.id}-1"
    with woo._state() as state:
        state["refunds"].append(woo._make({"amount": "125.05", "reason": f"Returns Connector {ret.rma} [{key}]",
                                           "api_refund": True, "line_items": []}, 0))
    woo.faults = ["refund_too_large"]
    refund = services.request_refund(ret, "merchant:anna")
    assert refund.state == "succeeded" and refund.platform_refund_id == str(woo.refunds[0]["id"])
    assert len(woo.refunds) == 1 and ret.state == lc.REFUNDED


# ---------------------------------------------------------------------------- exactly once


def test_refund_clicked_twice_makes_one_refund(shop, woo):
    ret = received(shop)
    first = services.request_refund(ret, "merchant:anna")
    second = services.request_refund(ret, "merchant:anna")
    services.execute_refund(first.id)
    assert first.id == second.id and len(woo.posts) == 1
    assert_exactly_one_refund(woo, first)


def test_two_threads_racing_make_one_refund(app, shop, woo):
    ret = received(shop)
    return_id = ret.id
    db.session.remove()
    barrier = threading.Barrier(2)
    outcomes = []

    def worker():
        with app.app_context():
            r = db.session.get(Return, return_id)
            barrier.wait()
            try:
                refund = services.request_refund(r, "merchant:anna")
                services.execute_refund(refund.id)
                outcomes.append("ok")
            except Exception as exc:  # a lost race (SQLite: database is locked) must not refund twice
                db.session.rollback()
                outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    services.reconcile(now=now() + timedelta(hours=1))
    (refund,) = refund_rows(db.session.get(Return, return_id))
    assert_exactly_one_refund(woo, refund)
    assert "ok" in outcomes


def _race_in_a_process(database_url: str, data_dir: str, return_id: int, state_file: str, report: str,
                       barrier) -> None:
    """One worker process: its own app on the shared PostgreSQL database, its own WooCommerce stub
    over the refunds the store holds (`state_file`); clicks Refund and runs the refund job."""
    import responses

    from connector import create_app
    from connector.config import Config

    config = Config.from_env({}, data_dir=Path(data_dir), database_url=database_url, jobs_immediate=True,
                             base_url="https://returns.example.com")
    app = create_app(config)
    WooClient._backoff = lambda self, failures, retry_after=None: 0.0
    with app.app_context(), responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        WooRefunds(rsps, state_file=Path(state_file))
        ret = db.session.get(Return, return_id)
        barrier.wait(timeout=60)
        outcome = "ok"
        try:
            refund = services.request_refund(ret, "merchant:anna")
            services.execute_refund(refund.id)
        except Exception as exc:  # a lost race may fail; it must never refund twice
            db.session.rollback()
            outcome = type(exc).__name__
        Path(report).write_text(json.dumps({"outcome": outcome}))


@pytest.mark.postgres
def test_two_processes_racing_on_postgresql_make_one_refund(app, config, shop, rsps, monkeypatch, tmp_path):
    database_url = os.environ.get("TEST_DATABASE_URL")
    if not database_url or not config.database_url.startswith("postgres"):
        pytest.skip("needs PostgreSQL: set TEST_DATABASE_URL (two processes cannot share a SQLite test copy "
                    "the way workers share the production database)")
    monkeypatch.setattr(WooClient, "_backoff", lambda self, failures, retry_after=None: 0.0)
    state_file = tmp_path / "woocommerce-refunds.json"
    woo = WooRefunds(rsps, state_file=state_file)  # the one store all processes talk to
    ret = received(shop)
    return_id = ret.id
    db.session.commit()
    db.session.remove()
    spawn = multiprocessing.get_context("spawn")
    barrier = spawn.Barrier(2)
    reports = [tmp_path / f"report-{i}.json" for i in range(2)]
    processes = [spawn.Process(target=_race_in_a_process, args=(
        config.database_url, str(config.data_dir), return_id, str(state_file), str(report), barrier))
        for report in reports]
    [p.start() for p in processes]
    [p.join(timeout=120) for p in processes]
    assert [p.exitcode for p in processes] == [0, 0]
    services.reconcile(now=now() + timedelta(hours=1))  # settle what a lost race left pending
    (refund,) = refund_rows(db.session.get(Return, return_id))
    assert_exactly_one_refund(woo, refund)
    assert "ok" in [json.loads(r.read_text())["outcome"] for r in reports]


def test_a_timeout_after_woocommerce_created_the_refund_is_found_by_its_key_not_sent_again(shop, woo):
    woo.faults = ["timeout_after_create"]
    ret = received(shop)
    refund = services.request_refund(ret, "merchant:anna")
    assert refund.state == "unknown" and ret.state == lc.RECEIVED and len(woo.refunds) == 1
    assert ret.pending_step == "refund"
    counts = services.reconcile(now=now() + timedelta(hours=1))
    assert counts["refund"] == 1
    assert len(woo.posts) == 1  # listed, found, nothing sent again
    assert_exactly_one_refund(woo, refund)
    assert ret.state == lc.REFUNDED


def test_a_worker_dying_mid_refund_is_redriven_and_finds_the_refund(shop, woo, monkeypatch):
    ret = received(shop)
    hold_jobs(monkeypatch, "execute_refund")
    refund = services.request_refund(ret, "merchant:anna")
    monkeypatch.undo()
    monkeypatch.setattr(WooClient, "_backoff", lambda self, failures, retry_after=None: 0.0)
    woo.faults = [WorkerDied()]  # WooCommerce makes it; the worker dies before it hears back
    return_id = ret.id
    with pytest.raises(WorkerDied):
        services.execute_refund(refund.id)
    db.session.rollback()
    db.session.remove()

    ret = db.session.get(Return, return_id)
    (row,) = refund_rows(ret)
    assert row.state == "pending" and row.attempts == 1 and row.platform_refund_id is None
    # While the dead worker's lease runs, nobody else may start an attempt (it might still be
    # sending); WooCommerce has no idempotency key to catch a second send.
    services.execute_refund(row.id)
    db.session.refresh(row)
    assert row.attempts == 1 and len(woo.posts) == 1
    row.attempt_started_at = now() - timedelta(minutes=11)  # the lease ran out: the worker is gone
    db.session.commit()
    assert services.reconcile(now=now() + timedelta(hours=1))["refund"] == 1
    assert len(woo.posts) == 1
    assert_exactly_one_refund(woo, row)
    db.session.refresh(ret)
    assert ret.state == lc.REFUNDED


# ---------------------------------------------------------------------------- order notes


def test_each_milestone_is_written_as_an_order_note_once(shop, woo):
    ret = portal_return(shop, reason="damaged", comment="Zip broken")  # auto-approved: the label follows
    shipment = ret.shipment
    assert shipment is not None and shipment.tracking_number
    assert [n["note"] for n in woo.notes] == [
        f"Return {ret.rma} requested: 1 × Trail Jacket (Arrived damaged): “Zip broken”",
        f"Return {ret.rma}: return label created, tracking number {shipment.tracking_number} ({shipment.carrier})"
        + (f" {shipment.tracking_url}" if shipment.tracking_url else "")]
    assert {n["customer_note"] for n in woo.notes} == {False}
    services.mark_received(ret, "merchant:anna")
    services.inspect(ret, "merchant:anna", {ret.lines[0].id: {"grade": "A", "disposition": "restock"}})
    services.request_refund(ret, "merchant:anna")
    services.write_order_notes(ret.id)  # a repeat writes nothing more
    texts = [n["note"] for n in woo.notes]
    assert len(texts) == 5, texts
    assert texts[2] == f"Return {ret.rma} received: 1 × Trail Jacket"
    assert texts[3] == f"Return {ret.rma} graded: Trail Jacket: A, restock"
    assert texts[4].startswith(f"Return {ret.rma} refunded: ")
    kinds = [e.data["kind"] for e in ret.events if e.kind == "platform_note"]
    assert kinds[:4] == ["created", "label", "received", "graded"] and kinds[4].startswith("refunded-")


def test_the_admin_offers_a_manual_refund_after_the_gateway_could_not_refund(client, shop, woo):
    from tests.admin.conftest import Admin

    woo.order.update(payment_method="bacs", payment_method_title="Direct bank transfer")
    ret = received(shop)
    admin = Admin(client, shop.handle)
    assert admin.login().status_code == 302
    page = admin.get(f"returns/{ret.id}").get_data(as_text=True)
    assert "Record a manual refund" not in page  # nothing has failed yet
    admin.post(f"returns/{ret.id}/refund", page=f"returns/{ret.id}")
    page = admin.get(f"returns/{ret.id}").get_data(as_text=True)
    assert "cannot refund automatically" in page and "Record a manual refund" in page
    admin.post(f"returns/{ret.id}/refund", {"manual": "1"}, page=f"returns/{ret.id}")
    (sent,) = woo.posts
    assert sent["api_refund"] is False
    db.session.refresh(ret)
    assert ret.state == lc.REFUNDED


def test_the_plugin_records_a_manual_refund_after_the_gateway_could_not_refund(client, shop, woo):
    import time

    from connector.platforms.woocommerce import signing
    from tests.woocommerce.factories import PLUGIN_SECRET

    def signed(method, path, body=b""):
        stamp = str(int(time.time()))
        headers = {"X-RC-Shop": shop.handle, "X-RC-Timestamp": stamp,
                   "X-RC-Signature": signing.sign_request(PLUGIN_SECRET, stamp, method, path, body)}
        if method == "GET":
            return client.get(path, headers=headers)
        return client.post(path, data=body, headers={**headers, "Content-Type": "application/json"})

    woo.order.update(payment_method="bacs", payment_method_title="Direct bank transfer")
    ret = received(shop)
    listing = "/woocommerce/plugin/orders/1001/returns"
    assert signed("GET", listing).get_json()[0]["can_record_manual"] is False
    first = signed("POST", "/woocommerce/plugin/refund", json.dumps({"return_id": ret.id}).encode()).get_json()
    assert first["state"] == "failed" and "cannot refund automatically" in first["error"] and woo.posts == []
    assert signed("GET", listing).get_json()[0]["can_record_manual"] is True
    manual = signed("POST", "/woocommerce/plugin/refund",
                    json.dumps({"return_id": ret.id, "manual": True}).encode()).get_json()
    assert manual["state"] == "succeeded"
    (sent,) = woo.posts
    assert sent["api_refund"] is False
    assert signed("POST", "/woocommerce/plugin/refund",
                  json.dumps({"return_id": ret.id, "manual": "yes"}).encode()).status_code == 400
