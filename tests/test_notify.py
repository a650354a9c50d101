"""Shopper and merchant mails: the shopper's language, the shop's look, the right attachments.

Returns are made through the services (jobs inline), so each test also checks which mails the
real flow sends. Language is checked by what does not depend on the catalogues being translated
yet (Content-Language, money and dates formatted for the locale, reason labels stored per
language) and by comparing subjects and sentences with the catalogue's own translation.
"""
from __future__ import annotations

from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

import pytest
from babel.dates import format_date, format_datetime
from flask_babel import force_locale, format_currency, gettext
from sqlalchemy import select

from connector import db, notify
from connector.returns import lifecycle as lc
from connector.returns import services
from connector.returns.models import ReturnReason
from connector.returns.policy import ReturnPolicy

LOCALES = ("en", "de")
FEE_TEXT = {"en": "€3.95", "de": "3,95\xa0€"}
REASON_TEXT = {"en": "Too small", "de": "Zu klein"}


def t(locale: str, message: str, **params) -> str:
    """The catalogue's translation of `message` in `locale` (English until translated)."""
    with force_locale(locale):
        return gettext(message, **params)


def text_of(msg) -> str:
    return msg.get_body(("plain",)).get_content()


def html_of(msg) -> str:
    return msg.get_body(("html",)).get_content()


def attachments_of(msg) -> dict[str, bytes]:
    return {part.get_filename(): part.get_content() for part in msg.iter_attachments()}


def by_subject(mails, subject):
    found = [m for m in mails if m["Subject"] == subject]
    assert found, f"no mail {subject!r} among {[m['Subject'] for m in mails]}"
    return found[-1]


def _order_1001(shop):
    return services.find_order_for_login(shop, "1001", "erika@example.com")


def _reason(shop, code):
    return db.session.scalar(select(ReturnReason).where(ReturnReason.shop_id == shop.id, ReturnReason.code == code))


def make_return(shop, *, method="dropoff", locale="en", reason="too_small"):
    """One Trail Jacket back from order 1001, confirmed through the portal's use cases."""
    order = _order_1001(shop)
    ret = services.start_draft(shop, order, email=order.email, locale=locale)
    services.set_items(ret, [services.ItemChoice(order.lines[0].id, 1, _reason(shop, reason).id)])
    services.set_method(ret, method)
    services.set_instructions(ret, dict(order.shipping_address), [c for c, _t in services.checklist_items(ret)])
    return services.confirm(ret)


def allow_carrier_label(shop):
    shop.policy = ReturnPolicy(methods={"*": ["pickup", "dropoff", "carrier_label", "selfship"]}).to_dict()
    db.session.commit()


@pytest.mark.parametrize("locale", LOCALES)
def test_confirmation_is_in_the_shoppers_language_with_items_fee_and_status_link(shop, outbox, locale):
    ret = make_return(shop, locale=locale)
    mail = by_subject(outbox(), t(locale, "Return %(rma)s confirmed", rma="R-1001"))
    body = text_of(mail)
    assert mail["To"] == "erika@example.com"
    assert mail["Content-Language"] == locale
    assert "R-1001" in body and "#1001" in body
    assert "Trail Jacket" in body and "M / Blue" in body
    assert REASON_TEXT[locale] in body  # the reason's label in the shopper's language
    assert FEE_TEXT[locale] in body  # money formatted for the locale
    assert t(locale, "Drop-off at a parcel shop") in body
    assert f"/portal/demo-shop/returns/{ret.rma}?t=" in body
    assert f"/portal/demo-shop/returns/{ret.rma}?t=" in html_of(mail)


def test_sender_is_the_shop_and_replies_go_to_its_support(shop, outbox):
    make_return(shop)
    mail = outbox()[0]
    assert mail["From"].addresses[0].display_name == "Demo Outdoor GmbH"
    assert mail["From"].addresses[0].addr_spec == "returns@localhost"  # config.mail_from's address
    assert mail["Reply-To"] == "support@example.com"


def test_html_part_carries_the_shop_name_and_colour(shop, outbox):
    make_return(shop)
    html = html_of(outbox()[0])
    assert "Demo Outdoor GmbH" in html
    assert "#1f5f4a" in html  # Shop.branding primary colour
    assert "<script" not in html


