"""The Shopify adapter keeps Shopify's native return in step with ours: opened as a request or as an
approved return, approved, declined / cancelled / closed, tracked, and its graded lines disposed.

Shopify is the ShopifyStub (documents and variables checked against Admin 2026-04) with the state
kept by tests/shopify/returns_fake.py.
"""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from connector import db
from connector.platforms.shopify import reasons
from connector.platforms.shopify.adapter import ShopifyAdapter
from connector.platforms.shopify.client import ShopifyClient
from connector.returns import lifecycle as lc
from connector.returns import services
from connector.returns.models import Order, Return
from connector.returns.ports import PlatformAdapter
from connector.returns.services.platform import OPENING
from tests.shopify.factories import line_gid, order_gid
from tests.shopify.returns_fake import ShopifyReturnsFake, answer, portal_return, user_error

LOCATION = "gid://shopify/Location/7001"


@pytest.fixture
def fake(shopify, shopify_shop, monkeypatch):
    monkeypatch.setattr(ShopifyClient, "_backoff", lambda self, attempt: 0.0)
    return ShopifyReturnsFake(shopify, shopify_shop)


def manual_approval(shop):
    shop.policy = {**(shop.policy or {}), "auto_approve": False}
    db.session.commit()


def test_the_adapter_is_a_platform_adapter_with_native_returns(shopify_shop):
    adapter = ShopifyAdapter(shopify_shop)
    assert isinstance(adapter, PlatformAdapter) and adapter.key == "shopify"
    caps = adapter.capabilities
    assert caps.native_returns and caps.refund_through_gateway and caps.store_credit
    assert adapter.parse_webhook(object()) == []


def test_an_approved_return_opens_as_an_open_shopify_return_with_its_tracking_and_label(
        app, client, shopify_shop, shopify, fake):
    ret = portal_return(shopify_shop, {0: 1, 1: 2}, comment="Too warm for me")
    assert ret.state == lc.LABEL_READY  # auto-approved, the sandbox carrier made the label
    assert shopify.calls("ReturnRequest") == []
    (sent,) = shopify.calls("ReturnCreate")
    items = sent["returnInput"]["returnLineItems"]
    assert sent["returnInput"]["orderId"] == order_gid("1001")
    assert [(i["fulfillmentLineItemId"], i["quantity"]) for i in items] == [
        (fake.fli(line_gid("1001", 1)), 1), (fake.fli(line_gid("1001", 2)), 2)]
    assert {i["returnReasonDefinitionId"] for i in items} == {fake.reasons["changed-mind"]}
    assert {i["returnReasonNote"] for i in items} == {"Too warm for me"}

    shopify_return = fake.returns[ret.platform_id]
    assert ret.platform_status == shopify_return["status"] == "OPEN"
    rfo = shopify_return["rfos"][0]
    for line, rli, rfo_line in zip(ret.lines, shopify_return["lines"], rfo["lines"]):
        assert line.platform_id == rli["id"]
        (part,) = line.platform_data["parts"]
        assert (part["rfo"], part["rfo_line"], part["quantity"]) == (rfo["id"], rfo_line["id"], rli["quantity"])

    (delivery,) = shopify.calls("ReverseDeliveryCreateWithShipping")
    shipment = ret.shipment
    assert delivery["reverseFulfillmentOrderId"] == rfo["id"]
    assert delivery["trackingInput"] == {"number": shipment.tracking_number}
    assert delivery["notifyCustomer"] is False  # we mail the shopper ourselves
    assert shipment.platform_id == rfo["deliveries"][0]["id"]
    label_url = delivery["labelInput"]["fileUrl"]
    assert label_url.startswith("https://returns.example.com/portal/demo-shop/returns/R-1001/label.pdf?t=")
    pdf = client.get(label_url.removeprefix("https://returns.example.com"))
    assert pdf.status_code == 200 and pdf.data.startswith(b"%PDF")

    services.sync_return(ret.id)  # nothing is sent twice
    assert len(shopify.calls("ReturnCreate")) == len(shopify.calls("ReverseDeliveryCreateWithShipping")) == 1


