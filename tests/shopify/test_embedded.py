"""The embedded admin: the app home, session tokens instead of cookies, the bounce page, tenant
isolation, CSRF by session token, one-click refund, and the order page's admin link.

Shopify's Admin API is ShopifyStub with the returns fake (tests/shopify/returns_fake.py); session
tokens are built in the documented payload shape (tests/shopify/session_token.py).
"""
from __future__ import annotations

import re
import time
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from sqlalchemy import func, select

from connector import db
from connector.returns import lifecycle as lc
from connector.returns import services
from connector.returns.models import Order, Refund, Shop
from tests.admin.conftest import make_return
from tests.shopify.conftest import API_KEY, SHOP_DOMAIN
from tests.shopify.factories import make_shopify_shop, order_gid
from tests.shopify.returns_fake import ShopifyReturnsFake, answer, user_error
from tests.shopify.session_token import session_token

HOST = "YWRtaW4uc2hvcGlmeS5jb20vc3RvcmUvZGVtby1zaG9w"  # base64 of admin.shopify.com/store/demo-shop
OTHER_DOMAIN = "other-shop.myshopify.com"
FRAME = f"frame-ancestors https://{SHOP_DOMAIN} https://admin.shopify.com;"


@pytest.fixture
def fake(shopify, shopify_shop):
    return ShopifyReturnsFake(shopify, shopify_shop)


@pytest.fixture
def other_shop(app):
    return make_shopify_shop(handle="other-shop", domain=OTHER_DOMAIN)


def url(path: str, token: str | None = None, shop: str = SHOP_DOMAIN, **extra) -> str:
    params = {"shop": shop, "host": HOST, **extra}
    if token:
        params["id_token"] = token
    return f"{path}?{urlencode(params)}"


def text(resp) -> str:
    return resp.get_data(as_text=True)


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def assert_embedded_page(resp):
    html = text(resp)
    head = html.split("</head>", 1)[0]
    assert f'<meta name="shopify-api-key" content="{API_KEY}">' in head
    scripts = re.findall(r'<script src="([^"]+)"', head)
    assert scripts[0] == "https://cdn.shopify.com/shopifycloud/app-bridge.js"  # the first script
    csp = resp.headers["Content-Security-Policy"]
    assert FRAME in csp and "frame-ancestors 'self'" not in csp
    assert "script-src 'self' https://cdn.shopify.com;" in csp
    assert "Sign out" not in html and 'class="topbar"' not in html
    return html


# ============================================================================ app home

def test_app_home_opens_the_embedded_returns_list(client, shopify_shop, fake):
    token = session_token()
    resp = client.get(url("/shopify/", token, embedded="1", locale="de-DE"))
    assert resp.status_code == 302
    target = urlsplit(resp.headers["Location"])
    assert target.path == "/admin/demo-shop/"
    assert query_of(resp.headers["Location"]) == {"shop": SHOP_DOMAIN, "host": HOST, "lang": "de",
                                                  "id_token": token}
    page = client.get(resp.headers["Location"])
    assert page.status_code == 200
    html = assert_embedded_page(page)
    assert "Retouren" in html  # the admin's language from Shopify's locale
    # Every link keeps shop and host (App Bridge needs them on each page).
    links = [l for l in re.findall(r'href="(/admin/demo-shop/[^"]*)"', html)]
    assert links and all(f"shop={SHOP_DOMAIN}" in l and f"host={HOST}" in l for l in links)
    assert all("id_token" not in l for l in links)  # embedded.js adds a fresh one on click
    assert 'src="/admin/static/embedded.js"' in html


def test_app_home_installs_a_new_shop_by_token_exchange(client, app, shopify, rsps, monkeypatch):
    import json
    import responses
    from connector.returns.context import runtime
    queued = []
    monkeypatch.setattr(runtime, "enqueue", lambda name, **kw: queued.append((name, kw)))
    bodies = []

    def token_endpoint(request):
        bodies.append(json.loads(request.body))
        return 200, {}, json.dumps({"access_token": "shpat_new", "expires_in": 3599, "refresh_token": "shprt_new",
                                    "refresh_token_expires_in": 7776000, "scope": "write_orders,write_returns"})

    rsps.add_callback(responses.POST, f"https://{SHOP_DOMAIN}/admin/oauth/access_token", callback=token_endpoint)
    from tests.shopify.test_install import shop_info
    shopify.on("ShopInfo", shop_info())
    token = session_token()
    resp = client.get(url("/shopify/", token))
    assert resp.status_code == 302, text(resp)
    assert [b["subject_token"] for b in bodies] == [token]
    shop = db.session.scalar(select(Shop).where(Shop.domain == SHOP_DOMAIN))
    assert shop.platform == "shopify" and shop.handle == "demo-shop"
    assert queued == [("shopify_backfill", {"shop_id": shop.id})]
    assert_embedded_page(client.get(resp.headers["Location"]))
    # The next load finds the shop installed: no second exchange.
    assert client.get(url("/shopify/", session_token())).status_code == 302
    assert len(bodies) == 1


