"""The standalone platform port: nothing remote, refunds recorded for a manual payout."""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

from connector.platforms.registry import adapter_for
from connector.platforms.standalone.adapter import StandaloneAdapter
from connector.returns.ports import PlatformAdapter, RefundPlan


def _plan() -> RefundPlan:
    return RefundPlan(currency="EUR", lines=(), shipping=Decimal("0"), deductions=(), total=Decimal("10.00"))


def test_registry_gives_standalone_shops_the_standalone_adapter(shop):
    adapter = adapter_for(shop)
    assert isinstance(adapter, StandaloneAdapter) and isinstance(adapter, PlatformAdapter)
    assert adapter.key == "standalone" and adapter.shop is shop


def test_only_manual_refunds_are_possible():
    caps = StandaloneAdapter(None).capabilities
    assert caps.manual_refunds_only
    assert not (caps.refund_through_gateway or caps.store_credit or caps.native_returns or caps.exchanges)


def test_refund_is_recorded_for_manual_payout_with_a_stable_id():
    adapter = StandaloneAdapter(None)
    result = adapter.refund(None, _plan(), "rc-1-42-1-abcdefgh")
    assert result.status == "succeeded" and result.manual
    assert result.platform_refund_id == "manual-rc-1-42-1-ab"
    assert result.message == "Recorded for manual payout"
    assert adapter.refund(None, _plan(), "rc-1-42-1-abcdefgh") == result


def test_nothing_is_read_from_or_written_to_a_remote_system(shop):
    adapter = StandaloneAdapter(shop)
    assert list(adapter.iter_orders(datetime(2025, 1, 1, tzinfo=timezone.utc))) == []
    assert list(adapter.iter_orders(None)) == []
    assert adapter.get_order("1001") is None
    assert adapter.find_refund(None, "rc-1") is None
    assert adapter.parse_webhook(None) == []
    assert adapter.open_return(None) is None
    assert adapter.attach_tracking(None, None) is None
    assert adapter.restock(None, []) is None
    assert adapter.add_note(None, "note") is None