def test_without_a_public_https_address_the_tracking_goes_without_the_label(shopify_shop, shopify, fake, app):
    app.config["CONNECTOR"].base_url = "http://localhost:5000"
    ret = portal_return(shopify_shop)
    (delivery,) = shopify.calls("ReverseDeliveryCreateWithShipping")
    assert "labelInput" not in delivery and delivery["trackingInput"]["number"] == ret.shipment.tracking_number


def test_a_return_awaiting_approval_opens_as_a_request_and_is_approved_when_we_approve_it(
        shopify_shop, shopify, fake):
    manual_approval(shopify_shop)
    ret = portal_return(shopify_shop, comment="The sleeves are short")
    assert ret.state == lc.REQUESTED
    (sent,) = shopify.calls("ReturnRequest")
    (item,) = sent["input"]["returnLineItems"]
    assert item["customerNote"] == "The sleeves are short" and "returnReasonNote" not in item
    assert ret.platform_status == "REQUESTED" and fake.returns[ret.platform_id]["rfos"] == []
    assert shopify.calls("ReturnApproveRequest") == []

    services.approve(ret, "merchant:anna")
    assert shopify.calls("ReturnApproveRequest") == [{"input": {"id": ret.platform_id, "notifyCustomer": False}}]
    assert ret.platform_status == "OPEN"
    assert ret.lines[0].platform_data["parts"][0]["rfo"] == fake.returns[ret.platform_id]["rfos"][0]["id"]
    assert len(shopify.calls("ReverseDeliveryCreateWithShipping")) == 1  # the label made on approval


def test_a_request_approved_in_shopify_meanwhile_counts_as_approved(shopify_shop, shopify, fake):
    manual_approval(shopify_shop)
    ret = portal_return(shopify_shop)
    fake.returns[ret.platform_id]["status"] = "OPEN"
    fake.open_rfo(fake.returns[ret.platform_id])
    services.approve(ret, "merchant:anna")
    assert len(shopify.calls("ReturnApproveRequest")) == 1 and ret.platform_status == "OPEN"
    assert not [e for e in ret.events if e.kind == "platform_sync_failed"]


def test_rejecting_a_request_declines_it_in_shopify_with_the_merchants_note(shopify_shop, shopify, fake):
    manual_approval(shopify_shop)
    ret = portal_return(shopify_shop)
    services.reject(ret, "merchant:anna", note="Worn and washed")
    (sent,) = shopify.calls("ReturnDeclineRequest")
    assert sent["input"] == {"id": ret.platform_id, "declineReason": "OTHER", "notifyCustomer": False,
                             "declineNote": "Worn and washed"}
    assert ret.platform_status == fake.returns[ret.platform_id]["status"] == "DECLINED"
    services.sync_return(ret.id)
    assert len(shopify.calls("ReturnDeclineRequest")) == 1


def test_cancelling_an_open_return_cancels_it_in_shopify(shopify_shop, shopify, fake):
    ret = portal_return(shopify_shop)
    services.cancel(ret, "shopper")
    assert shopify.calls("ReturnCancel") == [{"id": ret.platform_id}]
    assert ret.platform_status == fake.returns[ret.platform_id]["status"] == "CANCELED"
    assert shopify.calls("ReturnClose") == []


def test_an_open_return_shopify_will_not_cancel_is_closed(shopify_shop, shopify, fake):
    ret = portal_return(shopify_shop)
    fake.returns[ret.platform_id]["work_done"] = True  # e.g. inspected in Shopify's admin
    services.cancel(ret, "shopper")
    assert len(shopify.calls("ReturnCancel")) == 1 and shopify.calls("ReturnClose") == [{"id": ret.platform_id}]
    assert ret.platform_status == "CLOSED"


