"""The sandbox carrier: deterministic, idempotent, and a faithful stand-in for a real one."""
from __future__ import annotations

import re
import zlib
from datetime import datetime, timedelta, timezone

import pytest

from connector.carriers.refusals import FIELD_MESSAGES, shopper_message

from connector.carriers.sandbox import SandboxBackend, tracking_number_for
from connector.returns.ports import Address, CarrierAuthError, CarrierRejected, CarrierRetryable
from tests.carriers.harness import make_request, next_pickup_day


@pytest.fixture
def sandbox(tmp_path) -> SandboxBackend:
    return SandboxBackend({"data_dir": tmp_path})


def state_files(backend: SandboxBackend) -> list[str]:
    return sorted(p.name for p in backend.state_dir.glob("*.json"))


def pdf_text(pdf: bytes) -> str:
    """The page content of an fpdf2 PDF: its Flate streams inflated (images stay binary noise)."""
    chunks = []
    for stream in re.findall(rb"stream\r?\n(.*?)\r?\nendstream", pdf, re.S):
        try:
            chunks.append(zlib.decompress(stream).decode("latin-1"))
        except zlib.error:
            continue
    return "\n".join(chunks)


def test_tracking_number_is_derived_from_the_idempotency_key():
    assert tracking_number_for("shipment-7") == tracking_number_for("shipment-7")
    assert tracking_number_for("shipment-7") != tracking_number_for("shipment-8")
    assert re.fullmatch(r"SBX\d{10}", tracking_number_for("shipment-7"))


def test_retried_label_request_returns_the_same_parcel(sandbox):
    """A job retried after a timeout must not announce a second parcel."""
    first = sandbox.create_return_label(make_request(key="ship-1"))
    again = sandbox.create_return_label(make_request(key="ship-1"))
    assert again == first
    assert state_files(sandbox) == [f"{first.tracking_number}.json"]


def test_another_shipment_gets_another_parcel(sandbox):
    one = sandbox.create_return_label(make_request(key="ship-1"))
    two = sandbox.create_return_label(make_request(key="ship-2"))
    assert one.tracking_number != two.tracking_number
    assert len(state_files(sandbox)) == 2


def test_two_backends_on_one_folder_share_the_carrier_state(tmp_path):
    """The worker and the CLI build their own backend instances; the carrier side is one."""
    label = SandboxBackend({"data_dir": tmp_path}).create_return_label(make_request(key="ship-1"))
    SandboxBackend({"data_dir": tmp_path}).advance(label.tracking_number)
    statuses = [e.status for e in SandboxBackend({"data_dir": tmp_path}).track(label.tracking_number)]
    assert statuses == ["info_received", "in_transit"]


def test_data_dir_defaults_to_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "env-data"))
    backend = SandboxBackend()
    label = backend.create_return_label(make_request())
    assert (tmp_path / "env-data" / "sandbox-carrier" / f"{label.tracking_number}.json").exists()


def test_label_is_an_a6_pdf_with_addresses_reference_tracking_and_qr(sandbox):
    label = sandbox.create_return_label(make_request(reference="R-2077"))
    assert label.pdf.startswith(b"%PDF")
    media_box = re.search(rb"/MediaBox\s*\[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", label.pdf)
    width_mm, height_mm = (float(v) / 72 * 25.4 for v in media_box.groups())
    assert (round(width_mm), round(height_mm)) == (105, 148)
    assert b"/Subtype /Image" in label.pdf  # the QR code
    text = pdf_text(label.pdf)
    for expected in ("R-2077", label.tracking_number, "Anna Schmidt", "80331 M\xfcnchen",
                     "Demo Shop Returns", "10115 Berlin"):
        assert f"({expected})" in text, expected


def test_qr_png_is_returned_beside_the_label(sandbox):
    label = sandbox.create_return_label(make_request())
    assert label.qr_png.startswith(b"\x89PNG\r\n\x1a\n")


def test_names_outside_latin1_do_not_break_the_label(sandbox):
    """The PDF's core fonts know Latin-1 only; a Polish or Chinese name must still give a label."""
    sender = Address(name="Łukasz Żółć 王小明", line1="ul. Długa 5", postcode="00-238", city="Warszawa", country="PL")
    label = sandbox.create_return_label(make_request(sender=sender))
    text = pdf_text(label.pdf)
    assert "(Lukasz Z\xf3lc ???)" in text
    assert "(ul. Dluga 5)" in text


def test_pickup_books_the_day_and_returns_the_label(sandbox):
    day = next_pickup_day()
    pickup = sandbox.schedule_pickup(make_request("pickup", key="ship-1"), day)
    assert (pickup.day, pickup.window) == (day, "09:00-18:00")
    assert pickup.tracking_number == tracking_number_for("ship-1")
    assert pickup.label.pdf.startswith(b"%PDF")


def test_pickup_with_carrier_label_carries_no_label(sandbox):
    """The driver brings the label: there is nothing for the shopper to print."""
    pickup = sandbox.schedule_pickup(make_request("carrier_label"), next_pickup_day())
    assert pickup.label is None
    assert pickup.tracking_number


def test_retried_pickup_returns_the_same_booking(sandbox):
    day = next_pickup_day()
    first = sandbox.schedule_pickup(make_request("pickup", key="ship-1"), day)
    again = sandbox.schedule_pickup(make_request("pickup", key="ship-1"), day)
    assert again == first
    assert len(state_files(sandbox)) == 1


