"""Settings: policy, methods and carriers, reasons, branding. Saved when valid, errors beside fields when not."""
from __future__ import annotations

from decimal import Decimal

from sqlalchemy import select

from connector import db
from connector.returns import services
from connector.returns.models import ReturnReason
from tests.admin.conftest import reason

POLICY_FORM = {
    "window_days": "45", "transit_allowance_days": "4", "ship_by_days": "10",
    "excluded_tags": "underwear, swimwear", "excluded_skus": "GIFT-25", "excluded_product_types": "",
    "final_sale_tags": "final-sale, outlet", "restocking_fee_percent": "12.5", "refund_shipping": "shop_fault",
    "store_credit": "y", "reason_required": "y", "auto_approve": "y", "auto_approve_max_total": "200",
    "auto_approve_reason_codes": ["too_small", "too_big"], "refund_trigger": "inspected",
}


def _text(response) -> str:
    return response.get_data(as_text=True)


def test_policy_is_saved(admin, shop):
    response = admin.post("settings/policy", POLICY_FORM, page="settings/policy", follow=True)
    assert "Return policy saved." in _text(response)
    db.session.refresh(shop)
    policy = services.policy_of(shop)
    assert policy.window_days == 45 and policy.transit_allowance_days == 4 and policy.ship_by_days == 10
    assert policy.excluded_tags == ["underwear", "swimwear"] and policy.excluded_skus == ["GIFT-25"]
    assert policy.final_sale_tags == ["final-sale", "outlet"]
    assert policy.restocking_fee_percent == Decimal("12.5") and policy.refund_shipping == "shop_fault"
    assert policy.store_credit and policy.reason_required and policy.auto_approve
    assert policy.auto_approve_max_total == Decimal("200")
    assert policy.auto_approve_reason_codes == ["too_small", "too_big"]
    assert policy.refund_trigger == "inspected"
    # The methods page's settings are left as they were.
    assert policy.methods == {"*": ["pickup", "dropoff", "selfship"]}
    page = _text(admin.get("settings/policy"))
    assert 'value="underwear, swimwear"' in page and 'value="12.5"' in page


def test_unticked_boxes_turn_settings_off(admin, shop):
    form = {k: v for k, v in POLICY_FORM.items() if k not in ("store_credit", "auto_approve", "reason_required",
                                                               "auto_approve_reason_codes")}
    admin.post("settings/policy", form, page="settings/policy")
    db.session.refresh(shop)
    policy = services.policy_of(shop)
    assert not policy.store_credit and not policy.auto_approve and not policy.reason_required
    assert policy.auto_approve_reason_codes is None


def test_policy_errors_are_shown_beside_the_fields_and_nothing_is_saved(admin, shop):
    before = dict(shop.policy)
    bad = {**POLICY_FORM, "window_days": "-1", "restocking_fee_percent": "abc", "auto_approve_max_total": "1,000.00"}
    response = admin.post("settings/policy", bad, page="settings/policy")
    html = _text(response)
    assert response.status_code == 422
    assert "Please correct the marked fields." in html
    assert "Enter a number like 10 or 12.5." in html
    assert "Enter an amount like 100 or 99.90, or leave it empty." in html
    assert html.count('aria-invalid="true"') == 3
    db.session.refresh(shop)
    assert shop.policy == before


def test_policy_rules_of_the_domain_are_checked_too(admin, shop):
    response = admin.post("settings/policy", {**POLICY_FORM, "restocking_fee_percent": "150"}, page="settings/policy")
    assert response.status_code == 422
    assert "must be between 0 and 100" in _text(response)


def test_methods_fees_and_carriers_are_saved(admin, shop):
    form = {"rows": "3", "methods-0-country": "*", "methods-0-dropoff": "1", "methods-0-selfship": "1",
            "methods-1-country": "es", "methods-1-selfship": "1", "methods-2-country": "",
            "fee-pickup": "5.50", "fee-dropoff": "3,95", "fee-carrier_label": "4.95", "fee-selfship": "0",
            "carrier-pickup": "sandbox", "carrier-dropoff": "sandbox", "carrier-carrier_label": "sandbox",
            "carrier-selfship": "selfship"}
    response = admin.post("settings/methods", form, page="settings/methods", follow=True)
    assert "Methods and carriers saved." in _text(response)
    db.session.refresh(shop)
    policy = services.policy_of(shop)
    assert policy.methods == {"*": ["dropoff", "selfship"], "ES": ["selfship"]}
    assert policy.fees["pickup"] == Decimal("5.50") and policy.fees["dropoff"] == Decimal("3.95")
    assert policy.carriers["selfship"] == "selfship"
    page = _text(admin.get("settings/methods"))
    assert 'value="ES"' in page and "Ship it yourself" in page


