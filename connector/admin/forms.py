"""The merchant admin's forms: fixed ones as WTForms classes, per-line and per-row ones as parsers.

Every parser returns (values, errors) with errors keyed by the form field's name, so the page can
show each message beside its field. CSRF is checked for every POST by the app's CSRFProtect.
"""
from __future__ import annotations

import re
from decimal import Decimal
from typing import Any, Mapping

from flask_babel import gettext as _, lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import (BooleanField, IntegerField, PasswordField, SelectField, SelectMultipleField, StringField,
                     TextAreaField)
from wtforms.validators import URL, DataRequired, Length, NumberRange, Optional, Regexp, ValidationError
from wtforms.fields.choices import SelectChoice
from wtforms.widgets import CheckboxInput, ListWidget

from connector.i18n import LANGUAGES
from connector.returns.ports import METHODS

AMOUNT_RE = re.compile(r"^\d{1,12}(\.\d{1,4})?$")
COLOUR_RE = re.compile(r"^#[0-9a-fA-F]{6}$")
COUNTRY_RE = re.compile(r"^[A-Z]{2}$")
REASON_CODE_RE = re.compile(r"^[a-z0-9_]{1,64}$")
MAX_METHOD_ROWS = 300
MAX_NOTE = 2000


def method_label(method: str) -> str:
    return {"pickup": _("Pickup"), "dropoff": _("Drop-off"), "carrier_label": _("Pickup, driver brings label"),
            "selfship": _("Shopper ships it")}.get(method, method)


def shipment_status_label(status: str) -> str:
    return {"requested": _("Requested from the carrier"), "label_ready": _("Label ready"),
            "pickup_booked": _("Pickup booked"), "awaiting_shipment": _("Waiting for the shopper to send it"),
            "in_transit": _("On its way"), "delivered": _("Delivered"), "void_requested": _("Cancelling"),
            "void_pending": _("Cancellation asked, waiting for the carrier"),
            "label_pending": _("Waiting for the carrier to make the label"),
            "voided": _("Cancelled"), "failed": _("Refused by the carrier")}.get(status, status)


def tracking_status_label(status: str) -> str:
    return {"info_received": _("Announced to the carrier"), "in_transit": _("On its way"),
            "out_for_delivery": _("Out for delivery"), "delivered": _("Delivered"),
            "exception": _("Problem reported by the carrier")}.get(status, status)


class MultiCheckboxField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


# ---------------------------------------------------------------------------- sign-in and actions


class LoginForm(FlaskForm):
    password = PasswordField(_l("Password"), validators=[DataRequired(), Length(max=200)])
    name = StringField(_l("Your name"), validators=[Optional(), Length(max=80)],
                       description=_l("Shown in the return's timeline next to what you do."))


class RejectForm(FlaskForm):
    note = TextAreaField(_l("Why is it rejected?"), validators=[Optional(), Length(max=MAX_NOTE)],
                         description=_l("Kept on the return's timeline."))


# ---------------------------------------------------------------------------- settings


