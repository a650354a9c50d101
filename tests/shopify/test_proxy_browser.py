"""The proxied portal in headless Chromium, inside a (fake) Shopify theme.

A Playwright route plays the storefront: every request to https://demo-shop.myshopify.com/apps/returns/...
is signed and forwarded to the app's /shopify/proxy/... (served on 127.0.0.1) as Shopify does, with
no cookies; an `application/liquid` answer is rendered with python-liquid and put into a theme
layout; every other answer (redirects, PDFs) passes as it is. Requests to BASE_URL
(https://returns.example.com: the stylesheet, portal.js) go to the app directly.

The theme is deliberately hostile, like Dawn: a 62.5% root font size, serif type, its own `.button`
(with a decorated ::after), a floating `.field__label`, red `.card`s, upper-case headings. The
portal must look like itself anyway, and the theme around it must stay as it was.

Screenshots: tests/browser/output/shopify-proxy-<nn>-<step>.png.
"""
from __future__ import annotations

import re
import threading
import time
from importlib.util import find_spec
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest

from tests.shopify.chromium import CHROMIUM, LAUNCH_ARGS, with_playwright
from tests.shopify.conftest import SHOP_DOMAIN
from tests.shopify.test_proxy import PREFIX, sign

OUTPUT = Path(__file__).parents[1] / "browser" / "output"
STOREFRONT = f"https://{SHOP_DOMAIN}"
BASE_URL = "https://returns.example.com"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium not installed: apt-get install -y chromium"),
    pytest.mark.skipif(find_spec("playwright") is None, reason="Playwright for Python is not installed"),
]

