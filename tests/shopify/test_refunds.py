"""Exactly one refund reaches Shopify: double clicks, races (threads; processes on PostgreSQL),
timeouts after Shopify applied it, 5xx answers, and a worker that dies mid-refund.

The money goes through refundCreate with `@idempotent(key:)`: Shopify applies a key once and answers
a repeat with the first refund (tests/shopify/returns_fake.py plays that rule), and the Refund's note
carries the key so that an unknown outcome is read back (OrderRefunds) before anything is sent
again. Every case also checks that the key Shopify saw is the Refund row's `idempotency_key`.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from connector import db
from connector.platforms.shopify.client import ShopifyClient
from connector.returns import lifecycle as lc
from connector.returns import services
from connector.returns.models import Refund, Return
from tests.factories import now
from tests.shopify.factories import line_gid, order_gid
from tests.shopify.returns_fake import ShopifyReturnsFake, answer, portal_return


class WorkerDied(BaseException):
    """The worker process is killed: nothing after this point runs or commits."""


@pytest.fixture
def fake(shopify, shopify_shop, monkeypatch):
    monkeypatch.setattr(ShopifyClient, "_backoff", lambda self, attempt: 0.0)
    return ShopifyReturnsFake(shopify, shopify_shop)


def received(shop, **kw):
    ret = portal_return(shop, **kw)
    services.mark_received(ret, "merchant:anna")
    return ret


def refund_rows(ret) -> list[Refund]:
    return list(db.session.scalars(select(Refund).where(Refund.return_id == ret.id)))


def assert_exactly_one_refund(fake, shopify, refund):
    """One refund applied in Shopify, every RefundCreate under the row's key, the row succeeded."""
    db.session.refresh(refund)
    assert len(fake.refunds) == 1
    keys = {call["idempotencyKey"] for call in shopify.calls("RefundCreate")}
    assert keys == {refund.idempotency_key}
    assert fake.refunds[0]["key"] == refund.idempotency_key
    assert refund.state == "succeeded" and refund.platform_refund_id == fake.refunds[0]["id"]
    assert db.session.scalar(select(func.count()).select_from(Refund)) == 1


def hold_jobs(monkeypatch, *names):
    """Jobs named here are lost (a queue that dropped them); the others run inline."""
    from connector.returns.context import runtime

    real = runtime.enqueue
    monkeypatch.setattr(runtime, "enqueue", lambda name, **kw: None if name in names else real(name, **kw))


# ---------------------------------------------------------------------------- what is sent


def test_the_refund_goes_to_the_original_payment_under_its_key(shopify_shop, shopify, fake):
    ret = received(shopify_shop)
    refund = services.request_refund(ret, "merchant:anna")
    (sent,) = shopify.calls("RefundCreate")
    assert sent["idempotencyKey"] == refund.idempotency_key
    assert sent["input"] == {
        "orderId": order_gid("1001"), "currency": "EUR", "notify": False,
        "note": f"Returns Connector R-1001 [{refund.idempotency_key}]",
        # a native return's stock moves with its dispositions, never with the refund as well
        "refundLineItems": [{"lineItemId": line_gid("1001", 1), "quantity": 1, "restockType": "NO_RESTOCK"}],
        "discrepancyReason": "OTHER",  # the 3.95 drop-off fee kept back
        "transactions": [{"orderId": order_gid("1001"), "parentId": "gid://shopify/OrderTransaction/42",
                          "gateway": "shopify_payments", "kind": "REFUND", "amount": "125.05"}],
    }
    assert_exactly_one_refund(fake, shopify, refund)
    assert ret.state == lc.REFUNDED
    assert ret.platform_status == "OPEN"  # not graded yet: Shopify's return stays open


