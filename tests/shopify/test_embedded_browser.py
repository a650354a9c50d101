"""The embedded admin in headless Chromium: list, return page, one-click refund, approve.

App Bridge's CDN is out of reach here, so the request for app-bridge.js is answered with a small
stand-in whose `shopify.idToken()` resolves to a session token signed like Shopify's. That drives
the real static/embedded.js: fresh tokens on link clicks and form submits, no cookie anywhere.
Screenshots: tests/browser/output/shopify-embedded-*.png (gitignored).
"""
from __future__ import annotations

import threading
from importlib.util import find_spec
from pathlib import Path
from urllib.parse import urlencode

import pytest

from connector.returns import services
from tests.admin.conftest import make_return
from tests.shopify.chromium import CHROMIUM, LAUNCH_ARGS, with_playwright
from tests.shopify.conftest import SHOP_DOMAIN
from tests.shopify.returns_fake import ShopifyReturnsFake
from tests.shopify.session_token import session_token

OUTPUT = Path(__file__).parents[1] / "browser" / "output"
HOST = "YWRtaW4uc2hvcGlmeS5jb20vc3RvcmUvZGVtby1zaG9w"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium not installed: apt-get install -y chromium"),
    pytest.mark.skipif(find_spec("playwright") is None, reason="Playwright for Python is not installed"),
]


@pytest.fixture
def server(app, shopify_shop):
    from werkzeug.serving import make_server

    srv = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=srv.serve_forever, name="live-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_port}"
    finally:
        srv.shutdown()
        thread.join(timeout=10)
        srv.server_close()


def in_own_thread(walk, server: str) -> None:
    """Run `walk(page)` with a Chromium page of its own, in a thread of its own (tests/shopify/chromium.py)."""
    def target(p):
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            context = browser.new_context(base_url=server, viewport={"width": 1280, "height": 900}, locale="en-US")
            context.set_default_timeout(10_000)
            stand_in = ("window.shopify = {idToken: function () { return Promise.resolve(%r); }};"
                        % session_token(lifetime=600))
            context.route("https://cdn.shopify.com/**", lambda route: route.fulfill(
                status=200, content_type="application/javascript", body=stand_in))
            # Inside the Shopify admin the app is a third-party iframe: its cookies are never sent.
            context.route(f"{server}/**", lambda route: route.continue_(headers={
                k: v for k, v in route.request.headers.items() if k.lower() != "cookie"}))
            page = context.new_page()
            page.problems = []
            page.on("pageerror", lambda exc: page.problems.append(f"JavaScript error: {exc}"))
            page.on("console", lambda msg: page.problems.append(msg.text) if msg.type == "error" else None)
            walk(page)
        finally:
            browser.close()

    with_playwright(target)


def shot(page, name: str) -> None:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(OUTPUT / f"shopify-embedded-{name}.png"), full_page=True)


def test_embedded_admin_walk(server, shopify, shopify_shop):
    fake = ShopifyReturnsFake(shopify, shopify_shop)
    waiting = make_return(shopify_shop, approve=False)
    received = make_return(shopify_shop, number="1003")
    if received.state == "requested":
        services.approve(received, "merchant:test")
    services.mark_received(received, "merchant:test")
    plan = services.refund_preview(received)
    waiting_rma, received_rma, received_id = waiting.rma, received.rma, received.id
    in_own_thread(lambda page: walk(page, fake, waiting_rma, received_rma, received_id, plan), server)


def walk(page, fake, waiting_rma: str, received_rma: str, received_id: int, plan) -> None:
    from playwright.sync_api import expect

    page.goto("/shopify/?" + urlencode({"shop": SHOP_DOMAIN, "host": HOST, "embedded": "1",
                                         "id_token": session_token()}))
    expect(page.locator("h1")).to_have_text("Returns")
    expect(page.locator("meta[name=shopify-api-key]")).to_have_attribute("content", "test-api-key")
    shot(page, "01-returns")

    # A link click: embedded.js puts a fresh token into the URL (no bounce page).
    with page.expect_navigation():
        page.click(f"text={received_rma}")
    assert "id_token=" in page.url and f"/returns/{received_id}" in page.url
    refund_card = page.locator("section[aria-labelledby=refund-title]")
    expect(refund_card).to_contain_text("Total refund")
    expect(refund_card).to_contain_text(f"{plan.total} EUR")
    expect(refund_card).to_contain_text("Refunded to: the original payment method")
    shot(page, "02-return-refund")

    # One click: the form gets a fresh token on submit; Shopify's refund comes back on the page.
    with page.expect_navigation():
        refund_card.locator("button[type=submit]").click()
    expect(page.locator(".notices")).to_contain_text(f"Refunded {plan.total} EUR to the shopper.")
    expect(page.locator("section[aria-labelledby=refund-title]")).to_contain_text("gid://shopify/Refund/")
    assert len(fake.refunds) == 1
    shot(page, "03-refund-result")

    with page.expect_navigation():
        page.click("a.breadcrumb")
    with page.expect_navigation():
        page.click(f"text={waiting_rma}")
    shot(page, "04-return-review")
    with page.expect_navigation():
        page.click("text=Approve return")
    expect(page.locator(".notices")).to_contain_text(f"Return {waiting_rma} approved.")

    page.set_viewport_size({"width": 390, "height": 844})
    with page.expect_navigation():
        page.click("a.breadcrumb")
    shot(page, "05-returns-mobile")
    assert page.problems == []
