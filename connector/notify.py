"""Mails to shoppers and merchants, each in the reader's language, as a text and an HTML part.

Every function renders `connector/templates/mail/<name>.txt` and `.html` inside
`flask_babel.force_locale(locale)` (so subjects, labels, money and dates follow the shopper's
language), builds the message with `connector.mail.build_message` and hands it to the app's
mailer. Each returns what the mailer returns (the outbox file name or the SMTP Message-ID), or
None when there is nothing to send. Nothing here writes to the database: the caller records the
mail on the return's timeline if it wants to.

Needs an application context (the worker's tasks and the web requests have one).
"""
from __future__ import annotations

import logging
import re
from datetime import date, datetime, timezone
from decimal import Decimal
from email.headerregistry import Address
from email.utils import parseaddr
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel.dates import format_date, format_datetime
from flask import current_app, render_template
from flask_babel import force_locale, format_currency, get_locale
from flask_babel import gettext as _

from connector.i18n import LANGUAGES
from connector.mail import Attachment, build_message
from connector.returns import lifecycle
from connector.returns.models import Refund, Return, Shop

log = logging.getLogger("connector.notify")

SIGNIN_LINK_MINUTES = 30
DEFAULT_COLOR = "#1f2937"
_HEX_COLOR = re.compile(r"^#(?:[0-9a-fA-F]{3}){1,2}$")

# Methods whose carrier hands the shopper a label to print (or a QR code to show).
LABEL_METHODS = frozenset({"pickup", "dropoff"})

# The states a shopper hears about. Every other state sends nothing from status_changed:
# draft and closed are not news, requested is the confirmation mail, and awaiting_shipment (a
# return the shopper sends themselves) follows approval at once, so the confirmation or the
# approval mail already carries its instructions.
STATUS_MAILS = (lifecycle.APPROVED, lifecycle.REJECTED, lifecycle.LABEL_READY, lifecycle.AWAITING_PICKUP,
                lifecycle.IN_TRANSIT, lifecycle.RECEIVED, lifecycle.INSPECTED, lifecycle.REFUNDED,
                lifecycle.CANCELLED)


# --------------------------------------------------------------------------- public functions


def send_signin_link(shop: Shop, email: str, link: str, locale: str | None) -> str:
    """The portal's single-use sign-in link (valid SIGNIN_LINK_MINUTES minutes) to `email`."""
    locale = _locale(locale, shop)
    with force_locale(locale):
        subject = _("Your sign-in link for %(shop)s returns", shop=shop.name)
        return _send(shop, email, subject, "signin_link", locale,
                     link=link, minutes=SIGNIN_LINK_MINUTES)


def return_confirmed(ret: Return) -> str:
    """The confirmation of a return: RMA, items with reasons, method, fee, what to do next
    (label attached when it already exists, pickup date, carrier brings the label, or where to
    send it), and the status page link."""
    shop = _shop_of(ret)
    locale = _locale(ret.locale, shop)
    with force_locale(locale):
        subject = _("Return %(rma)s confirmed", rma=ret.rma)
        context = _return_context(ret, shop, locale)
        return _send(shop, ret.email, subject, "return_confirmed", locale,
                     attachments=_label_attachments(ret), **context)


def status_changed(ret: Return, state: str) -> str | None:
    """One mail for a shopper-visible change of `ret` to `state`; None (nothing sent) for the
    states a shopper is not told about."""
    if state not in STATUS_MAILS:
        return None
    shop = _shop_of(ret)
    locale = _locale(ret.locale, shop)
    with force_locale(locale):
        subject = _status_subject(state, ret.rma)
        context = _return_context(ret, shop, locale)
        attachments: tuple[Attachment, ...] = ()
        if state in (lifecycle.LABEL_READY, lifecycle.AWAITING_PICKUP):
            attachments = _label_attachments(ret)
        if state == lifecycle.REJECTED:
            context["note"] = _state_note(ret, lifecycle.REJECTED)
        if state == lifecycle.REFUNDED:
            context["refund"] = _latest_refund(ret)
        if state == lifecycle.INSPECTED:
            context["missing"] = [line for line in ret.lines if line.disposition == "missing"]
        return _send(shop, ret.email, subject, f"status_{state}", locale,
                     attachments=attachments, state=state, **context)


