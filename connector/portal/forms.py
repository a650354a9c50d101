"""The portal's forms: parsing and checking what the shopper sends, before any service sees it.

Fixed forms are Flask-WTF classes (CSRF, length limits, required fields). The per-order forms
(items, method, checklist, withdrawal quantities) depend on the order, so they are parsed here by
small functions that return the shopper's choices and a dict of field errors keyed like the
services' ValidationError ("line-<id>-quantity", "method", ...), so both kinds of error land
beside the same field.

All text passes `single_line` / `multi_line`: control characters are dropped (PostgreSQL refuses
NUL, and none of them belongs in a name or a comment) and surrounding space is trimmed.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from babel import Locale
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from werkzeug.datastructures import FileStorage, MultiDict
from wtforms import EmailField, SelectField, StringField
from wtforms.validators import DataRequired, Length, Regexp, ValidationError

MAX_EMAIL = 254
MAX_ORDER_NUMBER = 64
MAX_NAME = 200
MAX_COMMENT = 2000
MAX_QUANTITY_DIGITS = 4
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}")


def _strip_controls(value: str, keep: str = "") -> str:
    return "".join(c for c in value if c in keep or unicodedata.category(c) not in ("Cc", "Cs"))


def single_line(value):
    """A one-line text field: no control characters, trimmed."""
    if value is None:
        return value
    return _strip_controls(str(value)).strip()


def multi_line(value):
    """A comment: line breaks and tabs kept, other control characters dropped, trimmed."""
    if value is None:
        return value
    return _strip_controls(str(value).replace("\r\n", "\n").replace("\r", "\n"), keep="\n\t").strip()


def _email_check(form, field):
    if field.data and not _EMAIL.fullmatch(field.data):
        raise ValidationError(_("Enter an email address like name@example.com."))


def _normalise_email(value):
    value = single_line(value)
    return value.lower() if value else value


# ------------------------------------------------------------------------------- fixed forms

class SignInForm(FlaskForm):
    """Find one order by its number and the email or shipping postcode it was placed with."""

    order_number = StringField(_l("Order number"), filters=[single_line], validators=[
        DataRequired(_l("Enter your order number.")),
        Length(max=MAX_ORDER_NUMBER, message=_l("An order number is at most %(max)d characters."))])
    contact = StringField(_l("Email or postcode"), filters=[single_line], validators=[
        DataRequired(_l("Enter the email address or the postcode of the order.")),
        Length(max=MAX_EMAIL, message=_l("This is too long."))])


class LinkForm(FlaskForm):
    """Ask for a sign-in link by email."""

    email = EmailField(_l("Email address"), filters=[_normalise_email], validators=[
        DataRequired(_l("Enter your email address.")),
        Length(max=MAX_EMAIL, message=_l("This is too long.")), _email_check])


class WithdrawalForm(FlaskForm):
    """The EU withdrawal form (first page): who withdraws from which order. No reason is asked."""

    name = StringField(_l("Full name"), filters=[single_line], validators=[
        DataRequired(_l("Enter your name.")),
        Length(max=MAX_NAME, message=_l("A name is at most %(max)d characters."))])
    order_number = StringField(_l("Order number"), filters=[single_line], validators=[
        DataRequired(_l("Enter your order number.")),
        Length(max=MAX_ORDER_NUMBER, message=_l("An order number is at most %(max)d characters."))])
    email = EmailField(_l("Email address used for the order"), filters=[_normalise_email], validators=[
        DataRequired(_l("Enter your email address.")),
        Length(max=MAX_EMAIL, message=_l("This is too long.")), _email_check])


def country_choices(locale: str | None = None) -> list[tuple[str, str]]:
    """Every ISO country, named in the page's language, sorted by name."""
    try:
        names = Locale.parse(locale or str(get_locale() or "en")).territories
    except (ValueError, TypeError):
        names = Locale("en").territories
    countries = [(code, name) for code, name in names.items() if re.fullmatch(r"[A-Z]{2}", code)
                 and code not in ("ZZ", "XA", "XB", "QO", "EU", "EZ", "UN")]
    return sorted(countries, key=lambda c: c[1])


