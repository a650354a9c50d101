"""Bad input never gives a 500 and never shows one shopper (or shop) another's data."""
from __future__ import annotations

import time
from datetime import timedelta

import pytest
from flask import current_app
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from itsdangerous.timed import TimestampSigner

from connector import db
from connector.portal import tokens, views
from connector.returns.models import Order, Return
from tests.factories import make_order, make_shop
from tests.portal.conftest import Shopper, lines_of, reason_id, returns_of

SECRET_TITLE = "Secret Prototype"


@pytest.fixture
def other_shop(shop):
    """A second shop whose order 1001 has the same number and email as the first shop's."""
    other = make_shop(handle="other-shop", name="Other Shop")
    make_order(other, "5001", "erika@example.com", lines=[{"title": SECRET_TITLE, "price": "999.00"}])
    db.session.commit()
    return other


def _order(shop, number) -> Order:
    return db.session.query(Order).filter_by(shop_id=shop.id, number=number).one()


def _confirmed_return(shopper, shop, order, method="dropoff"):
    jacket = lines_of(order)["Trail Jacket"]
    shopper.sign_in()
    shopper.through_to_summary(order, {f"line-{jacket}-quantity": "1",
                                       f"line-{jacket}-reason": str(reason_id(shop, "too_small"))}, method=method)
    draft = [r for r in returns_of(shop) if r.order_id == order.id][-1]
    shopper.post(f"orders/{order.id}/confirm", {"return_id": str(draft.id)})
    db.session.expire_all()
    return db.session.get(Return, draft.id)


# ------------------------------------------------------------------------------ tenant isolation

def test_another_shops_order_is_never_visible(client, shop, other_shop, order_1001):
    theirs = _order(other_shop, "1001")
    secret = _order(other_shop, "5001")
    mine = Shopper(client)
    mine.sign_in()  # demo-shop, erika@example.com
    for path in (f"orders/{theirs.id}/items", f"orders/{secret.id}/items", f"orders/{secret.id}/method"):
        assert mine.get(path).status_code == 404
    other_portal = Shopper(client, "other-shop")
    assert other_portal.get(f"orders/{theirs.id}/items").status_code == 404  # no grant in that shop
    assert other_portal.get("orders").status_code == 302
    assert SECRET_TITLE not in mine.get("orders").get_data(as_text=True)
    # Posting to the other shop's order through this shop is refused too.
    assert mine.post(f"orders/{secret.id}/items", {f"line-{secret.lines[0].id}-quantity": "1"}).status_code == 404
    assert mine.post(f"orders/{secret.id}/discard").status_code == 404


def test_email_link_lists_only_this_shops_orders(client, shop, other_shop, outbox):
    shopper = Shopper(client)
    shopper.get("")
    shopper.post("link", {"email": "erika@example.com"})
    body = outbox()[-1].get_body(preferencelist=("plain",)).get_content()
    link = next(w for w in body.split() if "/link?t=" in w)
    shopper.get(link.split("http://localhost", 1)[1])
    shopper.post("link/open", {"t": link.split("?t=", 1)[1]})
    page = shopper.get("orders").get_data(as_text=True)
    assert "#1001" in page and SECRET_TITLE not in page and "#5001" not in page


def test_returns_with_the_same_number_stay_in_their_shop(client, shop, other_shop, order_1001):
    mine = Shopper(client)
    ours = _confirmed_return(mine, shop, order_1001)
    theirs_shopper = Shopper(client.application.test_client(), "other-shop")
    theirs = _confirmed_return(theirs_shopper, other_shop, _order(other_shop, "1001"))
    assert ours.rma == theirs.rma == "R-1001"
    assert mine.get("/portal/other-shop/returns/R-1001").status_code == 404
    assert mine.get("/portal/other-shop/returns/R-1001/label.pdf").status_code == 404
    assert mine.post("/portal/other-shop/returns/R-1001/cancel").status_code == 404
    assert theirs_shopper.get("/portal/demo-shop/returns/R-1001/label.pdf").status_code == 404
    assert mine.get("returns/R-1001/label.pdf").status_code == 200


