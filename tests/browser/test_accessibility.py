"""axe-core on every page of the portal and the admin, including their error states: no serious or
critical violation anywhere. A failure lists each rule id with the elements it found.

The flows in test_portal_flow.py and test_admin_flow.py run axe on their steps as well (in German
and on a phone too); this module walks the complete list of pages in one place. Screenshots:
tests/browser/output/a11y-*.png, all violations of any impact in a11y-*-axe.json.
"""
from __future__ import annotations

import pytest

from connector import db
from connector.returns import services
from tests.browser.conftest import PLAYWRIGHT_MISSING, Shopper, line_ids, order_of, reason_id, sign_in_as_merchant

pytest.importorskip("playwright.sync_api", reason=PLAYWRIGHT_MISSING)
from playwright.sync_api import expect  # noqa: E402


def test_every_portal_page(open_page, live_server, shop, steps, outbox):
    page = open_page()
    run = steps(page, "a11y-portal-en")
    shopper = Shopper(page, live_server, shop, run, outbox=outbox)
    shopper.open_portal()

    # Sign-in with an unknown order: the error notice.
    page.get_by_label("Order number", exact=True).fill("9999")
    page.get_by_label("Email or postcode", exact=True).fill("erika@example.com")
    shopper.button("Find order").click()
    expect(page.get_by_role("alert")).to_contain_text("We could not find an order")
    run.take("01a-signin-error")

    # Sign-in by link, link sent, orders, items (with its errors), method.
    order = shopper.sign_in_with_link("erika@example.com", "1001")
    shopper.choose_items(order, {"Trail Jacket": (1, "too_small"), "Merino Socks": (1, "changed_mind")})
    shopper.choose_method(order, "pickup")

    # Instructions: sent without the checklist first.
    shopper.button("Continue").click()
    expect(page.get_by_role("alert")).to_contain_text("Please confirm every point of the checklist.")
    run.take("04b-instructions-errors")
    shopper.confirm_instructions(order)
    rma = shopper.confirm()
    shopper.open_status(rma)

    # The EU withdrawal: the form with its errors, the confirmation page, the acknowledgment.
    page.get_by_role("contentinfo").get_by_role("link", name="Withdraw from contract here").click()
    shopper.expect_path(r"/withdraw")
    shopper.button("Continue").click()
    expect(page.get_by_text("Enter your name.")).to_be_visible()
    run.take("08a-withdraw-errors")
    page.get_by_label("Full name").fill("Erika Mustermann")
    page.get_by_label("Order number").fill("1001")
    page.get_by_label("Email address used for the order").fill("erika@example.com")
    run.take("08-withdraw")
    shopper.button("Continue").click()
    shopper.expect_path(r"/withdraw/confirm")
    run.take("08b-withdraw-confirm")
    shopper.button("Confirm withdrawal").click()
    shopper.expect_path(r"/withdraw/R-\d+")
    run.take("08c-withdraw-done")

    # Error pages: an unknown page of the shop (themed) and an unknown shop (plain).
    page.goto(live_server.portal + "no-such-page")
    expect(page.get_by_role("heading", level=1)).to_have_text("Page not found")
    run.take("09-not-found")
    page.goto("/portal/no-such-shop/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Page not found")
    run.take("09b-unknown-shop")
    run.assert_clean()


def _requested_return(shop):
    """A return waiting for approval (made through the services; the flows test the portal)."""
    shop.policy = {**(shop.policy or {}), "auto_approve": False}
    db.session.commit()
    order = order_of(shop, "1001")
    ret = services.start_draft(shop, order, email=order.email, locale="en")
    services.set_items(ret, [services.ItemChoice(order_line_id=line_ids(shop, order)["Trail Jacket"], quantity=1,
                                                 reason_id=reason_id(shop, "wrong_item"),
                                                 comment="Ordered blue, got a red one.")])
    services.set_method(ret, "dropoff")
    services.set_instructions(ret, dict(order.shipping_address),
                              [code for code, _text in services.checklist_items(ret)])
    ret = services.confirm(ret)
    db.session.commit()
    return ret


def test_every_admin_page(open_page, live_server, shop, steps):
    page = open_page()
    run = steps(page, "a11y-admin-en")

    page.goto(live_server.admin + "login")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("This password is not right.")).to_be_visible()
    run.take("01a-login-error")
    sign_in_as_merchant(page, live_server, run)  # takes 01-login
    expect(page.get_by_text("No returns yet.")).to_be_visible()
    run.take("02a-returns-empty")

    ret = _requested_return(shop)
    page.reload()
    page.get_by_role("link", name=ret.rma).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(ret.rma)
    expect(page.get_by_role("button", name="Reject return")).to_be_visible()
    run.take("03-return-requested")
    page.get_by_role("link", name="Back to returns").click()
    page.get_by_label("Search").fill("nobody@example.org")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_text("No returns match this filter.")).to_be_visible()
    run.take("02b-returns-no-match")
    page.get_by_label("Search").fill("")
    page.get_by_label("Status", exact=True).select_option(label="Requested")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_role("link", name=ret.rma)).to_be_visible()
    run.take("02-returns")

    page.get_by_role("navigation", name="Admin").get_by_role("link", name="Settings").click()
    expect(page.get_by_label("Return window (days)")).to_be_visible()
    run.take("04-settings-policy")
    page.get_by_label("Return window (days)").fill("-5")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("alert")).to_contain_text("Please correct the marked fields.")
    run.take("04a-settings-policy-errors")
    nav = page.get_by_role("navigation", name="Admin")
    nav.get_by_role("link", name="Methods and carriers").click()
    expect(page.get_by_role("heading", name="Return methods by country")).to_be_visible()
    run.take("05-settings-methods")
    nav.get_by_role("link", name="Reasons").click()
    expect(page.get_by_role("heading", name="Return reasons")).to_be_visible()
    run.take("06-settings-reasons")
    page.get_by_role("link", name="Add reason").click()
    expect(page.get_by_role("button", name="Save")).to_be_visible()
    run.take("06a-settings-reason-new")
    nav.get_by_role("link", name="Branding and address").click()
    expect(page.get_by_role("button", name="Save")).to_be_visible()
    run.take("07-settings-branding")
    run.assert_clean()
