"""The return's state machine: one transition function, every move an Event, illegal moves raise.

    draft -> requested -> approved | rejected
    approved -> label_ready | awaiting_pickup | awaiting_shipment
    label_ready | awaiting_pickup | awaiting_shipment -> in_transit -> received
    received -> inspected -> refunded -> closed     (received -> refunded when the shop refunds on delivery)
    cancelled from any state before the parcel moves; rejected -> closed
"""
from __future__ import annotations

from typing import Any

from connector.returns.models import Event, Return

DRAFT = "draft"
REQUESTED = "requested"
APPROVED = "approved"
REJECTED = "rejected"
LABEL_READY = "label_ready"
AWAITING_PICKUP = "awaiting_pickup"
AWAITING_SHIPMENT = "awaiting_shipment"
IN_TRANSIT = "in_transit"
RECEIVED = "received"
INSPECTED = "inspected"
REFUNDED = "refunded"
CLOSED = "closed"
CANCELLED = "cancelled"

STATES = (DRAFT, REQUESTED, APPROVED, REJECTED, LABEL_READY, AWAITING_PICKUP, AWAITING_SHIPMENT,
          IN_TRANSIT, RECEIVED, INSPECTED, REFUNDED, CLOSED, CANCELLED)

# Before the parcel moves: the shopper may still cancel (the label is voided where the carrier can).
CANCELLABLE = frozenset({DRAFT, REQUESTED, APPROVED, LABEL_READY, AWAITING_PICKUP, AWAITING_SHIPMENT})
WAITING_FOR_PARCEL = frozenset({LABEL_READY, AWAITING_PICKUP, AWAITING_SHIPMENT})

TRANSITIONS: dict[str, frozenset[str]] = {
    DRAFT: frozenset({REQUESTED, CANCELLED}),
    REQUESTED: frozenset({APPROVED, REJECTED, CANCELLED}),
    APPROVED: frozenset({LABEL_READY, AWAITING_PICKUP, AWAITING_SHIPMENT, CANCELLED}),
    # A parcel may arrive without any scan on the way: waiting states may jump to received.
    LABEL_READY: frozenset({IN_TRANSIT, RECEIVED, CANCELLED}),
    AWAITING_PICKUP: frozenset({IN_TRANSIT, RECEIVED, CANCELLED}),
    AWAITING_SHIPMENT: frozenset({IN_TRANSIT, RECEIVED, CANCELLED}),
    IN_TRANSIT: frozenset({RECEIVED}),
    RECEIVED: frozenset({INSPECTED, REFUNDED}),
    INSPECTED: frozenset({REFUNDED, CLOSED}),
    REFUNDED: frozenset({CLOSED}),
    REJECTED: frozenset({CLOSED}),
    CLOSED: frozenset(),
    CANCELLED: frozenset(),
}

# The milestones a shopper follows on the status page, in order.
MILESTONES = (REQUESTED, APPROVED, "shipment_ready", IN_TRANSIT, RECEIVED, INSPECTED, REFUNDED)


class IllegalTransition(ValueError):
    """A move the state machine does not allow."""

    def __init__(self, current: str, target: str):
        super().__init__(f"a return cannot move from {current!r} to {target!r}")
        self.current = current
        self.target = target


def can_transition(current: str, target: str) -> bool:
    return target in TRANSITIONS.get(current, frozenset())


def transition(ret: Return, target: str, *, actor: str, data: dict[str, Any] | None = None,
               public: bool = True) -> Event:
    """Move `ret` to `target`, append the Event recording it, and return that Event.

    Raises IllegalTransition (and changes nothing) when the move is not allowed. The caller
    commits; the Event is attached through the relationship so it is saved with the return.
    """
    if target not in TRANSITIONS:
        raise IllegalTransition(ret.state, target)
    if not can_transition(ret.state, target):
        raise IllegalTransition(ret.state, target)
    previous = ret.state
    ret.state = target
    event = Event(shop_id=ret.shop_id, actor=actor, kind="state",
                  data={"from": previous, "to": target, **(data or {})}, public=public)
    ret.events.append(event)
    return event


def record(ret: Return, kind: str, *, actor: str, data: dict[str, Any] | None = None,
           public: bool = False) -> Event:
    """Append a non-state Event (note, label, refund, mail...) to the return's timeline."""
    event = Event(shop_id=ret.shop_id, actor=actor, kind=kind, data=data or {}, public=public)
    ret.events.append(event)
    return event