@pytest.mark.parametrize("locale", LOCALES)
def test_label_mail_attaches_the_label_pdf(shop, outbox, locale):
    ret = make_return(shop, method="dropoff", locale=locale)
    assert ret.state == lc.LABEL_READY
    mail = by_subject(outbox(), t(locale, "Your return label for %(rma)s", rma="R-1001"))
    files = attachments_of(mail)
    assert files["R-1001-label.pdf"].startswith(b"%PDF")
    assert t(locale, "Your return label is attached. Print it and stick it on the parcel, covering any old "
                     "labels, then take the parcel to a parcel shop of the carrier.") in text_of(mail)


@pytest.mark.parametrize("locale", LOCALES)
def test_pickup_mail_gives_the_date_and_attaches_the_label(shop, outbox, locale):
    ret = make_return(shop, method="pickup", locale=locale)
    assert ret.state == lc.AWAITING_PICKUP
    mail = by_subject(outbox(), t(locale, "Pickup booked for return %(rma)s", rma="R-1001"))
    assert attachments_of(mail)["R-1001-label.pdf"].startswith(b"%PDF")
    day = format_date(ret.shipment.pickup_date, "full", locale=locale)
    assert day in text_of(mail)
    assert ret.shipment.pickup_window in text_of(mail)


@pytest.mark.parametrize("locale", LOCALES)
def test_carrier_label_pickup_has_no_attachment_and_says_the_driver_brings_it(shop, outbox, locale):
    allow_carrier_label(shop)
    ret = make_return(shop, method="carrier_label", locale=locale)
    assert ret.state == lc.AWAITING_PICKUP
    mails = outbox()
    assert all(not attachments_of(m) for m in mails)
    mail = by_subject(mails, t(locale, "Pickup booked for return %(rma)s", rma="R-1001"))
    assert t(locale, "No label needed: the driver brings it.") in text_of(mail)
    assert format_date(ret.shipment.pickup_date, "full", locale=locale) in text_of(mail)


def test_selfship_confirmation_says_where_to_send_it_and_sends_nothing_more(shop, outbox):
    ret = make_return(shop, method="selfship")
    assert ret.state == lc.AWAITING_SHIPMENT
    mails = outbox()
    assert [m["Subject"] for m in mails] == ["Return R-1001 confirmed"]
    body = text_of(mails[0])
    assert "Lagerweg 5" in body and "04109 Leipzig" in body
    assert "R-1001" in body and not attachments_of(mails[0])


@pytest.mark.parametrize("locale", LOCALES)
def test_every_shopper_visible_state_has_its_mail(shop, outbox, locale):
    ret = make_return(shop, locale=locale)
    before = len(outbox())
    subjects = {
        lc.APPROVED: "Return %(rma)s approved",
        lc.REJECTED: "Return %(rma)s could not be accepted",
        lc.LABEL_READY: "Your return label for %(rma)s",
        lc.AWAITING_PICKUP: "Pickup booked for return %(rma)s",
        lc.IN_TRANSIT: "Return %(rma)s is on its way to us",
        lc.RECEIVED: "We have received return %(rma)s",
        lc.INSPECTED: "Return %(rma)s has been checked",
        lc.REFUNDED: "Refund issued for return %(rma)s",
        lc.CANCELLED: "Return %(rma)s cancelled",
    }
    for state, subject in subjects.items():
        assert notify.status_changed(ret, state), state
    mails = outbox()[before:]
    assert [m["Subject"] for m in mails] == [t(locale, s, rma=ret.rma) for s in subjects.values()]
    for mail in mails:
        assert mail["Content-Language"] == locale
        assert ret.rma in text_of(mail)
        assert t(locale, "Follow your return") in text_of(mail)


def test_states_the_shopper_is_not_told_about_send_nothing(shop, outbox):
    ret = make_return(shop)
    before = len(outbox())
    for state in (lc.DRAFT, lc.REQUESTED, lc.AWAITING_SHIPMENT, lc.CLOSED, "no-such-state"):
        assert notify.status_changed(ret, state) is None
    assert len(outbox()) == before


@pytest.mark.parametrize("locale", LOCALES)
def test_refund_mail_states_the_amount(shop, outbox, locale):
    ret = make_return(shop, locale=locale)
    services.mark_received(ret, "merchant:test")
    services.inspect(ret, "merchant:test", {line.id: {"grade": "A", "disposition": "restock", "note": ""}
                                            for line in ret.lines})
    refund = services.request_refund(ret, "merchant:test")
    db.session.refresh(refund)
    assert refund.state == "succeeded"
    mail = by_subject(outbox(), t(locale, "Refund issued for return %(rma)s", rma=ret.rma))
    with force_locale(locale):
        amount = format_currency(refund.amount, refund.currency)
    assert amount in text_of(mail) and amount in html_of(mail)


