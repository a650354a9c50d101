"""Shipments: the carrier job bodies (label, pickup, void, tracking) and reading labels."""
from __future__ import annotations

import uuid

from sqlalchemy import select

from connector.db import session
from connector.returns import lifecycle as lc
from connector.carriers.refusals import shopper_message
from connector.returns.context import _, runtime
from connector.returns.models import Event, Return, Shipment
from connector.returns.money import quantize
from connector.returns.ports import (Address, CarrierError, CarrierNotSupported, CarrierRejected,
                                     CarrierRetryable, ParcelItem, ShipmentRequest)
from connector.returns.services.base import ServiceError, _backoff, _enqueue_all, _set_pending, _shop
from connector.returns.services.platform import platform_jobs
from connector.returns.services.drafts import pickup_day
from connector.returns.services.warehouse import mark_received


def shipment_request(ret: Return, shipment: Shipment) -> ShipmentRequest:
    shop = _shop(ret)
    address = ret.address or {}
    sender = Address.from_dict({**address, "email": ret.email})
    recipient = Address.from_dict(shop.return_address or {"name": shop.name, "line1": "", "postcode": "",
                                                          "city": "", "country": shop.country})
    items = tuple(ParcelItem(description=line.order_line.title, quantity=line.quantity, sku=line.order_line.sku,
                             value=quantize(line.order_line.unit_price * line.quantity, ret.currency))
                  for line in ret.lines)
    return ShipmentRequest(idempotency_key=shipment.idempotency_key, reference=ret.rma, method=shipment.method,
                           sender=sender, recipient=recipient, items=items, currency=ret.currency)


def _store_label(shop_id: int, shipment: Shipment, label) -> None:
    if label is None:
        return
    stem = f"shop-{shop_id}/labels/{shipment.idempotency_key}"
    if label.pdf:
        shipment.label_key = runtime.storage.put(stem + ".pdf", label.pdf)
    if label.qr_png:
        shipment.qr_key = runtime.storage.put(stem + "-qr.png", label.qr_png)
    shipment.tracking_number = label.tracking_number or shipment.tracking_number
    shipment.tracking_url = label.tracking_url or shipment.tracking_url
    shipment.carrier_ref = label.carrier_ref or shipment.carrier_ref


def fulfil_shipment(shipment_id: int) -> Shipment | None:
    """Job body: get the label or book the pickup for an approved return. Idempotent per shipment."""
    shipment = session.get(Shipment, shipment_id)
    if shipment is None or shipment.status != "requested":
        return shipment
    ret = shipment.return_
    if ret.state != lc.APPROVED:
        return shipment
    shop = _shop(ret)
    backend = runtime.carrier(shipment.carrier, shop)
    request = shipment_request(ret, shipment)
    shipment.attempts += 1
    session.commit()
    try:
        if shipment.method in ("pickup", "carrier_label"):
            day = pickup_day(shop, request.sender.country)
            pickup = backend.schedule_pickup(request, day)
            _store_label(shop.id, shipment, pickup.label)
            shipment.pickup_date, shipment.pickup_window = pickup.day, pickup.window
            shipment.carrier_ref = pickup.carrier_ref or shipment.carrier_ref
            shipment.tracking_number = pickup.tracking_number or shipment.tracking_number
            shipment.status = "pickup_booked"
            target = lc.AWAITING_PICKUP
        else:
            _store_label(shop.id, shipment, backend.create_return_label(request))
            shipment.status = "label_ready"
            target = lc.LABEL_READY
    except CarrierRetryable as exc:
        shipment.error = str(exc)[:2000]
        _set_pending(ret, "shipment", _backoff(shipment.attempts))
        session.commit()
        return shipment
    except CarrierError as exc:
        shipment.status = "failed"
        shipment.error = str(exc)[:2000]
        shopper = shopper_message(exc)
        lc.record(ret, "shipment_failed", actor="carrier", public=bool(shopper),
                  data={"error": shipment.error, "shopper_message": shopper})
        _set_pending(ret, None)
        session.commit()
        runtime.enqueue("alert_merchant", shop_id=shop.id,
                        subject=f"{ret.rma}: the carrier refused the return shipment", text=shipment.error)
        return shipment
    shipment.error = None
    lc.transition(ret, target, actor="carrier", data={"tracking_number": shipment.tracking_number,
                                                      "pickup_date": shipment.pickup_date.isoformat()
                                                      if shipment.pickup_date else None})
    _set_pending(ret, None)
    session.commit()
    _enqueue_all([("notify", {"return_id": ret.id, "kind": target})] + platform_jobs(ret))
    return shipment