def test_store_credit_goes_through_refund_methods(shopify_shop, shopify, fake):
    shopify_shop.policy = {"store_credit": True}
    db.session.commit()
    ret = portal_return(shopify_shop, confirm=False)
    services.set_method(ret, "dropoff", refund_method="store_credit")
    services.set_instructions(ret, dict(ret.order.shipping_address),
                              [code for code, _t in services.checklist_items(ret)])
    services.confirm(ret)
    services.mark_received(ret, "merchant:anna")
    refund = services.request_refund(ret, "merchant:anna")
    (sent,) = shopify.calls("RefundCreate")
    assert sent["input"]["refundMethods"] == [{"storeCreditRefund": {"amount": {"amount": "125.05",
                                                                                 "currencyCode": "EUR"}}}]
    assert "transactions" not in sent["input"]
    assert_exactly_one_refund(fake, shopify, refund)


def test_a_graded_and_refunded_return_is_closed_in_shopify(shopify_shop, shopify, fake):
    ret = received(shopify_shop)
    services.inspect(ret, "merchant:anna", {ret.lines[0].id: {"grade": "A", "disposition": "restock", "note": ""}})
    assert ret.platform_status == "OPEN" and shopify.calls("ReturnClose") == []
    refund = services.request_refund(ret, "merchant:anna")
    assert_exactly_one_refund(fake, shopify, refund)
    assert shopify.calls("ReturnClose") == [{"id": ret.platform_id}]
    assert ret.platform_status == fake.returns[ret.platform_id]["status"] == "CLOSED"


def test_shopifys_refusal_reaches_the_merchant_in_shopifys_words(shopify_shop, shopify, fake):
    words = "Refund amount must be less than or equal to the refundable amount of €100.00."
    shopify.on("RefundCreate", answer({"refundCreate": {"refund": None, "userErrors": [
        {"field": ["transactions", "0", "amount"], "message": words}]}}))
    ret = received(shopify_shop)
    refund = services.request_refund(ret, "merchant:anna")
    assert refund.state == "failed" and refund.error == words
    assert ret.state == lc.RECEIVED
    assert [e.data["error"] for e in ret.events if e.kind == "refund_failed"] == [words]


def test_a_key_shopify_is_still_processing_leaves_the_outcome_unknown(shopify_shop, shopify, fake):
    shopify.on("RefundCreate", answer({"refundCreate": {"refund": None, "userErrors": [
        {"field": None, "message": "This request is currently in progress, please try again."}]}}))
    ret = received(shopify_shop)
    refund = services.request_refund(ret, "merchant:anna")
    assert refund.state == "unknown" and ret.pending_step == "refund"


# ---------------------------------------------------------------------------- exactly once


def test_refund_clicked_twice_makes_one_refund(shopify_shop, shopify, fake):
    ret = received(shopify_shop)
    first = services.request_refund(ret, "merchant:anna")
    second = services.request_refund(ret, "merchant:anna")
    services.execute_refund(first.id)  # a second job for the same refund changes nothing either
    assert first.id == second.id and len(shopify.calls("RefundCreate")) == 1
    assert_exactly_one_refund(fake, shopify, first)


def test_two_threads_racing_make_one_refund(app, shopify_shop, shopify, fake):
    ret = received(shopify_shop)
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
                services.execute_refund(refund.id)  # a second worker on the same refund
                outcomes.append("ok")
            except Exception as exc:  # a lost race (SQLite: database is locked) must not refund twice
                db.session.rollback()
                outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    services.reconcile(now=now() + timedelta(hours=1))  # whatever a lost race left pending is settled
    (refund,) = refund_rows(db.session.get(Return, return_id))
    assert_exactly_one_refund(fake, shopify, refund)
    assert "ok" in outcomes


def test_a_timeout_after_shopify_applied_it_is_answered_by_shopify_with_the_same_refund(
        shopify_shop, shopify, fake):
    """The client repeats an @idempotent mutation after a read timeout; Shopify answers the repeat
    with the refund it already made."""
    fake.refund_faults = ["timeout_after_apply"]
    ret = received(shopify_shop)
    refund = services.request_refund(ret, "merchant:anna")
    assert len(shopify.calls("RefundCreate")) == 2
    assert_exactly_one_refund(fake, shopify, refund)
    assert refund.attempts == 1 and ret.state == lc.REFUNDED


