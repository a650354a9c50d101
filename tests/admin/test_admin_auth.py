"""Signing in to a shop's admin, and what a signed-in merchant can reach: their shop, nothing else."""
from __future__ import annotations

from sqlalchemy import func, select

from connector import db
from connector.returns import lifecycle as lc
from connector.returns.models import Return
from tests.admin.conftest import Admin, csrf_token, make_return
from tests.factories import make_order, make_shop


def test_right_password_signs_in_and_lands_on_returns(client, shop):
    admin = Admin(client, shop.handle)
    response = admin.login()
    assert response.status_code == 302 and response.headers["Location"].endswith("/admin/demo-shop/")
    page = admin.get()
    assert page.status_code == 200 and "Returns" in page.get_data(as_text=True)


def test_wrong_password_is_refused_without_signing_in(client, shop):
    admin = Admin(client, shop.handle)
    response = admin.login(password="wrong horse")
    assert response.status_code == 401
    assert "This password is not right." in response.get_data(as_text=True)
    assert admin.get().status_code == 302  # still sent to the sign-in page


def test_pages_redirect_to_sign_in_and_back_afterwards(client, shop):
    admin = Admin(client, shop.handle)
    response = admin.get("settings/policy")
    assert response.status_code == 302
    assert "/admin/demo-shop/login?next=" in response.headers["Location"]
    page = client.get(response.headers["Location"])
    signed_in = client.post(response.headers["Location"], data={
        "password": "correct horse battery", "csrf_token": csrf_token(page.get_data(as_text=True))})
    assert signed_in.headers["Location"] == "/admin/demo-shop/settings/policy"


def test_sign_in_never_redirects_off_site(client, shop):
    page = client.get("/admin/demo-shop/login")
    response = client.post("/admin/demo-shop/login?next=https://evil.example/", data={
        "password": "correct horse battery", "csrf_token": csrf_token(page.get_data(as_text=True))})
    assert response.headers["Location"] == "/admin/demo-shop/"


def test_sign_in_attempts_are_rate_limited(client, shop):
    admin = Admin(client, shop.handle)
    for _attempt in range(10):
        assert admin.login(password="guess").status_code == 401
    # Past the limit even the right password is turned away for a while.
    response = admin.login()
    assert response.status_code == 429
    assert "Too many attempts" in response.get_data(as_text=True)
    assert admin.get().status_code == 302


def test_a_shop_without_a_password_cannot_be_signed_in_to(client, shop):
    shop.admin_password_hash = None
    db.session.commit()
    assert Admin(client, shop.handle).login(password="").status_code == 422
    assert Admin(client, shop.handle).login(password="anything").status_code == 401


def test_unknown_shop_is_404(client, shop):
    assert client.get("/admin/no-such-shop/login").status_code == 404
    assert client.get("/admin/no-such-shop/").status_code == 404


def test_sign_out_ends_the_session(admin):
    response = admin.post("logout")
    assert response.status_code == 302
    assert admin.get().status_code == 302


def test_a_password_change_ends_existing_sessions(admin, shop):
    from werkzeug.security import generate_password_hash
    shop.admin_password_hash = generate_password_hash("a brand new password")
    db.session.commit()
    assert admin.get().status_code == 302


def test_merchant_of_one_shop_gets_404_for_another_shops_pages_and_returns(admin, shop):
    other = make_shop(handle="other-shop", name="Other GmbH", with_orders=False)
    make_order(other, "1001", "buyer@example.com", lines=[{"title": "Tent", "price": "300.00", "tax": "47.90"}])
    theirs = make_return(other, number="1001", approve=False)
    mine = make_return(shop, approve=False)

    assert admin.client.get("/admin/other-shop/").status_code == 404
    assert admin.client.get(f"/admin/other-shop/returns/{theirs.id}").status_code == 404
    assert admin.get(f"returns/{theirs.id}").status_code == 404
    assert admin.get(f"returns/{theirs.id}/label").status_code == 404
    assert admin.post(f"returns/{theirs.id}/approve").status_code == 404
    db.session.refresh(theirs)
    assert theirs.state == lc.REQUESTED
    # Their return never shows up in this shop's list or search, even with the same RMA.
    assert "No returns match this filter." in admin.get("?q=buyer@example.com").get_data(as_text=True)
    listing = admin.get("?q=R-1001").get_data(as_text=True)
    assert f"/returns/{mine.id}" in listing and f"/returns/{theirs.id}" not in listing
    assert admin.get(f"returns/{mine.id}").status_code == 200


def test_actions_without_csrf_token_are_refused(admin, shop):
    ret = make_return(shop, approve=False)
    response = admin.client.post(admin.url(f"returns/{ret.id}/approve"))
    assert response.status_code == 400
    db.session.refresh(ret)
    assert ret.state == lc.REQUESTED
    response = admin.client.post(admin.url(f"returns/{ret.id}/refund"), data={"csrf_token": "forged"})
    assert response.status_code == 400
    assert db.session.scalar(select(func.count()).select_from(Return).where(Return.state == lc.REFUNDED)) == 0