def test_rejection_mail_carries_the_merchants_note(shop, outbox):
    shop.policy = ReturnPolicy(auto_approve=False).to_dict()
    db.session.commit()
    ret = make_return(shop)
    assert ret.state == lc.REQUESTED
    services.reject(ret, "merchant:test", note="The jacket was worn outdoors.")
    mail = by_subject(outbox(), "Return R-1001 could not be accepted")
    assert "The jacket was worn outdoors." in text_of(mail)


@pytest.mark.parametrize("locale", LOCALES)
def test_withdrawal_acknowledgment_holds_the_statement_and_time_of_receipt(shop, outbox, locale):
    order = _order_1001(shop)
    jacket = order.lines[0]
    ret = services.create_withdrawal(shop, order, name="Erika Mustermann", email="erika@example.com",
                                     line_quantities={jacket.id: 1}, locale=locale)
    mail = by_subject(outbox(), t(locale, "Confirmation of receipt of your withdrawal (order %(order)s)",
                                  order="#1001"))
    body = text_of(mail)
    statement = t(locale, "I hereby withdraw from the contract concluded by me for the purchase of the "
                          "following goods (order %(order)s):", order="#1001")
    assert statement in body
    assert "Erika Mustermann" in body and "erika@example.com" in body
    assert "1 x Trail Jacket (M / Blue)" in body  # the items, as the withdrawal is partial
    received = ret.confirmed_at
    local = format_datetime(received, "full", tzinfo=ZoneInfo("Europe/Berlin"), locale=locale)
    assert f"{local} (Europe/Berlin)" in body  # the shop's time zone, named
    assert received.strftime("%Y-%m-%d %H:%M:%S UTC") in body  # and UTC
    assert statement in html_of(mail) or statement.replace("'", "&#39;") in html_of(mail)


def test_whole_order_withdrawal_says_so(shop, outbox):
    order = services.find_order_for_login(shop, "1003", "jean@example.fr")
    services.create_withdrawal(shop, order, name="Jean Dupont", email="jean@example.fr", line_quantities=None,
                               locale="fr")
    mail = outbox()[-1]
    assert mail["Content-Language"] == "fr"
    assert t("fr", "I hereby withdraw from the contract concluded by me for the purchase of all goods of "
                   "order %(order)s.", order="#1003") in text_of(mail)


@pytest.mark.parametrize("locale", LOCALES)
def test_signin_link_mail_holds_the_link_and_its_lifetime(shop, outbox, locale):
    link = "http://localhost/portal/demo-shop/link?t=abc.def"
    assert notify.send_signin_link(shop, "erika@example.com", link, locale)
    mail = outbox()[-1]
    assert mail["Subject"] == t(locale, "Your sign-in link for %(shop)s returns", shop="Demo Outdoor GmbH")
    assert mail["Content-Language"] == locale
    assert link in text_of(mail) and link in html_of(mail)
    assert t(locale, "The link works once and expires in %(minutes)s minutes.", minutes=30) in text_of(mail)


def test_unknown_locale_falls_back_to_the_shops(shop, outbox):
    notify.send_signin_link(shop, "erika@example.com", "http://localhost/x", "xx")
    assert outbox()[-1]["Content-Language"] == "en"


def test_merchant_alert_goes_to_the_support_address(shop, outbox):
    assert notify.merchant_alert(shop, "R-1001: label job stuck", "Waited 2 hours for the carrier.")
    mail = outbox()[-1]
    assert mail["To"] == "support@example.com"
    assert mail["Subject"] == "[Demo Outdoor GmbH] R-1001: label job stuck"
    assert "Waited 2 hours for the carrier." in text_of(mail)


def test_merchant_alert_without_support_address_sends_nothing(shop, outbox):
    shop.support_email = None
    db.session.commit()
    assert notify.merchant_alert(shop, "stuck", "text") is None
    assert outbox() == []


def test_dates_follow_the_shops_time_zone(shop, outbox):
    """A ship-by deadline just after midnight in Berlin is that Berlin day, not the UTC day before."""
    ret = make_return(shop, method="selfship", locale="de")
    ret.deadline = datetime(2026, 3, 14, 23, 30, tzinfo=timezone.utc)  # 15 March, 00:30 in Berlin
    db.session.commit()
    notify.return_confirmed(ret)
    body = text_of(outbox()[-1])
    assert format_date(date(2026, 3, 15), "full", locale="de") in body
