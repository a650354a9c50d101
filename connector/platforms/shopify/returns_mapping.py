"""Shopify returns and refunds as plain data: pure functions, no HTTP, no database.

What the adapter (connector/platforms/shopify/adapter.py) sends and reads, mapped here:

- `parse_return(node)`: a `Return` node (ReturnGet / OrderReturns) -> `ShopifyReturn`.
- `allocate_fulfillment_lines`: Shopify returns name FulfillmentLineItem ids, never LineItem ids;
  this spreads each returned order line over the fulfillment line items that still hold units.
- `disposition_type` / `spread`: a graded line (A/B/C, restock/refurbish/dispose/missing) -> the
  ReverseFulfillmentOrderDisposeInput dispositions.
- `allocate_refund`: the refund total over the order's SALE / CAPTURE transactions.
- `refund_note` / `note_has_key`: the note that carries our idempotency key on Shopify's Refund.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Iterable

OPEN_STATUSES = ("REQUESTED", "OPEN")
FINAL_STATUSES = ("CANCELED", "DECLINED", "CLOSED")

RESTOCKED = "RESTOCKED"
PROCESSING_REQUIRED = "PROCESSING_REQUIRED"
NOT_RESTOCKED = "NOT_RESTOCKED"
MISSING = "MISSING"


@dataclass(frozen=True)
class ReturnLinePart:
    """One ReturnLineItem: which fulfillment line (and order LineItem) it returns, how many, why."""

    return_line: str
    quantity: int
    fulfillment_line: str | None = None  # None for an UnverifiedReturnLineItem
    line_item: str | None = None
    reason_handle: str | None = None
    note: str = ""


@dataclass(frozen=True)
class RfoLine:
    """A reverse fulfillment order line: where dispositions and reverse deliveries are reported."""

    rfo: str
    rfo_line: str
    fulfillment_line: str | None
    total: int
    disposed: int


@dataclass(frozen=True)
class Delivery:
    rfo: str
    id: str
    tracking_number: str | None


@dataclass(frozen=True)
class ShopifyReturn:
    id: str
    status: str
    order_id: str | None
    created_at: datetime | None
    lines: tuple[ReturnLinePart, ...]
    rfo_lines: tuple[RfoLine, ...]
    deliveries: tuple[Delivery, ...]
    name: str = ""
    decline_note: str = ""

    def quantities(self) -> dict[str, int]:
        """Units returned per order LineItem GID."""
        totals: dict[str, int] = {}
        for part in self.lines:
            if part.line_item:
                totals[part.line_item] = totals.get(part.line_item, 0) + part.quantity
        return totals

    def rfo_line_for(self, fulfillment_line: str | None) -> RfoLine | None:
        return next((r for r in self.rfo_lines if fulfillment_line and r.fulfillment_line == fulfillment_line), None)


def parse_datetime(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _nodes(connection: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not connection:
        return []
    if "nodes" in connection:
        return list(connection["nodes"] or [])
    return [edge["node"] for edge in connection.get("edges") or []]


def parse_return(node: dict[str, Any]) -> ShopifyReturn:
    """A Return node as the ReturnGet or OrderReturns documents select it."""
    lines = []
    for item in _nodes(node.get("returnLineItems")):
        fli = item.get("fulfillmentLineItem") or {}
        reason = item.get("returnReasonDefinition") or {}
        lines.append(ReturnLinePart(
            return_line=item["id"], quantity=int(item["quantity"]), fulfillment_line=fli.get("id"),
            line_item=(fli.get("lineItem") or {}).get("id"), reason_handle=reason.get("handle"),
            note=(item.get("customerNote") or item.get("returnReasonNote") or "").strip()))
    rfo_lines, deliveries = [], []
    for rfo in _nodes(node.get("reverseFulfillmentOrders")):
        for item in _nodes(rfo.get("lineItems")):
            disposed = sum(int(d.get("quantity") or 0) for d in item.get("dispositions") or [])
            rfo_lines.append(RfoLine(rfo=rfo["id"], rfo_line=item["id"],
                                     fulfillment_line=(item.get("fulfillmentLineItem") or {}).get("id"),
                                     total=int(item.get("totalQuantity") or 0), disposed=disposed))
        for delivery in _nodes(rfo.get("reverseDeliveries")):
            tracking = ((delivery.get("deliverable") or {}).get("tracking") or {})
            deliveries.append(Delivery(rfo=rfo["id"], id=delivery["id"], tracking_number=tracking.get("number")))
    decline = node.get("decline") or {}
    return ShopifyReturn(id=node["id"], status=node.get("status") or "", name=node.get("name") or "",
                         order_id=(node.get("order") or {}).get("id"), created_at=parse_datetime(node.get("createdAt")),
                         lines=tuple(lines), rfo_lines=tuple(rfo_lines), deliveries=tuple(deliveries),
                         decline_note=decline.get("note") or "")


# ------------------------------------------------------------------------ opening a return


class NotReturnable(ValueError):
    """Some order lines have fewer returnable units in Shopify than the return holds."""

    def __init__(self, line_items: list[str]):
        super().__init__(", ".join(line_items))
        self.line_items = line_items


def returnable_by_line_item(nodes: Iterable[dict[str, Any]]) -> dict[str, list[tuple[str, int]]]:
    """ReturnableFulfillment nodes -> {LineItem GID: [(FulfillmentLineItem GID, returnable units)]}."""
    result: dict[str, list[tuple[str, int]]] = {}
    for fulfillment in nodes:
        for item in _nodes(fulfillment.get("returnableFulfillmentLineItems")):
            fli = item["fulfillmentLineItem"]
            if int(item["quantity"]) > 0:
                result.setdefault(fli["lineItem"]["id"], []).append((fli["id"], int(item["quantity"])))
    return result


def allocate_fulfillment_lines(returnable: dict[str, list[tuple[str, int]]],
                               wanted: list[tuple[str, int]]) -> list[list[tuple[str, int]]]:
    """For each (LineItem GID, units) in `wanted`, the (FulfillmentLineItem GID, units) that return
    them, filling the fulfillments in Shopify's order. Raises NotReturnable naming the LineItems
    Shopify has not got enough returnable units of (not fulfilled yet, or already returned)."""
    left = {gid: list(parts) for gid, parts in returnable.items()}
    result, short = [], []
    for line_item, units in wanted:
        parts, need = [], units
        for index, (fli, available) in enumerate(left.get(line_item, [])):
            take = min(available, need)
            if take:
                parts.append((fli, take))
                left[line_item][index] = (fli, available - take)
                need -= take
            if not need:
                break
        if need:
            short.append(line_item)
        result.append(parts)
    if short:
        raise NotReturnable(short)
    return result


# ------------------------------------------------------------------------ dispositions


def disposition_type(grade: str | None, disposition: str | None) -> str:
    """A / restock -> RESTOCKED, C or dispose -> NOT_RESTOCKED, missing -> MISSING, anything else
    (B, refurbish, A kept aside) -> PROCESSING_REQUIRED."""
    if disposition == "missing":
        return MISSING
    if grade == "C" or disposition == "dispose":
        return NOT_RESTOCKED
    if grade == "A" and disposition == "restock":
        return RESTOCKED
    return PROCESSING_REQUIRED


def spread(units: int, capacities: list[int]) -> list[int]:
    """`units` over slots holding at most `capacities`, filling them in order."""
    taken = []
    for capacity in capacities:
        take = max(min(units, capacity), 0)
        taken.append(take)
        units -= take
    return taken


# ------------------------------------------------------------------------ refunds

NOTE_PREFIX = "Returns Connector"


def refund_note(rma: str | None, key: str) -> str:
    """The refund's note on Shopify: readable for the merchant, and carrying our key in brackets."""
    return f"{NOTE_PREFIX} {rma} [{key}]" if rma else f"{NOTE_PREFIX} [{key}]"


