"""The PlatformAdapter for Shopify: orders, native returns, reverse deliveries, dispositions, refunds.

Wire: `ShopifyClient` (client.py) with one `.graphql` document per operation. Mapping: the pure
functions in returns_mapping.py and reasons.py. This module only orchestrates and records on the
rows what Shopify answered; the caller (services.sync_return / services.execute_refund) commits.

Native returns
    open_return      returnRequest (our return still awaits approval: Shopify REQUESTED) or
                     returnCreate (already approved: OPEN); lines name FulfillmentLineItems
    approve_return   returnApproveRequest, when we approved a REQUESTED return
    close_return     REQUESTED -> returnDeclineRequest; OPEN -> returnCancel, or returnClose once
                     work was done on it; an already final return counts as done
    attach_tracking  reverseDeliveryCreateWithShipping per reverse fulfillment order
    restock          reverseFulfillmentOrderDispose (A restock RESTOCKED at the shop's location,
                     B PROCESSING_REQUIRED, C NOT_RESTOCKED, missing MISSING)
    ReturnLine.platform_data = {"parts": [{"fulfillment_line", "quantity", "return_line", "rfo",
                     "rfo_line", "delivery"}], "disposed": bool}: one part per ReturnLineItem
                     (an order line fulfilled in two shipments is two parts).

Refunds
    The money goes through `refundCreate` with `@idempotent(key:)`, to the original payment or to
    store credit. In Admin 2026-04 `@idempotent` is mandatory on refundCreate, while `returnProcess`
    documents no idempotency support (the directive is honoured only where a mutation documents it)
    and its `note` is the return's, not the refund's. An unknown outcome (timeout, crash) must be
    resolved by reading Shopify back, never by guessing; refundCreate gives both halves: Shopify
    applies a key once, and the Refund's own note carries the key for `find_refund`. The native
    return is closed (returnClose) once it is refunded and every line's disposition is reported.
"""
from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Iterator
from urllib.parse import quote, urlencode

from connector.platforms.shopify import reasons
from connector.platforms.shopify import returns_mapping as rm
from connector.platforms.shopify.errors import ShopifyError, UserErrors
from connector.returns import lifecycle as lc
from connector.returns.context import _
from connector.returns.money import quantize
from connector.returns.ports import OrderData, PlatformCapabilities, RefundPlan, RefundResult

log = logging.getLogger("connector.shopify.adapter")

# Shopify's notes have length limits: customerNote 300, returnReasonNote 255, declineNote 500.
CUSTOMER_NOTE_MAX = 300
REASON_NOTE_MAX = 255
DECLINE_NOTE_MAX = 500
# How far Shopify's createdAt may precede our confirmed_at (clocks differ) for find_return.
CLOCK_SKEW = timedelta(minutes=5)