def test_pickup_after_the_label_uses_the_same_parcel(sandbox):
    label = sandbox.create_return_label(make_request("pickup", key="ship-1"))
    pickup = sandbox.schedule_pickup(make_request("pickup", key="ship-1"), next_pickup_day())
    assert pickup.tracking_number == label.tracking_number
    assert pickup.label == label


def test_second_pickup_day_for_a_booked_parcel_is_rejected(sandbox):
    day = next_pickup_day()
    sandbox.schedule_pickup(make_request("pickup", key="ship-1"), day)
    with pytest.raises(CarrierRejected, match="already has a pickup"):
        sandbox.schedule_pickup(make_request("pickup", key="ship-1"), day + timedelta(days=7))


def test_pickup_in_the_past_is_rejected(sandbox):
    yesterday = datetime.now(timezone.utc).date() - timedelta(days=1)
    with pytest.raises(CarrierRejected) as caught:
        sandbox.schedule_pickup(make_request("pickup"), yesterday)
    assert caught.value.field == "pickup_date"
    assert caught.value.shopper_message


def test_tracking_advances_through_the_sequence_then_stops(sandbox):
    label = sandbox.create_return_label(make_request())
    start = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
    moved = [sandbox.advance(label.tracking_number, now=start + timedelta(hours=h)) for h in (1, 2, 3)]
    assert [e.status for e in moved] == ["in_transit", "out_for_delivery", "delivered"]
    assert sandbox.advance(label.tracking_number) is None
    events = sandbox.track(label.tracking_number)
    assert [e.status for e in events] == ["info_received", "in_transit", "out_for_delivery", "delivered"]
    assert events[1:] == moved
    assert events[-1].location == "Berlin"  # the warehouse's city


def test_advance_needs_an_aware_time(sandbox):
    label = sandbox.create_return_label(make_request())
    with pytest.raises(ValueError):
        sandbox.advance(label.tracking_number, now=datetime(2026, 3, 2, 9, 0))


def test_voided_parcel_does_not_move_and_its_key_gives_no_new_label(sandbox):
    label = sandbox.create_return_label(make_request(key="ship-1"))
    sandbox.void_label(label.tracking_number)
    sandbox.void_label(label.tracking_number)  # voiding twice is harmless
    with pytest.raises(CarrierRejected, match="voided"):
        sandbox.advance(label.tracking_number)
    with pytest.raises(CarrierRejected, match="voided"):
        sandbox.create_return_label(make_request(key="ship-1"))


def test_cancelled_pickup_voids_the_parcel(sandbox):
    pickup = sandbox.schedule_pickup(make_request("pickup", key="ship-1"), next_pickup_day())
    sandbox.cancel_pickup(pickup.carrier_ref)
    with pytest.raises(CarrierRejected, match="voided"):
        sandbox.advance(pickup.tracking_number)


def test_pickup_cannot_be_cancelled_once_the_parcel_moves(sandbox):
    pickup = sandbox.schedule_pickup(make_request("pickup"), next_pickup_day())
    sandbox.advance(pickup.tracking_number)
    with pytest.raises(CarrierRejected, match="parcel already moving"):
        sandbox.cancel_pickup(pickup.carrier_ref)


def test_cancel_pickup_of_a_label_only_parcel_is_rejected(sandbox):
    label = sandbox.create_return_label(make_request())
    with pytest.raises(CarrierRejected, match="no pickup"):
        sandbox.cancel_pickup("PU-" + label.tracking_number)


@pytest.mark.parametrize("tracking_number", ["SBX0000000000", "../../etc/passwd", "", "PU-SBX0000000000"])
def test_unknown_tracking_numbers_are_rejected(sandbox, tracking_number):
    """A caller's string never names a file outside the sandbox's folder."""
    for call in (sandbox.track, sandbox.void_label, sandbox.advance):
        with pytest.raises(CarrierRejected, match="knows no"):
            call(tracking_number)


@pytest.mark.parametrize(("mode", "error"), [("retryable", CarrierRetryable), ("rejected", CarrierRejected),
                                             ("auth", CarrierAuthError)])
def test_fail_setting_raises_its_error(tmp_path, mode, error):
    """Contract tests for callers: each carrier error class on demand, and nothing announced."""
    backend = SandboxBackend({"data_dir": tmp_path, "fail": mode})
    with pytest.raises(error):
        backend.create_return_label(make_request())
    with pytest.raises(error):
        backend.schedule_pickup(make_request("pickup"), next_pickup_day())
    assert not list(tmp_path.rglob("*.json"))


def test_fail_auth_also_fails_the_credentials_check(tmp_path):
    SandboxBackend({"data_dir": tmp_path}).check_credentials()
    with pytest.raises(CarrierAuthError):
        SandboxBackend({"data_dir": tmp_path, "fail": "auth"}).check_credentials()


def test_rejected_failure_has_a_message_for_the_shopper(tmp_path):
    with pytest.raises(CarrierRejected) as caught:
        SandboxBackend({"data_dir": tmp_path, "fail": "rejected"}).create_return_label(make_request())
    assert caught.value.field == "address"
    assert shopper_message(caught.value) == FIELD_MESSAGES["address"]


def test_unknown_fail_mode_is_a_configuration_error(tmp_path):
    with pytest.raises(ValueError, match="retryable, rejected, auth"):
        SandboxBackend({"data_dir": tmp_path, "fail": "sometimes"})

