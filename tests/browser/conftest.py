"""Browser tests: the portal and the admin driven in headless Chromium (Debian's chromium, through
Playwright for Python) against the real app served on 127.0.0.1, with axe-core for accessibility.

Every test in this folder is marked `browser`. The folder is skipped, with the reason, when
/usr/bin/chromium or Playwright is missing. Screenshots of every step go to tests/browser/output/
(gitignored), one PNG per step: `<area>-<variant>-<nn>-<step>.png`, plus `<area>-<variant>-axe.json`
with every axe violation of any impact (only serious and critical ones fail a test).

The server thread shares the test's migrated database (SQLite WAL or PostgreSQL). Each request
runs in its own thread and Flask gives it its own app context, so the scoped session of a request
is its own and is removed at the request's end; the test thread keeps the `app` fixture's context
and its own session (commit it after reading, so the next read sees what the browser did).
"""
from __future__ import annotations

import json
import re
import threading
import weakref
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from connector import db
from connector.returns.models import Order, OrderLine, Return, ReturnReason
from tests.factories import ADMIN_PASSWORD

try:
    from playwright.sync_api import expect
    # A shared CI machine can be slow; a page that never comes still fails, after 10 s.
    expect.set_options(timeout=10_000)
except ImportError:  # the whole folder is skipped then (see pytest_collection_modifyitems)
    expect = None

HERE = Path(__file__).parent
OUTPUT = HERE / "output"
CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run"]
DESKTOP = {"width": 1280, "height": 900}
MOBILE = {"width": 390, "height": 844}
FAILING_IMPACTS = ("serious", "critical")
PLAYWRIGHT_MISSING = ("Playwright for Python is not installed: pip install -e '.[dev]' "
                      "(playwright, axe-playwright-python)")
CHROMIUM_MISSING = "Debian chromium not installed: apt-get install -y chromium"


def _unavailable() -> str | None:
    if not CHROMIUM.exists():
        return CHROMIUM_MISSING
    if find_spec("playwright") is None or find_spec("axe_playwright_python") is None:
        return PLAYWRIGHT_MISSING
    return None


def pytest_collection_modifyitems(config, items):
    """Mark this folder's tests `browser`; skip them all, saying why, without a browser."""
    reason = _unavailable()
    for item in items:
        if HERE in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.browser)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


# ============================================================================ browser and server

@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    try:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
    except Exception:
        playwright.stop()
        raise
    yield chromium
    chromium.close()
    playwright.stop()


@pytest.fixture(scope="session")
def output_dir() -> Path:
    """The screenshot folder. Files are overwritten, never wiped: runs may overlap (xdist, or
    several suites on one machine) and one must not delete what another just wrote."""
    OUTPUT.mkdir(exist_ok=True)
    return OUTPUT


@dataclass(frozen=True)
class LiveServer:
    base_url: str
    handle: str

    @property
    def portal(self) -> str:
        return f"/portal/{self.handle}/"

    @property
    def admin(self) -> str:
        return f"/admin/{self.handle}/"


