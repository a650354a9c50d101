"""The shopper's whole return in headless Chromium: pickup and drop-off, in English and German, on
a desktop and on a phone, with and without JavaScript; and the EU withdrawal function.

Every step is screenshotted (tests/browser/output/portal-<variant>-<nn>-<step>.png). axe-core
checks the phone-sized steps here; the same pages on a desktop, with their error states, are all
checked in test_accessibility.py (axe is the slow part, so no page state is checked twice).
German pages may still be partly untranslated, so German runs check the page language and
structure, never German wording.
"""
from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from babel.dates import format_date

from connector.returns import lifecycle as lc
from tests.browser.conftest import MOBILE, PLAYWRIGHT_MISSING, Shopper, order_of, return_of

pytest.importorskip("playwright.sync_api", reason=PLAYWRIGHT_MISSING)
from playwright.sync_api import expect  # noqa: E402

JACKET_AND_SOCKS = {"Trail Jacket": (1, "too_small"), "Merino Socks": (2, "changed_mind")}


def _next_working_days(count: int = 6) -> list[date]:
    """Candidates for "the next working day" in Berlin: the weekdays after today (a holiday may
    push the booking a few days further)."""
    today = datetime.now(ZoneInfo("Europe/Berlin")).date()
    days = (today + timedelta(days=n) for n in range(1, 3 * count))
    return [d for d in days if d.weekday() < 5][:count]


def _check_status_page(shopper: Shopper, rma: str, method: str) -> None:
    """What the status page must offer after a confirmed pickup or drop-off."""
    page = shopper.page
    if method == "pickup":
        label = page.locator(f"a[href$='/returns/{rma}/label.pdf']")
        expect(label).to_be_visible()
        with page.expect_download() as info:
            label.click()
        download = info.value
        assert download.suggested_filename == f"return-label-{rma}.pdf"
        with open(download.path(), "rb") as pdf:
            assert pdf.read(5) == b"%PDF-"
    else:
        qr = page.locator(f"img[src$='/returns/{rma}/qr.png']")
        expect(qr).to_be_visible()
        assert qr.evaluate("img => img.complete && img.naturalWidth > 0"), "the QR code image did not load"
    if shopper.lang != "en":
        return
    expect(page.get_by_text("Download the return label (PDF)")).to_be_visible()
    if method == "pickup":
        expect(page.locator(".badge")).to_have_text("Pickup booked")
        pickup_day = page.locator("dt", has_text="Pickup day").locator("xpath=following-sibling::dd[1]")
        shown = pickup_day.inner_text().strip()
        expected = [format_date(d, "full", locale="en") for d in _next_working_days()]
        assert shown in expected, f"pickup day {shown!r} is not one of the next working days {expected}"
    else:
        expect(page.locator(".badge")).to_have_text("Label ready")
        expect(page.get_by_role("img", name=f"QR code for return {rma}")).to_be_visible()


@pytest.mark.parametrize("lang", ["en", "de"])
@pytest.mark.parametrize("method", ["pickup", "dropoff"])
def test_shopper_returns_items(open_page, live_server, shop, steps, outbox, lang, method):
    """Pickup signs in with order number (and postcode in German); drop-off with an emailed link.
    German comes from ?lang=de for pickup and from the browser's Accept-Language for drop-off."""
    by_link = method == "dropoff"
    page = open_page(locale="de-DE" if lang == "de" and by_link else "en-US")
    run = steps(page, f"portal-{lang}-{method}", axe=False)  # desktop pages: test_accessibility.py
    shopper = Shopper(page, live_server, shop, run, lang=lang, outbox=outbox)
    shopper.open_portal("?lang=de" if lang == "de" and not by_link else "")
    if lang == "en":
        expect(page.get_by_role("heading", level=1)).to_have_text("Start a return")

    contact = "10115" if lang == "de" and not by_link else "erika@example.com"
    rma = shopper.return_items(contact=contact, method=method, choices=JACKET_AND_SOCKS, by_link=by_link)

    ret = return_of(shop, rma)
    assert ret.order_id == order_of(shop, "1001").id and ret.locale == lang
    assert ret.method == method
    assert ret.state == (lc.AWAITING_PICKUP if method == "pickup" else lc.LABEL_READY)
    assert sorted((line.order_line.title, line.quantity) for line in ret.lines) == [("Merino Socks", 2),
                                                                                   ("Trail Jacket", 1)]
    _check_status_page(shopper, rma, method)
    if lang == "en":
        summary = page.locator(".summary-lines")
        expect(summary).to_contain_text("1 × Trail Jacket")
        expect(summary).to_contain_text("2 × Merino Socks")
        expect(page.get_by_text("Gift Card")).to_have_count(0)
    assert run.taken == (["01-signin"] + (["01b-link-sent", "01c-orders"] if by_link else [])
                         + ["02-items", "02b-items-errors", "03-method", "04-instructions", "05-summary",
                            "06-confirmation", "07-status"])
    run.assert_clean()


