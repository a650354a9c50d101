"""The shopper ships the parcel themselves, with any carrier, and types in the tracking number.

There is no carrier account behind it: no label, no pickup, nothing to void, and no tracking feed
(the return moves on when the shopper enters the tracking number and when the warehouse receives
the parcel).
"""
from __future__ import annotations

from datetime import date

from connector.returns.ports import (CarrierCapabilities, CarrierNotSupported, Label, Pickup,
                                     ShipmentRequest, TrackingEvent)


class SelfShipBackend:
    key = "selfship"
    name = "Ship it yourself"
    capabilities = CarrierCapabilities(international=True)

    def __init__(self, settings: dict | None = None):
        self.settings = dict(settings or {})

    def create_return_label(self, shipment: ShipmentRequest) -> Label:
        raise CarrierNotSupported("self-shipped returns have no label: the shopper ships with a carrier of their choice")

    def schedule_pickup(self, shipment: ShipmentRequest, day: date) -> Pickup:
        raise CarrierNotSupported("self-shipped returns have no pickup: the shopper takes the parcel to a carrier")

    def cancel_pickup(self, carrier_ref: str) -> str | None:
        raise CarrierNotSupported("self-shipped returns have no pickup to cancel")

    def void_label(self, tracking_number: str, carrier_ref: str | None = None) -> str | None:
        raise CarrierNotSupported("self-shipped returns have no label to void")

    def track(self, tracking_number: str, carrier_ref: str | None = None) -> list[TrackingEvent]:
        """Always empty: the shopper's carrier is unknown, so there is no feed to read."""
        return []

    def check_credentials(self) -> None:
        """Nothing to check: no carrier account is involved."""
