"""Signing in to the portal: order number + email or postcode, and the single-use email link."""
from __future__ import annotations

import re
import time
from datetime import timedelta

import pytest
from itsdangerous.timed import TimestampSigner

from connector.portal import views
from tests.portal.conftest import Shopper


def _mail_link(message) -> str:
    body = message.get_body(preferencelist=("plain",)).get_content()
    return re.search(r"https?://\S+/portal/demo-shop/link\?t=[\w.\-]+", body).group(0)


def _token(link: str) -> str:
    return link.split("?t=", 1)[1]


def _path(link: str) -> str:
    return link.split("http://localhost", 1)[1]


def test_start_page_has_both_ways_in_and_the_withdrawal_button(shopper):
    page = shopper.get("").get_data(as_text=True)
    assert '<html lang="en">' in page
    assert 'href="#main"' in page  # skip link
    assert page.count("<h1") == 1
    assert "Find your order" in page and "Email me a link" in page
    assert "Withdraw from contract here" in page
    assert "--brand: #1f5f4a" in page  # the shop's colour as a CSS variable
    for field in ("order_number", "contact", "email"):
        assert f'for="{field}"' in page and f'id="{field}"' in page


def test_language_switch_sets_the_page_language(shopper):
    page = shopper.get("?lang=de").get_data(as_text=True)
    assert '<html lang="de">' in page
    assert 'hreflang="fr"' in page and "?lang=fr" in page


def test_sign_in_with_order_number_and_postcode_opens_the_order(shopper, order_1001):
    resp = shopper.sign_in("1001", "10115")
    assert resp.status_code == 302
    assert resp.headers["Location"].endswith(f"/portal/demo-shop/orders/{order_1001.id}/items")
    page = shopper.get(f"orders/{order_1001.id}/items").get_data(as_text=True)
    assert "Trail Jacket" in page and "Step 2 of 5" in page


def test_sign_in_accepts_hash_and_any_email_case(shopper, order_1001):
    resp = shopper.sign_in("#1001", "Erika@Example.com")
    assert resp.status_code == 302


def test_wrong_details_get_one_neutral_answer(shopper):
    unknown_order = shopper.sign_in("9999", "erika@example.com")
    wrong_email = shopper.sign_in("1001", "someone@example.com")
    wrong_postcode = shopper.sign_in("1001", "99999")
    for resp in (unknown_order, wrong_email, wrong_postcode):
        assert resp.status_code == 422
        assert "We could not find an order with this number and email or postcode." in resp.get_data(as_text=True)
    assert shopper.get("orders").status_code == 302  # not signed in


def test_email_link_signs_in_once(client, shop, outbox):
    shopper = Shopper(client)
    shopper.get("")
    resp = shopper.post("link", {"email": "erika@example.com"})
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/portal/demo-shop/link-sent")
    mails = outbox()
    assert len(mails) == 1 and mails[0]["To"].addresses[0].addr_spec == "erika@example.com"
    link = _mail_link(mails[0])

    opened = shopper.get(_path(link))  # a mail scanner's visit must not spend it
    assert opened.status_code == 200 and "Continue" in opened.get_data(as_text=True)
    assert shopper.get(_path(link)).status_code == 200
    used = shopper.post("link/open", {"t": _token(link)})
    assert used.status_code == 302 and used.headers["Location"].endswith("/portal/demo-shop/orders")
    page = shopper.get("orders").get_data(as_text=True)
    assert "#1001" in page and "#1002" not in page  # only this email's orders

    again = Shopper(client.application.test_client()).get(_path(link))
    assert again.status_code == 400
    assert "expired or was already used" in again.get_data(as_text=True)
    other = Shopper(client.application.test_client())
    other.get("")
    assert other.post("link/open", {"t": _token(link)}).status_code == 400


def test_email_link_expires_after_30_minutes(client, shop, outbox, monkeypatch):
    from flask import current_app

    from connector.portal import tokens
    with current_app.test_request_context():
        # Sign the link 31 minutes in the past.
        monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: int(time.time()) - 31 * 60)
        old = tokens.signin_link(shop, "erika@example.com")
        monkeypatch.undo()
        fresh = tokens.signin_link(shop, "erika@example.com")
    assert Shopper(client).get(_path(old)).status_code == 400
    assert Shopper(client.application.test_client()).get(_path(fresh)).status_code == 200


def test_link_request_answers_the_same_for_unknown_emails(client, shop, outbox):
    known, unknown = Shopper(client), Shopper(client.application.test_client())
    known.get("")
    unknown.get("")
    a = known.post("link", {"email": "erika@example.com"})
    b = unknown.post("link", {"email": "nobody@example.com"})
    assert (a.status_code, a.headers["Location"]) == (b.status_code, b.headers["Location"])
    page_a = known.get("link-sent").get_data(as_text=True)
    page_b = unknown.get("link-sent").get_data(as_text=True)
    assert "If an order matches, we sent a link" in page_a
    strip = lambda p: re.sub(r'value="[^"]+"', "", p)  # noqa: E731 (CSRF tokens differ per session)
    assert strip(page_a) == strip(page_b)
    assert len(outbox()) == 1  # only the known address got mail


@pytest.mark.parametrize("token", ["", "garbage", "a.b.c", "x" * 5000])
def test_tampered_links_are_refused(shopper, token):
    resp = shopper.get(f"link?t={token}")
    assert resp.status_code == 400
    assert shopper.get("orders").status_code == 302


def test_a_link_of_one_shop_does_not_open_another(client, shop):
    from flask import current_app

    from connector.portal import tokens
    from tests.factories import make_shop
    other = make_shop(handle="other-shop", name="Other Shop")
    with current_app.test_request_context():
        link = tokens.signin_link(shop, "erika@example.com")
    path = _path(link).replace("/demo-shop/", "/other-shop/")
    assert Shopper(client, "other-shop").get(path).status_code == 400
    assert other.id != shop.id


def test_link_requests_are_limited_per_email(shopper, outbox):
    shopper.get("")
    answers = [shopper.post("link", {"email": "erika@example.com"}).status_code for _ in range(6)]
    assert answers == [302] * 5 + [429]
    page = shopper.post("link", {"email": "erika@example.com"})
    assert page.status_code == 429 and "Too many attempts" in page.get_data(as_text=True)
    assert len(outbox()) == 5
    # Another address is counted on its own.
    assert shopper.post("link", {"email": "jean@example.fr"}).status_code == 302


def test_lookups_are_limited_per_client_address(shopper, monkeypatch):
    monkeypatch.setattr(views, "LOOKUPS_PER_ADDRESS", (3, timedelta(minutes=15)))
    answers = [shopper.sign_in(str(2000 + i), "x@example.com").status_code for i in range(4)]
    assert answers == [422, 422, 422, 429]
    other_client = shopper.client.post(shopper.url(""), data={"order_number": "1", "contact": "x@example.com",
                                                              "csrf_token": shopper.token},
                                       environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert other_client.status_code == 422


def test_sign_out_forgets_the_orders(shopper, order_1001):
    shopper.sign_in()
    assert shopper.get("orders").status_code == 200
    assert shopper.post("signout").status_code == 302
    assert shopper.get(f"orders/{order_1001.id}/items").status_code == 404


def test_language_choice_survives_a_redirect(shopper, order_1001):
    shopper.sign_in()
    assert shopper.get("?lang=fr").status_code == 302  # signed in: the start page sends to the orders
    assert '<html lang="fr">' in shopper.get("orders").get_data(as_text=True)