def test_a_refund_whose_answer_never_came_is_found_on_shopify_not_sent_again(shopify_shop, shopify, fake):
    """Every try of the first attempt timed out after Shopify applied the refund: the outcome is
    unknown; the next attempt reads the order's refunds first and finds it by its key."""
    fake.refund_faults = ["timeout_after_apply"] * 4
    ret = received(shopify_shop)
    refund = services.request_refund(ret, "merchant:anna")
    assert refund.state == "unknown" and ret.state == lc.RECEIVED and len(fake.refunds) == 1
    sent_before = len(shopify.calls("RefundCreate"))
    counts = services.reconcile(now=now() + timedelta(hours=1))
    assert counts["refund"] == 1
    assert len(shopify.calls("OrderRefunds")) == 1
    assert len(shopify.calls("RefundCreate")) == sent_before  # nothing sent again
    assert_exactly_one_refund(fake, shopify, refund)
    assert ret.state == lc.REFUNDED


def test_a_connect_timeout_was_never_sent_and_is_simply_repeated(shopify_shop, shopify, fake):
    fake.refund_faults = ["connect_timeout"]
    ret = received(shopify_shop)
    refund = services.request_refund(ret, "merchant:anna")
    assert_exactly_one_refund(fake, shopify, refund)


def test_a_5xx_then_success_makes_one_refund_under_one_key(shopify_shop, shopify, fake):
    fake.refund_faults = ["5xx"]
    ret = received(shopify_shop)
    refund = services.request_refund(ret, "merchant:anna")
    assert len(shopify.calls("RefundCreate")) == 2
    assert_exactly_one_refund(fake, shopify, refund)


def test_a_worker_dying_mid_refund_is_redriven_and_finds_the_applied_refund(shopify_shop, shopify, fake,
                                                                            monkeypatch):
    ret = received(shopify_shop)
    hold_jobs(monkeypatch, "execute_refund")
    refund = services.request_refund(ret, "merchant:anna")
    monkeypatch.undo()
    monkeypatch.setattr(ShopifyClient, "_backoff", lambda self, attempt: 0.0)
    fake.refund_faults = [WorkerDied()]  # Shopify applies it; the worker dies before it hears back
    return_id = ret.id
    with pytest.raises(WorkerDied):
        services.execute_refund(refund.id)
    db.session.rollback()
    db.session.remove()  # the process is gone with whatever it had not committed

    ret = db.session.get(Return, return_id)
    (row,) = refund_rows(ret)
    assert row.state == "pending" and row.attempts == 1 and row.platform_refund_id is None
    assert len(fake.refunds) == 1
    row.attempt_started_at = now() - timedelta(minutes=11)  # the dead worker's lease ran out
    db.session.commit()
    assert services.reconcile(now=now() + timedelta(hours=1))["refund"] == 1
    assert len(shopify.calls("RefundCreate")) == 1 and len(shopify.calls("OrderRefunds")) == 1
    assert_exactly_one_refund(fake, shopify, row)
    db.session.refresh(ret)
    assert ret.state == lc.REFUNDED


# ---------------------------------------------------------------------------- two processes (PostgreSQL)


