"""The use cases end to end on a real (migrated) database, with jobs running inline."""
from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from connector import db
from connector.returns import lifecycle as lc
from connector.returns import services
from connector.returns.models import Refund, Return, ReturnReason
from connector.returns.ports import OrderData, OrderLineData
from tests.factories import make_order, make_shop, now


def _reason(shop, code):
    return db.session.scalar(select(ReturnReason).where(ReturnReason.shop_id == shop.id, ReturnReason.code == code))


def _order(shop, number):
    return services.find_order_for_login(shop, number, {"1001": "erika@example.com", "1002": "old@example.com",
                                                        "1003": "jean@example.fr"}[number])


def make_return(shop, method="dropoff", quantities=None, reason="changed_mind", confirm=True):
    order = _order(shop, "1001")
    ret = services.start_draft(shop, order, email=order.email, locale="en")
    lines = order.lines
    quantities = quantities or {lines[0].id: 1}
    services.set_items(ret, [services.ItemChoice(lid, q, _reason(shop, reason).id,
                                                 comment="Broken seam" if reason == "damaged" else "",
                                                 photos=["shop-1/photos/x.jpg"] if reason == "damaged" else [])
                             for lid, q in quantities.items()])
    services.set_method(ret, method)
    services.set_instructions(ret, dict(order.shipping_address),
                              [code for code, _t in services.checklist_items(ret)])
    if confirm:
        services.confirm(ret)
    return ret


def test_login_matches_email_or_postcode_and_nothing_else(shop):
    assert services.find_order_for_login(shop, "#1001", "ERIKA@example.com") is not None
    assert services.find_order_for_login(shop, "1001", "10 115") is not None
    assert services.find_order_for_login(shop, "1001", "someone@example.com") is None
    assert services.find_order_for_login(shop, "1001", "") is None
    assert services.find_order_for_login(shop, "9999", "erika@example.com") is None


def test_another_shops_order_is_never_found(shop):
    other = make_shop(handle="other-shop")
    make_order(other, "5000", "erika@example.com", lines=[{"title": "Tent", "price": "300.00"}])
    assert services.find_order_for_login(shop, "5000", "erika@example.com") is None
    assert [o.number for o in services.orders_for_email(shop, "erika@example.com")] == ["1001"]


def test_line_options_explain_what_cannot_be_returned(shop):
    options = {o.line.title: o for o in services.line_options(shop, _order(shop, "1001"))}
    assert options["Trail Jacket"].returnable_quantity == 1 and options["Trail Jacket"].blocked is None
    assert options["Gift Card"].blocked == "final_sale"
    old = {o.line.title: o for o in services.line_options(shop, _order(shop, "1002"))}
    assert old["Rain Pants"].blocked == "window_passed"


def test_confirmed_dropoff_return_gets_label_and_number(shop, outbox):
    ret = make_return(shop)
    assert ret.number == 1001 and ret.rma == "R-1001"
    assert ret.state == lc.LABEL_READY  # auto-approved, label made by the inline job
    assert services.label_bytes(ret).startswith(b"%PDF")
    kinds = [e.data.get("to") for e in services.timeline(ret, public_only=True) if e.kind == "state"]
    assert kinds == [lc.REQUESTED, lc.APPROVED, lc.LABEL_READY]
    assert len(outbox()) >= 2


def test_units_in_a_live_return_cannot_be_returned_again(shop):
    make_return(shop)
    jacket = next(o for o in services.line_options(shop, _order(shop, "1001")) if o.line.title == "Trail Jacket")
    assert jacket.returnable_quantity == 0 and jacket.blocked == "already_returned"


def test_confirm_twice_makes_one_return(shop):
    ret = make_return(shop, confirm=False)
    services.confirm(ret)
    services.confirm(ret)
    assert db.session.scalar(select(func.count()).select_from(Return).where(Return.number.is_not(None))) == 1


def test_items_validation_keeps_nothing_half_written(shop):
    order = _order(shop, "1001")
    ret = services.start_draft(shop, order, email=order.email, locale="en")
    jacket = order.lines[0]
    with pytest.raises(services.ValidationError) as err:
        services.set_items(ret, [services.ItemChoice(jacket.id, 5, None)])
    assert {f"line-{jacket.id}-quantity", f"line-{jacket.id}-reason"} <= set(err.value.errors)
    with pytest.raises(services.ValidationError) as err:
        services.set_items(ret, [services.ItemChoice(jacket.id, 1, _reason(shop, "damaged").id)])
    assert {f"line-{jacket.id}-comment", f"line-{jacket.id}-photos"} <= set(err.value.errors)
    assert ret.lines == []


def test_pickup_is_booked_for_a_working_day(shop):
    ret = make_return(shop, method="pickup")
    assert ret.state == lc.AWAITING_PICKUP
    assert ret.shipment.pickup_date > now().date() and ret.shipment.pickup_date.weekday() < 5


