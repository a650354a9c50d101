"""The merchant's work on returns: find them, read them, approve, reject, receive, grade, refund."""
from __future__ import annotations

import re
from decimal import Decimal
from zoneinfo import ZoneInfo

from babel.dates import format_datetime
from sqlalchemy import func, select

from connector import db
from connector.returns import lifecycle as lc
from connector.returns import services
from connector.returns.models import Order, Refund
from tests.admin.conftest import make_return, set_policy


def _text(response) -> str:
    return response.get_data(as_text=True)


def _order(shop, number):
    return db.session.scalar(select(Order).where(Order.shop_id == shop.id, Order.number == number))


# ---------------------------------------------------------------------------- the list


def test_list_shows_newest_first_and_filters_by_state(admin, shop):
    first = make_return(shop, approve=False)  # requested
    set_policy(shop, auto_approve=True)
    second = make_return(shop, number="1003")  # selfship, auto-approved: awaiting_shipment
    html = _text(admin.get())
    assert html.index(f"/returns/{second.id}\"") < html.index(f"/returns/{first.id}\"")
    requested = _text(admin.get("?state=requested"))
    assert f"/returns/{first.id}\"" in requested and f"/returns/{second.id}\"" not in requested
    assert "Awaiting shipment" in _text(admin.get("?state=awaiting_shipment"))


def test_search_finds_by_rma_order_number_and_email(admin, shop):
    jacket = make_return(shop, approve=False)
    boots = make_return(shop, number="1003", approve=False)
    for query, found, not_found in (("R-1001", jacket, boots), ("r1002", boots, jacket), ("#1003", boots, jacket),
                                    ("1001", jacket, boots), ("jean@example", boots, jacket),
                                    ("ERIKA@EXAMPLE.COM", jacket, boots)):
        html = _text(admin.get(f"?q={query.replace('#', '%23')}"))
        assert f"/returns/{found.id}\"" in html, query
        assert f"/returns/{not_found.id}\"" not in html, query
    assert "No returns match this filter." in _text(admin.get("?q=nobody%25"))


def test_list_is_paginated(admin, shop):
    set_policy(shop, auto_approve=False)
    order = _order(shop, "1001")
    for _i in range(26):
        # Each return takes one of three socks; cancel it so the units are free for the next one.
        ret = make_return(shop, quantities={order.lines[1].id: 1})
        services.cancel(ret, "merchant:test")
    first = _text(admin.get())
    assert "Page 1 of 2" in first and 'rel="next"' in first
    assert first.count('class="strong"') == 25
    assert _text(admin.get("?page=2")).count('class="strong"') == 1


# ---------------------------------------------------------------------------- one return


def test_return_page_shows_items_reason_comment_photos_and_timeline_in_shop_time(admin, shop, app):
    app.extensions["connector.storage"].put("shop-1/photos/seam.jpg", b"\xff\xd8\xff\xe0fake-jpeg")
    ret = make_return(shop, reason_code="damaged", approve=False)
    response = admin.get(f"returns/{ret.id}")
    html = _text(response)
    assert response.status_code == 200
    assert "R-1001" in html and "Trail Jacket" in html and "M / Blue" in html
    assert "Arrived damaged" in html and "Seam torn at the shoulder" in html
    assert "Requested" in html and "Approve return" in html
    # Times are shown in the shop's zone (Europe/Berlin), not in UTC.
    event = services.timeline(ret, public_only=False)[0]
    assert format_datetime(event.at, "medium", tzinfo=ZoneInfo("Europe/Berlin"), locale="en") in html
    photo_url = re.search(r'<img src="([^"]+/photos/[^"]+)"', html).group(1)
    photo = admin.client.get(photo_url)
    assert photo.status_code == 200 and photo.mimetype == "image/jpeg" and photo.data.startswith(b"\xff\xd8")
    assert admin.get(f"returns/{ret.id}/photos/{ret.lines[0].id}/shopper/5").status_code == 404


def test_withdrawal_is_badged(admin, shop):
    order = _order(shop, "1001")
    ret = services.create_withdrawal(shop, order, name="Erika Mustermann", email=order.email,
                                     line_quantities=None, locale="en")
    html = _text(admin.get(f"returns/{ret.id}"))
    assert "EU withdrawal" in html and "Erika Mustermann" in html
    assert "EU withdrawal" in _text(admin.get())