def test_app_home_refuses_a_token_for_another_shop_than_the_url(client, shopify_shop):
    resp = client.get(url("/shopify/", session_token(OTHER_DOMAIN)))
    assert resp.status_code == 400
    assert "Location" not in resp.headers


# ============================================================================ bounce and retry

def test_document_without_token_gets_the_bounce_page(client, shopify_shop, fake):
    ret = make_return(shopify_shop, approve=False)
    for token in (None, session_token(issued=time.time() - 3600), session_token(secret="wrong-secret")):
        resp = client.get(url(f"/admin/demo-shop/returns/{ret.id}", token, state="requested"))
        assert resp.status_code == 302
        location = resp.headers["Location"]
        assert urlsplit(location).path == "/shopify/session-token"
        reload_to = query_of(location)["shopify-reload"]
        assert reload_to.startswith(f"/admin/demo-shop/returns/{ret.id}?")
        assert query_of(reload_to) == {"shop": SHOP_DOMAIN, "host": HOST, "state": "requested"}  # no stale token
    bounce = client.get(location)
    assert bounce.status_code == 200
    html = text(bounce)
    assert f'<meta name="shopify-api-key" content="{API_KEY}">' in html
    assert '<script src="https://cdn.shopify.com/shopifycloud/app-bridge.js"></script>' in html
    assert FRAME in bounce.headers["Content-Security-Policy"]
    # The app home bounces the same way.
    home = client.get(url("/shopify/"))
    assert urlsplit(home.headers["Location"]).path == "/shopify/session-token"


def test_bounce_page_reloads_only_paths_of_this_app(client, app):
    for target in ("https://evil.example/", "//evil.example/x", "javascript:alert(1)", "/\\evil.example"):
        resp = client.get(f"/shopify/session-token?{urlencode({'shop': SHOP_DOMAIN, 'shopify-reload': target})}")
        assert resp.status_code == 400


def test_fetch_with_an_invalid_token_gets_401_and_the_retry_header(client, shopify_shop):
    for token in (session_token(issued=time.time() - 3600), "not-a-token", session_token(aud="another-app")):
        resp = client.get(url("/admin/demo-shop/"), headers={"Authorization": f"Bearer {token}"})
        assert resp.status_code == 401
        assert resp.headers["X-Shopify-Retry-Invalid-Session-Request"] == "1"
    ok = client.get(url("/admin/demo-shop/"), headers={"Authorization": f"Bearer {session_token()}"})
    assert ok.status_code == 200
    assert_embedded_page(ok)


def test_a_token_signed_with_the_previous_secret_still_opens_the_admin(client, app, shopify_shop):
    app.config["CONNECTOR"].shopify_api_secret_previous = "the-secret-before-rotation"
    resp = client.get(url("/admin/demo-shop/", session_token(secret="the-secret-before-rotation")))
    assert resp.status_code == 200


# ============================================================================ tenant isolation

def test_a_token_for_shop_a_never_opens_shop_b(client, shopify_shop, other_shop):
    mine = session_token(SHOP_DOMAIN)
    # Shop B's pages with shop A's token, whatever the URL's shop says.
    assert client.get(url("/admin/other-shop/", mine)).status_code == 404
    assert client.get(url("/admin/other-shop/", mine, shop=OTHER_DOMAIN)).status_code == 404
    assert client.get(url("/admin/other-shop/settings/policy", mine, shop=OTHER_DOMAIN)).status_code == 404
    assert client.post(url("/admin/other-shop/returns/1/approve", shop=OTHER_DOMAIN),
                       data={"id_token": mine}).status_code == 404
    # Shop A's pages named with shop B's domain in the URL.
    assert client.get(url("/admin/demo-shop/", mine, shop=OTHER_DOMAIN)).status_code == 404
    # Shop B's own token opens shop B.
    assert client.get(url("/admin/other-shop/", session_token(OTHER_DOMAIN), shop=OTHER_DOMAIN)).status_code == 200


