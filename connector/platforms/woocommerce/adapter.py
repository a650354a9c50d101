"""The PlatformAdapter for WooCommerce: orders, refunds through `orders/<id>/refunds`, order notes.

Wire: `WooClient` (client.py). Mapping: the pure functions of refund_mapping.py. This module
only orchestrates; the caller (services.execute_refund, services.write_order_notes) commits.

No native returns
    WooCommerce keeps no returns of its own, so open_return / find_return give None and
    approve_return / close_return / attach_tracking / restock do nothing remote. What the merchant
    should see in WooCommerce reaches the order as order notes instead (capabilities.order_notes:
    services.platform.write_order_notes calls `add_note` at each milestone), and stock moves with
    the refund (`api_restock`).

Refunds
    One `POST orders/<id>/refunds` per refund, its reason carrying the key ("Returns Connector
    R-1042 [rc-1-7-1]"). WooCommerce has no idempotency key, so an unknown outcome (read timeout,
    crash) is settled by listing the order's refunds (`find_refund`) before anything is sent again
    (services.execute_refund does that on every attempt after the first). The money goes through
    the gateway (`api_refund`) only where GET payment_gateways lists "refunds" in the order's
    gateway's `method_supports` (cached a day in Shop.platform_data["payment_gateways"]);
    otherwise the refund fails with a message saying so, unless the merchant asked for a manual
    refund (`manual=True`: recorded in WooCommerce with api_refund false, paid out by hand).
    A refusal (a gateway's is a 500 after which WooCommerce deletes the refund) comes back in
    WooCommerce's words, once `find_refund` has confirmed no refund under the key exists.
"""
from __future__ import annotations

import importlib
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator

from connector.platforms.woocommerce import refund_mapping as rf
from connector.platforms.woocommerce.errors import ReconnectRequired, WooError
from connector.returns.context import _
from connector.returns.ports import OrderData, PlatformCapabilities, RefundPlan, RefundResult

GATEWAYS_TTL = timedelta(days=1)
GATEWAYS_KEY = "payment_gateways"  # Shop.platform_data[...] = {"checked_at": iso, "refunds": [ids]}