def note_has_key(note: str | None, key: str) -> bool:
    return f"[{key}]" in (note or "")


@dataclass(frozen=True)
class ParentTransaction:
    id: str
    gateway: str
    refundable: Decimal


def parent_transactions(nodes: Iterable[dict[str, Any]], currency: str) -> list[ParentTransaction]:
    """The successful SALE / CAPTURE transactions a refund can go back to, with what each can still
    refund in `currency` (the amount in whichever of shop and presentment money is in `currency`)."""
    result = []
    for txn in nodes:
        if txn.get("kind") not in ("SALE", "CAPTURE") or txn.get("status") != "SUCCESS":
            continue
        bag = txn.get("amountSet") or {}
        amount = next((m for m in (bag.get("presentmentMoney"), bag.get("shopMoney"))
                       if m and m.get("currencyCode") == currency), None) or {}
        refundable = Decimal(str(amount.get("amount") or "0"))
        maximum = txn.get("maximumRefundableV2")
        if maximum and maximum.get("currencyCode") == currency:
            refundable = Decimal(str(maximum["amount"]))
        if refundable > 0:
            result.append(ParentTransaction(id=txn["id"], gateway=txn.get("gateway") or "", refundable=refundable))
    return result


def allocate_refund(transactions: list[ParentTransaction], total: Decimal) -> list[tuple[ParentTransaction, Decimal]]:
    """`total` over the transactions in order, each up to what it can refund. What none can hold
    stays on the first, so that Shopify (not a guess here) says why it is too much."""
    allocation, left = [], total
    for txn in transactions:
        take = min(txn.refundable, left)
        if take > 0:
            allocation.append((txn, take))
            left -= take
    if left > 0 and transactions:
        if allocation and allocation[0][0] is transactions[0]:
            allocation[0] = (transactions[0], allocation[0][1] + left)
        else:
            allocation.insert(0, (transactions[0], left))
    return allocation
