"""The carrier contract's harness: one `CarrierCase` per backend, and shipment requests to feed them.

To put a new backend through the contract suite (tests/carriers/test_contract.py), add a factory
to CASES. A factory gets pytest's `request` (for tmp_path, `responses` mocks of the carrier's API
with recorded payloads, ...) and returns the backend plus, where it can, a way to make the carrier
report the parcel as moving.
"""
from __future__ import annotations

import importlib
import itertools
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from decimal import Decimal
from typing import Callable

import pytest

from connector.carriers.calendar import next_working_day
from connector.carriers.sandbox import SandboxBackend
from connector.carriers.selfship import SelfShipBackend
from connector.returns.ports import Address, CarrierBackend, ParcelItem, ShipmentRequest


@dataclass
class CarrierCase:
    backend: CarrierBackend
    # Make the carrier report the parcel (by tracking number) as handed over; None when the
    # backend has no way to simulate that (the movement tests then skip for it).
    move: Callable[[str], None] | None = None
    # How many labels (parcels) the carrier holds: the duplicate-label tests count them.
    labels_at_carrier: Callable[[], int] | None = None
    # Make the carrier's next label creation succeed at the carrier and its answer time out.
    timeout_after_create: Callable[[], None] | None = None
    # Make the carrier's next call fail: "retryable" (5xx/timeout), "address" (a refusal of the
    # shopper's address), "auth" (credentials refused).
    fail_next: Callable[[str], None] | None = None
    # A webhook delivery as the carrier signs it, saying the parcel (tracking number, carrier_ref)
    # is in transit: (headers, body). None for backends without tracking webhooks.
    webhook: Callable[[str, str | None], tuple[dict[str, str], bytes]] | None = None


def _sandbox(request) -> CarrierCase:
    backend = SandboxBackend({"data_dir": request.getfixturevalue("tmp_path")})

    def fail_next(mode: str) -> None:
        backend.fail = {"address": "rejected"}.get(mode, mode)

    return CarrierCase(backend, move=lambda tracking_number: backend.advance(tracking_number),
                       labels_at_carrier=lambda: len(list(backend.state_dir.glob("SBX*.json"))),
                       fail_next=fail_next)


def _selfship(request) -> CarrierCase:
    return CarrierCase(SelfShipBackend())


CASES: dict[str, Callable[[pytest.FixtureRequest], CarrierCase]] = {
    "sandbox": _sandbox,
    "selfship": _selfship,
}
# Each remote carrier brings its case in a module of its own, tests/carriers/cases_<name>.py,
# defining CASES = {"<key>": factory}; they are gathered here.
for _module in sorted(Path(__file__).parent.glob("cases_*.py")):
    CASES.update(importlib.import_module(f"tests.carriers.{_module.stem}").CASES)


SHOPPER = Address(name="Anna Schmidt", line1="Hauptstraße 12", postcode="80331", city="München",
                  country="DE", email="anna@example.com", phone="+49 89 123456")
WAREHOUSE = Address(name="Demo Shop Returns", line1="Lagerweg 5", line2="Halle 2", postcode="10115",
                    city="Berlin", country="DE")
_keys = itertools.count(1)


def make_request(method: str = "dropoff", *, key: str | None = None, sender: Address = SHOPPER,
                 recipient: Address = WAREHOUSE, reference: str = "R-1042") -> ShipmentRequest:
    """A return parcel from a shopper in Munich to the shop's warehouse in Berlin."""
    return ShipmentRequest(
        idempotency_key=key or f"test-shipment-{next(_keys)}",
        reference=reference,
        method=method,
        sender=sender,
        recipient=recipient,
        items=(ParcelItem(description="T-shirt, blue, M", quantity=2, value=Decimal("19.90"), sku="TS-BL-M"),),
        currency="EUR",
        weight_grams=800,
    )


def next_pickup_day():
    """A day a real carrier would accept: the next German working day from now."""
    return next_working_day("DE", after=datetime.now(timezone.utc))