def test_label_is_downloadable(admin, shop):
    ret = make_return(shop, method="dropoff")  # sandbox carrier, auto-approved: label ready
    assert ret.state == lc.LABEL_READY
    response = admin.get(f"returns/{ret.id}/label")
    assert response.status_code == 200
    assert response.mimetype == "application/pdf" and response.data.startswith(b"%PDF")
    assert "attachment" in response.headers["Content-Disposition"]
    html = _text(admin.get(f"returns/{ret.id}"))
    assert ret.shipment.tracking_number in html and "Download label" in html


def test_approve_a_requested_return(admin, shop):
    ret = make_return(shop, approve=False)
    response = admin.post(f"returns/{ret.id}/approve", follow=True)
    assert "Return R-1001 approved." in _text(response)
    db.session.refresh(ret)
    assert ret.state == lc.AWAITING_SHIPMENT
    approved = [e for e in services.timeline(ret, public_only=False) if e.data.get("to") == lc.APPROVED]
    assert approved[0].actor == "merchant:Lena"
    assert "Lena" in _text(admin.get(f"returns/{ret.id}"))


def test_approving_twice_says_why_instead_of_failing(admin, shop):
    ret = make_return(shop, approve=False)
    admin.post(f"returns/{ret.id}/approve")
    response = admin.post(f"returns/{ret.id}/approve", follow=True)
    assert response.status_code == 200
    assert "This is not possible while the return is Awaiting shipment." in _text(response)


def test_reject_with_a_note(admin, shop):
    ret = make_return(shop, approve=False)
    admin.post(f"returns/{ret.id}/reject", {"note": "Worn outdoors, tags removed"})
    db.session.refresh(ret)
    assert ret.state == lc.REJECTED
    html = _text(admin.get(f"returns/{ret.id}"))
    assert "Status: Rejected" in html and "Worn outdoors, tags removed" in html


def test_receive_with_quantities_per_line(admin, shop):
    order = _order(shop, "1001")
    jacket, socks = order.lines[0], order.lines[1]
    ret = make_return(shop, quantities={jacket.id: 1, socks.id: 3})
    by_order_line = {line.order_line_id: line for line in ret.lines}
    bad = admin.post(f"returns/{ret.id}/receive", {f"received-{by_order_line[jacket.id].id}": "1",
                                                   f"received-{by_order_line[socks.id].id}": "4"})
    assert bad.status_code == 422 and "Enter a number from 0 to 3." in _text(bad)
    db.session.refresh(ret)
    assert ret.state == lc.AWAITING_SHIPMENT
    admin.post(f"returns/{ret.id}/receive", {f"received-{by_order_line[jacket.id].id}": "1",
                                             f"received-{by_order_line[socks.id].id}": "2"})
    db.session.refresh(ret)
    assert ret.state == lc.RECEIVED
    assert {line.order_line_id: line.received_quantity for line in ret.lines} == {jacket.id: 1, socks.id: 2}


def test_grade_each_line(admin, shop):
    order = _order(shop, "1001")
    ret = make_return(shop, quantities={order.lines[0].id: 1, order.lines[1].id: 1})
    services.mark_received(ret, "merchant:test")
    first, second = ret.lines
    response = admin.post(f"returns/{ret.id}/inspect", {f"grade-{first.id}": "A", f"disposition-{first.id}": "restock",
                                                        f"grade-{second.id}": "X", f"disposition-{second.id}": "dispose"})
    assert response.status_code == 422 and "Choose grade A, B or C." in _text(response)
    admin.post(f"returns/{ret.id}/inspect", {
        f"grade-{first.id}": "A", f"disposition-{first.id}": "restock", f"note-{first.id}": "As new",
        f"grade-{second.id}": "C", f"disposition-{second.id}": "dispose", f"note-{second.id}": "Holes in the heel"})
    db.session.refresh(ret)
    assert ret.state == lc.INSPECTED
    assert [(line.grade, line.disposition, line.inspection_note) for line in ret.lines] == [
        ("A", "restock", "As new"), ("C", "dispose", "Holes in the heel")]
    html = _text(admin.get(f"returns/{ret.id}"))
    assert "Grade A" in html and "Grade C" in html and "Holes in the heel" in html


