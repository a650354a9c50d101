"""The shopper portal through Shopify's app proxy (connector/platforms/shopify/proxy*.py).

`Storefront` plays Shopify's part: it takes a storefront URL (/apps/returns/...), adds Shopify's
parameters and the signature exactly as documented (tests/fixtures/shopify/vectors.json), and
forwards it to /shopify/proxy/... with no cookies. Every answer it gets is checked for what must
always hold: no Set-Cookie; pages are application/liquid without <html>/<head>; every link, form
action and redirect points to the storefront path (/apps/returns/...), every asset to BASE_URL.
"""
from __future__ import annotations

import hashlib
import hmac
import html
import json
import re
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from werkzeug.datastructures import MultiDict

from connector import db
from connector.platforms.shopify import proxy_session
from connector.platforms.shopify.proxy_assets import scope_css, scoped_stylesheet
from connector.platforms.shopify.proxy_gate import ProxyRequest
from connector.platforms.shopify.proxy_page import neutralise_liquid
from connector.returns import lifecycle as lc
from connector.returns.models import Order, Return
from tests.portal.conftest import _fresh_g, address_form, lines_of, reason_id
from tests.shopify.conftest import API_SECRET, SHOP_DOMAIN

VECTORS = json.loads((Path(__file__).parents[1] / "fixtures" / "shopify" / "vectors.json").read_text())
BASE_URL = "https://returns.example.com"
PREFIX = "/apps/returns"


def sign(pairs: list[tuple[str, str]], secret: str = API_SECRET) -> str:
    """Shopify's app proxy signature (vectors.json "app_proxy_signature")."""
    grouped: dict[str, list[str]] = {}
    for key, value in pairs:
        grouped.setdefault(key, []).append(value)
    message = "".join(f"{k}={','.join(v)}" for k, v in sorted(grouped.items()))
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