@pytest.fixture
def live_server(app, shop):
    """The test's app (seeded `shop`, jobs inline) served over HTTP on a free local port."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    try:
        yield LiveServer(f"http://127.0.0.1:{server.server_port}", shop.handle)
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


_problems: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def page_problems(page) -> list[str]:
    """What went wrong on `page` since the last step (Steps.take reports and clears it)."""
    return _problems[page]


@pytest.fixture
def open_page(browser, live_server):
    """open_page(locale="en-US", viewport=DESKTOP, javascript=True) -> a Page in a fresh context.

    Each page records what must never happen: a JavaScript error, a Content-Security-Policy
    violation, a 5xx answer (see `page_problems`).
    """
    contexts = []

    def open_(locale: str = "en-US", viewport: dict = DESKTOP, javascript: bool = True):
        context = browser.new_context(base_url=live_server.base_url, locale=locale, viewport=viewport,
                                      java_script_enabled=javascript, timezone_id="Europe/Berlin")
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = context.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda exc: problems.append(f"JavaScript error: {exc}"))
        page.on("console", lambda msg: problems.append(f"console: {msg.text}")
                if msg.type == "error" and "Content Security Policy" in msg.text else None)
        page.on("response", lambda resp: problems.append(f"HTTP {resp.status} for {resp.url}")
                if resp.status >= 500 else None)
        _problems[page] = problems
        return page

    yield open_
    for context in contexts:
        context.close()


# ============================================================================ steps: screenshots, axe, overflow

_axe = None


def _run_axe(page) -> list[dict]:
    global _axe
    if _axe is None:
        from axe_playwright_python.sync_playwright import Axe
        _axe = Axe()
    return _axe.run(page).response["violations"]


_OVERFLOWING = """() => {
  const width = window.innerWidth;
  const out = [];
  for (const el of document.body.querySelectorAll('*')) {
    const box = el.getBoundingClientRect();
    if (box.width && box.right > width + 1) {
      const cls = (el.getAttribute('class') || '').trim().split(/\\s+/).filter(Boolean).join('.');
      const name = el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + (cls ? '.' + cls : '');
      out.push(`${name} (right ${Math.round(box.right)}px)`);
    }
  }
  return {scrollWidth: document.scrollingElement.scrollWidth, innerWidth: width, culprits: out.slice(0, 8)};
}"""


@dataclass
class Steps:
    """One walk through pages: `take(name)` screenshots the page as `<prefix>-<name>.png` and
    checks it; `assert_clean()` fails listing every problem of every step (not only the first)."""

    page: object
    prefix: str
    output: Path
    axe: bool = True
    no_horizontal_scroll: bool = False
    problems: list[str] = field(default_factory=list)
    violations: dict[str, list[dict]] = field(default_factory=dict)
    taken: list[str] = field(default_factory=list)

    def take(self, name: str, *, axe: bool | None = None) -> None:
        """Screenshot and check the page; `axe` overrides the walk's setting for this step."""
        page = self.page
        page.wait_for_load_state("load")
        where = f"{self.prefix}-{name} ({urlsplit(page.url).path})"
        page.screenshot(path=str(self.output / f"{self.prefix}-{name}.png"), full_page=True, animations="disabled")
        self.taken.append(name)
        self.problems.extend(f"{where}: {p}" for p in page_problems(page))
        page_problems(page).clear()
        title = page.title()
        if not title.strip() or "<" in title:
            self.problems.append(f"{where}: the page title is {title!r}; it should be plain text naming the page")
        if self.no_horizontal_scroll:
            box = page.evaluate(_OVERFLOWING)
            if box["scrollWidth"] > box["innerWidth"]:
                self.problems.append(f"{where}: scrolls sideways, {box['scrollWidth']}px content in a "
                                     f"{box['innerWidth']}px viewport; too wide: {', '.join(box['culprits'])}")
        if (self.axe if axe is None else axe):
            found = _run_axe(page)
            self.violations[name] = [{"id": v["id"], "impact": v.get("impact"), "help": v.get("help"),
                                      "targets": [n.get("target") for n in v.get("nodes", [])]} for v in found]
            for v in found:
                if v.get("impact") in FAILING_IMPACTS:
                    targets = "; ".join(" ".join(map(str, n.get("target", []))) for n in v.get("nodes", [])[:6])
                    self.problems.append(f"{where}: axe {v['id']} ({v['impact']}): {v.get('help')} -- {targets}")

    def assert_clean(self) -> None:
        if self.violations:
            (self.output / f"{self.prefix}-axe.json").write_text(json.dumps(self.violations, indent=2))
        assert not self.problems, "\n".join(self.problems)


@pytest.fixture
def steps(output_dir):
    def make(page, prefix: str, *, axe: bool = True, no_horizontal_scroll: bool = False) -> Steps:
        return Steps(page, prefix, output_dir, axe=axe, no_horizontal_scroll=no_horizontal_scroll)
    return make


# ============================================================================ text and ids the pages use

def t(lang: str, message: str, **params) -> str:
    """`message` as the app shows it in `lang` (the catalog's translation, else the English text).

    Selectors use this, so German runs find their buttons whether or not they are translated yet.
    """
    from flask_babel import force_locale, gettext
    with force_locale(lang):
        return gettext(message, **params)