def test_final_sale_and_past_window_items_cannot_be_chosen(open_page, live_server, shop, steps):
    page = open_page()
    run = steps(page, "portal-en-blocked", axe=False)  # the items page: test_accessibility.py
    shopper = Shopper(page, live_server, shop, run)
    shopper.open_portal()
    order = shopper.sign_in_with_order("1001", "erika@example.com")
    gift = shopper.line("Gift Card")
    expect(gift.get_by_label("Quantity to return")).to_be_disabled()
    expect(gift).to_contain_text("Final sale: this item cannot be returned.")
    run.take("02-items-final-sale")

    page.goto(live_server.portal + "?switch=1")
    old = shopper.sign_in_with_order("1002", "old@example.com")
    assert old.id != order.id
    expect(shopper.line("Rain Pants").get_by_label("Quantity to return")).to_be_disabled()
    expect(shopper.line("Rain Pants")).to_contain_text("The return period for this item has ended.")
    run.take("02-items-window-passed")
    run.assert_clean()


def test_shopper_flow_fits_a_phone(open_page, live_server, shop, steps, outbox):
    """390x844, in German (the longer words): every step without sideways scrolling and without
    serious axe violations. The withdrawal pages are checked at this size in test_eu_withdrawal."""
    page = open_page(locale="de-DE", viewport=MOBILE)
    run = steps(page, "portal-mobile-de-dropoff", no_horizontal_scroll=True)
    shopper = Shopper(page, live_server, shop, run, lang="de", outbox=outbox)
    shopper.open_portal()
    shopper.return_items(method="dropoff", choices=JACKET_AND_SOCKS, by_link=True)
    run.assert_clean()


def test_portal_works_without_javascript(open_page, live_server, shop, steps):
    """Every step is a plain form: the whole flow to the confirmation with JavaScript off."""
    page = open_page(javascript=False)
    run = steps(page, "portal-nojs-en-pickup", axe=False)  # axe-core itself needs JavaScript
    shopper = Shopper(page, live_server, shop, run)
    shopper.open_portal()
    order = shopper.sign_in_with_order("1001", "erika@example.com")
    # Without the script every line shows its reason, comment and photo fields at once.
    expect(shopper.line("Trail Jacket").get_by_label("Tell us more")).to_be_visible()
    shopper.choose_items(order, JACKET_AND_SOCKS)
    shopper.choose_method(order, "pickup")
    shopper.confirm_instructions(order)
    rma = shopper.confirm()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Thank you! Your return {rma} is registered.")
    assert return_of(shop, rma).state == lc.AWAITING_PICKUP
    run.assert_clean()


def test_eu_withdrawal(open_page, live_server, shop, steps, outbox):
    """The withdrawal function: from the footer link, name + order + email, confirm, acknowledgment;
    on a phone, without sideways scrolling."""
    page = open_page(viewport=MOBILE)
    run = steps(page, "portal-mobile-en-withdrawal", no_horizontal_scroll=True)
    shopper = Shopper(page, live_server, shop, run)
    shopper.open_portal()
    page.get_by_role("contentinfo").get_by_role("link", name="Withdraw from contract here").click()
    shopper.expect_path(r"/withdraw")
    expect(page.get_by_role("heading", level=1)).to_have_text("Withdraw from contract")
    page.get_by_label("Full name").fill("Erika Mustermann")
    page.get_by_label("Order number").fill("#1001")
    page.get_by_label("Email address used for the order").fill("erika@example.com")
    run.take("01-form")
    shopper.button("Continue").click()
    shopper.expect_path(r"/withdraw/confirm")
    items = page.get_by_role("group", name="Items you withdraw from")
    expect(items.get_by_label(re.compile("Trail Jacket"))).to_have_value("1")
    expect(items.get_by_label(re.compile("Merino Socks"))).to_have_value("3")
    expect(items.get_by_label(re.compile("Gift Card"))).to_be_disabled()
    items.get_by_label(re.compile("Merino Socks")).select_option("1")
    run.take("02-confirm")
    shopper.button("Confirm withdrawal").click()
    shopper.expect_path(r"/withdraw/R-\d+")
    expect(page.get_by_role("heading", level=1)).to_have_text("We have received your withdrawal")
    expect(page.locator(".summary-lines")).to_contain_text("1 × Merino Socks")
    run.take("03-done")
    rma = re.search(r"/withdraw/(R-\d+)", page.url).group(1)
    ret = return_of(shop, rma)
    assert ret.is_withdrawal and sorted((line.order_line.title, line.quantity) for line in ret.lines) == [
        ("Merino Socks", 1), ("Trail Jacket", 1)]
    assert "Confirmation of receipt of your withdrawal (order #1001)" in [m["Subject"] for m in outbox()]
    run.assert_clean()