class AddressForm(FlaskForm):
    """The pickup / sender address (instructions step). Field names match the services' keys."""

    name = StringField(_l("Full name"), filters=[single_line], validators=[
        DataRequired(_l("This field is required.")), Length(max=MAX_NAME, message=_l("This is too long."))])
    line1 = StringField(_l("Street and house number"), filters=[single_line], validators=[
        DataRequired(_l("This field is required.")), Length(max=255, message=_l("This is too long."))])
    line2 = StringField(_l("Apartment, floor, company (optional)"), filters=[single_line],
                        validators=[Length(max=255, message=_l("This is too long."))])
    postcode = StringField(_l("Postcode"), filters=[single_line], validators=[
        DataRequired(_l("This field is required.")), Length(max=32, message=_l("This is too long."))])
    city = StringField(_l("City"), filters=[single_line], validators=[
        DataRequired(_l("This field is required.")), Length(max=128, message=_l("This is too long."))])
    region = StringField(_l("State or region (optional)"), filters=[single_line],
                         validators=[Length(max=64, message=_l("This is too long."))])
    country = SelectField(_l("Country"), validate_choice=True, validators=[DataRequired(_l("Choose a country."))])
    phone = StringField(_l("Phone (optional, for the driver)"), filters=[single_line], validators=[
        Length(max=40, message=_l("This is too long.")),
        Regexp(r"^[0-9+()./ \-]*$", message=_l("Use digits, spaces and + ( ) - only."))])

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.country.choices = country_choices()

    FIELDS = ("name", "line1", "line2", "postcode", "city", "region", "country", "phone")

    def address(self) -> dict[str, str]:
        return {name: (getattr(self, name).data or "") for name in self.FIELDS}


class TrackingForm(FlaskForm):
    """Self-shipped returns: the tracking number and carrier from the shopper's receipt."""

    tracking_number = StringField(_l("Tracking number"), filters=[single_line], validators=[
        DataRequired(_l("Enter the tracking number as printed on your receipt.")),
        Length(max=64, message=_l("This is too long."))])
    carrier_name = StringField(_l("Carrier"), filters=[single_line], validators=[
        DataRequired(_l("Enter the carrier you sent the parcel with.")),
        Length(max=64, message=_l("This is too long."))])


def field_errors(form: FlaskForm) -> dict[str, str]:
    """A WTForms form's errors as {field name: first message}, like the services' errors."""
    return {name: str(messages[0]) for name, messages in form.errors.items() if messages and name != "csrf_token"}


# ------------------------------------------------------------------------------- the items step

@dataclass
class LineEntry:
    """What the shopper chose (or is choosing) for one order line."""

    line_id: int
    quantity: int = 0
    reason_id: int | None = None
    comment: str = ""
    photos: list[str] = field(default_factory=list)  # stored photo keys kept from earlier
    uploads: list[FileStorage] = field(default_factory=list)  # new files in this request


def _small_int(raw: str | None) -> int | None:
    """A non-negative whole number of at most a few digits, else None (tampered or nonsense)."""
    raw = (raw or "").strip()
    if not raw:
        return 0
    if len(raw) > MAX_QUANTITY_DIGITS or not raw.isascii() or not raw.isdigit():
        return None
    return int(raw)


def _id(raw: str | None) -> int | None:
    raw = (raw or "").strip()
    if not raw or len(raw) > 12 or not raw.isascii() or not raw.isdigit():
        return None
    return int(raw)