def withdrawal_received(ret: Return) -> str:
    """The acknowledgment of an EU withdrawal on a durable medium, sent at once: the statement as
    received (name, email, order, items when partial) and the date and time of its receipt in the
    shop's time zone, with the zone named, and in UTC."""
    shop = _shop_of(ret)
    locale = _locale(ret.locale, shop)
    # The statement was received when the withdrawal was recorded (confirmed_at is set then).
    received_at = ret.confirmed_at or ret.created_at or datetime.now(timezone.utc)
    with force_locale(locale):
        order = ret.order
        subject = _("Confirmation of receipt of your withdrawal (order %(order)s)", order=order.display_number)
        context = _return_context(ret, shop, locale)
        context.update(
            name=ret.withdrawal_name or order.customer_name,
            partial=_is_partial(ret),
            received_local=format_datetime(received_at, "full", tzinfo=_zone(shop), locale=get_locale()),
            received_zone=str(_zone(shop)),
            received_utc=received_at.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        )
        return _send(shop, ret.email, subject, "withdrawal_received", locale, **context)


def merchant_alert(shop: Shop, subject: str, text: str) -> str | None:
    """A plain alert to the shop's support address (a stuck job, a failed refund). None, with a
    warning in the log, when the shop has no support address to send it to."""
    if not shop.support_email:
        log.warning("merchant alert for shop %s not sent (no support email): %s", shop.handle, subject)
        return None
    locale = _locale(shop.locale, shop)
    with force_locale(locale):
        full_subject = f"[{shop.name}] {subject}"
        return _send(shop, shop.support_email, full_subject, "merchant_alert", locale,
                     alert_subject=subject, alert_text=text, reply_to=None)


# --------------------------------------------------------------------------- rendering and sending


_UNSET = object()


def _send(shop: Shop, to: str, subject: str, template: str, locale: str, *,
          attachments: tuple[Attachment, ...] = (), reply_to=_UNSET, **context) -> str:
    """Render `mail/<template>.txt|.html` in the current (forced) locale and send the message."""
    config = current_app.config["CONNECTOR"]
    context.update(_helpers(shop), shop=shop, subject=subject, brand=_brand(shop), locale=locale)
    text = _tidy(render_template(f"mail/{template}.txt", **context))
    html = render_template(f"mail/{template}.html", **context)
    message = build_message(
        sender=_sender(config.mail_from, shop.name), to=to, subject=subject, text=text, html=html,
        attachments=attachments, reply_to=shop.support_email if reply_to is _UNSET else reply_to,
        language=locale)
    return current_app.extensions["connector.mailer"].send(message)


def _sender(mail_from: str, shop_name: str) -> str:
    """config.mail_from's address with the shop's name as the display name."""
    _display, address = parseaddr(mail_from)
    address = address or "returns@localhost"
    username, _at, domain = address.partition("@")
    return str(Address(display_name=shop_name, username=username, domain=domain or "localhost"))


def _tidy(text: str) -> str:
    """Template logic leaves blank lines and trailing spaces behind: keep at most one blank line."""
    lines = [line.rstrip() for line in text.strip().splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)) + "\n"


def _locale(locale: str | None, shop: Shop | None) -> str:
    for candidate in (locale, getattr(shop, "locale", None)):
        if candidate:
            short = candidate.replace("-", "_").split("_")[0].lower()
            if short in LANGUAGES:
                return short
    return "en"


def _shop_of(ret: Return) -> Shop:
    from connector import db
    shop = db.session.get(Shop, ret.shop_id)
    if shop is None:
        raise LookupError(f"return {ret.id} belongs to no shop")
    return shop