class ShopifyAdapter:
    """PlatformAdapter for `Shop.platform == "shopify"`, bound to one shop."""

    key = "shopify"
    capabilities = PlatformCapabilities(refund_through_gateway=True, store_credit=True, native_returns=True)

    def __init__(self, shop: Any):
        self.shop = shop
        self._client = None

    @property
    def client(self):
        if self._client is None:
            from connector.platforms.shopify.client import ShopifyClient
            self._client = ShopifyClient.for_shop(self.shop)
        return self._client

    # ------------------------------------------------------------------ orders

    def iter_orders(self, since: datetime | None) -> Iterator[OrderData]:
        """The shop's orders updated since `since` (all when None), from sync.py."""
        from connector.platforms.shopify import sync
        return sync.iter_orders(self.shop, since)

    def get_order(self, platform_id: str) -> OrderData | None:
        from connector.platforms.shopify import sync
        return sync.fetch_order(self.shop, platform_id)

    def parse_webhook(self, request: Any) -> list[Any]:
        """Always empty: Shopify webhooks have their own blueprint (webhooks.py, handlers.py), which
        verifies, stores and dispatches them; nothing reaches the platform port."""
        return []

    def add_note(self, order: Any, text: str) -> None:
        """Nothing is written: `orderUpdate(note:)` replaces the merchant's own order note, and the
        return, its refunds and their notes already show on the order's timeline in Shopify."""

    # ------------------------------------------------------------------ native returns

    def open_return(self, ret: Any) -> str | None:
        """Create the Shopify return for `ret` and give its GID; sets `ret.platform_status` and each
        line's parts. Raises ShopifyError (not retryable) naming the items Shopify cannot take back."""
        order_gid = ret.order.platform_id
        returnable = self._returnable(order_gid)
        wanted = [(line.order_line.platform_id, line.quantity) for line in ret.lines]
        try:
            allocation = rm.allocate_fulfillment_lines(returnable, wanted)
        except rm.NotReturnable as exc:
            titles = [line.order_line.title for line in ret.lines if line.order_line.platform_id in exc.line_items]
            raise ShopifyError(_("Shopify has no fulfilled, not yet returned units left of: %(items)s. "
                                 "The return was not created in Shopify.", items=", ".join(titles)),
                               retryable=False) from None
        requested = ret.state == lc.REQUESTED
        inputs = []
        for line, parts in zip(ret.lines, allocation):
            reason_id = reasons.definition_id(self.shop, self.client, line.reason.code if line.reason else None)
            note = self._line_note(ret, line)
            for fli, quantity in parts:
                item: dict[str, Any] = {"fulfillmentLineItemId": fli, "quantity": quantity}
                if reason_id:
                    item["returnReasonDefinitionId"] = reason_id
                if requested and note:
                    item["customerNote"] = note[:CUSTOMER_NOTE_MAX]
                elif note:
                    item["returnReasonNote"] = note[:REASON_NOTE_MAX]
                inputs.append(item)
        if requested:
            payload = self.client.mutate("ReturnRequest", {"input": {"orderId": order_gid, "returnLineItems": inputs}},
                                         field="returnRequest")
        else:
            return_input: dict[str, Any] = {"orderId": order_gid, "returnLineItems": inputs}
            if ret.confirmed_at:
                return_input["requestedAt"] = _iso(ret.confirmed_at)
            payload = self.client.mutate("ReturnCreate", {"returnInput": return_input}, field="returnCreate")
        created = payload.get("return")
        if not created or not created.get("id"):
            # Whether Shopify made it is unknown: the next run asks it (find_return) before opening again.
            raise ShopifyError("Shopify answered without the return it created", retryable=True)
        for line, parts in zip(ret.lines, allocation):
            _set_data(line, parts=[{"fulfillment_line": fli, "quantity": quantity} for fli, quantity in parts])
        ret.platform_status = created["status"]
        self._refresh_parts(ret, created["id"], best_effort=True)
        return created["id"]

    def find_return(self, ret: Any) -> str | None:
        """The Shopify return a crashed worker created for `ret`: same order lines and quantities,
        created after `ret` was confirmed, not cancelled or declined, and not linked to another
        return of this shop. None when Shopify has none."""
        data = self.client.execute("OrderReturns", {"orderId": ret.order.platform_id})
        order = data.get("order") or {}
        want = Counter()
        for line in ret.lines:
            want[line.order_line.platform_id] += line.quantity
        since = (ret.confirmed_at - CLOCK_SKEW) if ret.confirmed_at else None
        taken = self._linked_return_ids(ret)
        for node in (order.get("returns") or {}).get("nodes") or []:
            found = rm.parse_return(node)
            if found.status not in rm.OPEN_STATUSES or found.id in taken:
                continue
            if since and found.created_at and found.created_at < since:
                continue
            if Counter(found.quantities()) != want:
                continue
            ret.platform_status = found.status
            apply_parts(ret, found)
            self._refresh_parts(ret, found.id, best_effort=True)
            return found.id
        return None

    def approve_return(self, ret: Any) -> None:
        """Approve the REQUESTED Shopify return we approved here (Shopify then opens its reverse
        fulfillment order). Already approved or closed in Shopify counts as done."""
        try:
            payload = self.client.mutate("ReturnApproveRequest",
                                         {"input": {"id": ret.platform_id, "notifyCustomer": False}},
                                         field="returnApproveRequest")
            ret.platform_status = self._status_after(payload, ret.platform_id)
        except UserErrors:
            current = self._get(ret.platform_id)
            if current.status == "REQUESTED":
                raise
            ret.platform_status = current.status
        self._refresh_parts(ret, ret.platform_id, best_effort=True)

    def close_return(self, ret: Any) -> None:
        """Decline (REQUESTED) or cancel (OPEN) the Shopify return of a return rejected or cancelled
        here; an OPEN return Shopify will not cancel (work was done on it) is closed instead. A
        return Shopify already holds as cancelled, declined or closed counts as done. The shopper
        is mailed by us, not by Shopify."""
        try:
            if ret.platform_status == "REQUESTED":
                payload = self.client.mutate("ReturnDeclineRequest", {"input": {
                    "id": ret.platform_id, "declineReason": "OTHER", "notifyCustomer": False,
                    "declineNote": self._decline_note(ret)[:DECLINE_NOTE_MAX]}}, field="returnDeclineRequest")
            else:
                payload = self.client.mutate("ReturnCancel", {"id": ret.platform_id}, field="returnCancel")
            ret.platform_status = self._status_after(payload, ret.platform_id)
            return
        except UserErrors:
            current = self._get(ret.platform_id)
            if current.status in rm.FINAL_STATUSES:
                ret.platform_status = current.status
                return
            if ret.platform_status == "REQUESTED" or current.status != "OPEN":
                raise
        payload = self.client.mutate("ReturnClose", {"id": ret.platform_id}, field="returnClose")
        ret.platform_status = self._status_after(payload, ret.platform_id)

    def attach_tracking(self, ret: Any, shipment: Any) -> None:
        """Give Shopify the parcel's tracking (and the label, when it has a public address): one
        reverse delivery per reverse fulfillment order, each recorded on its parts, so a retry
        creates only the missing ones. Shopify does not mail the shopper (we do)."""
        current = self._get(ret.platform_id)
        apply_parts(ret, current)
        existing = {(d.rfo, d.tracking_number): d.id for d in current.deliveries}
        groups: dict[str, list[tuple[Any, dict]]] = {}
        for line in ret.lines:
            for part in (line.platform_data or {}).get("parts", []):
                if not part.get("rfo"):
                    raise ShopifyError(_("Shopify has not opened the return's reverse fulfillment yet; "
                                         "the tracking will be sent again shortly."), retryable=True)
                groups.setdefault(part["rfo"], []).append((line, part))
        tracking = {"number": shipment.tracking_number}
        if shipment.tracking_url:
            tracking["url"] = shipment.tracking_url
        label_url = self._label_url(ret, shipment)
        ids = []
        for rfo, members in groups.items():
            delivery = next((p["delivery"] for _line, p in members if p.get("delivery")), None) \
                or existing.get((rfo, shipment.tracking_number))
            if delivery is None:
                variables: dict[str, Any] = {
                    "reverseFulfillmentOrderId": rfo,
                    "reverseDeliveryLineItems": [{"reverseFulfillmentOrderLineItemId": p["rfo_line"],
                                                  "quantity": p["quantity"]} for _line, p in members],
                    "trackingInput": tracking, "notifyCustomer": False}
                if label_url:
                    variables["labelInput"] = {"fileUrl": label_url}
                payload = self.client.mutate("ReverseDeliveryCreateWithShipping", variables,
                                             field="reverseDeliveryCreateWithShipping")
                delivery = payload["reverseDelivery"]["id"]
            for line, part in members:
                _set_part(line, part["fulfillment_line"], delivery=delivery)
            ids.append(delivery)
        shipment.platform_id = ids[0] if ids else None

    def restock(self, ret: Any, lines: list[Any]) -> None:
        """Report the graded `lines` to Shopify: received units by their grade and disposition,
        units that never arrived as MISSING, each part of a line up to what its reverse
        fulfillment order line still holds undisposed (so a retry after a crash disposes nothing
        twice). Marks each line's platform_data["disposed"]."""
        current = self._get(ret.platform_id)
        apply_parts(ret, current)
        location = self._restock_location()
        inputs = []
        for line in lines:
            parts = (line.platform_data or {}).get("parts", [])
            rfo_lines = [current.rfo_line_for(p.get("fulfillment_line")) for p in parts]
            if any(r is None for r in rfo_lines) or not parts:
                raise ShopifyError(_("Shopify has not opened the return's reverse fulfillment yet; "
                                     "the inspection will be sent again shortly."), retryable=True)
            received = line.quantity if line.received_quantity is None else line.received_quantity
            if line.disposition == "missing":
                received = 0
            kind = rm.disposition_type(line.grade, line.disposition)
            capacities = [max(r.total - r.disposed, 0) for r in rfo_lines]
            graded = rm.spread(received, capacities)
            missing = rm.spread(line.quantity - received, [c - g for c, g in zip(capacities, graded)])
            for rfo_line, units, absent in zip(rfo_lines, graded, missing):
                for dtype, quantity in ((kind, units), (rm.MISSING, absent)):
                    if quantity <= 0:
                        continue
                    item: dict[str, Any] = {"reverseFulfillmentOrderLineItemId": rfo_line.rfo_line,
                                            "quantity": quantity, "dispositionType": dtype}
                    if dtype == rm.RESTOCKED:
                        if not location:
                            raise ShopifyError(_("No Shopify location is known for restocked items (none was "
                                                 "found when the app was installed), so the inspection was not "
                                                 "sent to Shopify."), retryable=False)
                        item["locationId"] = location
                    inputs.append(item)
        if inputs:
            self.client.mutate("ReverseFulfillmentOrderDispose", {"dispositionInputs": inputs},
                               field="reverseFulfillmentOrderDispose")
        for line in lines:
            _set_data(line, disposed=True)
        self._close_when_done(ret, refunded=any(r.state == "succeeded" for r in ret.refunds))

    # ------------------------------------------------------------------ refunds

    def refund(self, order: Any, plan: RefundPlan, key: str, ret: Any = None) -> RefundResult:
        """Send `plan` once under `key` with refundCreate @idempotent. Shopify's refusal comes back
        in its own words (status "failed"), unless a refund under `key` exists after all; a timeout
        or 5xx after the client's retries raises a retryable ShopifyError (the service marks the
        refund unknown and looks it up later)."""
        native = ret is not None and bool(ret.platform_id)
        location = self._restock_location()
        items = []
        for line in plan.lines:
            # A native return's stock moves with its dispositions (restock); restocking here too
            # would count the units twice.
            restock = line.restock and not native and bool(location)
            item: dict[str, Any] = {"lineItemId": line.platform_line_id, "quantity": line.quantity,
                                    "restockType": "RETURN" if restock else "NO_RESTOCK"}
            if restock:
                item["locationId"] = location
            items.append(item)
        refund_input: dict[str, Any] = {
            "orderId": order.platform_id, "currency": plan.currency, "notify": False,
            "note": rm.refund_note(ret.rma if ret is not None else None, key), "refundLineItems": items}
        if plan.shipping > 0:
            refund_input["shipping"] = {"amount": _money(plan.shipping, plan.currency)}
        if plan.deductions or plan.capped:  # less than the lines and shipping come to: say why
            codes = {d.code for d in plan.deductions}
            refund_input["discrepancyReason"] = "RESTOCK" if codes == {"restocking_fee"} else "OTHER"
        if plan.method == "store_credit":
            refund_input["refundMethods"] = [{"storeCreditRefund": {
                "amount": {"amount": _money(plan.total, plan.currency), "currencyCode": plan.currency}}}]
        elif plan.total > 0:
            parents = rm.parent_transactions(self._transactions(order.platform_id), plan.currency)
            if not parents:
                return RefundResult(status="failed", message=_(
                    "This order has no payment in Shopify that a refund can go back to. Refund it to store "
                    "credit, or pay the shopper back another way."))
            refund_input["transactions"] = [
                {"orderId": order.platform_id, "parentId": txn.id, "gateway": txn.gateway, "kind": "REFUND",
                 "amount": _money(amount, plan.currency)}
                for txn, amount in rm.allocate_refund(parents, plan.total)]
        try:
            payload = self.client.mutate("RefundCreate", {"input": refund_input, "idempotencyKey": key},
                                         field="refundCreate")
        except UserErrors as exc:
            words = "; ".join(e.get("message", "") for e in exc.errors if e.get("message")) or str(exc)
            if _still_running(words):
                # The same key is being processed right now (another worker): the outcome is
                # unknown, not failed; the next attempt reads it back.
                raise ShopifyError(words, retryable=True) from None
            # A refusal is final only when Shopify holds no refund under this key: a worker racing
            # this one may have made it (a repeat whose transactions were read after it applied is
            # refused as a different request under the same key).
            return self.find_refund(order, key) or RefundResult(status="failed", message=words)
        refund = payload.get("refund")
        if not refund or not refund.get("id"):
            raise ShopifyError("Shopify answered refundCreate without a refund", retryable=True)
        if native:
            self._close_when_done(ret, refunded=True)
        return RefundResult(status="succeeded", platform_refund_id=refund["id"])

    def find_refund(self, order: Any, key: str) -> RefundResult | None:
        """The order's refund whose note carries `key`, as a succeeded result; None when none."""
        data = self.client.execute("OrderRefunds", {"orderId": order.platform_id})
        for refund in (data.get("order") or {}).get("refunds") or []:
            if rm.note_has_key(refund.get("note"), key):
                return RefundResult(status="succeeded", platform_refund_id=refund["id"])
        return None

    # ------------------------------------------------------------------ helpers

    def _returnable(self, order_gid: str) -> dict[str, list[tuple[str, int]]]:
        nodes, after = [], None
        while True:
            page = self.client.execute("ReturnableFulfillments", {"orderId": order_gid, "after": after})
            connection = page["returnableFulfillments"]
            nodes += connection.get("nodes") or []
            info = connection.get("pageInfo") or {}
            if not info.get("hasNextPage"):
                return rm.returnable_by_line_item(nodes)
            after = info.get("endCursor")

    def _transactions(self, order_gid: str) -> list[dict[str, Any]]:
        data = self.client.execute("OrderTransactions", {"orderId": order_gid})
        return (data.get("order") or {}).get("transactions") or []

    def _get(self, return_gid: str) -> rm.ShopifyReturn:
        data = self.client.execute("ReturnGet", {"id": return_gid})
        if not data.get("return"):
            raise ShopifyError(_("The return %(id)s no longer exists in Shopify.", id=return_gid), retryable=False)
        return rm.parse_return(data["return"])

    def _status_after(self, payload: dict[str, Any], return_gid: str) -> str:
        """The status a return mutation answered with, read back when the answer lacks it."""
        return (payload.get("return") or {}).get("status") or self._get(return_gid).status

    def _refresh_parts(self, ret: Any, return_gid: str, *, best_effort: bool = False) -> None:
        """Read the return back for its line and reverse fulfillment ids. Best effort right after a
        mutation: the return exists whatever happens here, and later steps read it again."""
        try:
            apply_parts(ret, self._get(return_gid))
        except ShopifyError:
            if not best_effort:
                raise
            log.warning("shopify return %s: could not read it back yet", return_gid)

    def _close_when_done(self, ret: Any, *, refunded: bool) -> None:
        """Close the OPEN Shopify return once it is refunded and every line's disposition was
        reported. Best effort: the money and the dispositions are already recorded; a failure
        leaves the return open in Shopify for the merchant to close."""
        if not refunded or ret.platform_status != "OPEN":
            return
        if not all((line.platform_data or {}).get("disposed") for line in ret.lines):
            return
        try:
            payload = self.client.mutate("ReturnClose", {"id": ret.platform_id}, field="returnClose")
            ret.platform_status = self._status_after(payload, ret.platform_id)
        except ShopifyError as exc:
            log.warning("shopify return %s: not closed: %s", ret.platform_id, exc)

    def _restock_location(self) -> str | None:
        """Where restocked units go: the policy's `restock_location_id`, else the location chosen
        at install (`shop.platform_data["location_id"]`)."""
        return (self.shop.policy or {}).get("restock_location_id") or (self.shop.platform_data or {}).get("location_id")

    def _linked_return_ids(self, ret: Any) -> set[str]:
        """The Shopify returns of `ret`'s order that other returns of this shop already hold."""
        from sqlalchemy import select

        from connector.db import session
        from connector.returns.models import Return

        return set(session.scalars(select(Return.platform_id).where(
            Return.shop_id == self.shop.id, Return.order_id == ret.order_id, Return.platform_id.is_not(None),
            Return.id != ret.id)))

    def _line_note(self, ret: Any, line: Any) -> str:
        """The shopper's words for the line; without any, the reason's label (Shopify's "other"
        expects a note) or, for an EU withdrawal, that it needs no reason."""
        if line.comment:
            return line.comment
        if line.reason is not None:
            return line.reason.label(self.shop.locale or "en")
        return _("Withdrawal from the contract (no reason required)") if ret.is_withdrawal else ""

    def _decline_note(self, ret: Any) -> str:
        if ret.state == lc.CANCELLED:
            return _("The customer cancelled the return.")
        for event in reversed(ret.events):
            if event.kind == "state" and (event.data or {}).get("to") == lc.REJECTED and event.data.get("note"):
                return event.data["note"]
        return _("The return request was declined.")

    def _label_url(self, ret: Any, shipment: Any) -> str | None:
        """A public address of the label for Shopify to fetch: the shopper's status link to the
        label PDF (signed, valid 90 days; connector/portal/views.py `label`). None when there is no
        label or the app has no public https address (Shopify cannot fetch from localhost): the
        tracking goes alone then."""
        if not shipment.label_key:
            return None
        from flask import current_app

        from connector.portal.tokens import status_token

        base = current_app.config["CONNECTOR"].base_url.rstrip("/")
        if not base.startswith("https://"):
            return None
        return (f"{base}/portal/{quote(self.shop.handle, safe='')}/returns/{quote(ret.rma, safe='')}/label.pdf?"
                + urlencode({"t": status_token(ret)}))


