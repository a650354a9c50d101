"""Submitting a draft and the decisions on a return: approve, reject, cancel, selfship tracking."""
from __future__ import annotations

import re
import uuid
from datetime import timedelta

from connector.db import session
from connector.returns import lifecycle as lc
from connector.returns.context import _
from connector.returns.models import Return, Shipment
from connector.returns.policy import should_auto_approve
from connector.returns.services.base import (ServiceError, ValidationError, _enqueue_all, _set_pending, _shop,
                                             now_utc, policy_of)
from connector.returns.services.drafts import _claim, _next_number, discard_draft, estimated_value
from connector.returns.services.platform import platform_jobs


def confirm(ret: Return) -> Return:
    """Submit the draft: number, `requested`, auto-approval, shipment and mail jobs. Idempotent."""
    if ret.state != lc.DRAFT:
        return ret
    if not ret.lines:
        raise ServiceError(_("Choose the items first."), field="items")
    if not ret.method:
        raise ServiceError(_("Choose a return method first."), field="method")
    if not ret.checklist:
        raise ServiceError(_("Please confirm the instructions first."), field="checklist")
    stamp = now_utc()
    if not _claim(ret, confirmed_at=stamp):
        session.rollback()
        session.refresh(ret)
        return ret
    shop = _shop(ret)
    policy = policy_of(shop)
    ret.confirmed_at = stamp
    ret.number = _next_number(shop.id)
    ret.deadline = stamp + timedelta(days=policy.ship_by_days)
    lc.transition(ret, lc.REQUESTED, actor="shopper", data={"method": ret.method})
    jobs = [("notify", {"return_id": ret.id, "kind": "confirmed"})]
    if should_auto_approve(policy, value=estimated_value(ret), is_withdrawal=ret.is_withdrawal,
                           reason_codes=[line.reason.code for line in ret.lines if line.reason]):
        jobs += _approve(ret, "system")
    session.commit()
    _enqueue_all(jobs + platform_jobs(ret))
    return ret


def _approve(ret: Return, actor: str) -> list[tuple[str, dict]]:
    """Approve and open the shipment; returns the jobs to enqueue after commit."""
    lc.transition(ret, lc.APPROVED, actor=actor)
    method = ret.method or "selfship"
    policy = policy_of(_shop(ret))
    carrier = ret.carrier or policy.carriers.get(method, "selfship")
    shipment = Shipment(shop_id=ret.shop_id, carrier=carrier, method=method, status="requested",
                        connection_id=ret.carrier_connection_id if ret.carrier else None,
                        idempotency_key=f"shp-{ret.shop_id}-{ret.id}-{uuid.uuid4().hex[:12]}")
    ret.shipments.append(shipment)
    if method == "selfship":
        shipment.status = "awaiting_shipment"
        lc.transition(ret, lc.AWAITING_SHIPMENT, actor="system")
        return [("notify", {"return_id": ret.id, "kind": lc.AWAITING_SHIPMENT})]
    _set_pending(ret, "shipment")
    session.flush()
    return [("fulfil_shipment", {"shipment_id": shipment.id})]


def approve(ret: Return, actor: str) -> None:
    jobs = _approve(ret, actor)
    session.commit()
    _enqueue_all(jobs + [("notify", {"return_id": ret.id, "kind": lc.APPROVED})] + platform_jobs(ret))


def reject(ret: Return, actor: str, note: str = "") -> None:
    lc.transition(ret, lc.REJECTED, actor=actor, data={"note": note[:2000]})
    session.commit()
    _enqueue_all([("notify", {"return_id": ret.id, "kind": lc.REJECTED})] + platform_jobs(ret))


def cancel(ret: Return, actor: str) -> None:
    """Cancel before the parcel moves; the label is voided (or the pickup cancelled) by a job."""
    if ret.state not in lc.CANCELLABLE:
        raise ServiceError(_("This return can no longer be cancelled: the parcel is already on its way."))
    if ret.state == lc.DRAFT:
        discard_draft(ret)
        return
    jobs: list[tuple[str, dict]] = [("notify", {"return_id": ret.id, "kind": lc.CANCELLED})]
    shipment = ret.shipment
    lc.transition(ret, lc.CANCELLED, actor=actor)
    _set_pending(ret, None)
    if shipment is not None:
        if shipment.tracking_number or shipment.carrier_ref:
            shipment.status = "void_requested"
            _set_pending(ret, "void")
            jobs.insert(0, ("void_shipment", {"shipment_id": shipment.id}))
        else:
            shipment.status = "voided"
    session.commit()
    _enqueue_all(jobs + platform_jobs(ret))


def set_selfship_tracking(ret: Return, tracking_number: str, carrier_name: str) -> None:
    tracking_number = (tracking_number or "").strip()
    carrier_name = (carrier_name or "").strip()
    errors = {}
    if not re.fullmatch(r"[A-Za-z0-9 \-]{4,64}", tracking_number):
        errors["tracking_number"] = _("Enter the tracking number as printed on your receipt.")
    if not carrier_name or len(carrier_name) > 64:
        errors["carrier_name"] = _("Enter the carrier you sent the parcel with.")
    if errors:
        raise ValidationError(errors)
    shipment = ret.shipment
    if ret.state != lc.AWAITING_SHIPMENT or shipment is None or shipment.method != "selfship":
        raise ServiceError(_("A tracking number can only be added to a return you ship yourself."))
    shipment.tracking_number = tracking_number.replace(" ", "")
    shipment.carrier_ref = carrier_name
    shipment.status = "in_transit"
    lc.transition(ret, lc.IN_TRANSIT, actor="shopper", data={"tracking_number": shipment.tracking_number,
                                                              "carrier": carrier_name})
    session.commit()
    _enqueue_all([("notify", {"return_id": ret.id, "kind": lc.IN_TRANSIT})] + platform_jobs(ret))