class WooCommerceAdapter:
    """PlatformAdapter for `Shop.platform == "woocommerce"`, bound to one shop."""

    key = "woocommerce"
    capabilities = PlatformCapabilities(refund_through_gateway=True, store_credit=False, native_returns=False,
                                        order_notes=True, manual_refunds=True)

    def __init__(self, shop: Any, client: Any = None):
        self.shop = shop
        self._client = client

    @property
    def client(self):
        if self._client is None:
            from connector.platforms.woocommerce.client import WooClient
            self._client = WooClient.for_shop(self.shop)
        return self._client

    # ------------------------------------------------------------------ orders

    def iter_orders(self, since: datetime | None) -> Iterator[OrderData]:
        """The store's orders changed since `since` (all when None), from sync.py."""
        return _sync().iter_orders(self.shop, since)

    def get_order(self, platform_id: str) -> OrderData | None:
        sync = _sync()
        fetch = getattr(sync, "fetch_order", None) or getattr(sync, "get_order", None)
        if fetch is None:
            raise NotImplementedError("connector.platforms.woocommerce.sync has no fetch_order/get_order yet")
        return fetch(self.shop, platform_id)

    def parse_webhook(self, request: Any) -> list[Any]:
        """Always empty: WooCommerce webhooks have their own blueprint (webhooks.py), which
        verifies, stores and dispatches them; nothing reaches the platform port."""
        return []

    def add_note(self, order: Any, text: str) -> None:
        """A private order note (`customer_note: false`: WooCommerce mails customer notes to the
        shopper, and we mail the shopper ourselves)."""
        self.client.post(f"orders/{_order_id(order)}/notes", json={"note": text, "customer_note": False})

    # ------------------------------------------------------------------ no native returns

    def open_return(self, ret: Any) -> str | None:
        """None: WooCommerce has no returns; the "created" order note tells the merchant instead."""
        return None

    def find_return(self, ret: Any) -> str | None:
        """None: WooCommerce holds no returns to find."""
        return None

    def approve_return(self, ret: Any) -> None:
        """Nothing remote to approve: the approval is the return's state here."""

    def close_return(self, ret: Any) -> None:
        """Nothing remote to close."""

    def attach_tracking(self, ret: Any, shipment: Any) -> None:
        """Nothing remote to update: the label and tracking reach the order as a note."""

    def restock(self, ret: Any, lines: list[Any]) -> None:
        """Nothing here: stock comes back with the refund (`api_restock`, see `_restock_once`) and
        the grades reach the order as a note."""

    # ------------------------------------------------------------------ refunds

    def refund(self, order: Any, plan: RefundPlan, key: str, ret: Any = None, *, manual: bool = False) -> RefundResult:
        """Send `plan` once under `key`. `manual` records the refund in WooCommerce without moving
        money (api_refund false): the merchant pays the shopper back. Raises a retryable WooError
        when the outcome is unknown (timeout after sending, 5xx without an answer)."""
        if plan.method == "store_credit":
            return RefundResult(status="failed", message=_(
                "WooCommerce has no store credit. Refund to the original payment instead."))
        order_id = _order_id(order)
        wc_order, _headers = self.client.get(f"orders/{order_id}")
        gateway = str(wc_order.get("payment_method") or "")
        through_gateway = plan.total > 0 and not manual and gateway in self.refund_gateways()
        if plan.total > 0 and not manual and not through_gateway:
            title = wc_order.get("payment_method_title") or gateway or _("no payment method")
            return RefundResult(status="failed", message=_(
                "This payment method cannot refund automatically: %(gateway)s. Record the refund as a "
                "manual refund and pay the customer back yourself.", gateway=title))
        rma = ret.rma if ret is not None else None
        try:
            restocked = self._restock_once(order, wc_order, plan, ret) if rf.mixed_restock(plan) else False
            body = rf.refund_body(plan, wc_order, key=key, rma=rma, api_refund=through_gateway, restocked=restocked)
        except rf.RefundMappingError as exc:
            return RefundResult(status="failed", message=str(exc))
        try:
            created = self.client.post(f"orders/{order_id}/refunds", json=body)
        except ReconnectRequired:
            raise
        except WooError as exc:
            if exc.retryable:
                raise  # it may have been applied: the next attempt lists the refunds first
            # Final only when WooCommerce holds no refund under this key (a racing worker's).
            return self.find_refund(order, key) or RefundResult(status="failed", message=str(exc))
        if not isinstance(created, dict) or not created.get("id"):
            raise WooError("WooCommerce answered the refund without its id", retryable=True)
        return RefundResult(status="succeeded", platform_refund_id=str(created["id"]),
                            manual=plan.total > 0 and not through_gateway)

    def _restock_once(self, order: Any, wc_order: dict[str, Any], plan: RefundPlan, ret: Any) -> bool:
        """Put the plan's A-graded lines back in stock through a refund of 0.00 (rf.restock_body)
        under the return's restock key, unless the order already holds it; True when it is there.

        It comes before the money: a money refund the gateway refuses is retried under a new key,
        and the units must not go back twice (the restock key is per return). A retryable error
        propagates (the refund's next attempt lists the refunds first); a refusal leaves the
        restock to the merchant, said in an order note, and the money goes out all the same."""
        if ret is None:
            return False
        from connector.returns.services.refunds import restock_key  # the key scheme lives with the refunds

        key = restock_key(ret.shop_id, ret.id)
        if self._find(order, key) is not None:
            return True
        try:
            self.client.post(f"orders/{_order_id(order)}/refunds",
                             json=rf.restock_body(plan, wc_order, key=key, rma=ret.rma))
        except ReconnectRequired:
            raise
        except WooError as exc:
            if exc.retryable:
                raise
            if self._find(order, key) is not None:
                return True
            self.add_note(order, _("Returns Connector could not put the items graded A back in stock: %(error)s. "
                                   "Restock them by hand.", error=str(exc)))
            return False
        return True

    def _find(self, order: Any, key: str) -> dict[str, Any] | None:
        """The order's refund whose reason carries `key` in brackets, listed from the store."""
        for page in self.client.paged(f"orders/{_order_id(order)}/refunds"):
            for refund in page:
                if rf.reason_has_key(refund.get("reason"), key):
                    return refund
        return None

    def find_refund(self, order: Any, key: str) -> RefundResult | None:
        """The order's refund whose reason carries `key`, as a succeeded result; None when none."""
        refund = self._find(order, key)
        if refund is None:
            return None
        return RefundResult(status="succeeded", platform_refund_id=str(refund["id"]),
                            manual=not refund.get("refunded_payment", False))

    def refund_gateways(self) -> list[str]:
        """Ids of the store's gateways that refund through their API, read at most once a day."""
        data = dict(self.shop.platform_data or {})
        cached = data.get(GATEWAYS_KEY) or {}
        checked = _parse(cached.get("checked_at"))
        if checked is not None and datetime.now(timezone.utc) - checked < GATEWAYS_TTL:
            return list(cached.get("refunds") or [])
        gateways, _headers = self.client.get("payment_gateways")
        refunds = rf.refund_gateways(gateways if isinstance(gateways, list) else [])
        data[GATEWAYS_KEY] = {"checked_at": datetime.now(timezone.utc).isoformat(), "refunds": refunds}
        self.shop.platform_data = data  # a new dict: JSON columns notice reassignment only
        return refunds


def _order_id(order: Any) -> int:
    """WooCommerce's order id (Order.platform_id, e.g. "15") as a number: it goes into a path."""
    return int(order.platform_id)


def _parse(value: Any) -> datetime | None:
    try:
        moment = datetime.fromisoformat(str(value))
    except (TypeError, ValueError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _sync():
    name = "connector.platforms.woocommerce.sync"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:
            raise
        raise NotImplementedError(f"{name} (the order sync) is not built yet") from None