def test_a_return_already_cancelled_in_shopify_counts_as_done(shopify_shop, shopify, fake):
    ret = portal_return(shopify_shop)
    fake.returns[ret.platform_id]["status"] = "CANCELED"
    services.cancel(ret, "shopper")
    assert ret.platform_status == "CANCELED"
    assert shopify.calls("ReturnClose") == []
    assert not [e for e in ret.events if e.kind == "platform_sync_failed"]


def _graded(shop, quantities, received, results):
    ret = portal_return(shop, quantities)
    services.mark_received(ret, "merchant:anna", {ret.lines[i].id: q for i, q in received.items()})
    services.inspect(ret, "merchant:anna", {ret.lines[i].id: {"grade": g, "disposition": d, "note": ""}
                                            for i, (g, d) in results.items()})
    return ret


def test_graded_lines_are_disposed_by_grade_at_the_merchants_location(shopify_shop, shopify, fake):
    """A restocked at the chosen location, B processing required; units that never arrived MISSING."""
    ret = _graded(shopify_shop, {0: 1, 1: 3}, received={0: 1, 1: 2},
                  results={0: ("A", "restock"), 1: ("B", "refurbish")})
    (sent,) = shopify.calls("ReverseFulfillmentOrderDispose")
    jacket, socks = (line.platform_data["parts"][0]["rfo_line"] for line in ret.lines)
    assert sent["dispositionInputs"] == [
        {"reverseFulfillmentOrderLineItemId": jacket, "quantity": 1, "dispositionType": "RESTOCKED",
         "locationId": LOCATION},
        {"reverseFulfillmentOrderLineItemId": socks, "quantity": 2, "dispositionType": "PROCESSING_REQUIRED"},
        {"reverseFulfillmentOrderLineItemId": socks, "quantity": 1, "dispositionType": "MISSING"},
    ]
    assert all(line.platform_data["disposed"] for line in ret.lines)
    services.sync_return(ret.id)
    assert len(shopify.calls("ReverseFulfillmentOrderDispose")) == 1


@pytest.mark.parametrize("grade, disposition, kind", [
    ("C", "dispose", "NOT_RESTOCKED"), ("A", "missing", "MISSING"), ("A", "refurbish", "PROCESSING_REQUIRED")])
def test_each_grade_has_its_disposition(shopify_shop, shopify, fake, grade, disposition, kind):
    ret = _graded(shopify_shop, {1: 2}, received={0: 2}, results={0: (grade, disposition)})
    (sent,) = shopify.calls("ReverseFulfillmentOrderDispose")
    assert [(i["quantity"], i["dispositionType"], i.get("locationId")) for i in sent["dispositionInputs"]] == [
        (2, kind, None)]


def test_the_policy_may_name_another_restock_location(shopify_shop, shopify, fake):
    shopify_shop.policy = {"restock_location_id": "gid://shopify/Location/7002"}
    db.session.commit()
    _graded(shopify_shop, {0: 1}, received={0: 1}, results={0: ("A", "restock")})
    (sent,) = shopify.calls("ReverseFulfillmentOrderDispose")
    assert sent["dispositionInputs"][0]["locationId"] == "gid://shopify/Location/7002"


def test_a_disposal_applied_before_a_crash_is_not_sent_again(shopify_shop, shopify, fake):
    ret = portal_return(shopify_shop, {1: 2})
    services.mark_received(ret, "merchant:anna")
    rfo_line = fake.returns[ret.platform_id]["rfos"][0]["lines"][0]
    rfo_line["dispositions"].append({"quantity": 2, "type": "RESTOCKED", "location": LOCATION})  # Shopify has it
    services.inspect(ret, "merchant:anna", {ret.lines[0].id: {"grade": "A", "disposition": "restock", "note": ""}})
    assert shopify.calls("ReverseFulfillmentOrderDispose") == []
    assert ret.lines[0].platform_data["disposed"] is True


