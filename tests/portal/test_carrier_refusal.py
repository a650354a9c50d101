"""A carrier refuses the shopper's address: the shopper reads why in their language, corrects the
address on the return's page, and the label is asked for again with it."""
from __future__ import annotations

import pytest

from connector import db
from connector.returns import lifecycle as lc
from connector.returns.ports import CarrierRejected
from tests.carriers.acme import AcmeBackend, acme, connect  # noqa: F401  (acme: the carrier account, autouse)
from tests.portal.conftest import lines_of, reason_id, returns_of

CORRECTED = "Musterstraße 12"


@pytest.fixture
def refusing(monkeypatch):
    """Acme refuses any sender street but the corrected one, naming the address as the problem."""
    real = AcmeBackend.create_return_label

    def label(self, request):
        if request.sender.line1 != CORRECTED:
            raise CarrierRejected("Acme E1021: house number missing or not deliverable", field="address")
        return real(self, request)

    monkeypatch.setattr(AcmeBackend, "create_return_label", label)


def confirmed_return(shopper, shop, order):
    line = lines_of(order)["Trail Jacket"]
    shopper.sign_in()
    shopper.through_to_summary(order, {f"line-{line}-quantity": "1",
                                       f"line-{line}-reason": str(reason_id(shop, "too_small"))}, method="dropoff")
    (draft,) = returns_of(shop)
    assert shopper.post(f"orders/{order.id}/confirm", {"return_id": str(draft.id)}).status_code == 302
    (ret,) = returns_of(shop)
    return ret


def test_the_shopper_corrects_the_address_the_carrier_refused(shopper, shop, order_1001, refusing):
    connect(shop, methods={"dropoff": ["DE"]})
    ret = confirmed_return(shopper, shop, order_1001)
    assert ret.state == lc.APPROVED and ret.shipment.status == "failed"
    page = shopper.get(f"returns/{ret.rma}").get_data(as_text=True)
    assert "Correct your address" in page
    assert "The carrier could not use your address. Please check the street and house number" in page
    assert "E1021" not in page  # the carrier's own words are for the merchant

    form = {"address-name": "Erika Mustermann", "address-line1": "", "address-postcode": "10115",
            "address-city": "Berlin", "address-country": "DE"}
    answer = shopper.post(f"returns/{ret.rma}/address", form)
    assert answer.status_code == 422 and 'aria-invalid="true"' in answer.get_data(as_text=True)
    answer = shopper.post(f"returns/{ret.rma}/address", {**form, "address-line1": CORRECTED})
    assert answer.status_code == 302
    db.session.expire_all()
    (ret,) = returns_of(shop)
    assert ret.state == lc.LABEL_READY and ret.address["line1"] == CORRECTED
    page = shopper.get(f"returns/{ret.rma}").get_data(as_text=True)
    assert "Correct your address" not in page and "Download the return label (PDF)" in page


def test_no_address_form_for_refusals_the_address_cannot_fix(shopper, shop, order_1001, monkeypatch):
    connect(shop, methods={"dropoff": ["DE"]})
    monkeypatch.setattr(AcmeBackend, "create_return_label", lambda self, request: (_ for _ in ()).throw(
        CarrierRejected("Acme E2001: parcel exceeds 31.5 kg", field="weight")))
    ret = confirmed_return(shopper, shop, order_1001)
    page = shopper.get(f"returns/{ret.rma}").get_data(as_text=True)
    assert "The parcel is too heavy for this carrier." in page and "Correct your address" not in page
    answer = shopper.post(f"returns/{ret.rma}/address", {
        "address-name": "Erika Mustermann", "address-line1": CORRECTED, "address-postcode": "10115",
        "address-city": "Berlin", "address-country": "DE"}, follow_redirects=True)
    assert "There is no address to correct for this return." in answer.get_data(as_text=True)
    db.session.expire_all()
    assert returns_of(shop)[0].shipment.status == "failed"