def parse_items(form: MultiDict, files: MultiDict, options, *, photo_key: re.Pattern[str],
                max_photos: int, reason_ids: set[int]) -> tuple[list[LineEntry], dict[str, str]]:
    """Read the items form for `options` (services.LineOption, this order's lines only).

    Fields per line: line-<id>-quantity, -reason, -comment, -photos (files) and -keep (photo keys
    kept from an earlier submit). Lines the shopper cannot return are read as 0. Keys that are not
    this shop's photo keys are dropped.
    """
    entries: list[LineEntry] = []
    errors: dict[str, str] = {}
    for option in options:
        line = option.line
        prefix = f"line-{line.id}"
        entry = LineEntry(line_id=line.id)
        if option.blocked:  # shown disabled, so never sent by a browser; anything sent is ignored
            entries.append(entry)
            continue
        quantity = _small_int(form.get(f"{prefix}-quantity"))
        if quantity is None or quantity > option.returnable_quantity:
            errors[f"{prefix}-quantity"] = _("Choose a quantity between 0 and %(n)s.", n=option.returnable_quantity)
            quantity = 0
        entry.quantity = quantity
        raw_reason = form.get(f"{prefix}-reason")
        reason_id = _id(raw_reason)
        if raw_reason and (reason_id is None or reason_id not in reason_ids):
            errors[f"{prefix}-reason"] = _("Choose a reason from the list.")
            reason_id = None
        entry.reason_id = reason_id
        comment = multi_line(form.get(f"{prefix}-comment") or "")
        if len(comment) > MAX_COMMENT:
            errors[f"{prefix}-comment"] = _("Please keep the comment under %(n)s characters.", n=MAX_COMMENT)
            comment = comment[:MAX_COMMENT]
        entry.comment = comment
        kept = [k for k in form.getlist(f"{prefix}-keep") if photo_key.fullmatch(k or "")]
        entry.photos = list(dict.fromkeys(kept))[:max_photos]
        entry.uploads = [f for f in files.getlist(f"{prefix}-photos") if f and f.filename]
        if entry.quantity and len(entry.photos) + len(entry.uploads) > max_photos:
            errors[f"{prefix}-photos"] = _("You can add at most %(n)s photos per item.", n=max_photos)
            entry.uploads = []
        entries.append(entry)
    return entries, errors


def entries_from_draft(ret, options) -> list[LineEntry]:
    """The choices stored on a draft, for "Back": every line of the order, chosen or not."""
    stored = {line.order_line_id: line for line in ret.lines} if ret is not None else {}
    entries = []
    for option in options:
        line = stored.get(option.line.id)
        entries.append(LineEntry(line_id=option.line.id) if line is None else LineEntry(
            line_id=option.line.id, quantity=line.quantity, reason_id=line.reason_id,
            comment=line.comment or "", photos=list(line.photos or [])))
    return entries


# ------------------------------------------------------------------------------ method, checklist

def parse_method(form: MultiDict, methods: list[str], *, store_credit: bool) -> tuple[str, str, dict[str, str]]:
    method = (form.get("method") or "")[:32]
    refund_method = (form.get("refund_method") or "original")[:32]
    errors = {}
    if method not in methods:
        errors["method"] = _("Choose one of the offered return methods.")
    allowed = ("original", "store_credit") if store_credit else ("original",)
    if refund_method not in allowed:
        errors["refund_method"] = _("Choose where your money should go.")
    return method, refund_method, errors


def parse_checklist(form: MultiDict, items: list[tuple[str, str]]) -> list[str]:
    """The ticked checklist codes (only codes that are on the list)."""
    known = {code for code, _text in items}
    return [code for code in dict.fromkeys(form.getlist("checklist")) if code in known]


# ------------------------------------------------------------------------------ withdrawal lines

def parse_withdrawal_lines(form: MultiDict, options) -> tuple[dict[int, int] | None, dict[int, int], dict[str, str]]:
    """Which units the shopper withdraws from, on the confirmation page.

    Returns (line_quantities for services.create_withdrawal: None when the whole order is meant,
    the chosen quantities to re-render, errors).
    """
    chosen: dict[int, int] = {}
    errors: dict[str, str] = {}
    for option in options:
        name = f"line-{option.line.id}-quantity"
        quantity = _small_int(form.get(name, str(option.returnable_quantity)))
        if quantity is None or quantity > option.returnable_quantity:
            errors[name] = _("Choose a quantity between 0 and %(n)s.", n=option.returnable_quantity)
            quantity = option.returnable_quantity
        chosen[option.line.id] = 0 if option.blocked else quantity
    if not errors and not any(chosen.values()):
        errors["items"] = _("Choose at least one item.")
    whole = all(chosen[o.line.id] == o.returnable_quantity for o in options)
    return (None if whole else {k: v for k, v in chosen.items() if v}), chosen, errors