def test_label_needs_the_session_or_a_status_link(client, shop, order_1001):
    ret = _confirmed_return(Shopper(client), shop, order_1001)
    stranger = Shopper(client.application.test_client())
    assert stranger.get(f"returns/{ret.rma}").status_code == 404
    assert stranger.get(f"returns/{ret.rma}/label.pdf").status_code == 404
    with current_app.test_request_context():
        link = tokens.status_link(ret)
    assert link.startswith("http://localhost/portal/demo-shop/returns/R-1001?t=")
    opened = stranger.get(link.split("http://localhost", 1)[1])
    assert opened.status_code == 302 and "t=" not in opened.headers["Location"]
    assert stranger.get(f"returns/{ret.rma}").status_code == 200
    label = stranger.get(f"returns/{ret.rma}/label.pdf")
    assert label.status_code == 200 and label.mimetype == "application/pdf"
    # The link's token also opens the label directly (for a "download your label" button in mails).
    token = link.split("?t=", 1)[1]
    direct = Shopper(client.application.test_client()).get(f"returns/{ret.rma}/label.pdf?t={token}")
    assert direct.status_code == 200 and direct.data.startswith(b"%PDF")
    assert Shopper(client.application.test_client()).get(f"returns/{ret.rma}/label.pdf?t=x{token}").status_code == 404


def test_tampered_expired_or_misplaced_status_links_are_refused(client, shop, other_shop, order_1001, monkeypatch):
    ret = _confirmed_return(Shopper(client), shop, order_1001)
    with current_app.test_request_context():
        good = tokens.status_token(ret)
        monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: int(time.time()) - 91 * 86400)
        expired = tokens.status_token(ret)
        monkeypatch.undo()
    for path in (f"returns/R-1001?t={good[:-2]}xx", f"returns/R-1001?t={expired}", f"returns/R-1002?t={good}",
                 f"/portal/other-shop/returns/R-1001?t={good}", "returns/R-1001?t="):
        stranger = Shopper(client.application.test_client())
        assert stranger.get(path).status_code == 404, path
        assert stranger.get("returns/R-1001/label.pdf").status_code == 404


# ------------------------------------------------------------------------------ forms and CSRF

def test_forged_csrf_token_gets_the_400_page(shopper, order_1001):
    assert current_app.config.get("WTF_CSRF_ENABLED", True)
    for token in ("forged", "", "x" * 10_000):
        resp = shopper.post("", {"order_number": "1001", "contact": "10115", "csrf_token": token})
        assert resp.status_code == 400
        assert "This form has expired or was sent from elsewhere" in resp.get_data(as_text=True)
    assert shopper.client.post(shopper.url(""), data={"order_number": "1001", "contact": "10115"}).status_code == 400
    shopper.sign_in()
    resp = shopper.post(f"orders/{order_1001.id}/discard", {"csrf_token": "forged"})
    assert resp.status_code == 400


def test_html_and_script_are_escaped(shopper, shop, order_1001):
    attack = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    page = shopper.sign_in(attack, attack).get_data(as_text=True)
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "&lt;script&gt;" in page
    shopper.get("withdraw")
    shopper.post("withdraw", {"name": attack, "order_number": "1001", "email": "erika@example.com"})
    confirm = shopper.get("withdraw/confirm").get_data(as_text=True)
    assert "&lt;script&gt;alert" in confirm and "<script>alert" not in confirm


@pytest.mark.parametrize("value", ["1001' OR '1'='1", "1001; DROP TABLE orders;--", "%", "_", "1001\x00",
                                   "\u202e1001", "１００１"])
def test_sql_like_and_odd_values_find_nothing(shopper, shop, value):
    resp = shopper.sign_in(value, "erika@example.com' OR 1=1 --")
    assert resp.status_code == 422
    assert db.session.query(Order).filter_by(shop_id=shop.id).count() == 3


