"""A carrier account for tests: `AcmeBackend` is the sandbox carrier behind a merchant account (an
API key that must be "good", an account number, a webhook secret), standing for any remote
backend where what is tested is the connector's side. `acme` (autouse where imported) registers
it and resets its levers; `connect` gives a shop an Acme account."""
from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import replace
from datetime import datetime

import pytest

from connector import db
from connector.carriers import connections, registry
from connector.carriers.sandbox import SandboxBackend
from connector.returns.models import CarrierConnection
from connector.returns.ports import (VOID_REQUESTED, CarrierAuthError, CarrierCapabilities, SettingField,
                                     TrackingEvent, TrackingUpdate, WebhookRejected)


class AcmeBackend(SandboxBackend):
    """The sandbox behind a merchant account; `late` makes labels come later, `async_void` makes
    cancels confirmed later, as remote carriers do."""

    key = "acme"
    name = "Acme Parcel"
    capabilities = CarrierCapabilities(label=True, qr=False, pickup=True, carrier_brings_label=True, void=True,
                                       tracking=True, international=False, tracking_webhook=True, late_label=True)
    settings_fields = (SettingField("api_key", "API key", secret=True),
                       SettingField("account", "Account number"),
                       SettingField("webhook_secret", "Webhook secret", secret=True, required=False))
    late = False
    async_void = False

    def __init__(self, settings):
        super().__init__(settings)
        if not settings.get("api_key"):
            raise ValueError("api_key is required")
        self.settings = settings

    def check_credentials(self) -> None:
        if self.settings["api_key"] != "good":
            raise CarrierAuthError("Acme: invalid API key")

    def create_return_label(self, shipment):
        label = super().create_return_label(shipment)
        return replace(label, pdf=None, carrier_ref="ACME-" + label.tracking_number) if AcmeBackend.late else label

    def fetch_label(self, carrier_ref, tracking_number):
        return super().create_return_label(AcmeBackend.requests[tracking_number]) if AcmeBackend.ready else None

    def void_label(self, tracking_number, carrier_ref=None):
        if AcmeBackend.async_void:
            return VOID_REQUESTED
        return super().void_label(tracking_number, carrier_ref)

    def parse_webhook(self, headers, body):
        expected = hmac.new(self.settings["webhook_secret"].encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, headers.get("Acme-Signature", "")):
            raise WebhookRejected("Acme: bad signature")
        data = json.loads(body)
        return [TrackingUpdate(tracking_number=data["tracking_number"], cancelled=data.get("cancelled"),
                               events=tuple(TrackingEvent(at=datetime.fromisoformat(e["at"]), status=e["status"])
                                            for e in data.get("events", [])))]


@pytest.fixture(autouse=True)
def acme(monkeypatch):
    monkeypatch.setattr(registry, "_plugins", lambda: {"acme": AcmeBackend})
    monkeypatch.setattr(AcmeBackend, "late", False)
    monkeypatch.setattr(AcmeBackend, "async_void", False)
    monkeypatch.setattr(AcmeBackend, "ready", False, raising=False)
    requests = {}
    real = SandboxBackend.create_return_label

    def remember(self, shipment):
        label = real(self, shipment)
        requests[label.tracking_number] = shipment
        return label

    monkeypatch.setattr(SandboxBackend, "create_return_label", remember)
    monkeypatch.setattr(AcmeBackend, "requests", requests, raising=False)
    return AcmeBackend


def connect(shop, methods=None, **kw) -> CarrierConnection:
    """Acme connected to `shop`, whose policy allows every method everywhere (the connection decides)."""
    shop.policy = {**(shop.policy or {}), "methods": {"*": ["pickup", "dropoff", "carrier_label", "selfship"]}}
    conn = connections.save(shop, "acme", {"api_key": kw.pop("api_key", "good"), "account": "A-1",
                                           "webhook_secret": "whsec"},
                            name="Acme", test_mode=True,
                            methods=methods or {"dropoff": ["DE"], "pickup": ["DE"], "carrier_label": ["DE"]}, **kw)
    db.session.commit()
    return conn