class Page(HTMLParser):
    """The URLs and forms of a proxied page."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.urls: list[str] = []
        self.forms: list[dict] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for name in ("href", "src", "action"):
            if attrs.get(name) is not None:
                self.urls.append(attrs[name])
        if tag == "form":
            self.forms.append({"action": attrs.get("action"), "method": (attrs.get("method") or "get").lower(),
                               "fields": []})
        elif tag == "input" and self.forms and attrs.get("type") == "hidden":
            self.forms[-1]["fields"].append((attrs.get("name"), attrs.get("value") or ""))

    def form(self, action_contains: str | None = None) -> dict:
        """The first POST form whose action contains `action_contains`; None: the one without an
        action (it posts to the page's own address)."""
        for form in self.forms:
            if form["method"] != "post":
                continue
            if (form["action"] is None) if action_contains is None else action_contains in (form["action"] or ""):
                return form
        raise AssertionError(f"no POST form with action containing {action_contains!r}")


class Storefront:
    """A shopper on the shop's storefront, with Shopify's app proxy in between."""

    def __init__(self, client, domain: str = SHOP_DOMAIN, customer_id: str = "", prefix: str = PREFIX,
                 secret: str = API_SECRET, forwarded_for: str = "203.0.113.7"):
        self.client, self.domain, self.customer_id, self.prefix = client, domain, customer_id, prefix
        self.secret, self.forwarded_for = secret, forwarded_for
        self.url = f"{prefix}/"  # where the browser is
        self.page: Page | None = None

    def forward(self, storefront_url: str, extra: list[tuple[str, str]] | None = None) -> str:
        """The URL Shopify calls on the app for `storefront_url`."""
        parts = urlsplit(storefront_url)
        assert parts.path.startswith(self.prefix), f"{storefront_url} is not a storefront path"
        pairs = parse_qsl(parts.query, keep_blank_values=True) + [
            ("shop", self.domain), ("logged_in_customer_id", self.customer_id), ("path_prefix", self.prefix),
            ("timestamp", str(int(time.time())))] + (extra or [])
        pairs.append(("signature", sign(pairs, self.secret)))
        return f"/shopify/proxy{parts.path[len(self.prefix):]}?{urlencode(pairs)}"

    def request(self, method: str, storefront_url: str, data=None, **kw):
        _fresh_g()
        headers = {"X-Forwarded-For": self.forwarded_for, **kw.pop("headers", {})}
        resp = self.client.open(self.forward(storefront_url), method=method, data=data, headers=headers, **kw)
        self.check(resp)
        if resp.status_code < 300 or resp.status_code >= 400:
            self.url = storefront_url
            if resp.mimetype == "application/liquid":
                self.page = Page(resp.get_data(as_text=True))
        return resp

    def get(self, storefront_url: str | None = None, **kw):
        return self.request("GET", storefront_url or self.url, **kw)

    def submit(self, action_contains: str | None = None, data=None, *, csrf: bool = True, **kw):
        """Post a form of the current page as a browser does: its hidden fields, `data`, to its action
        (or, without one, to the page's own address)."""
        form = self.page.form(action_contains)
        fields = MultiDict([(k, v) for k, v in form["fields"] if csrf or k != "csrf_token"])
        for key, value in (data.items(multi=True) if isinstance(data, MultiDict) else
                           (data if isinstance(data, list) else list((data or {}).items()))):
            fields.add(key, value)
        return self.request("POST", form["action"] or self.url, data=fields, **kw)

    def follow(self, resp):
        assert resp.status_code in (302, 303), resp.get_data(as_text=True)
        return self.get(resp.headers["Location"])

    def token(self) -> str:
        return dict(parse_qsl(urlsplit(next(u for u in self.page.urls if "ps=" in u)).query))["ps"]

    # --------------------------------------------------------------------------- invariants

    def check(self, resp) -> None:
        assert "Set-Cookie" not in resp.headers, "a proxied answer set a cookie"
        assert resp.status_code != 401, resp.get_data(as_text=True)
        if "Location" in resp.headers:
            location = resp.headers["Location"]
            assert location.startswith(self.prefix + "/"), f"redirect to {location}"
            assert "signature=" not in location and "/portal/" not in location
        if resp.mimetype == "text/html" and not 300 <= resp.status_code < 400:
            raise AssertionError("a proxied page was sent as text/html, not application/liquid")
        if resp.mimetype != "application/liquid":
            return
        text = resp.get_data(as_text=True)
        assert "<html" not in text and "<head" not in text and "<body" not in text
        assert "{{" not in text and "{%" not in text
        assert "/portal/" + "demo" not in text and "/shopify/proxy" not in text
        for url in Page(text).urls:
            if url.startswith("#"):
                continue
            if url.startswith(BASE_URL + "/"):
                assert "ps=" not in url, f"the session token went to an asset URL: {url}"
                continue
            if url.startswith("https://") and "." in urlsplit(url).netloc and not url.startswith(BASE_URL):
                continue  # an outside link (a carrier's tracking page)
            assert url.startswith(self.prefix + "/"), f"{url} does not point to the storefront path"
            query = dict(parse_qsl(urlsplit(url).query))
            assert query.get("ps"), f"{url} carries no session"
            assert not {"signature", "shop", "timestamp", "path_prefix"} & set(query), url


def proxied_page(resp) -> str:
    assert resp.status_code == 200 and resp.mimetype == "application/liquid", resp.status_code
    return resp.get_data(as_text=True)


@pytest.fixture(autouse=True)
def shopify_returns(shopify, shopify_shop):
    """Shopify's Admin API for what a confirmed return sets off (its native return)."""
    from tests.shopify.returns_fake import ShopifyReturnsFake
    return ShopifyReturnsFake(shopify, shopify_shop)


@pytest.fixture
def storefront(app, shopify_shop):
    return Storefront(app.test_client(use_cookies=False))


@pytest.fixture
def order_1001(shopify_shop) -> Order:
    return db.session.query(Order).filter_by(shop_id=shopify_shop.id, number="1001").one()


def _second_shop(domain: str = "other-shop.myshopify.com"):
    from tests.shopify.factories import make_shopify_shop
    return make_shopify_shop(handle="other-shop", domain=domain)


# ================================================================================ verification

def test_docs_vector_passes_through_the_real_endpoint(app, client, shopify_shop, monkeypatch):
    """Shopify's documented example (secret "hush", anonymous customer) opens the portal."""
    vector = VECTORS["app_proxy_signature"]["vectors"][0]
    query = vector["query_string"]
    shopify_shop.domain = dict(parse_qsl(query))["shop"]
    db.session.commit()
    monkeypatch.setattr(app.config["CONNECTOR"], "shopify_api_secret", vector["secret"])
    gate = app.wsgi_app
    monkeypatch.setattr(gate, "clock", lambda: 1317327555 + 30)

    ok = client.get(f"/shopify/proxy/?{query}")
    assert ok.status_code == 200 and ok.mimetype == "application/liquid"
    assert "Start a return" in ok.get_data(as_text=True)

    flipped = query[:-1] + ("0" if query[-1] != "0" else "1")
    assert client.get(f"/shopify/proxy/?{flipped}").status_code == 401
    monkeypatch.setattr(gate, "clock", lambda: 1317327555 + 91)
    assert client.get(f"/shopify/proxy/?{query}").status_code == 401


def test_unsigned_tampered_stale_and_foreign_requests_get_a_short_401(app, storefront, shopify_shop):
    client = storefront.client
    good = storefront.forward(f"{PREFIX}/")
    assert client.get(good).status_code == 200

    def refused(url, method="GET"):
        resp = client.open(url, method=method)
        assert resp.status_code == 401 and resp.mimetype == "text/plain", url
        assert len(resp.data) < 100 and "Set-Cookie" not in resp.headers
        return resp

    refused("/shopify/proxy/")
    refused("/shopify/proxy/orders")
    path, query = good.split("?", 1)
    pairs = parse_qsl(query, keep_blank_values=True)
    signature = dict(pairs)["signature"]
    one_byte = signature[:10] + ("a" if signature[10] != "a" else "b") + signature[11:]
    refused(path + "?" + urlencode([(k, one_byte if k == "signature" else v) for k, v in pairs]))
    refused(path + "?" + urlencode([(k, "/apps/other" if k == "path_prefix" else v) for k, v in pairs]))
    refused(path + "?" + urlencode([(k, v) for k, v in pairs if k != "signature"]))
    refused(Storefront(client, secret="wrong-secret").forward(f"{PREFIX}/"))
    refused(Storefront(client, domain="unknown-shop.myshopify.com").forward(f"{PREFIX}/"))
    refused(Storefront(client).forward(f"{PREFIX}/", extra=[("shop", SHOP_DOMAIN)]))  # repeated
    refused(path + "?" + urlencode([(k, one_byte if k == "signature" else v) for k, v in pairs]), method="POST")

    stale = [(k, str(int(time.time()) - 91) if k == "timestamp" else v) for k, v in pairs if k != "signature"]
    refused(path + "?" + urlencode(stale + [("signature", sign(stale))]))
    future = [(k, str(int(time.time()) + 300) if k == "timestamp" else v) for k, v in pairs if k != "signature"]
    refused(path + "?" + urlencode(future + [("signature", sign(future))]))

    # A shop that left (inactive), or that is not a Shopify shop, is as unknown as a stranger.
    shopify_shop.active = False
    db.session.commit()
    refused(storefront.forward(f"{PREFIX}/"))
    shopify_shop.active, shopify_shop.platform = True, "standalone"
    db.session.commit()
    refused(storefront.forward(f"{PREFIX}/"))


def test_the_previous_secret_still_verifies_after_a_rotation(app, storefront):
    config = app.config["CONNECTOR"]
    config.shopify_api_secret, config.shopify_api_secret_previous = "new-secret", API_SECRET
    assert storefront.get(f"{PREFIX}/").status_code == 200


def test_the_handle_comes_from_the_signed_shop_never_from_the_url(storefront, shopify_shop):
    other = _second_shop()
    # /apps/returns/<another handle>/... is not a way into another shop's portal.
    resp = storefront.get(f"{PREFIX}/{other.handle}/")
    assert resp.status_code == 404 and resp.mimetype == "application/liquid"


# ================================================================================ the anonymous shopper

def test_an_anonymous_shopper_builds_a_whole_return_through_the_proxy(storefront, shopify_shop, order_1001,
                                                                      outbox, shopify_returns):
    page = proxied_page(storefront.get(f"{PREFIX}/"))
    assert "Start a return" in page and 'class="returns-portal' in page
    assert f'href="{BASE_URL}/shopify/storefront/portal.css?v=' in page
    assert f'src="{BASE_URL}/portal/static/portal.js"' in page

    resp = storefront.submit("/apps/returns/?", {"order_number": "1001", "contact": "erika@example.com"})
    assert resp.headers["Location"].startswith(f"{PREFIX}/orders/{order_1001.id}/items?ps=")
    page = proxied_page(storefront.follow(resp))
    assert "Trail Jacket" in page and "Step 2 of 5" in page

    jacket = lines_of(order_1001)["Trail Jacket"]
    resp = storefront.submit(None, {f"line-{jacket}-quantity": "1",
                                  f"line-{jacket}-reason": str(reason_id(shopify_shop, "too_small"))})
    assert resp.headers["Location"].startswith(f"{PREFIX}/orders/{order_1001.id}/method?ps=")
    storefront.follow(resp)
    resp = storefront.submit(None, {"method": "pickup"})
    page = proxied_page(storefront.follow(resp))
    codes = re.findall(r'name="checklist" id="checklist-([a-z_]+)"', page)
    resp = storefront.submit(None, address_form(order_1001) + [("checklist", c) for c in codes])
    page = proxied_page(storefront.follow(resp))
    assert "Step 5 of 5" in page and "Pickup at your address" in page

    resp = storefront.submit("/confirm")
    assert resp.headers["Location"].startswith(f"{PREFIX}/returns/R-1001/confirmed?ps=")
    page = proxied_page(storefront.follow(resp))
    assert "Your return R-1001 is registered" in page
    assert f'href="{PREFIX}/returns/R-1001/label.pdf?ps=' in page

    ret = db.session.query(Return).filter_by(shop_id=shopify_shop.id).one()
    db.session.refresh(ret)
    assert ret.state == lc.AWAITING_PICKUP and ret.rma == "R-1001"
    assert ret.platform_id in shopify_returns.returns  # and it is a return in Shopify's admin too

    # The label and the status page, through the proxy too; a PDF stays a PDF.
    label = storefront.get(next(u for u in storefront.page.urls if "/label.pdf" in u))
    assert label.status_code == 200 and label.mimetype == "application/pdf" and label.data.startswith(b"%PDF")
    assert label.headers["Content-Disposition"].startswith("attachment")
    orders = proxied_page(storefront.get(next(u for u in storefront.page.urls if "/orders?" in u)))
    status_url = next(u for u in storefront.page.urls if "/returns/R-1001?" in u)
    status = proxied_page(storefront.get(status_url))
    assert "R-1001" in orders and "Pickup booked" in status and "Cancel this return" in status

    # Mails never carry the proxy's session token nor a storefront session link.
    for mail in outbox():
        body = mail.get_body(preferencelist=("plain",)).get_content()
        assert "ps=" not in body and storefront.token() not in body


def test_the_dropoff_qr_code_keeps_its_content_type(storefront, shopify_shop, order_1001):
    storefront.get(f"{PREFIX}/")
    storefront.follow(storefront.submit("/apps/returns/?", {"order_number": "1001", "contact": "10115"}))
    jacket = lines_of(order_1001)["Trail Jacket"]
    storefront.follow(storefront.submit(None, {f"line-{jacket}-quantity": "1",
                                             f"line-{jacket}-reason": str(reason_id(shopify_shop, "too_small"))}))
    page = proxied_page(storefront.follow(storefront.submit(None, {"method": "dropoff"})))
    codes = re.findall(r'name="checklist" id="checklist-([a-z_]+)"', page)
    storefront.follow(storefront.submit(None, address_form(order_1001) + [("checklist", c) for c in codes]))
    storefront.follow(storefront.submit("/confirm"))
    qr = storefront.get(next(u for u in storefront.page.urls if "/qr.png" in u))
    assert qr.status_code == 200 and qr.mimetype == "image/png"


def test_the_withdrawal_works_through_the_proxy(storefront, shopify_shop, order_1001, outbox):
    page = proxied_page(storefront.get(f"{PREFIX}/"))
    assert "Withdraw from contract here" in page
    withdraw = next(u for u in storefront.page.urls if u.startswith(f"{PREFIX}/withdraw?"))
    assert "<form" in proxied_page(storefront.get(withdraw))
    resp = storefront.submit(None, {"name": "Erika Mustermann", "order_number": "#1001", "email": "erika@example.com"})
    assert resp.headers["Location"].startswith(f"{PREFIX}/withdraw/confirm?ps=")
    page = proxied_page(storefront.follow(resp))
    assert "Confirm your withdrawal" in page
    resp = storefront.submit(None)
    assert re.match(rf"{PREFIX}/withdraw/R-\d+\?ps=", resp.headers["Location"])
    page = proxied_page(storefront.follow(resp))
    assert "We have received your withdrawal" in page
    ret = db.session.query(Return).filter_by(shop_id=shopify_shop.id).one()
    db.session.refresh(ret)
    assert ret.is_withdrawal and ret.state != lc.DRAFT
    status = proxied_page(storefront.get(next(u for u in storefront.page.urls if f"/returns/{ret.rma}?" in u)))
    assert ret.rma in status


def test_a_form_opened_without_a_session_still_posts_with_one(storefront, shopify_shop):
    """A bookmarked /apps/returns/withdraw has no session yet; its form (no action: it posts to
    its own address, which carries none) sends the session in the hidden field."""
    proxied_page(storefront.get(f"{PREFIX}/withdraw"))
    form = storefront.page.form(None)
    assert form["action"] is None and dict(form["fields"]).get("ps")
    resp = storefront.submit(None, {"name": "Erika", "order_number": "1001", "email": "erika@example.com"})
    assert resp.status_code == 302 and "/withdraw/confirm?" in resp.headers["Location"]


def test_the_email_link_goes_to_the_direct_portal_without_a_session(storefront, shopify_shop, outbox):
    storefront.get(f"{PREFIX}/")
    resp = storefront.submit("/link?", {"email": "erika@example.com"})
    assert resp.headers["Location"].startswith(f"{PREFIX}/link-sent?ps=")
    [mail] = outbox()
    body = mail.get_body(preferencelist=("plain",)).get_content()
    assert f"{BASE_URL}/portal/demo-shop/link?t=" in body and "ps=" not in body


# ================================================================================ no cookies, CSRF

def test_cookies_are_neither_read_nor_set(app, shopify_shop, order_1001):
    """A portal session cookie from the direct portal means nothing through the proxy."""
    client = app.test_client()  # keeps cookies, as a browser on BASE_URL would
    _fresh_g()
    client.get("/portal/demo-shop/")
    from tests.portal.conftest import Shopper
    direct = Shopper(client)
    assert direct.sign_in().status_code == 302
    _fresh_g()
    assert client.get("/portal/demo-shop/orders").status_code == 200  # signed in, by cookie
    storefront = Storefront(client)
    resp = storefront.get(f"{PREFIX}/orders")
    assert resp.status_code == 302 and resp.headers["Location"].startswith(f"{PREFIX}/?ps=")


def test_csrf_is_enforced_through_the_proxy(storefront, shopify_shop):
    storefront.get(f"{PREFIX}/")
    login = {"order_number": "1001", "contact": "erika@example.com"}
    assert storefront.submit("/apps/returns/?", login, csrf=False).status_code == 400
    storefront.get(f"{PREFIX}/")
    assert storefront.submit("/apps/returns/?", {**login, "csrf_token": "forged"}, csrf=False).status_code == 400
    storefront.get(f"{PREFIX}/")

    # Another shopper's CSRF token does not fit this shopper's session, nor the other way round.
    other = Storefront(storefront.client)
    other.get(f"{PREFIX}/")
    theirs = dict(other.page.form("/apps/returns/?")["fields"])["csrf_token"]
    assert storefront.submit("/apps/returns/?", {**login, "csrf_token": theirs}, csrf=False).status_code == 400

    # A post without any session (no ps in the form or the URL) has no CSRF token to match.
    bare = storefront.request("POST", f"{PREFIX}/", data={**login, "csrf_token": theirs})
    assert bare.status_code == 400
    storefront.get(f"{PREFIX}/")
    assert storefront.submit("/apps/returns/?", login).status_code == 302


def test_https_posts_pass_although_the_referer_is_the_storefront(app, shopify_shop):
    """Flask-WTF checks Referer against the host on HTTPS; the storefront is another host."""
    storefront = Storefront(app.test_client(use_cookies=False))
    storefront.forward = (lambda original: lambda url, extra=None: "https://returns.example.com"
                          + original(url, extra))(storefront.forward)
    referer = {"Referer": f"https://{SHOP_DOMAIN}{PREFIX}/"}
    login = {"order_number": "1001", "contact": "erika@example.com"}
    storefront.get(f"{PREFIX}/")
    forged = storefront.submit("/apps/returns/?", {**login, "csrf_token": "forged"}, csrf=False, headers=referer)
    assert forged.status_code == 400  # the token is still checked
    storefront.get(f"{PREFIX}/")
    assert storefront.submit("/apps/returns/?", login, headers=referer).status_code == 302


# ================================================================================ the signed-in customer

def _customer_orders(shop, numbers: dict[str, str]) -> dict[str, Order]:
    found = {}
    for number, customer in numbers.items():
        order = db.session.query(Order).filter_by(shop_id=shop.id, number=number).one()
        order.customer_platform_id = f"gid://shopify/Customer/{customer}" if customer else None
        found[number] = order
    db.session.commit()
    return found


def test_a_signed_in_customer_lands_on_their_orders_and_only_theirs(app, shopify_shop):
    orders = _customer_orders(shopify_shop, {"1001": "777", "1003": "777", "1002": "888"})
    other_shop = _second_shop()
    theirs_elsewhere = db.session.query(Order).filter_by(shop_id=other_shop.id, number="1002").one()
    theirs_elsewhere.customer_platform_id = "gid://shopify/Customer/777"
    db.session.commit()

    customer = Storefront(app.test_client(use_cookies=False), customer_id="777")
    resp = customer.get(f"{PREFIX}/")
    assert resp.status_code == 302 and resp.headers["Location"].startswith(f"{PREFIX}/orders?ps=")
    page = proxied_page(customer.follow(resp))
    assert "Order #1001" in page and "Order #1003" in page and "Order #1002" not in page
    assert "Sign out" not in page  # signed in to the shop, not to us

    page = proxied_page(customer.get(f"{PREFIX}/orders/{orders['1001'].id}/items?ps={customer.token()}"))
    assert "Trail Jacket" in page
    # Another customer's order, and another shop's order of "the same" customer number: 404.
    for order in (orders["1002"], theirs_elsewhere):
        resp = customer.get(f"{PREFIX}/orders/{order.id}/items?ps={customer.token()}")
        assert resp.status_code == 404 and resp.mimetype == "application/liquid"
        assert "Page not found" in resp.get_data(as_text=True)

    # On the other shop's storefront the same number is another customer account: only that shop's.
    there = Storefront(app.test_client(use_cookies=False), domain="other-shop.myshopify.com", customer_id="777")
    page = proxied_page(there.follow(there.get(f"{PREFIX}/")))
    assert "Order #1002" in page and "Order #1001" not in page


def test_a_customer_without_orders_here_gets_the_sign_in(app, shopify_shop):
    customer = Storefront(app.test_client(use_cookies=False), customer_id="999")
    page = proxied_page(customer.get(f"{PREFIX}/"))
    assert "Find your order" in page


def test_a_signed_in_customer_builds_a_return(app, shopify_shop):
    orders = _customer_orders(shopify_shop, {"1001": "777"})
    customer = Storefront(app.test_client(use_cookies=False), customer_id="777")
    customer.follow(customer.get(f"{PREFIX}/"))
    customer.get(next(u for u in customer.page.urls if f"/orders/{orders['1001'].id}/items?" in u))
    jacket = lines_of(orders["1001"])["Trail Jacket"]
    resp = customer.submit(None, {f"line-{jacket}-quantity": "1",
                                f"line-{jacket}-reason": str(reason_id(shopify_shop, "too_small"))})
    assert resp.headers["Location"].startswith(f"{PREFIX}/orders/{orders['1001'].id}/method?ps=")
    [draft] = db.session.query(Return).filter_by(shop_id=shopify_shop.id).all()
    assert draft.email == "erika@example.com"


# ================================================================================ the session token

def test_a_session_token_is_useless_on_another_shop_or_for_another_customer(app, storefront, shopify_shop,
                                                                           order_1001):
    _second_shop()
    storefront.get(f"{PREFIX}/")
    storefront.follow(storefront.submit("/apps/returns/?", {"order_number": "1001", "contact": "erika@example.com"}))
    token = storefront.token()
    assert storefront.get(f"{PREFIX}/orders?ps={token}").status_code == 200  # it works here

    shop_b = Storefront(app.test_client(use_cookies=False), domain="other-shop.myshopify.com")
    resp = shop_b.get(f"{PREFIX}/orders?ps={token}")
    assert resp.status_code == 302 and resp.headers["Location"].startswith(f"{PREFIX}/?ps=")
    assert shop_b.get(f"{PREFIX}/orders/{order_1001.id}/items?ps={token}").status_code == 404

    # Bound to "anonymous": a signed-in customer's request does not pick it up.
    customer = Storefront(storefront.client, customer_id="777")
    assert customer.get(f"{PREFIX}/orders?ps={token}").status_code == 302


def test_tokens_expire_and_cannot_be_forged(app):
    proxy = ProxyRequest(shop_id=1, handle="demo-shop", domain=SHOP_DOMAIN, path_prefix=PREFIX,
                         customer_id=None, marker="m")
    key = app.secret_key
    now = time.time()
    token = proxy_session.seal(key, proxy, {"portal": {"1": {"orders": [5]}}}, started=int(now), now=now)
    assert proxy_session.unseal(key, proxy, token, now=now + 3600)["portal"] == {"1": {"orders": [5]}}
    assert proxy_session.unseal(key, proxy, token, now=now + proxy_session.MAX_AGE + 61) is None
    old = proxy_session.seal(key, proxy, {"x": 1}, started=int(now) - proxy_session.MAX_LIFETIME - 5, now=now)
    assert proxy_session.unseal(key, proxy, old, now=now) is None
    assert proxy_session.unseal("another-secret-key", proxy, token, now=now) is None
    tampered = token[:40] + ("A" if token[40] != "A" else "B") + token[41:]
    assert proxy_session.unseal(key, proxy, tampered, now=now) is None
    assert proxy_session.unseal(key, proxy, "x" * (proxy_session.MAX_TOKEN + 1), now=now) is None
    # Sealed, not only signed: the shopper's data cannot be read from the URL.
    sealed = proxy_session.seal(key, proxy, {"portal": {"1": {"email": "erika@example.com"}}}, int(now))
    assert "erika" not in sealed and b"erika" not in __import__("base64").urlsafe_b64decode(sealed + "==")


# ================================================================================ inside the theme

def test_shopper_text_is_never_run_as_liquid(storefront, shopify_shop, order_1001):
    from liquid import Template

    evil = "{{ shop.name }} {% endraw %} {%- comment -%} {{{ x }}} {{%"
    storefront.get(f"{PREFIX}/")
    storefront.follow(storefront.submit("/apps/returns/?", {"order_number": "1001", "contact": "erika@example.com"}))
    jacket = lines_of(order_1001)["Trail Jacket"]
    # "Arrived damaged" needs a photo: the form comes back with the error and the comment kept.
    resp = storefront.submit(None, {f"line-{jacket}-quantity": "1",
                                    f"line-{jacket}-reason": str(reason_id(shopify_shop, "damaged")),
                                    f"line-{jacket}-comment": evil})
    assert resp.status_code == 422 and resp.mimetype == "application/liquid"
    body = resp.get_data(as_text=True)
    assert "{{" not in body and "{%" not in body
    assert "{&#123; shop.name }}" in body and "{&#37; endraw %}" in body
    # What Shopify would do with it: render it as Liquid (python-liquid, Shopify's dialect).
    rendered = Template(body).render(shop={"name": "HACKED"})
    assert "HACKED" not in rendered
    assert html.unescape(rendered).count(evil) == 1  # the textarea shows exactly what was typed

    # And once stored, on the summary.
    storefront.follow(storefront.submit(None, {f"line-{jacket}-quantity": "1",
                                               f"line-{jacket}-reason": str(reason_id(shopify_shop, "other")),
                                               f"line-{jacket}-comment": evil}))
    page = proxied_page(storefront.follow(storefront.submit(None, {"method": "pickup"})))
    codes = re.findall(r'name="checklist" id="checklist-([a-z_]+)"', page)
    page = proxied_page(storefront.follow(storefront.submit(
        None, address_form(order_1001) + [("checklist", c) for c in codes])))
    assert "Step 5 of 5" in page and "{&#123; shop.name }}" in page
    rendered = Template(page).render(shop={"name": "HACKED"})
    assert "HACKED" not in rendered and evil in html.unescape(rendered)


def test_neutralise_liquid_keeps_what_the_browser_shows():
    for text in ("{{ a }}", "{% raw %}", "{{{", "{{{{", "{{%", "{%{", "a { b } {", "}}%}"):
        out = neutralise_liquid(text)
        assert "{{" not in out and "{%" not in out and html.unescape(out) == text


def test_the_path_prefix_the_merchant_chose_is_used_everywhere(app, shopify_shop):
    storefront = Storefront(app.test_client(use_cookies=False), prefix="/apps/retouren")
    page = proxied_page(storefront.get("/apps/retouren/"))
    assert 'action="/apps/retouren/?ps=' in page and "/apps/returns" not in page


def test_other_answers_keep_their_headers_and_direct_portal_is_unchanged(client, storefront, shopify_shop):
    resp = storefront.get(f"{PREFIX}/")
    assert resp.headers["Cache-Control"] == "no-store"
    assert "Content-Security-Policy" not in resp.headers  # the page joins the storefront's own
    _fresh_g()
    direct = client.get("/portal/demo-shop/")
    assert direct.mimetype == "text/html" and "<html" in direct.get_data(as_text=True)
    assert "script-src 'self'" in direct.headers["Content-Security-Policy"]
    assert "Set-Cookie" in direct.headers and 'href="/portal/static/portal.css"' in direct.get_data(as_text=True)


def test_each_shopper_is_rate_limited_by_their_own_address(app, storefront, shopify_shop, monkeypatch):
    """Every proxied request comes from Shopify's servers; the limit counts the shopper behind it."""
    from connector.portal import views
    monkeypatch.setattr(views, "LOOKUPS_PER_ADDRESS", (2, views.LOOKUPS_PER_ADDRESS[1]))
    wrong = {"order_number": "1001", "contact": "nobody@example.com"}
    storefront.get(f"{PREFIX}/")
    assert storefront.submit("/apps/returns/?", wrong).status_code == 422
    assert storefront.submit("/apps/returns/?", wrong).status_code == 422
    assert storefront.submit("/apps/returns/?", wrong).status_code == 429
    neighbour = Storefront(storefront.client, forwarded_for="198.51.100.23")
    neighbour.get(f"{PREFIX}/")
    assert neighbour.submit("/apps/returns/?", wrong).status_code == 422


def test_the_scoped_stylesheet_keeps_every_rule_inside_the_portal(client):
    resp = client.get("/shopify/storefront/portal.css")
    assert resp.status_code == 200 and resp.mimetype == "text/css"
    assert "max-age" in resp.headers["Cache-Control"] and resp.headers.get("ETag")
    text, version = scoped_stylesheet()
    assert resp.get_data(as_text=True) == text and len(version) == 16
    assert not re.search(r"\d(?:\.\d+)?rem\b", text)

    from connector.platforms.shopify import proxy_assets
    preludes = []

    def walk(css):
        for prelude, body in proxy_assets._rules(css):
            if body is None or prelude.startswith(("@keyframes", "@font-face", "@property")):
                continue
            if prelude.startswith("@"):
                walk(body)
            else:
                preludes.extend(proxy_assets._split_selectors(prelude))
    walk(proxy_assets._strip_comments(text))
    assert len(preludes) > 150
    outside = [s for s in preludes if not (s == ".returns-portal" or s.startswith(".returns-portal ")
                                           or s.startswith(".js .returns-portal"))]
    assert outside == []


def test_scope_css_handles_the_cases_portal_css_uses():
    css = """/* c { } */ :root { --x: 1rem; } body, h1 > a:hover { margin: .5rem 0 } .js .a[hidden] { display: none }
    @media (min-width: 40em) { .b, .c::before { content: "{ }, x"; padding: 2rem; } } @import url("x.css");"""
    out = scope_css(css, ".s")
    assert ".s { --x: 16px; }" in out
    assert ".s, .s h1 > a:hover { margin: 8px 0 }" in out
    assert ".js .s .a[hidden] { display: none }" in out
    assert '@media (min-width: 40em) {\n.s .b, .s .c::before { content: "{ }, x"; padding: 32px; }\n}' in out
    assert '@import url("x.css");' in out and "/*" not in out


# ================================================================================ orders know their customer

def test_upsert_order_keeps_the_customer_account(app, shopify_shop):
    from datetime import datetime, timezone
    from decimal import Decimal

    from connector.returns import services
    from connector.returns.ports import OrderData, OrderLineData

    data = OrderData(platform_id="gid://shopify/Order/42", number="#2001", email="Kim@Example.com", currency="eur",
                     placed_at=datetime.now(timezone.utc), customer_id="gid://shopify/Customer/4242",
                     lines=(OrderLineData(platform_id="gid://shopify/LineItem/1", title="Tent", quantity=1,
                                          unit_price=Decimal("100.00")),))
    order = services.upsert_order(shopify_shop, data)
    assert order.customer_platform_id == "gid://shopify/Customer/4242"
    assert services.orders_for_customer(shopify_shop, "gid://shopify/Customer/4242") == [order]
    other = _second_shop()
    assert services.orders_for_customer(other, "gid://shopify/Customer/4242") == []