class PolicyForm(FlaskForm):
    window_days = IntegerField(_l("Return window (days)"), validators=[NumberRange(0, 3650)],
                               description=_l("Counted from delivery."))
    transit_allowance_days = IntegerField(_l("Transit allowance (days)"), validators=[NumberRange(0, 365)],
                                          description=_l("Added to the fulfilment date when the delivery date is unknown."))
    ship_by_days = IntegerField(_l("Ship back within (days)"), validators=[NumberRange(1, 365)],
                                description=_l("The shopper's deadline after the return is requested."))
    excluded_tags = StringField(_l("Excluded product tags"), validators=[Length(max=4000)],
                                description=_l("Comma-separated."))
    excluded_skus = StringField(_l("Excluded SKUs"), validators=[Length(max=4000)],
                                description=_l("Comma-separated."))
    excluded_product_types = StringField(_l("Excluded product types"), validators=[Length(max=4000)],
                                         description=_l("Comma-separated."))
    final_sale_tags = StringField(_l("Final-sale tags"), validators=[Length(max=4000)],
                                  description=_l("Comma-separated; items with these tags cannot be returned."))
    restocking_fee_percent = StringField(_l("Restocking fee (%)"), validators=[DataRequired(), Length(max=12)],
                                         description=_l("Deducted from the refund, except when the shop is at fault."))
    refund_shipping = SelectField(_l("Refund the original shipping"), choices=[
        SelectChoice("never", _l("Never")), SelectChoice("shop_fault", _l("When the shop is at fault")),
        SelectChoice("full_return", _l("When the whole order comes back")), SelectChoice("always", _l("Always"))])
    store_credit = BooleanField(_l("Offer store credit instead of money back"))
    reason_required = BooleanField(_l("Shoppers must give a reason"))
    auto_approve = BooleanField(_l("Approve returns automatically"))
    receive_on_delivery = BooleanField(_l("Mark a return received when the carrier delivers it"),
                                       description=_l("Off: the warehouse receives each parcel itself."))
    auto_approve_max_total = StringField(_l("…only up to this return value"), validators=[Length(max=20)],
                                         description=_l("Leave empty for no limit."))
    auto_approve_reason_codes = MultiCheckboxField(_l("…only for these reasons"), choices=[],
                                                   description=_l("None ticked: any reason."))
    refund_trigger = SelectField(_l("Refund"), choices=[
        SelectChoice("manual", _l("When I click Refund")),
        SelectChoice("received", _l("As soon as the parcel is received")),
        SelectChoice("inspected", _l("As soon as every item is graded"))])

    COMMA_LISTS = ("excluded_tags", "excluded_skus", "excluded_product_types", "final_sale_tags")

    def validate_restocking_fee_percent(self, field):
        if not AMOUNT_RE.match((field.data or "").strip()):
            raise ValidationError(_("Enter a number like 10 or 12.5."))

    def validate_auto_approve_max_total(self, field):
        if (field.data or "").strip() and not AMOUNT_RE.match(field.data.strip()):
            raise ValidationError(_("Enter an amount like 100 or 99.90, or leave it empty."))

    def fill(self, policy: dict[str, Any]) -> None:
        """Show the stored policy (on GET)."""
        for name in ("window_days", "transit_allowance_days", "ship_by_days", "refund_shipping", "store_credit",
                     "reason_required", "auto_approve", "refund_trigger", "receive_on_delivery"):
            getattr(self, name).data = policy.get(name)
        for name in self.COMMA_LISTS:
            getattr(self, name).data = ", ".join(policy.get(name) or [])
        self.restocking_fee_percent.data = str(policy.get("restocking_fee_percent") or "0")
        self.auto_approve_max_total.data = policy.get("auto_approve_max_total") or ""
        self.auto_approve_reason_codes.data = list(policy.get("auto_approve_reason_codes") or [])

    def policy_values(self) -> dict[str, Any]:
        """The submitted values as policy keys (strings where ReturnPolicy.from_dict parses them)."""
        values: dict[str, Any] = {name: getattr(self, name).data for name in (
            "window_days", "transit_allowance_days", "ship_by_days", "refund_shipping", "store_credit",
            "reason_required", "auto_approve", "refund_trigger", "receive_on_delivery")}
        for name in self.COMMA_LISTS:
            values[name] = [v.strip() for v in (getattr(self, name).data or "").split(",") if v.strip()]
        values["restocking_fee_percent"] = self.restocking_fee_percent.data.strip()
        values["auto_approve_max_total"] = (self.auto_approve_max_total.data or "").strip() or None
        values["auto_approve_reason_codes"] = list(self.auto_approve_reason_codes.data or []) or None
        return values


class ReasonForm(FlaskForm):
    code = StringField(_l("Code"), validators=[DataRequired(), Regexp(REASON_CODE_RE, message=_l(
        "Use lower-case letters, digits and underscores, e.g. too_small."))],
        description=_l("Used in reports and the API; it cannot change later."))
    parent_id = SelectField(_l("Group under"), coerce=int, choices=[])
    label_en = StringField(_l("Label (English)"), validators=[DataRequired(), Length(max=120)])
    label_de = StringField(_l("Label (German)"), validators=[Optional(), Length(max=120)])
    label_es = StringField(_l("Label (Spanish)"), validators=[Optional(), Length(max=120)])
    label_fr = StringField(_l("Label (French)"), validators=[Optional(), Length(max=120)])
    comment_required = BooleanField(_l("Comment required"))
    photo_required = BooleanField(_l("Photo required"))
    shop_fault = BooleanField(_l("The shop is at fault (free return)"))
    position = IntegerField(_l("Position"), default=0, validators=[NumberRange(0, 1000)])
    active = BooleanField(_l("Offered to shoppers"), default=True)

    def labels(self) -> dict[str, str]:
        return {lang: getattr(self, f"label_{lang}").data.strip() for lang in LANGUAGES
                if (getattr(self, f"label_{lang}").data or "").strip()}