def _race_in_a_process(database_url: str, data_dir: str, shop_id: int, return_id: int, state_file: str,
                       calls_file: str, barrier) -> None:
    """One worker process: its own app on the shared PostgreSQL database, its own Shopify stub over
    the refunds Shopify holds (`state_file`); clicks Refund and runs the refund job."""
    import responses

    from connector import create_app
    from connector.config import Config
    from connector.returns.models import Shop
    from tests.shopify.conftest import API_KEY, API_SECRET, SHOP_DOMAIN
    from tests.shopify.stub import ShopifyStub

    config = Config.from_env({}, data_dir=Path(data_dir), database_url=database_url, jobs_immediate=True,
                             base_url="https://returns.example.com", shopify_api_key=API_KEY,
                             shopify_api_secret=API_SECRET)
    app = create_app(config)
    ShopifyClient._backoff = lambda self, attempt: 0.0
    with app.app_context(), responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        stub = ShopifyStub(rsps, SHOP_DOMAIN)
        ShopifyReturnsFake(stub, db.session.get(Shop, shop_id), state_file=Path(state_file))
        ret = db.session.get(Return, return_id)
        barrier.wait(timeout=60)
        outcome = "ok"
        try:
            refund = services.request_refund(ret, "merchant:anna")
            services.execute_refund(refund.id)
        except Exception as exc:  # a lost race may fail; it must never refund twice
            db.session.rollback()
            outcome = type(exc).__name__
        Path(calls_file).write_text(json.dumps({"outcome": outcome, "keys": [
            call["idempotencyKey"] for call in stub.calls("RefundCreate")]}))


@pytest.mark.postgres
def test_two_processes_racing_on_postgresql_make_one_refund(app, config, shopify_shop, shopify, fake,
                                                            tmp_path):
    database_url = os.environ.get("TEST_DATABASE_URL")
    if not database_url or not config.database_url.startswith("postgres"):
        pytest.skip("needs PostgreSQL: set TEST_DATABASE_URL (two processes cannot share a SQLite test copy "
                    "the way workers share the production database)")
    ret = received(shopify_shop)
    db.session.commit()
    db.session.remove()
    state_file = tmp_path / "shopify-refunds.json"
    shared = ShopifyReturnsFake(shopify, shopify_shop, state_file=state_file)  # one Shopify for all processes
    spawn = multiprocessing.get_context("spawn")
    barrier = spawn.Barrier(2)
    calls_files = [tmp_path / f"calls-{i}.json" for i in range(2)]
    processes = [spawn.Process(target=_race_in_a_process, args=(
        config.database_url, str(config.data_dir), shopify_shop.id, ret.id, str(state_file), str(calls), barrier))
        for calls in calls_files]
    [p.start() for p in processes]
    [p.join(timeout=120) for p in processes]
    assert [p.exitcode for p in processes] == [0, 0]

    reports = [json.loads(f.read_text()) for f in calls_files]
    services.reconcile(now=now() + timedelta(hours=1))  # settle what a lost race left pending
    shopify_refunds = shared.refunds
    sent_keys = [key for report in reports for key in report["keys"]]
    sent_keys += [call["idempotencyKey"] for call in shopify.calls("RefundCreate")]
    (refund,) = refund_rows(db.session.get(Return, ret.id))
    assert len(shopify_refunds) == 1 and shopify_refunds[0]["key"] == refund.idempotency_key
    assert sent_keys and set(sent_keys) == {refund.idempotency_key}
    assert refund.state == "succeeded" and refund.platform_refund_id == shopify_refunds[0]["id"]
    assert "ok" in [r["outcome"] for r in reports]


def test_a_refusal_is_final_only_when_shopify_holds_no_refund_under_the_key(shopify_shop, shopify, fake):
    """A repeat whose payments were read after a racing worker's refund applied is refused as a
    different request under the same key: the refund exists, so the row must say succeeded."""
    ret = received(shopify_shop)
    key = f"rc-{ret.shop_id}-{ret.id}-1"
    fake.apply_refund({"idempotencyKey": key, "input": {
        "orderId": order_gid("1001"), "note": f"Returns Connector R-1001 [{key}]", "currency": "EUR",
        "transactions": [{"amount": "125.05"}]}})
    shopify.on("RefundCreate", answer({"refundCreate": {"refund": None, "userErrors": [
        {"field": None, "message": "The same idempotency key cannot be used with different operation parameters."}]}}))
    refund = services.request_refund(ret, "merchant:anna")
    assert refund.idempotency_key == key
    assert refund.state == "succeeded" and refund.platform_refund_id == fake.refunds[0]["id"]
    assert len(fake.refunds) == 1 and ret.state == lc.REFUNDED