THEME = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Returns – Demo Outdoor</title>
<style>
  html { font-size: 62.5%; }
  body { margin: 0; font-family: Georgia, "Times New Roman", serif; font-size: 1.6rem; letter-spacing: .06rem;
         color: #121212; background: #fff; }
  .theme-header { display: flex; flex-wrap: wrap; gap: 1rem 2rem; justify-content: space-between; padding: 2rem;
                  border-bottom: 1px solid #ddd; }
  .theme-header a { color: #121212; margin-right: 2rem; }
  @media (min-width: 750px) { .theme-header { padding: 2rem 5rem; } }
  .theme-logo { font-size: 2.4rem; font-weight: bold; letter-spacing: .3rem; }
  main { max-width: 120rem; margin: 0 auto; padding: 2rem 1.5rem 6rem; }
  .theme-footer { background: #121212; color: #fff; padding: 4rem 5rem; }
  h1, h2 { text-transform: uppercase; font-size: 4rem; }
  a { color: #c00; }
  .button { position: relative; background: #121212; color: #fff; min-width: 12rem; padding: 0 3rem;
            font-size: 1.5rem; letter-spacing: .1rem; border-radius: 0; }
  .button::after { content: ""; position: absolute; inset: 0; box-shadow: 0 0 0 .3rem #e00; }
  .field { position: relative; }
  .field__label { position: absolute; top: 1rem; left: 1.5rem; font-size: 1.6rem; color: #e00; }
  .card { border: .4rem dashed #e00; }
  input, select { border-radius: 0; }
</style></head>
<body>
<header class="theme-header"><span class="theme-logo">DEMO OUTDOOR</span>
  <nav><a href="/">Shop</a><a href="/collections/all">Collections</a><a href="/pages/about">About</a></nav></header>
<main id="MainContent" role="main">{content}</main>
<footer class="theme-footer">© Demo Outdoor GmbH · Returns</footer>
</body></html>"""


@pytest.fixture
def live_app(app, shopify_shop, shopify, rsps):
    """The app on 127.0.0.1, with Shopify's Admin API (the returns fake) behind it."""
    from tests.shopify.returns_fake import ShopifyReturnsFake
    from werkzeug.serving import make_server

    ShopifyReturnsFake(shopify, shopify_shop)
    rsps.add_passthru("http://127.0.0.1")  # the fake storefront calls the app for real
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


def _as_shopify(live: str, seen: list[str]):
    """The route handler that is Shopify's app proxy and the theme."""
    import requests
    from liquid import Template

    def handle(route):
        request = route.request
        parts = urlsplit(request.url)
        pairs = parse_qsl(parts.query, keep_blank_values=True) + [
            ("shop", SHOP_DOMAIN), ("logged_in_customer_id", ""), ("path_prefix", PREFIX),
            ("timestamp", str(int(time.time())))]
        pairs.append(("signature", sign(pairs)))
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("content-type", "accept-language")}
        headers["X-Forwarded-For"] = "203.0.113.9"  # no Cookie: Shopify strips it
        resp = requests.request(request.method, f"{live}/shopify/proxy{parts.path[len(PREFIX):]}?{urlencode(pairs)}",
                                data=request.post_data_buffer, headers=headers, allow_redirects=False, timeout=30)
        seen.append(f"{request.method} {parts.path} -> {resp.status_code} {resp.headers.get('Content-Type')}")
        assert "Set-Cookie" not in resp.headers
        if resp.headers.get("Content-Type", "").startswith("application/liquid"):
            content = Template(resp.text).render(shop={"name": "Demo Outdoor"}, customer=None)
            route.fulfill(status=resp.status_code, content_type="text/html; charset=utf-8",
                          body=THEME.replace("{content}", content))
        else:
            keep = {k: v for k, v in resp.headers.items()
                    if k.lower() in ("content-type", "location", "content-disposition", "cache-control")}
            route.fulfill(status=resp.status_code, headers=keep, body=resp.content)

    return handle


def _to_app(live: str):
    import requests

    def handle(route):
        parts = urlsplit(route.request.url)
        resp = requests.get(f"{live}{parts.path}?{parts.query}", timeout=30)
        route.fulfill(status=resp.status_code, headers={"Content-Type": resp.headers.get("Content-Type", "")},
                      body=resp.content)
    return handle


_OVERFLOWING = """() => {
  const out = [];
  for (const el of document.body.querySelectorAll('*')) {
    const box = el.getBoundingClientRect();
    if (box.width && box.right > window.innerWidth + 1) out.push(el.tagName + '.' + el.className);
  }
  return {scrollWidth: document.scrollingElement.scrollWidth, innerWidth: window.innerWidth, culprits: out.slice(0, 8)};
}"""


def test_a_return_inside_the_theme(live_app, shopify_shop):
    from playwright.sync_api import expect

    OUTPUT.mkdir(exist_ok=True)
    seen: list[str] = []
    problems: list[str] = []
    def walk(p):
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
            context.route(f"{STOREFRONT}/**", _as_shopify(live_app, seen))
            context.route(f"{BASE_URL}/**", _to_app(live_app))
            page = context.new_page()
            page.on("pageerror", lambda exc: problems.append(f"JavaScript error: {exc}"))
            # Sub-resources (the stylesheet, portal.js, the QR code) must load. Navigations are checked
            # by their URL and content instead: Chromium reports the hop after a redirect that a route
            # fulfilled as failed, although the page it ends on loads.
            page.on("requestfailed", lambda req: None if req.is_navigation_request() else
                    problems.append(f"failed: {req.url} ({req.failure})"))

            def shot(name: str) -> None:
                page.wait_for_load_state("load")
                page.screenshot(path=str(OUTPUT / f"shopify-proxy-{name}.png"), full_page=True, animations="disabled")

            page.goto(f"{STOREFRONT}{PREFIX}")
            expect(page.get_by_role("heading", level=1, name="Start a return")).to_be_visible()
            # The theme is around it, untouched; the portal is itself inside it.
            expect(page.locator(".theme-header")).to_be_visible()
            assert page.locator(".theme-logo").evaluate("e => getComputedStyle(e).fontSize") == "24px"
            assert page.locator("body").evaluate("e => getComputedStyle(e).fontFamily").startswith("Georgia")
            h1 = page.locator(".returns-portal h1")
            assert h1.evaluate("e => getComputedStyle(e).textTransform") == "none"
            assert h1.evaluate("e => parseFloat(getComputedStyle(e).fontSize)") > 25  # not the theme's 62.5% rem
            label = page.locator(".returns-portal .field__label").first
            assert label.evaluate("e => getComputedStyle(e).position") == "static"
            button = page.get_by_role("button", name="Find order")
            assert button.evaluate("e => getComputedStyle(e, '::after').content") in ("none", "normal")
            assert button.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(31, 95, 74)"  # the brand
            assert page.locator(".returns-portal .card").first.evaluate(
                "e => getComputedStyle(e).borderTopStyle") == "solid"
            shot("01-signin")

            page.get_by_label("Order number", exact=True).fill("1001")
            page.get_by_label("Email or postcode", exact=True).fill("erika@example.com")
            button.click()
            expect(page).to_have_url(re.compile(rf"{re.escape(STOREFRONT + PREFIX)}/orders/\d+/items\?ps="))
            jacket = page.get_by_role("group", name=re.compile("Trail Jacket"))
            jacket.get_by_label("Quantity to return").select_option("1")
            jacket.get_by_label("Reason").select_option(label="Too small")
            expect(jacket.get_by_label("Tell us more")).to_be_hidden()  # portal.js runs inside the theme
            shot("02-items")
            page.get_by_role("button", name="Continue", exact=True).click()
            expect(page).to_have_url(re.compile(r"/apps/returns/orders/\d+/method\?ps="))
            page.get_by_role("radio", name="Drop-off at a parcel shop").check()
            shot("03-method")
            page.get_by_role("button", name="Continue", exact=True).click()
            expect(page).to_have_url(re.compile(r"/apps/returns/orders/\d+/instructions\?ps="))
            for box in page.get_by_role("group", name="Before you hand over the parcel").get_by_role("checkbox").all():
                box.check()
            page.get_by_role("button", name="Continue", exact=True).click()
            expect(page).to_have_url(re.compile(r"/apps/returns/orders/\d+/summary\?ps="))
            shot("04-summary")
            page.get_by_role("button", name="Confirm return").click()
            expect(page).to_have_url(re.compile(r"/apps/returns/returns/R-1001/confirmed\?ps="))
            qr = page.locator("img[src*='/apps/returns/returns/R-1001/qr.png']")
            expect(qr).to_be_visible()
            assert qr.evaluate("img => img.complete && img.naturalWidth > 0"), "the QR code did not load"
            shot("05-confirmation")

            page.set_viewport_size({"width": 390, "height": 844})
            page.get_by_role("link", name="Back to your orders").click()
            expect(page.get_by_role("heading", level=1, name="Your orders")).to_be_visible()
            width = page.evaluate(_OVERFLOWING)
            assert width["scrollWidth"] <= width["innerWidth"], f"the phone page scrolls sideways: {width}"
            shot("06-orders-phone")
            context.close()
        finally:
            browser.close()

    with_playwright(walk)
    assert not problems, "\n".join(problems + seen)
    assert all(" -> 5" not in line for line in seen), seen