def test_oversized_values_are_refused_beside_the_field(shopper, shop, order_1001):
    huge = "A" * 10_240
    page = shopper.sign_in(huge, huge).get_data(as_text=True)
    assert "An order number is at most 64 characters." in page
    shopper.get("")
    resp = shopper.post("link", {"email": huge})
    assert resp.status_code == 422 and "This is too long." in resp.get_data(as_text=True)
    shopper.sign_in()
    jacket = lines_of(order_1001)["Trail Jacket"]
    resp = shopper.choose_items(order_1001, {f"line-{jacket}-quantity": "1",
                                             f"line-{jacket}-reason": str(reason_id(shop, "other")),
                                             f"line-{jacket}-comment": huge})
    assert resp.status_code == 422
    assert "Please keep the comment under 2000 characters." in resp.get_data(as_text=True)


@pytest.mark.parametrize("quantity,reason", [("-1", "1"), ("1e9", "1"), ("99999999999999999999", "x"),
                                             ("1", "-5"), ("1", "999999"), ("٣", "1"), ("", "1")])
def test_tampered_item_values_are_field_errors(shopper, shop, order_1001, quantity, reason):
    shopper.sign_in()
    jacket = lines_of(order_1001)["Trail Jacket"]
    resp = shopper.choose_items(order_1001, {f"line-{jacket}-quantity": quantity, f"line-{jacket}-reason": reason})
    assert resp.status_code == 422


def test_unknown_shop_and_bad_rma_are_404(client, shop):
    shopper = Shopper(client)
    assert shopper.get("/portal/no-such-shop/").status_code == 404
    assert shopper.get("/portal/" + "x" * 300 + "/").status_code == 404
    for rma in ("R-0", "R-abc", "1001", "R-99999999999999999999", "draft-1"):
        assert shopper.get(f"returns/{rma}").status_code == 404


def test_methods_and_steps_refuse_foreign_values(shopper, shop, order_1001):
    shopper.sign_in()
    jacket = lines_of(order_1001)["Trail Jacket"]
    shopper.choose_items(order_1001, {f"line-{jacket}-quantity": "1",
                                      f"line-{jacket}-reason": str(reason_id(shop, "too_small"))})
    for value in ("teleport", "", "x" * 5000):
        resp = shopper.post(f"orders/{order_1001.id}/method", {"method": value, "refund_method": "store_credit"})
        assert resp.status_code == 422
    assert returns_of(shop)[0].method is None


# ------------------------------------------------------------------------------ property test

_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=400)
_number = st.one_of(_text, st.integers(min_value=-2**70, max_value=2**70).map(str))


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(number=_number, contact=_text, name=_text, quantity=_number, reason=_number, comment=_text)
def test_random_input_never_breaks_or_leaks(client, shop, other_shop, order_1001, monkeypatch,
                                            number, contact, name, quantity, reason, comment):
    monkeypatch.setattr(views, "LOOKUPS_PER_ADDRESS", (10**9, timedelta(minutes=15)))
    monkeypatch.setattr(views, "LOOKUPS_PER_ORDER_NUMBER", (10**9, timedelta(minutes=15)))
    monkeypatch.setattr(views, "LINK_PER_EMAIL", (10**9, timedelta(minutes=15)))
    stranger = Shopper(client)
    answers = [
        stranger.sign_in(number, contact),
        stranger.post("link", {"email": contact}),
        stranger.post("withdraw", {"name": name, "order_number": number, "email": contact}),
    ]
    signed_in = Shopper(client.application.test_client())
    signed_in.sign_in()
    jacket = lines_of(order_1001)["Trail Jacket"]
    answers.append(signed_in.post(f"orders/{order_1001.id}/items", {
        f"line-{jacket}-quantity": quantity, f"line-{jacket}-reason": reason, f"line-{jacket}-comment": comment}))
    answers.append(signed_in.get(f"returns/{number}"))
    for resp in answers:
        assert resp.status_code < 500, resp.get_data(as_text=True)[:500]
        assert SECRET_TITLE.encode() not in resp.data
    # Nothing in the other shop moved, and a stranger holds no grant unless they named a real order.
    assert db.session.query(Return).filter_by(shop_id=other_shop.id).count() == 0
    with stranger.client.session_transaction() as sess:
        granted = (sess.get("portal") or {}).get(str(shop.id), {}).get("orders", [])
    allowed = {o.id for o in db.session.query(Order).filter_by(shop_id=shop.id)}
    assert set(granted) <= allowed