def test_cancel_before_the_parcel_moves_voids_the_label(shop):
    ret = make_return(shop)
    services.cancel(ret, "shopper")
    assert ret.state == lc.CANCELLED and ret.shipment is None
    assert any(e.kind == "label_voided" for e in ret.events)


def test_cancel_after_the_parcel_moved_is_refused(shop):
    ret = make_return(shop)
    from connector.carriers.sandbox import SandboxBackend
    backend = SandboxBackend({"data_dir": str(db.session.get_bind().url.database).rsplit("/", 1)[0]})
    from connector.returns.context import runtime
    backend = runtime.carrier("sandbox", shop)
    backend.advance(ret.shipment.tracking_number)
    backend.advance(ret.shipment.tracking_number)
    services.refresh_tracking(ret.shipment)
    assert ret.state == lc.IN_TRANSIT
    with pytest.raises(services.ServiceError):
        services.cancel(ret, "shopper")


def test_warehouse_to_refund_is_exactly_once(shop):
    ret = make_return(shop, quantities=None)
    services.mark_received(ret, "merchant:anna")
    line = ret.lines[0]
    services.inspect(ret, "merchant:anna", {line.id: {"grade": "A", "disposition": "restock", "note": ""}})
    assert ret.state == lc.INSPECTED
    first = services.request_refund(ret, "merchant:anna")
    second = services.request_refund(ret, "merchant:anna")
    assert first.id == second.id and first.state == "succeeded" and first.manual
    assert ret.state == lc.REFUNDED
    # 129.00 jacket minus the 3.95 drop-off fee
    assert first.amount == Decimal("125.05")
    assert db.session.scalar(select(func.count()).select_from(Refund)) == 1


def test_shop_fault_return_is_free(shop):
    ret = make_return(shop, reason="damaged")
    assert ret.fee == Decimal("0.00")


def test_withdrawal_needs_no_reason_and_is_marked(shop, outbox):
    order = _order(shop, "1001")
    ret = services.create_withdrawal(shop, order, name="Erika Mustermann", email=order.email,
                                     line_quantities=None, locale="de")
    assert ret.is_withdrawal and ret.state in (lc.REQUESTED,)
    assert all(line.reason_id is None for line in ret.lines)
    assert sum(line.quantity for line in ret.lines) == 4  # jacket + 3 socks; the gift card is final sale
    assert any("withdraw" in (m["Subject"] or "").lower() or m.get("Content-Language") == "de" for m in outbox())


def test_stale_order_update_does_not_overwrite_newer(shop):
    data = OrderData(platform_id="p-1", number="2001", email="a@example.com", currency="EUR",
                     placed_at=now(), updated_at=now(), lines=(OrderLineData("l1", "Cap", 1, Decimal("20")),))
    services.upsert_order(shop, data)
    stale = OrderData(**{**data.__dict__, "email": "old@example.com", "updated_at": now() - timedelta(hours=1)})
    order = services.upsert_order(shop, stale)
    assert order.email == "a@example.com"


def test_reconciler_redrives_a_lost_refund_job(shop, monkeypatch):
    ret = make_return(shop)
    services.mark_received(ret, "merchant")
    from connector.returns.context import runtime
    lost = []
    monkeypatch.setattr(runtime, "enqueue", lambda name, **kw: lost.append((name, kw)))
    refund = services.request_refund(ret, "merchant")
    assert refund.state == "pending" and lost == [("execute_refund", {"refund_id": refund.id})]
    monkeypatch.undo()
    assert services.reconcile()["refund"] == 0  # not yet past its deadline
    counts = services.reconcile(now=now() + timedelta(hours=1))
    assert counts["refund"] == 1
    db.session.refresh(refund)
    assert refund.state == "succeeded" and ret.state == lc.REFUNDED


def test_two_threads_clicking_refund_make_one_refund(app, shop):
    ret = make_return(shop)
    services.mark_received(ret, "merchant")
    return_id = ret.id
    db.session.remove()
    barrier = threading.Barrier(2)
    results = []

    def click():
        with app.app_context():
            r = db.session.get(Return, return_id)
            barrier.wait()
            try:
                results.append(services.request_refund(r, "merchant").id)
            except Exception as exc:  # a lost race must still not create a second refund
                results.append(type(exc).__name__)
            db.session.remove()

    threads = [threading.Thread(target=click) for _ in range(2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert db.session.scalar(select(func.count()).select_from(Refund)) == 1


def test_a_short_return_window_never_shortens_the_statutory_withdrawal_period(shop):
    shop.policy = {**(shop.policy or {}), "window_days": 7}
    db.session.commit()
    order = make_order(shop, "1010", "late@example.com", delivered_days_ago=10, fulfilled_days_ago=12,
                       lines=[{"title": "Headlamp", "price": "39.00"}])
    assert services.line_options(shop, order)[0].blocked == "window_passed"
    ret = services.create_withdrawal(shop, order, name="Late Buyer", email=order.email,
                                     line_quantities=None, locale="en")
    assert ret.is_withdrawal and ret.lines[0].quantity == 1