def fresh() -> None:
    """Forget what the test thread's session holds: the browser changed the database since (the
    session keeps objects after commit, so a query alone would return the stale ones)."""
    db.session.commit()
    db.session.expire_all()


def order_of(shop, number: str) -> Order:
    fresh()
    order = db.session.scalar(select(Order).where(Order.shop_id == shop.id, Order.number == number))
    db.session.commit()  # end the read: later reads see what the browser did
    return order


def line_ids(shop, order: Order) -> dict[str, int]:
    lines = db.session.scalars(select(OrderLine).where(OrderLine.shop_id == shop.id,
                                                       OrderLine.order_id == order.id)).all()
    db.session.commit()
    return {line.title: line.id for line in lines}


def reason_id(shop, code: str) -> int:
    found = db.session.scalar(select(ReturnReason.id).where(ReturnReason.shop_id == shop.id,
                                                            ReturnReason.code == code))
    db.session.commit()
    return found


_LINK = re.compile(r"https?://\S+/link\?t=[^\s\"'<>]+")


def signin_link_from(outbox) -> str:
    """The path of the newest sign-in link in the outbox (the mail holds the configured base URL)."""
    for message in reversed(outbox()):
        body = message.get_body(preferencelist=("plain",))
        match = _LINK.search(body.get_content() if body is not None else "")
        if match:
            parts = urlsplit(match.group(0))
            return f"{parts.path}?{parts.query}"
    raise AssertionError("no sign-in link in the outbox")


def return_of(shop, rma: str) -> Return:
    fresh()
    found = db.session.scalar(select(Return).where(Return.shop_id == shop.id, Return.number == int(rma[2:])))
    db.session.commit()
    return found


# ============================================================================ the shopper

METHOD_NAMES = {"pickup": "Pickup at your address", "dropoff": "Drop-off at a parcel shop",
                "selfship": "Send it yourself"}


