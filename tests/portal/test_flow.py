"""The return flow: items, method, instructions, summary, confirm; status, label, cancel."""
from __future__ import annotations

import re

from connector import db
from connector.returns import lifecycle as lc
from connector.returns.models import Shop
from tests.factories import make_order
from tests.portal.conftest import lines_of, reason_id, returns_of


def _jacket(shop, order, reason="too_small", quantity="1"):
    line = lines_of(order)["Trail Jacket"]
    return {f"line-{line}-quantity": quantity, f"line-{line}-reason": str(reason_id(shop, reason))}


def _confirm(shopper, order, ret_id):
    return shopper.post(f"orders/{order.id}/confirm", {"return_id": str(ret_id)})


def test_pickup_return_from_sign_in_to_label(shopper, shop, order_1001, outbox):
    shopper.sign_in()
    summary = shopper.through_to_summary(order_1001, _jacket(shop, order_1001), method="pickup")
    page = summary.get_data(as_text=True)
    assert summary.status_code == 200 and "Step 5 of 5" in page
    assert "Too small" in page and "Pickup at your address" in page and "€4.95" in page
    assert "Your original payment method" in page
    [draft] = returns_of(shop)
    assert draft.state == lc.DRAFT

    resp = _confirm(shopper, order_1001, draft.id)
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/returns/R-1001/confirmed")
    confirmation = shopper.get("returns/R-1001/confirmed").get_data(as_text=True)
    assert "Your return R-1001 is registered" in confirmation
    assert "Pickup booked" in confirmation and "Download the return label (PDF)" in confirmation

    [ret] = returns_of(shop)
    assert ret.state == lc.AWAITING_PICKUP and ret.method == "pickup"
    label = shopper.get("returns/R-1001/label.pdf")
    assert label.status_code == 200 and label.mimetype == "application/pdf"
    assert label.headers["Content-Disposition"].startswith("attachment")
    assert label.data.startswith(b"%PDF")
    assert any("R-1001" in m["Subject"] for m in outbox())

    status = shopper.get("returns/R-1001").get_data(as_text=True)
    for milestone in ("Requested", "Approved", "Pickup booked", "In transit", "Received", "Inspected", "Refunded"):
        assert milestone in status
    assert "Cancel this return" in status


def test_dropoff_return_shows_qr_code_and_label(shopper, shop, order_1001):
    shopper.sign_in()
    summary = shopper.through_to_summary(order_1001, _jacket(shop, order_1001), method="dropoff")
    assert "Drop-off at a parcel shop" in summary.get_data(as_text=True)
    _confirm(shopper, order_1001, returns_of(shop)[0].id)
    page = shopper.get("returns/R-1001").get_data(as_text=True)
    assert "Label ready" in page and "qr.png" in page
    qr = shopper.get("returns/R-1001/qr.png")
    assert qr.status_code == 200 and qr.mimetype == "image/png"
    label = shopper.get("returns/R-1001/label.pdf")
    assert label.mimetype == "application/pdf" and label.data.startswith(b"%PDF")


def test_method_page_explains_each_option(shopper, shop, order_1001):
    shop.policy = {"methods": {"*": ["pickup", "dropoff", "carrier_label", "selfship"]}}
    db.session.commit()
    shopper.sign_in()
    shopper.choose_items(order_1001, _jacket(shop, order_1001))
    page = shopper.get(f"orders/{order_1001.id}/method").get_data(as_text=True)
    assert "Step 3 of 5" in page
    assert "<fieldset" in page and "<legend" in page
    assert "QR code available" in page
    assert "The driver brings the label — no printing" in page
    assert "Send it yourself" in page and "€0.00" not in page and "Free" in page
    assert re.search(r"Pickup on \w+day, ", page)  # the pickup date, written out


def test_selfship_return_takes_a_tracking_number(shopper, shop, order_1001):
    shopper.sign_in()
    shopper.through_to_summary(order_1001, _jacket(shop, order_1001), method="selfship")
    _confirm(shopper, order_1001, returns_of(shop)[0].id)
    page = shopper.get("returns/R-1001").get_data(as_text=True)
    assert "Lagerweg 5" in page  # the shop's return address
    bad = shopper.post("returns/R-1001/tracking", {"tracking_number": "<>", "carrier_name": ""})
    assert bad.status_code == 422
    assert "Enter the carrier you sent the parcel with." in bad.get_data(as_text=True)
    ok = shopper.post("returns/R-1001/tracking", {"tracking_number": "JJD 0001 2345", "carrier_name": "DHL"})
    assert ok.status_code == 302
    [ret] = returns_of(shop)
    assert ret.state == lc.IN_TRANSIT and ret.shipment.tracking_number == "JJD00012345"
    assert "Cancel this return" not in shopper.get("returns/R-1001").get_data(as_text=True)