def _zone(shop: Shop) -> ZoneInfo:
    try:
        return ZoneInfo(shop.timezone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _brand(shop: Shop) -> dict:
    """Colours and logo for the HTML part; only a #hex colour and an http(s) logo are used
    (mail clients block data: URLs, and a colour goes into a style attribute)."""
    branding = shop.branding or {}
    color = branding.get("primary_color") or DEFAULT_COLOR
    if not _HEX_COLOR.match(str(color)):
        color = DEFAULT_COLOR
    logo = branding.get("logo_url") or ""
    return {"color": color, "on_color": _readable_on(color),
            "logo_url": logo if logo.startswith(("https://", "http://")) else None}


def _readable_on(color: str) -> str:
    """Black or white, whichever reads better on `color` (WCAG relative luminance)."""
    hex_ = color.lstrip("#")
    if len(hex_) == 3:
        hex_ = "".join(c * 2 for c in hex_)

    def channel(i: int) -> float:
        c = int(hex_[i:i + 2], 16) / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    luminance = 0.2126 * channel(0) + 0.7152 * channel(2) + 0.0722 * channel(4)
    return "#000000" if luminance > 0.179 else "#ffffff"


def _helpers(shop: Shop) -> dict:
    """Formatting functions for the templates, in the forced locale and the shop's time zone."""
    zone = _zone(shop)

    def money(amount: Decimal | None, currency: str) -> str:
        return format_currency(amount if amount is not None else Decimal("0"), currency)

    def day(value: date | datetime | None) -> str:
        if value is None:
            return ""
        if isinstance(value, datetime):
            value = value.astimezone(zone).date()
        return format_date(value, "full", locale=get_locale())

    def moment(value: datetime | None) -> str:
        if value is None:
            return ""
        return format_datetime(value, "long", tzinfo=zone, locale=get_locale())

    return {"money": money, "day": day, "moment": moment}


# --------------------------------------------------------------------------- what a return mail shows


def _method_name(method: str | None) -> str:
    names = {
        "pickup": _("Pickup from your address"),
        "dropoff": _("Drop-off at a parcel shop"),
        "carrier_label": _("Pickup from your address (the driver brings the label)"),
        "selfship": _("Send it yourself"),
    }
    return names.get(method or "", method or "")


def _status_subject(state: str, rma: str) -> str:
    subjects = {
        lifecycle.APPROVED: _("Return %(rma)s approved", rma=rma),
        lifecycle.REJECTED: _("Return %(rma)s could not be accepted", rma=rma),
        lifecycle.LABEL_READY: _("Your return label for %(rma)s", rma=rma),
        lifecycle.AWAITING_PICKUP: _("Pickup booked for return %(rma)s", rma=rma),
        lifecycle.IN_TRANSIT: _("Return %(rma)s is on its way to us", rma=rma),
        lifecycle.RECEIVED: _("We have received return %(rma)s", rma=rma),
        lifecycle.INSPECTED: _("Return %(rma)s has been checked", rma=rma),
        lifecycle.REFUNDED: _("Refund issued for return %(rma)s", rma=rma),
        lifecycle.CANCELLED: _("Return %(rma)s cancelled", rma=rma),
    }
    return subjects[state]


def _return_context(ret: Return, shop: Shop, locale: str) -> dict:
    """What every return mail may show: items, method, fee, shipment, addresses, status link."""
    shipment = ret.shipment
    label = bool(ret.method in LABEL_METHODS and shipment is not None and shipment.label_key)
    items = [{
        "title": line.order_line.title,
        "variant": line.order_line.variant_title,
        "sku": line.order_line.sku,
        "quantity": line.quantity,
        "reason": line.reason.label(locale) if line.reason is not None else "",
    } for line in ret.lines]
    return {
        "ret": ret,
        "order": ret.order,
        "items": items,
        "method": ret.method,
        "method_name": _method_name(ret.method),
        "fee": ret.fee or Decimal("0"),
        "shipment": shipment,
        "has_label": label,
        "prints_label": ret.method in LABEL_METHODS,
        "return_address": shop.return_address or {},
        "status_url": _status_link(ret),
    }


def _status_link(ret: Return) -> str:
    # Imported here: the portal's module imports services, which import this module.
    from connector.portal.tokens import status_link
    return status_link(ret)


def _label_attachments(ret: Return) -> tuple[Attachment, ...]:
    """The label PDF (and QR code, for paperless drop-off) when the method uses a label and the
    carrier has made it; nothing for carrier_label (the driver brings it) and selfship."""
    if ret.method not in LABEL_METHODS:
        return ()
    from connector.returns import services
    attachments = []
    label = services.label_bytes(ret)
    if label:
        attachments.append(Attachment(filename=f"{ret.rma}-label.pdf", content=label,
                                      mimetype="application/pdf"))
    qr = services.qr_bytes(ret) if ret.method == "dropoff" else None
    if qr:
        kind = "svg+xml" if qr.lstrip()[:5] in (b"<?xml", b"<svg ") else "png"
        attachments.append(Attachment(filename=f"{ret.rma}-qr.{'svg' if kind == 'svg+xml' else 'png'}",
                                      content=qr, mimetype=f"image/{kind}"))
    return tuple(attachments)


def _state_note(ret: Return, state: str) -> str:
    """The public note given with the latest move to `state` (e.g. why a return was rejected)."""
    for event in reversed(ret.events):
        if event.kind == "state" and (event.data or {}).get("to") == state:
            return (event.data or {}).get("note", "") if event.public else ""
    return ""


def _latest_refund(ret: Return) -> Refund | None:
    done = [r for r in ret.refunds if r.state == "succeeded"]
    return (done or list(ret.refunds) or [None])[-1]


def _is_partial(ret: Return) -> bool:
    """Whether the withdrawal covers less than every unit of the order."""
    withdrawn = {line.order_line_id: line.quantity for line in ret.lines}
    return any(withdrawn.get(line.id, 0) < line.quantity - (line.refunded_quantity or 0)
               for line in ret.order.lines)
