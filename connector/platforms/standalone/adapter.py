"""The platform port for a shop on no platform: orders arrive by API or CSV, refunds are paid by hand.

Nothing here talks to anything remote, because there is nothing remote. Each method says what it
does instead, and none of them pretends an outside system did something.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Iterator

from connector.returns.ports import OrderData, PlatformCapabilities, RefundPlan, RefundResult


class StandaloneAdapter:
    """PlatformAdapter for `Shop.platform == "standalone"`."""

    key = "standalone"
    capabilities = PlatformCapabilities(manual_refunds_only=True)

    def __init__(self, shop: Any):
        self.shop = shop

    def iter_orders(self, since: datetime | None) -> Iterator[OrderData]:
        """Yields nothing: a standalone shop pushes its orders (POST /api/v1/orders or a CSV
        import); there is no store to pull them from."""
        return iter(())

    def get_order(self, platform_id: str) -> OrderData | None:
        """Always None: the only copy of a standalone order is the one already in the database."""
        return None

    def parse_webhook(self, request: Any) -> list[Any]:
        """Always empty: a standalone shop has no platform that sends webhooks."""
        return []

    def open_return(self, ret: Any) -> str | None:
        """None: there is no native return to open; the return lives only in this app."""
        return None

    def find_return(self, ret: Any) -> str | None:
        """None: no platform keeps returns for a standalone shop."""
        return None

    def approve_return(self, ret: Any) -> None:
        """Nothing remote to approve: the approval is the return's state here."""

    def close_return(self, ret: Any) -> None:
        """Nothing remote to close."""

    def attach_tracking(self, ret: Any, shipment: Any) -> None:
        """Nothing remote to update: the tracking number is already on the Shipment row."""

    def restock(self, ret: Any, lines: list[Any]) -> None:
        """Nothing remote to restock: the merchant's stock lives outside this app, and the
        graded disposition (restock / refurbish / dispose) is on the return lines for them."""

    def refund(self, order: Any, plan: RefundPlan, key: str, ret: Any = None) -> RefundResult:
        """Record the refund as done by hand: no money moves, the merchant pays the shopper out.

        The id is derived from the idempotency key, so retrying gives the same id.
        """
        return RefundResult(status="succeeded", manual=True, platform_refund_id=f"manual-{key[:12]}",
                            message="Recorded for manual payout")

    def find_refund(self, order: Any, key: str) -> RefundResult | None:
        """None: no remote system holds refunds to look up; the Refund row is the only record."""
        return None

    def add_note(self, order: Any, text: str) -> None:
        """Nothing remote to annotate: notes stay on the return's timeline."""
