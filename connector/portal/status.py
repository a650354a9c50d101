"""What the shopper reads about a return: state names, method names, milestones, history lines.

Pure functions over a Return and its public Events (services.timeline(ret, public_only=True)).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from flask_babel import gettext as _

from connector.returns import lifecycle as lc

SHIPMENT_READY = frozenset({lc.LABEL_READY, lc.AWAITING_PICKUP, lc.AWAITING_SHIPMENT})
PICKUP_METHODS = frozenset({"pickup", "carrier_label"})


@dataclass(frozen=True)
class Milestone:
    code: str
    label: str
    done: bool
    current: bool
    at: datetime | None


def method_name(method: str | None) -> str:
    return {
        "pickup": _("Pickup at your address"),
        "dropoff": _("Drop-off at a parcel shop"),
        "carrier_label": _("Pickup, the driver brings the label"),
        "selfship": _("Send it yourself"),
    }.get(method or "", _("Not chosen yet"))


def method_explanation(method: str, *, qr: bool = False) -> str:
    return {
        "pickup": _("A driver collects the parcel at your address. Print the label and attach it."),
        "dropoff": _("Take the parcel to a drop-off point near you and hand it over with the label."),
        "carrier_label": _("A driver collects the parcel at your address and brings the label along. "
                           "Just have the parcel packed and ready."),
        "selfship": _("Send the parcel with a carrier of your choice to our return address, "
                      "then enter the tracking number here. You pay the postage yourself."),
    }.get(method, "")


def state_name(state: str) -> str:
    return {
        lc.DRAFT: _("Not submitted"),
        lc.REQUESTED: _("Requested, waiting for approval"),
        lc.APPROVED: _("Approved, preparing your shipment"),
        lc.REJECTED: _("Rejected"),
        lc.LABEL_READY: _("Label ready"),
        lc.AWAITING_PICKUP: _("Pickup booked"),
        lc.AWAITING_SHIPMENT: _("Waiting for you to send the parcel"),
        lc.IN_TRANSIT: _("On its way to us"),
        lc.RECEIVED: _("Received"),
        lc.INSPECTED: _("Inspected"),
        lc.REFUNDED: _("Refunded"),
        lc.CLOSED: _("Closed"),
        lc.CANCELLED: _("Cancelled"),
    }.get(state, state)


def blocked_reason(code: str | None) -> str:
    """Why a line cannot be returned, in a sentence (policy.Eligibility.blocked codes)."""
    return {
        "window_passed": _("The return period for this item has ended."),
        "final_sale": _("Final sale: this item cannot be returned."),
        "already_returned": _("Already returned."),
        "excluded": _("This item is excluded from returns."),
        "not_fulfilled": _("Not shipped yet, so it cannot be returned."),
        "cancelled": _("This order was cancelled."),
    }.get(code or "", _("This item cannot be returned."))


def _milestone_label(code: str, method: str | None) -> str:
    if code == "shipment_ready":
        if method in PICKUP_METHODS:
            return _("Pickup booked")
        if method == "selfship":
            return _("Ready to send")
        return _("Label ready")
    return {
        lc.REQUESTED: _("Requested"),
        lc.APPROVED: _("Approved"),
        lc.IN_TRANSIT: _("In transit"),
        lc.RECEIVED: _("Received"),
        lc.INSPECTED: _("Inspected"),
        lc.REFUNDED: _("Refunded"),
    }[code]


def milestones(ret, events) -> list[Milestone]:
    """The seven milestones, each done (with when) or not; the furthest reached is current.

    A milestone skipped on the way (a parcel received without an in-transit scan) counts as done
    without a time.
    """
    reached: dict[str, datetime] = {}
    for event in events:
        if event.kind != "state":
            continue
        to = (event.data or {}).get("to")
        key = "shipment_ready" if to in SHIPMENT_READY else to
        if key in lc.MILESTONES:
            reached.setdefault(key, event.at)
    codes = list(lc.MILESTONES)
    furthest = max((codes.index(c) for c in reached), default=-1)
    live = ret.state not in (lc.CANCELLED, lc.REJECTED)
    return [Milestone(code=c, label=_milestone_label(c, ret.method), done=i <= furthest,
                      current=live and i == furthest, at=reached.get(c)) for i, c in enumerate(codes)]


def describe(event, ret) -> str | None:
    """One line of history for a public event, or None when it says nothing to a shopper."""
    data = event.data or {}
    if event.kind == "state":
        return state_name(data.get("to", ""))
    if event.kind == "withdrawal":
        return _("Withdrawal received")
    if event.kind == "label_voided":
        return _("The return label was cancelled.")
    if event.kind == "label_not_voided":
        return _("The label could not be cancelled with the carrier; please do not use it.")
    if event.kind == "parcel_delivered":
        return _("The carrier delivered your parcel to us; we are checking it.")
    if event.kind == "shipment_failed":
        # The carrier's message is one of its backend's N_()-marked texts: translate it here.
        carrier_says = data.get("shopper_message")
        return _(carrier_says) if carrier_says else _("The carrier could not create the shipment; the shop will contact you.")
    return None


def label_voided(ret) -> bool | None:
    """After a cancel: True when the label was cancelled with the carrier, False when it could
    not be, None when there was no label to cancel or the carrier has not answered yet."""
    kinds = [e.kind for e in ret.events]
    if "label_not_voided" in kinds:
        return False
    if "label_voided" in kinds:
        return True
    return None
