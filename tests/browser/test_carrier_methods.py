"""The portal offers exactly what the shop's connected carriers can do for the shopper's country.

The shop connects the sandbox carrier as an account that serves "the driver brings the label"
pickups for Germany and drop-offs for Austria only. A German shopper is offered that pickup (and
sending it themselves, which needs no carrier), never a printed-label pickup or a drop-off; the
pickup is booked, the status page and the mail say no label is printed, and no label is attached.
A French shopper, served by no connection, is offered only sending it themselves.
"""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from connector import db
from connector.carriers import connections
from connector.returns import lifecycle as lc
from tests.browser.conftest import Shopper, fresh, order_of, return_of

ALL_METHODS = ["pickup", "dropoff", "carrier_label", "selfship"]


@pytest.fixture
def connected(shop):
    shop.policy = {**(shop.policy or {}), "methods": {"*": ALL_METHODS}}
    connections.save(shop, "sandbox", {}, name="Sandbox GLS-style", test_mode=True,
                     methods={"carrier_label": ["DE"], "dropoff": ["AT"]})
    db.session.commit()
    return shop


def offered(page) -> list[str]:
    return [radio.get_attribute("value") for radio in page.locator("input[name=method]").all()]


def test_a_driver_brings_the_label_pickup_is_all_a_german_shopper_is_offered_besides_selfship(
        open_page, live_server, connected, steps, outbox):
    page = open_page()
    run = steps(page, "carriers-carrier_label", axe=True)
    shopper = Shopper(page, live_server, connected, run, outbox=outbox)
    shopper.open_portal()
    order = shopper.sign_in_with_order("1001", "erika@example.com")
    shopper.choose_items(order, {"Trail Jacket": (1, "too_small")}, show_error_first=False)
    assert offered(page) == ["carrier_label", "selfship"]
    expect(page.get_by_text("The driver brings the label — no printing")).to_be_visible()
    run.take("03-method")
    page.get_by_role("radio", name="Pickup, the driver brings the label").check()
    shopper.button("Continue").click()
    shopper.expect_path(rf"/orders/{order.id}/instructions")
    shopper.confirm_instructions(order)
    rma = shopper.confirm()
    shopper.open_status(rma)
    expect(page.get_by_text("The driver brings the label — no printing. Do not attach a label yourself.")).to_be_visible()
    expect(page.get_by_role("link", name="Download the return label (PDF)")).to_have_count(0)
    fresh()
    ret = return_of(connected, rma)
    assert ret.state == lc.AWAITING_PICKUP and ret.method == "carrier_label"
    assert ret.shipment.connection_id is not None and ret.shipment.label_key is None
    mails = [m for m in outbox() if m["To"] == "erika@example.com"]
    assert mails and not [part for m in mails for part in m.iter_attachments() if part.get_filename()]
    assert any("No label needed: the driver brings it." in m.get_body(("plain",)).get_content() for m in mails)
    run.assert_clean()


def test_a_shopper_in_a_country_no_carrier_serves_may_only_send_it_themselves(
        open_page, live_server, connected, steps):
    page = open_page()
    run = steps(page, "carriers-france", axe=False)
    shopper = Shopper(page, live_server, connected, run)
    shopper.open_portal()
    order = shopper.sign_in_with_order("1003", "jean@example.fr")
    shopper.choose_items(order, {"Hiking Boots": (1, "too_small")}, show_error_first=False)
    assert offered(page) == ["selfship"]
    run.take("03-method")
    assert order_of(connected, "1003").country == "FR"


def test_the_merchant_connects_a_carrier_account(open_page, live_server, shop, steps):
    from tests.browser.conftest import sign_in_as_merchant

    page = open_page()
    run = steps(page, "admin-carriers", axe=True)
    sign_in_as_merchant(page, live_server, run, axe=False)
    page.get_by_role("link", name="Settings").first.click()
    page.get_by_role("link", name="Carrier accounts").first.click()
    expect(page.get_by_role("heading", level=2, name="Carrier accounts")).to_be_visible()
    run.take("02-accounts")
    page.get_by_role("link", name="Sandbox carrier").click()
    page.get_by_label("Account name").fill("Sandbox DE")
    page.get_by_label("Pickup cut-off hour").fill("14")
    page.get_by_label("Pickup, driver brings label").fill("DE, AT")
    run.take("03-new")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Carrier account saved.")).to_be_visible()
    page.get_by_role("button", name="Check credentials").click()
    expect(page.get_by_text("The carrier accepted the credentials.")).to_be_visible()
    run.take("04-checked")
    page.get_by_role("link", name="All carrier accounts").click()
    expect(page.get_by_role("link", name="Sandbox DE")).to_be_visible()
    expect(page.get_by_text("Credentials accepted")).to_be_visible()
    run.take("05-listed")
    run.assert_clean()