class Shopper:
    """The shopper's side of the portal, found by labels, roles and the catalog's wording.

    Each method ends on the next page (waiting for its URL) and takes that page's screenshot and
    checks through `steps`; step names follow the portal's own steps (1 find order ... 5 confirm).
    """

    def __init__(self, page, server: LiveServer, shop, steps: Steps, *, lang: str = "en", outbox=None):
        self.page, self.server, self.shop, self.steps, self.lang, self.outbox = page, server, shop, steps, lang, outbox

    def _(self, message: str, **params) -> str:
        return t(self.lang, message, **params)

    def button(self, message: str, **params):
        return self.page.get_by_role("button", name=self._(message, **params), exact=True)

    def expect_path(self, pattern: str) -> None:
        expect(self.page).to_have_url(re.compile(pattern + r"(\?.*)?$"))
        expect(self.page.locator("html")).to_have_attribute("lang", self.lang)

    # ---------------------------------------------------------------- 1: find the order

    def open_portal(self, query: str = "") -> None:
        self.page.goto(self.server.portal + query)
        self.expect_path(r"/portal/[^/]+/")
        expect(self.page.get_by_role("heading", level=1)).to_be_visible()

    def sign_in_with_order(self, number: str, contact: str) -> Order:
        order = order_of(self.shop, number)
        self.page.get_by_label(self._("Order number"), exact=True).fill(number)
        self.page.get_by_label(self._("Email or postcode"), exact=True).fill(contact)
        self.steps.take("01-signin")
        self.button("Find order").click()
        self.expect_path(rf"/orders/{order.id}/items")
        return order

    def sign_in_with_link(self, email: str, number: str) -> Order:
        order = order_of(self.shop, number)
        self.page.get_by_label(self._("Email address"), exact=True).fill(email)
        self.steps.take("01-signin")
        self.button("Email me a link").click()
        self.expect_path(r"/link-sent")
        self.steps.take("01b-link-sent")
        self.page.goto(signin_link_from(self.outbox))
        self.button("Continue").click()
        self.expect_path(r"/orders")
        expect(self.page.get_by_role("heading", level=2, name=order.number)).to_be_visible()
        self.steps.take("01c-orders")
        self.page.get_by_role("link", name=self._("Return items from order %(number)s",
                                                  number=order.display_number)).click()
        self.expect_path(rf"/orders/{order.id}/items")
        return order

    # ---------------------------------------------------------------- 2: items

    def line(self, title: str):
        return self.page.get_by_role("group", name=re.compile(re.escape(title)))

    def choose_items(self, order: Order, choices: dict[str, tuple[int, str]], *, show_error_first: bool = True):
        """choices: line title -> (quantity, reason code). First, optionally, a quantity without a
        reason: the page must answer with the errors, keeping the choice."""
        self.steps.take("02-items")
        first_title, (first_quantity, _reason) = next(iter(choices.items()))
        if show_error_first:
            self.line(first_title).get_by_label(self._("Quantity to return")).select_option(str(first_quantity))
            self.button("Continue").click()
            summary = self.page.get_by_role("alert")
            expect(summary).to_be_visible()
            expect(summary.get_by_role("link")).to_have_count(1)
            expect(self.line(first_title).get_by_label(self._("Reason"))).to_have_attribute("aria-invalid", "true")
            self.steps.take("02b-items-errors")
        for title, (quantity, reason) in choices.items():
            line = self.line(title)
            line.get_by_label(self._("Quantity to return")).select_option(str(quantity))
            line.get_by_label(self._("Reason")).select_option(str(reason_id(self.shop, reason)))
        self.button("Continue").click()
        self.expect_path(rf"/orders/{order.id}/method")

    # ---------------------------------------------------------------- 3-5: method, instructions, confirm

    def choose_method(self, order: Order, method: str) -> None:
        self.steps.take("03-method")
        self.page.get_by_role("radio", name=self._(METHOD_NAMES[method])).check()
        self.button("Continue").click()
        self.expect_path(rf"/orders/{order.id}/instructions")

    def confirm_instructions(self, order: Order) -> None:
        checklist = self.page.get_by_role("group", name=self._("Before you hand over the parcel"))
        boxes = checklist.get_by_role("checkbox")
        expect(boxes.first).to_be_visible()
        for box in boxes.all():
            box.check()
        self.steps.take("04-instructions")
        self.button("Continue").click()
        self.expect_path(rf"/orders/{order.id}/summary")

    def confirm(self) -> str:
        """Confirm the return on the summary page; the RMA ("R-1001") of the confirmation."""
        self.steps.take("05-summary")
        self.button("Confirm return").click()
        self.expect_path(r"/returns/R-\d+/confirmed")
        rma = re.search(r"/returns/(R-\d+)/confirmed", self.page.url).group(1)
        expect(self.page.get_by_role("heading", level=1)).to_contain_text(rma)
        self.steps.take("06-confirmation")
        return rma

    def open_status(self, rma: str) -> None:
        """From the confirmation back to the orders, and from there to the return's status page."""
        self.page.get_by_role("link", name=self._("Back to your orders")).click()
        self.expect_path(r"/orders")
        self.page.get_by_role("link", name=self._("Return %(rma)s", rma=rma), exact=True).click()
        self.expect_path(rf"/returns/{rma}")
        expect(self.page.get_by_role("heading", level=1)).to_contain_text(rma)
        self.steps.take("07-status")

    def return_items(self, *, number: str = "1001", contact: str = "erika@example.com", method: str = "dropoff",
                     choices: dict[str, tuple[int, str]] | None = None, by_link: bool = False,
                     show_error_first: bool = True) -> str:
        """The whole flow from the sign-in page to the status page; the RMA."""
        if by_link:
            order = self.sign_in_with_link(contact, number)
        else:
            order = self.sign_in_with_order(number, contact)
        self.choose_items(order, choices or {"Trail Jacket": (1, "too_small")}, show_error_first=show_error_first)
        self.choose_method(order, method)
        self.confirm_instructions(order)
        rma = self.confirm()
        self.open_status(rma)
        return rma


# ============================================================================ the merchant

def sign_in_as_merchant(page, server: LiveServer, run: Steps, name: str = "Mia", *, axe: bool | None = None) -> None:
    """Open the admin, land on its sign-in page, sign in (step "01-login"), arrive at the returns."""
    page.goto(server.admin)
    expect(page).to_have_url(re.compile(r"/admin/[^/]+/login\?next="))
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_label("Your name").fill(name)
    run.take("01-login", axe=axe)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(rf"/admin/{server.handle}/$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Returns")