def test_return_reasons_map_to_shopify_definitions_read_once_per_shop(shopify_shop, shopify, fake):
    portal_return(shopify_shop, {0: 1}, reason="too_small")
    portal_return(shopify_shop, {1: 1}, reason="wrong_item")
    first, second = (c["returnInput"]["returnLineItems"][0] for c in shopify.calls("ReturnCreate"))
    assert first["returnReasonDefinitionId"] == fake.reasons["too-small"]
    assert second["returnReasonDefinitionId"] == fake.reasons["wrong-item"]
    assert len(shopify.calls("ReturnReasonDefinitions")) == 1
    assert shopify_shop.platform_data[reasons.CACHE_KEY]["too-small"] == fake.reasons["too-small"]


def test_a_reason_shopify_has_no_definition_for_falls_back_to_other():
    ids = {"other": "gid://shopify/ReturnReasonDefinition/6", "damaged": "gid://shopify/ReturnReasonDefinition/4"}
    assert reasons.handle_for("damaged", ids) == "damaged"
    assert reasons.handle_for("size", ids) == "other"
    assert reasons.handle_for("my_own_reason", ids) == "other"
    assert reasons.handle_for(None, ids) == "other"
    assert reasons.handle_for("size", {}) is None
    shop_codes = ["too_small", "too_big", "size", "changed_mind", "damaged", "wrong_item", "other"]
    assert reasons.code_for_handle("too-large", shop_codes) == "too_big"
    assert reasons.code_for_handle("color-too-bright", shop_codes) == "other"
    assert reasons.code_for_handle("color", ["color"]) == "color"
    assert reasons.code_for_handle("color", ["size"]) is None


def test_a_withdrawal_has_no_reason_and_says_so(shopify_shop, shopify, fake):
    order = db.session.query(Order).filter_by(
        shop_id=shopify_shop.id, number="1001").one()
    ret = services.create_withdrawal(shopify_shop, order, name="Erika Mustermann", email=order.email,
                                     line_quantities=None, locale="de")
    sent = (shopify.calls("ReturnRequest") or shopify.calls("ReturnCreate"))[0]
    items = (sent.get("input") or sent.get("returnInput"))["returnLineItems"]
    assert {i["returnReasonDefinitionId"] for i in items} == {fake.reasons["other"]}
    notes = {i.get("customerNote") or i.get("returnReasonNote") for i in items}
    assert notes == {"Withdrawal from the contract (no reason required)"}
    assert ret.platform_id in fake.returns


def test_shopifys_refusal_to_open_the_return_reaches_the_merchant_verbatim(shopify_shop, shopify, fake, outbox):
    shopify.on("ReturnCreate", answer({"returnCreate": {"return": None, "userErrors": [
        user_error("returnLineItems.0.quantity", "Quantity is not available for return.", "INVALID")]}}))
    ret = portal_return(shopify_shop)
    (failed,) = [e for e in ret.events if e.kind == "platform_sync_failed"]
    assert "Quantity is not available for return." in failed.data["error"]
    assert ret.platform_id is None
    assert any("could not be updated in your store" in (m["Subject"] or "") for m in outbox())


def test_items_shopify_cannot_take_back_are_named(shopify_shop, shopify, fake):
    fake.add_return(order_gid("1001"), [(line_gid("1001", 1), 1, "other", "")])  # the jacket, returned in Shopify
    ret = portal_return(shopify_shop)
    (failed,) = [e for e in ret.events if e.kind == "platform_sync_failed"]
    assert "Trail Jacket" in failed.data["error"] and shopify.calls("ReturnCreate") == []