def test_grading_nothing_is_an_error_not_a_change(admin, shop):
    ret = make_return(shop)
    services.mark_received(ret, "merchant:test")
    response = admin.post(f"returns/{ret.id}/inspect", {})
    assert response.status_code == 422 and "Grade at least one item." in _text(response)


# ---------------------------------------------------------------------------- refund


def _received(shop):
    ret = make_return(shop)
    services.mark_received(ret, "merchant:test")
    return ret


def test_refund_preview_is_shown_before_the_click(admin, shop):
    set_policy(shop, restocking_fee_percent=Decimal("10"))
    ret = _received(shop)
    html = _text(admin.get(f"returns/{ret.id}"))
    plan = services.refund_preview(ret)
    assert plan.total == Decimal("116.10")  # 129.00 jacket - 10 % restocking (self-shipped: no fee)
    assert "129.00 EUR" in html and "Restocking fee" in html and "− 12.90 EUR" in html
    assert "Total refund" in html and "116.10 EUR" in html
    assert "Record refund of 116.10 EUR" in html
    assert "No money is sent from here." in html
    assert db.session.scalar(select(func.count()).select_from(Refund)) == 0


def test_one_click_refund_is_recorded_as_manual_payout(admin, shop):
    ret = _received(shop)
    response = admin.post(f"returns/{ret.id}/refund", {"expected_total": "129.00"}, follow=True)
    wording = "Recorded: pay out 129.00 EUR to the shopper yourself; no payment was sent."
    assert wording in _text(response)
    refund = db.session.scalar(select(Refund).where(Refund.return_id == ret.id))
    assert refund.state == "succeeded" and refund.manual is True
    assert refund.platform_refund_id.startswith("manual-") and refund.amount == Decimal("129.00")
    assert refund.requested_by == "merchant:Lena"
    db.session.refresh(ret)
    assert ret.state == lc.REFUNDED
    page = _text(admin.get(f"returns/{ret.id}"))
    assert wording in page and "manual payout" in page
    assert "Record refund of" not in page  # no second button


def test_double_refund_click_makes_one_refund(admin, shop):
    ret = _received(shop)
    page = _text(admin.get(f"returns/{ret.id}"))
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    url = admin.url(f"returns/{ret.id}/refund")
    first = admin.client.post(url, data={"csrf_token": token, "expected_total": "129.00"})
    second = admin.client.post(url, data={"csrf_token": token, "expected_total": "129.00"}, follow_redirects=True)
    assert first.status_code == 302 and second.status_code == 200
    assert "was already made; nothing more was done" in _text(second)
    assert db.session.scalar(select(func.count()).select_from(Refund).where(Refund.return_id == ret.id)) == 1


def test_refund_is_not_made_when_the_amount_changed_since_the_page_was_shown(admin, shop):
    ret = _received(shop)
    response = admin.post(f"returns/{ret.id}/refund", {"expected_total": "150.00"}, follow=True)
    assert "The refund amount has changed" in _text(response)
    assert db.session.scalar(select(func.count()).select_from(Refund)) == 0


def test_refund_before_the_parcel_arrived_is_refused_with_a_reason(admin, shop):
    ret = make_return(shop)
    response = admin.post(f"returns/{ret.id}/refund", {}, follow=True)
    assert "A refund can be made once the return has been received." in _text(response)
    assert db.session.scalar(select(func.count()).select_from(Refund)) == 0


def test_cancel_before_the_parcel_moves(admin, shop):
    ret = make_return(shop, approve=False)
    admin.post(f"returns/{ret.id}/cancel")
    db.session.refresh(ret)
    assert ret.state == lc.CANCELLED


def test_shopper_and_api_text_is_escaped_on_the_page(admin, shop):
    order = _order(shop, "1001")
    order.lines[0].title = '<script src="https://evil.example/x.js"></script>Jacket'
    db.session.commit()
    ret = make_return(shop, reason_code="other", approve=False)  # comment required
    html = _text(admin.get(f"returns/{ret.id}"))
    assert "<script" not in html
    assert "&lt;script src=&#34;https://evil.example/x.js&#34;&gt;&lt;/script&gt;Jacket" in html


def test_admin_speaks_the_chosen_language(admin, shop):
    ret = make_return(shop, approve=False)
    html = _text(admin.get(f"returns/{ret.id}?lang=de"))
    assert '<html lang="de">' in html
    assert 'hreflang="fr"' in html