def test_store_credit_is_offered_when_the_policy_allows(shopper, shop, order_1001):
    shop.policy = {"store_credit": True}
    db.session.commit()
    shopper.sign_in()
    shopper.choose_items(order_1001, _jacket(shop, order_1001))
    page = shopper.get(f"orders/{order_1001.id}/method").get_data(as_text=True)
    assert "Store credit" in page
    shopper.post(f"orders/{order_1001.id}/method", {"method": "dropoff", "refund_method": "store_credit"})
    assert returns_of(shop)[0].refund_method == "store_credit"


def test_lines_that_cannot_be_returned_are_shown_disabled_with_the_reason(shopper, shop, order_1001):
    shopper.sign_in()
    page = shopper.get(f"orders/{order_1001.id}/items").get_data(as_text=True)
    gift = lines_of(order_1001)["Gift Card"]
    assert "Gift Card" in page and "Final sale: this item cannot be returned." in page
    assert f'id="line-{gift}-quantity" disabled' in page and f'name="line-{gift}-quantity"' not in page

    # A tampered form cannot return it anyway.
    resp = shopper.post(f"orders/{order_1001.id}/items", {f"line-{gift}-quantity": "1", **_jacket(shop, order_1001)})
    assert resp.status_code == 302
    assert [line.order_line.title for line in returns_of(shop)[0].lines] == ["Trail Jacket"]


def test_window_passed_not_shipped_and_already_returned_lines(client, shop, order_1001):
    from tests.portal.conftest import Shopper
    unshipped = make_order(shop, "1004", "erika@example.com", fulfilled_days_ago=None, delivered_days_ago=None,
                           lines=[{"title": "Tent", "price": "300.00"}])
    db.session.commit()
    old = Shopper(client)
    old.sign_in("1002", "old@example.com")
    old_order = db.session.query(type(order_1001)).filter_by(shop_id=shop.id, number="1002").one()
    page = old.get(f"orders/{old_order.id}/items").get_data(as_text=True)
    assert "The return period for this item has ended." in page

    erika = Shopper(client.application.test_client())
    erika.sign_in("1004", "erika@example.com")
    assert "Not shipped yet" in erika.get(f"orders/{unshipped.id}/items").get_data(as_text=True)

    erika.sign_in()
    erika.through_to_summary(order_1001, _jacket(shop, order_1001))
    _confirm(erika, order_1001, returns_of(shop)[0].id)
    page = erika.get(f"orders/{order_1001.id}/items").get_data(as_text=True)
    assert "Already returned." in page and "You already have a return for this order" in page


def test_invalid_items_re_render_with_messages_and_choices_intact(shopper, shop, order_1001):
    shopper.sign_in()
    socks, jacket = lines_of(order_1001)["Merino Socks"], lines_of(order_1001)["Trail Jacket"]
    damaged = reason_id(shop, "damaged")
    resp = shopper.choose_items(order_1001, {
        f"line-{socks}-quantity": "2", f"line-{socks}-comment": "They itch <b>a lot</b>",
        f"line-{jacket}-quantity": "1", f"line-{jacket}-reason": str(damaged)})
    page = resp.get_data(as_text=True)
    assert resp.status_code == 422
    assert "Choose a reason for this item." in page
    assert "Please describe the problem." in page and "Please add a photo of the problem." in page
    # The messages sit beside their fields and are announced with them.
    assert f'aria-describedby="line-{socks}-reason-error"' in page
    assert f'id="line-{socks}-reason-error"' in page
    # What the shopper chose is still chosen.
    assert re.search(rf'name="line-{socks}-quantity"[^>]*>.*?<option value="2" selected>', page, re.S)
    assert re.search(rf'<option value="{damaged}" selected', page)
    assert "They itch &lt;b&gt;a lot&lt;/b&gt;</textarea>" in page
    assert returns_of(shop) == [] or not returns_of(shop)[0].lines


def test_choosing_nothing_asks_for_an_item(shopper, shop, order_1001):
    shopper.sign_in()
    resp = shopper.choose_items(order_1001, {})
    assert resp.status_code == 422 and "Choose at least one item to return." in resp.get_data(as_text=True)


def test_reason_may_be_optional_by_policy(shopper, shop, order_1001):
    shop.policy = {"reason_required": False}
    db.session.commit()
    shopper.sign_in()
    jacket = lines_of(order_1001)["Trail Jacket"]
    page = shopper.get(f"orders/{order_1001.id}/items").get_data(as_text=True)
    assert "(optional)" in page
    assert shopper.choose_items(order_1001, {f"line-{jacket}-quantity": "1"}).status_code == 302