def test_a_return_a_crashed_worker_created_is_found_not_created_twice(shopify_shop, shopify, fake, monkeypatch):
    from connector.returns.context import runtime

    real = runtime.enqueue
    monkeypatch.setattr(runtime, "enqueue", lambda name, **kw: None if name == "sync_platform" else real(name, **kw))
    ret = portal_return(shopify_shop, {0: 1, 1: 2})
    monkeypatch.undo()
    # The worker claimed the return, Shopify created it, and the worker died before recording it.
    older = fake.add_return(order_gid("1001"), [(line_gid("1001", 1), 1, None, ""),
                                                (line_gid("1001", 2), 2, None, "")], created_at="2020-01-01T00:00:00Z")
    created = fake.add_return(order_gid("1001"), [(line_gid("1001", 1), 1, "changed-mind", ""),
                                                  (line_gid("1001", 2), 2, "changed-mind", "")],
                              created_at=(ret.confirmed_at + timedelta(seconds=2)).isoformat())
    db.session.execute(update(Return).where(Return.id == ret.id).values(
        platform_status=OPENING, updated_at=ret.confirmed_at - timedelta(hours=1)))
    db.session.commit()
    db.session.refresh(ret)

    services.sync_return(ret.id)
    assert ret.platform_id == created != older
    assert shopify.calls("ReturnCreate") == []
    assert ret.platform_status == "OPEN" and ret.lines[1].platform_data["parts"][0]["quantity"] == 2
    assert len(shopify.calls("ReverseDeliveryCreateWithShipping")) == 1  # the steps after opening go on


def test_when_shopify_holds_no_such_return_a_stale_opening_is_opened_again(shopify_shop, shopify, fake, monkeypatch):
    from connector.returns.context import runtime

    real = runtime.enqueue
    monkeypatch.setattr(runtime, "enqueue", lambda name, **kw: None if name == "sync_platform" else real(name, **kw))
    ret = portal_return(shopify_shop)
    monkeypatch.undo()
    db.session.execute(update(Return).where(Return.id == ret.id).values(
        platform_status=OPENING, updated_at=ret.confirmed_at - timedelta(hours=1)))
    db.session.commit()
    db.session.refresh(ret)
    services.sync_return(ret.id)  # Shopify has none: the flag is cleared
    db.session.refresh(ret)
    assert ret.platform_id is None and ret.platform_status is None and len(shopify.calls("OrderReturns")) == 1
    services.sync_return(ret.id)
    assert ret.platform_id in fake.returns and len(shopify.calls("ReturnCreate")) == 1


def test_add_note_leaves_the_merchants_order_note_alone(shopify_shop, shopify):
    order = db.session.query(Order).filter_by(
        shop_id=shopify_shop.id, number="1001").one()
    ShopifyAdapter(shopify_shop).add_note(order, "R-1001 refunded")
    assert shopify.log == []


# ---------------------------------------------------------------------------- the pure mapping


def test_an_order_line_shipped_in_two_fulfillments_is_returned_from_both():
    from connector.platforms.shopify import returns_mapping as rm

    returnable = rm.returnable_by_line_item([
        {"returnableFulfillmentLineItems": {"nodes": [
            {"quantity": 1, "fulfillmentLineItem": {"id": "fli-1", "lineItem": {"id": "li-socks"}}},
            {"quantity": 0, "fulfillmentLineItem": {"id": "fli-2", "lineItem": {"id": "li-jacket"}}}]}},
        {"returnableFulfillmentLineItems": {"nodes": [
            {"quantity": 2, "fulfillmentLineItem": {"id": "fli-3", "lineItem": {"id": "li-socks"}}}]}}])
    assert returnable == {"li-socks": [("fli-1", 1), ("fli-3", 2)]}
    assert rm.allocate_fulfillment_lines(returnable, [("li-socks", 2)]) == [[("fli-1", 1), ("fli-3", 1)]]
    with pytest.raises(rm.NotReturnable) as refused:
        rm.allocate_fulfillment_lines(returnable, [("li-socks", 3), ("li-jacket", 1)])
    assert refused.value.line_items == ["li-jacket"]
    with pytest.raises(rm.NotReturnable):
        rm.allocate_fulfillment_lines(returnable, [("li-socks", 2), ("li-socks", 2)])  # 4 of 3


def test_units_spread_over_reverse_fulfillment_lines_in_order():
    from connector.platforms.shopify.returns_mapping import spread

    assert spread(3, [1, 2]) == [1, 2]
    assert spread(2, [1, 2]) == [1, 1]
    assert spread(0, [1, 2]) == [0, 0]
    assert spread(5, [1, 2]) == [1, 2]  # never more than a line holds


