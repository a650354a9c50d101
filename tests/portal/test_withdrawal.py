"""The EU withdrawal function (Art. 11a of Directive 2011/83/EU, as added by 2023/2673).

Reachable from the portal's first page without signing in; two pages (details, then a button
labelled exactly "Confirm withdrawal"); no reason asked; an acknowledgment with the statement's
content, date and time on screen and by email.
"""
from __future__ import annotations

import re

from connector.returns import lifecycle as lc
from tests.portal.conftest import Shopper, lines_of, returns_of


def _details(shopper, name="Erika Mustermann", number="1001", email="erika@example.com"):
    shopper.get("withdraw")
    return shopper.post("withdraw", {"name": name, "order_number": number, "email": email})


def test_withdrawal_is_two_pages_without_a_reason_and_acknowledged(shopper, shop, order_1001, outbox):
    start = shopper.get("").get_data(as_text=True)
    assert 'href="/portal/demo-shop/withdraw"' in start and "Withdraw from contract here" in start

    first = shopper.get("withdraw").get_data(as_text=True)
    assert "reason" not in " ".join(re.findall(r'name="([^"]+)"', first))
    resp = _details(shopper)
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/withdraw/confirm")

    second = shopper.get("withdraw/confirm").get_data(as_text=True)
    assert re.search(r"<button[^>]*>Confirm withdrawal</button>", second)
    assert "I hereby withdraw from the contract" in second and "Erika Mustermann" in second
    assert "reason" not in " ".join(re.findall(r'name="([^"]+)"', second))
    assert returns_of(shop) == []  # nothing recorded before the confirmation

    done = shopper.post("withdraw/confirm", {})
    assert done.status_code == 302
    page = shopper.get(done.headers["Location"]).get_data(as_text=True)
    assert "We have received your withdrawal" in page
    assert "I hereby withdraw from the contract" in page and "#1001" in page
    [ret] = returns_of(shop)
    assert ret.is_withdrawal and ret.withdrawal_name == "Erika Mustermann" and ret.state != lc.DRAFT
    assert sorted(line.order_line.title for line in ret.lines) == ["Merino Socks", "Trail Jacket"]
    assert str(ret.confirmed_at.year) in page  # date and time of receipt shown

    [mail] = [m for m in outbox() if "withdrawal" in m["Subject"].lower()]
    body = mail.get_body(preferencelist=("plain",)).get_content()
    assert "I hereby withdraw from the contract" in body
    assert ret.confirmed_at.strftime("%Y-%m-%d %H:%M") in body  # the UTC time of receipt
    assert "Erika Mustermann" in body and "1001" in body


def test_partial_withdrawal(shopper, shop, order_1001):
    _details(shopper)
    socks = lines_of(order_1001)["Merino Socks"]
    jacket = lines_of(order_1001)["Trail Jacket"]
    resp = shopper.post("withdraw/confirm", {f"line-{socks}-quantity": "1", f"line-{jacket}-quantity": "0"})
    assert resp.status_code == 302
    [ret] = returns_of(shop)
    assert [(line.order_line.title, line.quantity) for line in ret.lines] == [("Merino Socks", 1)]


def test_withdrawing_nothing_or_too_much_is_a_field_error(shopper, shop, order_1001):
    _details(shopper)
    socks, jacket = lines_of(order_1001)["Merino Socks"], lines_of(order_1001)["Trail Jacket"]
    none = shopper.post("withdraw/confirm", {f"line-{socks}-quantity": "0", f"line-{jacket}-quantity": "0"})
    assert none.status_code == 422 and "Choose at least one item." in none.get_data(as_text=True)
    much = shopper.post("withdraw/confirm", {f"line-{socks}-quantity": "99999999999"})
    assert much.status_code == 422 and "between 0 and 3" in much.get_data(as_text=True)
    assert returns_of(shop) == []


def test_no_match_gets_one_neutral_message(client, shop):
    attempts = (("9999", "erika@example.com"), ("1001", "mallory@example.com"), ("1002", "erika@example.com"))
    for number, email in attempts:
        shopper = Shopper(client)
        resp = _details(shopper, number=number, email=email)
        assert resp.status_code == 422
        assert "We could not match this order number and email." in resp.get_data(as_text=True)
        assert shopper.get("withdraw/confirm").status_code == 302  # nothing pending


def test_a_second_confirmation_makes_no_second_withdrawal(shopper, shop, order_1001, outbox):
    _details(shopper)
    page = shopper.get("withdraw/confirm")
    token = shopper.token
    first = shopper.post("withdraw/confirm", {"csrf_token": token})
    # The same page submitted again, with the session as it was before the first answer.
    with shopper.client.session_transaction() as sess:
        pending = dict(sess.get("portal_withdrawal") or {})
    assert pending.get(str(shop.id)) is None
    assert page.status_code == 200 and first.status_code == 302
    assert len(returns_of(shop)) == 1


def test_replaying_the_pending_withdrawal_finds_the_first_one(shopper, shop, order_1001, outbox):
    _details(shopper)
    with shopper.client.session_transaction() as sess:
        saved = dict(sess["portal_withdrawal"])
    first = shopper.post("withdraw/confirm", {})
    with shopper.client.session_transaction() as sess:
        sess["portal_withdrawal"] = saved  # a second tab still holding the confirmation page
    second = shopper.post("withdraw/confirm", {})
    assert first.headers["Location"] == second.headers["Location"]
    assert len(returns_of(shop)) == 1
    assert len([m for m in outbox() if "withdrawal" in m["Subject"].lower()]) == 1


def test_withdrawal_form_limits_lengths(shopper, shop):
    resp = _details(shopper, name="N" * 10_000, number="1" * 10_000, email="e" * 10_000 + "@example.com")
    page = resp.get_data(as_text=True)
    assert resp.status_code == 422
    assert "A name is at most 200 characters." in page and "An order number is at most 64 characters." in page