def test_shop_bs_return_ids_are_404_with_shop_as_token(client, shopify_shop, other_shop, shopify):
    ShopifyReturnsFake(shopify, other_shop)
    theirs = make_return(other_shop, approve=False)
    resp = client.get(url(f"/admin/demo-shop/returns/{theirs.id}", session_token()))
    assert resp.status_code == 404


def test_a_standalone_shop_has_no_embedded_admin(client, shop):
    resp = client.get(url("/admin/demo-shop/", session_token()))
    assert resp.status_code == 404


# ============================================================================ actions without CSRF cookie

def test_approve_by_session_token_without_csrf(client, shopify_shop, fake):
    ret = make_return(shopify_shop, approve=False)
    assert client.get_cookie("session") is None  # no cookie: like the iframe
    resp = client.post(url(f"/admin/demo-shop/returns/{ret.id}/approve"), data={"id_token": session_token()})
    assert resp.status_code == 302
    db.session.refresh(ret)
    assert ret.state != lc.REQUESTED and ret.state in (lc.APPROVED, lc.AWAITING_SHIPMENT)
    events = services.timeline(ret, public_only=False)
    assert any(e.actor == "merchant:shopify-user-42" for e in events)
    # The redirect carries the notice and a token, so the page opens without a bounce.
    params = query_of(resp.headers["Location"])
    assert params["shop"] == SHOP_DOMAIN and params["host"] == HOST and params["id_token"]
    page = client.get(resp.headers["Location"])
    assert page.status_code == 200 and f"Return {ret.rma} approved." in text(page)
    assert_embedded_page(page)


def test_reject_form_validates_without_csrf_token(client, shopify_shop, fake):
    ret = make_return(shopify_shop, approve=False)
    resp = client.post(url(f"/admin/demo-shop/returns/{ret.id}/reject"),
                       data={"id_token": session_token(), "note": "Worn outside, tags removed."})
    assert resp.status_code == 302
    db.session.refresh(ret)
    assert ret.state == lc.REJECTED


@pytest.mark.parametrize("case", ["no token", "expired token", "wrong secret"])
def test_posts_without_a_valid_token_are_refused(client, shopify_shop, fake, case):
    ret = make_return(shopify_shop, approve=False)
    data = {} if case == "no token" else {
        "id_token": session_token(issued=time.time() - 3600) if case == "expired token"
        else session_token(secret="not-the-secret")}
    resp = client.post(url(f"/admin/demo-shop/returns/{ret.id}/approve"), data=data)
    assert resp.status_code == 401
    db.session.refresh(ret)
    assert ret.state == lc.REQUESTED


def test_a_forged_post_without_markers_meets_the_csrf_check(client, shopify_shop, fake):
    ret = make_return(shopify_shop, approve=False)
    resp = client.post(f"/admin/demo-shop/returns/{ret.id}/approve", data={})
    assert resp.status_code == 400  # CSRF: no token, no session
    db.session.refresh(ret)
    assert ret.state == lc.REQUESTED


def test_standalone_admin_still_requires_csrf(client, shop):
    from tests.admin.conftest import Admin
    admin = Admin(client, shop.handle)
    assert admin.login().status_code == 302
    ret = make_return(shop, approve=False)
    assert client.post(admin.url(f"returns/{ret.id}/approve"), data={}).status_code == 400
    # A session token does not stand in for the CSRF token on a standalone shop.
    assert client.post(admin.url(f"returns/{ret.id}/approve"),
                       data={"id_token": session_token()}).status_code == 400
    db.session.refresh(ret)
    assert ret.state == lc.REQUESTED
    assert admin.post(f"returns/{ret.id}/approve", page=f"returns/{ret.id}").status_code == 302
    db.session.refresh(ret)
    assert ret.state != lc.REQUESTED


# ============================================================================ one-click refund

def _received(shop):
    ret = make_return(shop)
    services.mark_received(ret, "merchant:test")
    return ret