def test_methods_page_refuses_bad_rows_and_carriers_that_cannot_do_the_method(admin, shop):
    before = dict(shop.policy)
    form = {"rows": "2", "methods-0-country": "Germany", "methods-0-pickup": "1",
            "methods-1-country": "*", "methods-1-pickup": "1",
            "fee-pickup": "-2", "fee-dropoff": "3.95", "fee-carrier_label": "4.95", "fee-selfship": "0",
            "carrier-pickup": "selfship", "carrier-dropoff": "sandbox", "carrier-carrier_label": "sandbox",
            "carrier-selfship": "selfship"}
    response = admin.post("settings/methods", form, page="settings/methods")
    html = _text(response)
    assert response.status_code == 422
    assert "Two letters (e.g. DE), or * for every other country." in html
    assert "Enter an amount like 3.95 (0 for free)." in html
    assert "Choose a carrier that can do this." in html
    assert 'value="Germany"' in html  # what was typed is kept
    db.session.refresh(shop)
    assert shop.policy == before


def test_reason_can_be_added_edited_and_turned_off(admin, shop):
    size = reason(shop, "size")
    response = admin.post("settings/reasons/new", {
        "code": "too_long", "parent_id": str(size.id), "label_en": "Too long", "label_de": "Zu lang",
        "label_es": "Demasiado largo", "label_fr": "Trop long", "position": "3", "active": "y"},
        page="settings/reasons/new", follow=True)
    assert "Reason saved." in _text(response)
    made = reason(shop, "too_long")
    assert made.parent_id == size.id and made.labels["de"] == "Zu lang" and made.active
    assert any(child.code == "too_long" for top, children in services.reasons_tree(shop) for child in children)

    admin.post(f"settings/reasons/{made.id}", {
        "code": "something_else", "parent_id": "0", "label_en": "Much too long", "position": "3",
        "comment_required": "y", "active": "y"}, page=f"settings/reasons/{made.id}")
    db.session.refresh(made)
    assert made.code == "too_long"  # the code never changes once made
    assert made.parent_id is None and made.labels == {"en": "Much too long"} and made.comment_required

    admin.post(f"settings/reasons/{made.id}/toggle", page="settings/reasons")
    db.session.refresh(made)
    assert not made.active
    assert all(r.code != "too_long" for r, _children in services.reasons_tree(shop))
    assert "Much too long" in _text(admin.get("settings/reasons"))


def test_reason_needs_an_english_label_and_a_unique_code(admin, shop):
    """Nothing is created by a refused form."""
    response = admin.post("settings/reasons/new", {"code": "damaged", "parent_id": "0", "label_en": "Broken",
                                                   "position": "0"}, page="settings/reasons/new")
    assert response.status_code == 422 and "Another reason has this code." in _text(response)
    response = admin.post("settings/reasons/new", {"code": "Bad Code!", "parent_id": "0", "label_en": "",
                                                   "position": "0"}, page="settings/reasons/new")
    html = _text(response)
    assert response.status_code == 422
    assert "Use lower-case letters, digits and underscores" in html and "This field is required." in html
    codes = db.session.scalars(select(ReturnReason.code).where(ReturnReason.shop_id == shop.id)).all()
    assert len(codes) == 7


def test_branding_and_return_address_are_saved(admin, shop):
    response = admin.post("settings/branding", {
        "logo_url": "https://cdn.example.com/logo.png", "primary_color": "#AA3300", "support_email": "help@example.com",
        "address_name": "Demo Lager", "address_line1": "Lagerweg 7", "address_postcode": "04109",
        "address_city": "Leipzig", "address_country": "de", "address_phone": ""},
        page="settings/branding", follow=True)
    assert "Branding and return address saved." in _text(response)
    db.session.refresh(shop)
    assert shop.branding["primary_color"] == "#aa3300" and shop.branding["logo_url"] == "https://cdn.example.com/logo.png"
    assert shop.return_address["line1"] == "Lagerweg 7" and shop.return_address["country"] == "DE"
    assert shop.support_email == "help@example.com"


def test_branding_refuses_a_colour_that_is_not_hex_and_a_logo_that_is_not_https(admin, shop):
    response = admin.post("settings/branding", {
        "logo_url": "javascript:alert(1)", "primary_color": "red", "address_name": "Demo Lager",
        "address_line1": "Lagerweg 7", "address_postcode": "04109", "address_city": "Leipzig",
        "address_country": "DE"}, page="settings/branding")
    html = _text(response)
    assert response.status_code == 422
    assert "Enter a colour as #rrggbb, e.g. #1f5f4a." in html
    assert "Enter a full https:// address." in html
    db.session.refresh(shop)
    assert shop.branding["primary_color"] == "#1f5f4a"