def test_back_keeps_every_choice(shopper, shop, order_1001):
    shopper.sign_in()
    socks = lines_of(order_1001)["Merino Socks"]
    other = reason_id(shop, "other")
    shopper.through_to_summary(order_1001, {f"line-{socks}-quantity": "2", f"line-{socks}-reason": str(other),
                                            f"line-{socks}-comment": "Wrong colour"}, method="dropoff")
    items = shopper.get(f"orders/{order_1001.id}/items").get_data(as_text=True)
    assert re.search(rf'name="line-{socks}-quantity"[^>]*>.*?<option value="2" selected>', items, re.S)
    assert f'<option value="{other}" selected' in items and ">Wrong colour</textarea>" in items
    method = shopper.get(f"orders/{order_1001.id}/method").get_data(as_text=True)
    assert re.search(r'value="dropoff"[^>]*checked', method)
    instructions = shopper.get(f"orders/{order_1001.id}/instructions").get_data(as_text=True)
    assert 'value="+49 30 1234567"' in instructions
    assert len(re.findall(r'name="checklist"[^>]*checked', instructions)) == 3
    assert shopper.get(f"orders/{order_1001.id}/summary").status_code == 200


def test_steps_cannot_be_skipped(shopper, shop, order_1001):
    shopper.sign_in()
    assert shopper.get(f"orders/{order_1001.id}/summary").headers["Location"].endswith("/items")
    shopper.choose_items(order_1001, _jacket(shop, order_1001))
    assert shopper.get(f"orders/{order_1001.id}/instructions").headers["Location"].endswith("/method")
    shopper.post(f"orders/{order_1001.id}/method", {"method": "pickup"})
    assert shopper.get(f"orders/{order_1001.id}/summary").headers["Location"].endswith("/instructions")


def test_instructions_need_the_address_and_every_checklist_point(shopper, shop, order_1001):
    shopper.sign_in()
    shopper.choose_items(order_1001, _jacket(shop, order_1001))
    shopper.post(f"orders/{order_1001.id}/method", {"method": "pickup"})
    page = shopper.get(f"orders/{order_1001.id}/instructions").get_data(as_text=True)
    assert 'value="Musterstraße 1"' in page and "Step 4 of 5" in page
    resp = shopper.post(f"orders/{order_1001.id}/instructions", {
        "address-name": "Erika", "address-line1": "", "address-postcode": "10115", "address-city": "Berlin",
        "address-country": "DE", "checklist": "packed"})
    page = resp.get_data(as_text=True)
    assert resp.status_code == 422
    assert "Please confirm every point of the checklist." in page and "This field is required." in page
    assert re.search(r'id="checklist-packed"[^>]*checked', page)
    assert 'value="Erika"' in page


def test_discard_throws_the_draft_away(shopper, shop, order_1001):
    shopper.sign_in()
    shopper.choose_items(order_1001, _jacket(shop, order_1001))
    page = shopper.get(f"orders/{order_1001.id}/method").get_data(as_text=True)
    assert 'aria-label="Discard this return"' in page
    resp = shopper.post(f"orders/{order_1001.id}/discard")
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/portal/demo-shop/orders")
    assert "Your return was discarded" in shopper.get("orders").get_data(as_text=True)
    assert returns_of(shop) == []
    items = shopper.get(f"orders/{order_1001.id}/items").get_data(as_text=True)
    assert not re.search(r'<option value="1" selected>', items)


def test_a_second_confirm_gives_the_same_single_return(shopper, shop, order_1001, outbox):
    shopper.sign_in()
    shopper.through_to_summary(order_1001, _jacket(shop, order_1001))
    draft_id = returns_of(shop)[0].id
    first = _confirm(shopper, order_1001, draft_id)
    second = _confirm(shopper, order_1001, draft_id)
    assert first.headers["Location"] == second.headers["Location"]
    assert len(returns_of(shop)) == 1
    assert len([m for m in outbox() if "confirmed" in m["Subject"]]) == 1
    assert db.session.get(Shop, shop.id).return_seq == 1001


def test_cancel_before_the_parcel_moves_voids_the_label(shopper, shop, order_1001):
    shopper.sign_in()
    shopper.through_to_summary(order_1001, _jacket(shop, order_1001), method="dropoff")
    _confirm(shopper, order_1001, returns_of(shop)[0].id)
    resp = shopper.post("returns/R-1001/cancel")
    assert resp.status_code == 302
    page = shopper.get("returns/R-1001").get_data(as_text=True)
    assert "Your return was cancelled and the label was voided." in page
    assert "Cancelled" in page and "Cancel this return" not in page
    [ret] = returns_of(shop)
    assert ret.state == lc.CANCELLED
    again = shopper.post("returns/R-1001/cancel")
    assert again.status_code == 302
    assert "can no longer be cancelled" in shopper.get("returns/R-1001").get_data(as_text=True)
