"""The merchant's side in headless Chromium, from approval to refund, after a shopper's return.

Screenshots: tests/browser/output/admin-en-<nn>-<step>.png (and the shopper's pages as
portal-en-approval-*). Every admin step is checked with axe-core too: the return page in each
state it passes through (test_accessibility.py has the others: sign-in, list, settings).
"""
from __future__ import annotations

import re
from decimal import Decimal

import pytest
from sqlalchemy import select

from connector import db
from connector.returns import lifecycle as lc
from connector.returns.models import Refund
from tests.browser.conftest import PLAYWRIGHT_MISSING, Shopper, return_of, sign_in_as_merchant

pytest.importorskip("playwright.sync_api", reason=PLAYWRIGHT_MISSING)
from playwright.sync_api import expect  # noqa: E402


def _notice(page, text: str) -> None:
    expect(page.get_by_role("main").get_by_role("status")).to_contain_text(text)


def _badge(page):
    return page.locator(".page-header .badge").first


def _grade(page, title: str, grade: str, disposition: str, note: str = "") -> None:
    inspection = page.get_by_role("region", name="Inspection")
    line = inspection.locator(".card__section").filter(has=page.get_by_role("heading", level=3, name=re.compile(title)))
    line.get_by_label("Grade").select_option(label=grade)
    line.get_by_label("What happens to it").select_option(label=disposition)
    if note:
        line.get_by_label("Note").fill(note)


def test_merchant_approves_receives_grades_and_refunds(open_page, live_server, shop, steps):
    shop.policy = {**(shop.policy or {}), "auto_approve": False}
    db.session.commit()

    # The shopper returns the jacket and two pairs of socks by drop-off: it waits for approval.
    shopper_page = open_page()
    shopper_run = steps(shopper_page, "portal-en-approval", axe=False)  # portal pages: test_accessibility.py
    shopper = Shopper(shopper_page, live_server, shop, shopper_run)
    shopper.open_portal()
    rma = shopper.return_items(method="dropoff", show_error_first=False,
                               choices={"Trail Jacket": (1, "too_small"), "Merino Socks": (2, "changed_mind")})
    expect(shopper_page.locator(".badge")).to_have_text("Requested, waiting for approval")
    expect(shopper_page.get_by_text("Your label is being prepared.")).to_be_visible()
    ret = return_of(shop, rma)
    assert ret.state == lc.REQUESTED and ret.shipment is None

    # The merchant signs in, finds it in the list and opens it.
    page = open_page()
    run = steps(page, "admin-en")
    sign_in_as_merchant(page, live_server, run, axe=False)  # sign-in, list: test_accessibility.py
    row = page.get_by_role("row", name=re.compile(rma))
    expect(row).to_contain_text("Requested")
    expect(row).to_contain_text("erika@example.com")
    run.take("02-returns", axe=False)
    row.get_by_role("link", name=rma).click()
    expect(page).to_have_url(re.compile(rf"/returns/{ret.id}$"))
    expect(page.get_by_role("heading", level=1)).to_have_text(rma)
    expect(_badge(page)).to_have_text("Requested")
    run.take("03-requested")

    page.get_by_role("button", name="Approve return").click()
    _notice(page, f"Return {rma} approved.")
    expect(_badge(page)).to_have_text("Label ready")
    expect(page.get_by_role("region", name="Shipment")).to_contain_text("sandbox")
    run.take("04-approved")

    receive = page.get_by_role("region", name="Receive the parcel")
    expect(receive.get_by_label("Trail Jacket")).to_have_value("1")
    expect(receive.get_by_label("Merino Socks")).to_have_value("2")
    receive.get_by_role("button", name="Mark as received").click()
    _notice(page, f"Return {rma} marked as received.")
    expect(_badge(page)).to_have_text("Received")
    run.take("05-received")

    _grade(page, "Trail Jacket", "A – as new, back to stock", "Restock")
    _grade(page, "Merino Socks", "B – can be refurbished", "Refurbish", note="One pair worn, needs washing")
    page.get_by_role("button", name="Save grading").click()
    _notice(page, "Grading saved.")
    expect(_badge(page)).to_have_text("Inspected")

    # The refund preview: both lines at their paid prices, minus the drop-off fee.
    refund = page.get_by_role("region", name="Refund", exact=True)
    rows = [re.sub(r"\s+", " ", text).strip() for text in refund.locator("table tr").all_inner_texts()]
    assert rows == ["Trail Jacket × 1 129.00 EUR", "Merino Socks × 2 27.00 EUR",
                    "Return shipping fee − 3.95 EUR", "Total refund 152.05 EUR"], rows
    expect(refund).to_contain_text("you pay the shopper yourself")
    run.take("06-inspected-refund-preview")

    refund.get_by_role("button", name="Record refund of 152.05 EUR").click()
    _notice(page, "Recorded: pay out 152.05 EUR to the shopper yourself; no payment was sent.")
    expect(_badge(page)).to_have_text("Refunded")
    refund = page.get_by_role("region", name="Refund", exact=True)
    expect(refund.get_by_role("button")).to_have_count(0)
    expect(refund.locator("dl")).to_contain_text("Succeeded · manual payout")
    expect(page.get_by_role("region", name="Timeline")).to_contain_text(
        "Refund recorded for manual payout: 152.05 EUR")
    run.take("07-refunded")

    ret = return_of(shop, rma)
    assert ret.state == lc.REFUNDED
    assert {line.order_line.title: (line.grade, line.disposition) for line in ret.lines} == {
        "Trail Jacket": ("A", "restock"), "Merino Socks": ("B", "refurbish")}
    [made] = db.session.scalars(select(Refund).where(Refund.shop_id == shop.id, Refund.return_id == ret.id)).all()
    db.session.commit()
    assert made.manual and made.state == "succeeded" and made.amount == Decimal("152.05")

    # The shopper sees the refund on the status page.
    shopper_page.reload()
    expect(shopper_page.locator(".badge")).to_have_text("Refunded")
    shopper_run.take("08-status-refunded")

    run.assert_clean()
    shopper_run.assert_clean()