def test_the_refund_goes_back_over_the_orders_payments():
    from decimal import Decimal

    from connector.platforms.shopify import returns_mapping as rm

    def txn(id_, kind, amount, status="SUCCESS", maximum=None, currency="EUR"):
        return {"id": id_, "kind": kind, "status": status, "gateway": "gw",
                "amountSet": {"shopMoney": {"amount": amount, "currencyCode": "EUR"},
                              "presentmentMoney": {"amount": amount, "currencyCode": "EUR"}},
                "maximumRefundableV2": {"amount": maximum, "currencyCode": currency} if maximum else None}

    parents = rm.parent_transactions([txn("auth", "AUTHORIZATION", "50.00"), txn("gift", "SALE", "20.00"),
                                      txn("fail", "SALE", "99.00", status="FAILURE"),
                                      txn("card", "CAPTURE", "80.00", maximum="60.00")], "EUR")
    assert [(t.id, t.refundable) for t in parents] == [("gift", Decimal("20.00")), ("card", Decimal("60.00"))]
    assert [(t.id, a) for t, a in rm.allocate_refund(parents, Decimal("70.00"))] == [
        ("gift", Decimal("20.00")), ("card", Decimal("50.00"))]
    # More than Shopify says is refundable: the rest stays on the first, and Shopify says no in its words.
    assert [(t.id, a) for t, a in rm.allocate_refund(parents, Decimal("90.00"))] == [
        ("gift", Decimal("30.00")), ("card", Decimal("60.00"))]


def test_the_refund_note_carries_the_key():
    from connector.platforms.shopify.returns_mapping import note_has_key, refund_note

    assert refund_note("R-1042", "rc-1-7-1") == "Returns Connector R-1042 [rc-1-7-1]"
    assert note_has_key("Returns Connector R-1042 [rc-1-7-1]", "rc-1-7-1")
    assert not note_has_key("Returns Connector R-1042 [rc-1-7-11]", "rc-1-7-1")
    assert not note_has_key(None, "rc-1-7-1")


def test_restocking_without_a_location_is_refused_with_a_reason(shopify_shop, shopify, fake):
    shopify_shop.platform_data = {k: v for k, v in shopify_shop.platform_data.items() if k != "location_id"}
    db.session.commit()
    ret = _graded(shopify_shop, {0: 1}, received={0: 1}, results={0: ("A", "restock")})
    assert shopify.calls("ReverseFulfillmentOrderDispose") == []
    (failed,) = [e for e in ret.events if e.kind == "platform_sync_failed"]
    assert "No Shopify location is known for restocked items" in failed.data["error"]
    assert not ret.lines[0].platform_data.get("disposed")


def test_a_refused_return_waits_for_the_merchant_instead_of_alerting_every_ten_minutes(
        shopify_shop, shopify, fake, outbox):
    refusal = answer({"returnCreate": {"return": None, "userErrors": [
        user_error("returnLineItems.0.quantity", "Quantity is not available for return.", "INVALID")]}})
    shopify.on("ReturnCreate", refusal)
    ret = portal_return(shopify_shop)
    assert ret.platform_status == "REFUSED" and ret.platform_id is None
    alerts = len(outbox())
    db.session.execute(update(Return).where(Return.id == ret.id).values(
        confirmed_at=services.now_utc() - timedelta(hours=1)))
    db.session.commit()
    services.reconcile()
    assert len(shopify.calls("ReturnCreate")) == 1 and len(outbox()) == alerts
    # The merchant fixed the cause in Shopify and sends it again.
    shopify.on("ReturnCreate", fake._ReturnCreate)
    services.retry_platform_sync(db.session.get(Return, ret.id), "merchant:staff")
    ret = db.session.get(Return, ret.id)
    assert ret.platform_id is not None and ret.platform_status == "OPEN"
    assert len(shopify.calls("ReturnCreate")) == 2