class BrandingForm(FlaskForm):
    logo_url = StringField(_l("Logo URL"), validators=[Optional(), Length(max=1024),
                                                       URL(require_tld=True, message=_l("Enter a full https:// address."))],
                           description=_l("An https:// image address, shown on the returns portal."))
    primary_color = StringField(_l("Primary colour"), validators=[DataRequired(), Regexp(COLOUR_RE, message=_l(
        "Enter a colour as #rrggbb, e.g. #1f5f4a."))])
    support_email = StringField(_l("Support email"), validators=[Optional(), Length(max=255), Regexp(
        r"^[^@\s]+@[^@\s]+\.[^@\s]+$", message=_l("Enter an email address."))])
    address_name = StringField(_l("Name"), validators=[DataRequired(), Length(max=255)])
    address_line1 = StringField(_l("Street and number"), validators=[DataRequired(), Length(max=255)])
    address_line2 = StringField(_l("Address line 2"), validators=[Optional(), Length(max=255)])
    address_postcode = StringField(_l("Postcode"), validators=[DataRequired(), Length(max=32)])
    address_city = StringField(_l("City"), validators=[DataRequired(), Length(max=128)])
    address_country = StringField(_l("Country code"), validators=[DataRequired(), Regexp(
        r"^[A-Za-z]{2}$", message=_l("Two letters, e.g. DE."))])
    address_phone = StringField(_l("Phone"), validators=[Optional(), Length(max=40)])

    ADDRESS_KEYS = ("name", "line1", "line2", "postcode", "city", "country", "phone")

    def validate_logo_url(self, field):
        if field.data and not field.data.strip().lower().startswith("https://"):
            raise ValidationError(_("Enter a full https:// address."))

    def fill(self, shop) -> None:
        branding = shop.branding or {}
        self.logo_url.data = branding.get("logo_url") or ""
        self.primary_color.data = branding.get("primary_color") or "#1f4f8f"
        self.support_email.data = shop.support_email or ""
        for key in self.ADDRESS_KEYS:
            getattr(self, f"address_{key}").data = (shop.return_address or {}).get(key, "")

    def address(self) -> dict[str, str]:
        address = {key: (getattr(self, f"address_{key}").data or "").strip() for key in self.ADDRESS_KEYS}
        address["country"] = address["country"].upper()
        return address


# ---------------------------------------------------------------------------- per-row forms


def parse_methods(form: Mapping[str, str], carrier_choices: dict[str, list[str]]
                  ) -> tuple[dict[str, Any], dict[str, str]]:
    """Read the methods page: rows of country + ticked methods, a fee and a carrier per method.

    Returns ({"methods": ..., "fees": ..., "carriers": ...}, errors). A row with an empty
    country is dropped (that is how a row is removed).
    """
    errors: dict[str, str] = {}
    methods: dict[str, list[str]] = {}
    try:
        rows = min(int(form.get("rows", "0")), MAX_METHOD_ROWS)
    except ValueError:
        rows = 0
    for i in range(rows):
        country = (form.get(f"methods-{i}-country") or "").strip().upper()
        if not country:
            continue
        if country != "*" and not COUNTRY_RE.match(country):
            errors[f"methods-{i}-country"] = _("Two letters (e.g. DE), or * for every other country.")
            continue
        if country in methods:
            errors[f"methods-{i}-country"] = _("This country has a row already.")
            continue
        methods[country] = [m for m in METHODS if form.get(f"methods-{i}-{m}")]
    fees: dict[str, str] = {}
    carriers: dict[str, str] = {}
    for method in METHODS:
        fee = (form.get(f"fee-{method}") or "").strip().replace(",", ".")
        if not AMOUNT_RE.match(fee or "-"):
            errors[f"fee-{method}"] = _("Enter an amount like 3.95 (0 for free).")
        else:
            fees[method] = str(Decimal(fee))
        carrier = form.get(f"carrier-{method}") or ""
        if carrier not in carrier_choices.get(method, []):
            errors[f"carrier-{method}"] = _("Choose a carrier that can do this.")
        else:
            carriers[method] = carrier
    return {"methods": methods, "fees": fees, "carriers": carriers}, errors


def parse_received(form: Mapping[str, str], lines) -> tuple[dict[int, int], dict[str, str]]:
    """Read `received-<line id>` for each return line: 0..announced quantity."""
    quantities: dict[int, int] = {}
    errors: dict[str, str] = {}
    for line in lines:
        raw = (form.get(f"received-{line.id}") or "").strip()
        if not raw.isdigit() or int(raw) > line.quantity:
            errors[f"line-{line.id}-received"] = _("Enter a number from 0 to %(n)s.", n=line.quantity)
            continue
        quantities[line.id] = int(raw)
    return quantities, errors


def parse_inspection(form: Mapping[str, str], lines) -> tuple[dict[int, dict[str, str]], dict[str, str]]:
    """Read grade, disposition and note per return line; lines left ungraded are skipped."""
    results: dict[int, dict[str, str]] = {}
    errors: dict[str, str] = {}
    for line in lines:
        grade = (form.get(f"grade-{line.id}") or "").strip()
        disposition = (form.get(f"disposition-{line.id}") or "").strip()
        note = (form.get(f"note-{line.id}") or "").strip()
        if not grade and not disposition:
            continue
        if len(note) > MAX_NOTE:
            errors[f"line-{line.id}-note"] = _("Please keep the note under %(n)s characters.", n=MAX_NOTE)
        results[line.id] = {"grade": grade, "disposition": disposition, "note": note}
    if not results and not errors:
        errors["inspection"] = _("Grade at least one item.")
    return results, errors