def retry_shipment(ret: Return, actor: str) -> Shipment:
    """Merchant action after a carrier refusal: open a new shipment request and queue it."""
    shipment = ret.shipment
    if ret.state != lc.APPROVED or shipment is None or shipment.status != "failed":
        raise ServiceError(_("There is no failed shipment to retry."))
    shipment.status = "voided"
    fresh = Shipment(shop_id=ret.shop_id, carrier=shipment.carrier, method=shipment.method, status="requested",
                     idempotency_key=f"shp-{ret.shop_id}-{ret.id}-{uuid.uuid4().hex[:12]}")
    ret.shipments.append(fresh)
    lc.record(ret, "shipment_retry", actor=actor)
    _set_pending(ret, "shipment")
    session.commit()
    runtime.enqueue("fulfil_shipment", shipment_id=fresh.id)
    return fresh


def void_shipment(shipment_id: int) -> Shipment | None:
    """Job body: void the label or cancel the pickup of a cancelled return, where the carrier can."""
    shipment = session.get(Shipment, shipment_id)
    if shipment is None or shipment.status != "void_requested":
        return shipment
    ret = shipment.return_
    backend = runtime.carrier(shipment.carrier, _shop(ret))
    try:
        if shipment.pickup_date and shipment.carrier_ref:
            backend.cancel_pickup(shipment.carrier_ref)
        if shipment.tracking_number:
            backend.void_label(shipment.tracking_number)
        shipment.status = "voided"
        lc.record(ret, "label_voided", actor="carrier", public=True)
    except CarrierRetryable as exc:
        shipment.error = str(exc)[:2000]
        shipment.attempts += 1
        _set_pending(ret, "void", _backoff(shipment.attempts))
        session.commit()
        return shipment
    except (CarrierNotSupported, CarrierError) as exc:
        shipment.status = "voided"
        shipment.error = str(exc)[:2000]
        lc.record(ret, "label_not_voided", actor="carrier", public=True, data={"error": shipment.error})
    _set_pending(ret, None)
    session.commit()
    return shipment


PARCEL_MOVING = {"in_transit", "out_for_delivery"}


def refresh_tracking(shipment: Shipment) -> Shipment:
    """Poll the carrier and apply new tracking events: in transit, then delivered (= received)."""
    ret = shipment.return_
    if not shipment.tracking_number or shipment.status in ("voided", "failed", "void_requested"):
        return shipment
    backend = runtime.carrier(shipment.carrier, _shop(ret))
    if not backend.capabilities.tracking:
        return shipment
    events = backend.track(shipment.tracking_number)
    known = {(e["at"], e["status"]) for e in shipment.events}
    fresh = [e for e in events if (e.at.isoformat(), e.status) not in known]
    if not fresh:
        return shipment
    shipment.events = list(shipment.events) + [
        {"at": e.at.isoformat(), "status": e.status, "description": e.description, "location": e.location}
        for e in fresh]
    statuses = {e.status for e in events}
    notify = None
    if statuses & PARCEL_MOVING and ret.state in lc.WAITING_FOR_PARCEL:
        shipment.status = "in_transit"
        lc.transition(ret, lc.IN_TRANSIT, actor="carrier", data={"tracking_number": shipment.tracking_number})
        notify = lc.IN_TRANSIT
    session.commit()
    if notify:
        runtime.enqueue("notify", return_id=ret.id, kind=notify)
    if "delivered" in statuses and ret.state in (lc.IN_TRANSIT, *lc.WAITING_FOR_PARCEL):
        mark_received(ret, "carrier")
    return shipment


def timeline(ret: Return, public_only: bool) -> list[Event]:
    query = select(Event).where(Event.shop_id == ret.shop_id, Event.return_id == ret.id).order_by(Event.at, Event.id)
    if public_only:
        query = query.where(Event.public.is_(True))
    return list(session.scalars(query))


def _stored(key: str | None) -> bytes | None:
    """The stored file, or None when there is none (one read, no separate existence check)."""
    if not key:
        return None
    try:
        return runtime.storage.get(key)
    except FileNotFoundError:
        return None


def label_bytes(ret: Return) -> bytes | None:
    shipment = ret.shipment
    return _stored(shipment.label_key) if shipment else None


def qr_bytes(ret: Return) -> bytes | None:
    shipment = ret.shipment
    return _stored(shipment.qr_key) if shipment else None