def test_refund_shows_the_amounts_before_and_the_result_after(client, shopify_shop, fake):
    ret = _received(shopify_shop)
    token = session_token()
    page = client.get(url(f"/admin/demo-shop/returns/{ret.id}", token))
    html = assert_embedded_page(page)
    plan = services.refund_preview(ret)
    refund_card = html.split('id="refund-title"', 1)[1].split("</section>", 1)[0]
    assert "Trail Jacket × 1" in refund_card and "129.00 EUR" in refund_card
    assert "Includes 20.60 EUR tax." in refund_card
    assert "Total refund" in refund_card and f"{plan.total} EUR" in refund_card
    assert "Refunded to: the original payment method" in refund_card
    assert f"Refund {plan.total} EUR" in refund_card
    assert 'name="csrf_token"' in refund_card  # harmless in the iframe; the token is the proof

    resp = client.post(url(f"/admin/demo-shop/returns/{ret.id}/refund"),
                       data={"id_token": token, "expected_total": str(plan.total)})
    assert resp.status_code == 302
    after = text(client.get(resp.headers["Location"]))
    assert f"Refunded {plan.total} EUR to the shopper." in after
    refund = db.session.scalar(select(Refund).where(Refund.return_id == ret.id))
    assert refund.state == "succeeded" and refund.platform_refund_id.startswith("gid://shopify/Refund/")
    assert "Shopify refund" in after and refund.platform_refund_id in after
    assert len(fake.refunds) == 1 and fake.refunds[0]["amount"] == str(plan.total)
    # A second click (a second tab) sends nothing more.
    again = client.post(url(f"/admin/demo-shop/returns/{ret.id}/refund"),
                        data={"id_token": session_token(), "expected_total": str(plan.total)})
    assert "was already made" in text(client.get(again.headers["Location"]))
    assert len(fake.refunds) == 1
    assert db.session.scalar(select(func.count()).select_from(Refund).where(Refund.return_id == ret.id)) == 1


def test_shopifys_refusal_is_shown_verbatim(client, shopify_shop, shopify, fake):
    ret = _received(shopify_shop)
    words = "Refund amount exceeds the maximum refundable amount for this transaction."
    shopify.on("RefundCreate", answer({"refundCreate": {"refund": None,
                                                        "userErrors": [user_error("transactions", words)]}}))
    resp = client.post(url(f"/admin/demo-shop/returns/{ret.id}/refund"), data={"id_token": session_token()})
    after = text(client.get(resp.headers["Location"]))
    assert words in after
    refund = db.session.scalar(select(Refund).where(Refund.return_id == ret.id))
    assert refund.state == "failed" and words in refund.error


def test_photo_urls_carry_the_pages_token(client, shopify_shop, fake):
    ret = make_return(shopify_shop, reason_code="damaged", approve=False)
    token = session_token()
    html = text(client.get(url(f"/admin/demo-shop/returns/{ret.id}", token)))
    srcs = re.findall(r'<img src="([^"]+)"', html)
    assert srcs and all("id_token=" in s and f"shop={SHOP_DOMAIN}" in s for s in srcs)


# ============================================================================ the order page's link

def test_order_link_opens_the_orders_only_return(client, shopify_shop, fake):
    ret = make_return(shopify_shop, approve=False)
    numeric = order_gid("1001").rsplit("/", 1)[1]
    resp = client.get(url("/shopify/order-returns", session_token(), id=numeric))
    assert resp.status_code == 302
    assert urlsplit(resp.headers["Location"]).path == f"/admin/demo-shop/returns/{ret.id}"
    assert client.get(resp.headers["Location"]).status_code == 200


def test_order_link_lists_several_returns_of_the_order(client, shopify_shop, fake):
    order = db.session.scalar(select(Order).where(Order.shop_id == shopify_shop.id, Order.number == "1001"))
    jacket, socks = order.lines[0], order.lines[1]
    first = make_return(shopify_shop, quantities={jacket.id: 1}, approve=False)
    second = make_return(shopify_shop, quantities={socks.id: 1}, approve=False)
    elsewhere = make_return(shopify_shop, number="1003", approve=False)  # another order's
    resp = client.get(url("/shopify/order-returns", session_token(), id=order.platform_id))
    location = resp.headers["Location"]
    assert urlsplit(location).path == "/admin/demo-shop/" and query_of(location)["order"] == str(order.id)
    html = text(client.get(location))
    assert first.rma in html and second.rma in html and elsewhere.rma not in html
    assert "Returns of order #1001" in html
    # The filter stays on while paging and switching tabs.
    assert f"order={order.id}" in html.split('class="tabs"', 1)[1].split("</nav>", 1)[0]


def test_order_link_for_an_order_without_returns(client, shopify_shop, fake):
    resp = client.get(url("/shopify/order-returns", session_token(), id="999999"))
    page = client.get(resp.headers["Location"])
    assert page.status_code == 200 and "has no returns in Returns Connector yet" in text(page)


def test_order_link_needs_a_session_token(client, shopify_shop):
    resp = client.get(url("/shopify/order-returns", id="5000001001"))
    assert urlsplit(resp.headers["Location"]).path == "/shopify/session-token"