def apply_parts(ret: Any, current: rm.ShopifyReturn) -> None:
    """Record on each of `ret`'s lines the ReturnLineItems of `current` that return its order line,
    with their reverse fulfillment order lines (platform_data["parts"]; platform_id = the first
    ReturnLineItem). What a part recorded before (its reverse delivery) is kept."""
    for line in ret.lines:
        old = {p.get("fulfillment_line"): p for p in (line.platform_data or {}).get("parts", [])}
        parts = []
        for item in current.lines:
            if item.line_item != line.order_line.platform_id:
                continue
            rfo_line = current.rfo_line_for(item.fulfillment_line)
            part = {**old.get(item.fulfillment_line, {}), "fulfillment_line": item.fulfillment_line,
                    "quantity": item.quantity, "return_line": item.return_line}
            if rfo_line is not None:
                part.update(rfo=rfo_line.rfo, rfo_line=rfo_line.rfo_line)
            parts.append(part)
        if parts:
            _set_data(line, parts=parts)
            line.platform_id = parts[0]["return_line"]


def _still_running(words: str) -> bool:
    """Shopify's answer to a second request with a key it is still processing."""
    text = words.lower()
    return "currently in progress" in text or ("idempoten" in text and "concurrent" in text)


def _money(amount: Decimal, currency: str) -> str:
    """Shopify's Money / Decimal input: the amount in the currency's minor unit, as text (the
    database may hand back more decimal places, e.g. PostgreSQL NUMERIC(…, 4))."""
    return str(quantize(amount, currency))


def _iso(when: datetime) -> str:
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _set_data(line: Any, **values: Any) -> None:
    """Update the line's platform_data with a new dict (JSON columns notice reassignment only)."""
    line.platform_data = {**(line.platform_data or {}), **values}


def _set_part(line: Any, fulfillment_line: str, **values: Any) -> None:
    parts = [({**p, **values} if p.get("fulfillment_line") == fulfillment_line else dict(p))
             for p in (line.platform_data or {}).get("parts", [])]
    _set_data(line, parts=parts)
