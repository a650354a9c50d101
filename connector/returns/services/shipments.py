"""Shipments: the carrier job bodies (label, pickup, void, tracking) and reading labels."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import select

from connector.carriers.customs import declaration, needs_customs, parcel_weight
from connector.carriers.refusals import ADDRESS_FIELDS as FIXABLE_BY_ADDRESS
from connector.carriers.refusals import refused_field, shopper_message
from connector.db import session
from connector.returns import lifecycle as lc
from connector.returns.context import _, runtime
from connector.returns.models import Event, Return, Shipment
from connector.returns.money import quantize
from connector.returns.ports import (VOID_REQUESTED, Address, CarrierError, CarrierNotSupported, CarrierRetryable,
                                     ParcelItem, ShipmentRequest, TrackingUpdate)
from connector.returns.services.base import (ServiceError, ValidationError, _backoff, _enqueue_all, _set_pending,
                                             _shop, now_utc, policy_of)
from connector.returns.services.drafts import ADDRESS_FIELDS, country_problem, pickup_day, validate_address
from connector.returns.services.platform import platform_jobs
from connector.returns.services.warehouse import mark_received


# Returns whose parcel waits this long for a label the carrier makes later are given up: the
# merchant is alerted and may retry the shipment.
LATE_LABEL_WINDOW = timedelta(hours=24)
PRINTED_LABEL_METHODS = ("pickup", "dropoff")  # the shopper prints (or shows) a label; carrier_label: the driver brings it


def _backend(shipment: Shipment, shop):
    return runtime.carrier(shipment.carrier, shop, shipment.connection_id)


def _connection(shop, shipment: Shipment):
    return runtime.carriers.get(shop, shipment.connection_id) if shipment.connection_id and runtime.carriers else None


def shipment_request(ret: Return, shipment: Shipment) -> ShipmentRequest:
    """The parcel for the carrier: from the shopper's address to the return address for their
    country (the connection's, else the shop's), with a customs declaration when it crosses the
    EU customs border."""
    shop = _shop(ret)
    address = ret.address or {}
    sender = Address.from_dict({**address, "email": ret.email})
    country = (sender.country or shop.country or "").upper()
    to = (runtime.carriers.return_address(shop, _connection(shop, shipment), country) if runtime.carriers
          else dict(shop.return_address or {}))
    recipient = Address.from_dict(to or {"name": shop.name, "line1": "", "postcode": "", "city": "",
                                         "country": shop.country})
    items = tuple(ParcelItem(description=line.order_line.title, quantity=line.quantity, sku=line.order_line.sku,
                             value=quantize(line.order_line.unit_price * line.quantity, ret.currency))
                  for line in ret.lines)
    customs = declaration(ret) if needs_customs(sender.country, recipient.country) else None
    return ShipmentRequest(idempotency_key=shipment.idempotency_key, reference=ret.rma, method=shipment.method,
                           sender=sender, recipient=recipient, items=items, currency=ret.currency,
                           weight_grams=parcel_weight(ret), customs=customs)


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
    try:
        backend = _backend(shipment, shop)
    except (KeyError, ValueError) as exc:  # the connection was deleted or its settings no longer do
        return _give_up(ret, shipment, CarrierError(f"the carrier connection cannot be used: {exc}"))
    request = shipment_request(ret, shipment)
    shipment.attempts += 1
    session.commit()
    try:
        if shipment.method in ("pickup", "carrier_label"):
            day = pickup_day(shop, request.sender.country, region=request.sender.region or None,
                             cutoff_hour=runtime.carriers.cutoff_hour(_connection(shop, shipment))
                             if runtime.carriers else 24)
            pickup = backend.schedule_pickup(request, day)
            _store_label(shop.id, shipment, pickup.label)
            shipment.pickup_date, shipment.pickup_window = pickup.day, pickup.window
            shipment.carrier_ref = pickup.carrier_ref or shipment.carrier_ref
            shipment.tracking_number = pickup.tracking_number or shipment.tracking_number
            target = lc.AWAITING_PICKUP
        else:
            _store_label(shop.id, shipment, backend.create_return_label(request))
            target = lc.LABEL_READY
    except CarrierRetryable as exc:
        shipment.error = str(exc)[:2000]
        _set_pending(ret, "shipment", _backoff(shipment.attempts))
        session.commit()
        _alert_once_when_stuck(ret, shipment)
        return shipment
    except CarrierError as exc:
        return _give_up(ret, shipment, exc)
    shipment.error = None
    if shipment.method in PRINTED_LABEL_METHODS and not shipment.label_key:
        if not (backend.capabilities.late_label and shipment.carrier_ref):
            return _give_up(ret, shipment, CarrierError("the carrier answered without a label"))
        # The carrier makes the label later: fetch it (fetch_label) before telling the shopper.
        shipment.status = "label_pending"
        lc.record(ret, "label_pending", actor="carrier", public=False, data={"carrier_ref": shipment.carrier_ref})
        _set_pending(ret, "label", _backoff(1))
        session.commit()
        return shipment
    _ready(ret, shipment, target)
    return shipment


def _alert_once_when_stuck(ret: Return, shipment: Shipment) -> None:
    """A carrier that has not answered for LATE_LABEL_WINDOW: the merchant is told once (the
    shipment keeps being retried with back-off; they may also cancel or change the return)."""
    if now_utc() - shipment.created_at < LATE_LABEL_WINDOW:
        return
    if any(e.kind == "shipment_stuck" for e in ret.events):
        return
    lc.record(ret, "shipment_stuck", actor="system", public=False, data={"error": shipment.error})
    session.commit()
    runtime.enqueue("alert_merchant", shop_id=ret.shop_id,
                    subject=f"{ret.rma}: the carrier has not answered for 24 hours",
                    text=f"The label for return {ret.rma} is still being asked for; the carrier's last answer: "
                         f"{shipment.error}. It is tried again automatically.")


def _ready(ret: Return, shipment: Shipment, target: str) -> None:
    """The label is there (or the pickup booked): tell the shopper, with the label."""
    shipment.status = "pickup_booked" if target == lc.AWAITING_PICKUP else "label_ready"
    lc.transition(ret, target, actor="carrier", data={"tracking_number": shipment.tracking_number,
                                                      "pickup_date": shipment.pickup_date.isoformat()
                                                      if shipment.pickup_date else None})
    _set_pending(ret, None)
    session.commit()
    _enqueue_all([("notify", {"return_id": ret.id, "kind": target})] + platform_jobs(ret))


def _give_up(ret: Return, shipment: Shipment, exc: CarrierError) -> Shipment:
    """The carrier refused (or never made the label): the shopper is told what they can fix, the
    merchant gets the carrier's own words and may retry the shipment."""
    shop = _shop(ret)
    shipment.status = "failed"
    shipment.error = str(exc)[:2000]
    shopper = shopper_message(exc)
    lc.record(ret, "shipment_failed", actor="carrier", public=True,
              data={"error": shipment.error, "shopper_message": shopper, "field": refused_field(exc)})
    _set_pending(ret, None)
    session.commit()
    runtime.enqueue("alert_merchant", shop_id=shop.id,
                    subject=f"{ret.rma}: the carrier refused the return shipment", text=shipment.error)
    return shipment


def fetch_late_label(shipment_id: int, now=None) -> Shipment | None:
    """Job body: ask the carrier for a label it makes later (capabilities.late_label). Found: the
    shopper gets it as for any label. Not yet: asked again with backoff (the reconciler drives
    pending step "label"); after LATE_LABEL_WINDOW the shipment fails and the merchant is alerted."""
    shipment = session.get(Shipment, shipment_id)
    if shipment is None or shipment.status != "label_pending":
        return shipment
    ret = shipment.return_
    shop = _shop(ret)
    now = now or now_utc()
    shipment.attempts += 1
    try:
        label = _backend(shipment, shop).fetch_label(shipment.carrier_ref, shipment.tracking_number)
    except CarrierRetryable as exc:
        shipment.error, label = str(exc)[:2000], None
    except (CarrierError, KeyError, ValueError) as exc:
        return _give_up(ret, shipment, exc if isinstance(exc, CarrierError) else CarrierError(str(exc)))
    if label is not None and label.pdf:
        _store_label(shop.id, shipment, label)
        shipment.error = None
        _ready(ret, shipment, lc.AWAITING_PICKUP if shipment.pickup_date else lc.LABEL_READY)
        return shipment
    if now - shipment.created_at >= LATE_LABEL_WINDOW:
        return _give_up(ret, shipment, CarrierError(
            f"the carrier has not made the label within {int(LATE_LABEL_WINDOW.total_seconds() // 3600)} hours "
            f"(reference {shipment.carrier_ref})"))
    _set_pending(ret, "label", _backoff(shipment.attempts))
    session.commit()
    return shipment


def retry_shipment(ret: Return, actor: str) -> Shipment:
    """Merchant action after a carrier refusal: open a new shipment request and queue it."""
    shipment = ret.shipment
    if ret.state != lc.APPROVED or shipment is None or shipment.status != "failed":
        raise ServiceError(_("There is no failed shipment to retry."))
    shipment.status = "voided"
    fresh = Shipment(shop_id=ret.shop_id, carrier=shipment.carrier, method=shipment.method, status="requested",
                     connection_id=shipment.connection_id,
                     idempotency_key=f"shp-{ret.shop_id}-{ret.id}-{uuid.uuid4().hex[:12]}")
    ret.shipments.append(fresh)
    lc.record(ret, "shipment_retry", actor=actor)
    _set_pending(ret, "shipment")
    session.commit()
    runtime.enqueue("fulfil_shipment", shipment_id=fresh.id)
    return fresh


def address_to_correct(ret: Return) -> str | None:
    """The refused field ("address", "postcode", "phone") when the carrier refused the return's
    shipment over something in the sender address the shopper can correct; else None."""
    shipment = ret.shipment
    if ret.state != lc.APPROVED or shipment is None or shipment.status != "failed":
        return None
    failures = [e for e in ret.events if e.kind == "shipment_failed"]
    field = (failures[-1].data or {}).get("field") if failures else None
    return field if field in FIXABLE_BY_ADDRESS else None


def correct_address(ret: Return, address: dict, actor: str = "shopper") -> Shipment:
    """The shopper corrected the address the carrier refused: it is checked like at the start
    (and must be in a country the return's method is offered for), kept, and the shipment asked
    for again with it."""
    if address_to_correct(ret) is None:
        raise ServiceError(_("There is no address to correct for this return."))
    address = {k: address.get(k, "") for k in ADDRESS_FIELDS}
    errors = validate_address(address)
    if not errors and (problem := country_problem(ret, address)):
        errors["country"] = problem
    if errors:
        raise ValidationError(errors)
    ret.address = address
    lc.record(ret, "address_corrected", actor=actor, public=False)
    session.commit()
    return retry_shipment(ret, actor)


def void_shipment(shipment_id: int) -> Shipment | None:
    """Job body: void the label or cancel the pickup of a cancelled return, where the carrier can."""
    shipment = session.get(Shipment, shipment_id)
    if shipment is None or shipment.status != "void_requested":
        return shipment
    ret = shipment.return_
    try:
        backend = _backend(shipment, _shop(ret))
        outcomes = []
        if shipment.pickup_date and shipment.carrier_ref:
            outcomes.append(backend.cancel_pickup(shipment.carrier_ref))
        if shipment.tracking_number:
            outcomes.append(backend.void_label(shipment.tracking_number, shipment.carrier_ref))
        if VOID_REQUESTED in outcomes:
            # Asked for; the carrier confirms later (its webhook or the tracking poll: apply_update).
            shipment.status = "void_pending"
            lc.record(ret, "label_void_requested", actor="carrier", public=False)
        else:
            shipment.status = "voided"
            lc.record(ret, "label_voided", actor="carrier", public=True)
    except (KeyError, ValueError) as exc:
        shipment.status = "voided"
        shipment.error = str(exc)[:2000]
        lc.record(ret, "label_not_voided", actor="carrier", public=True, data={"error": shipment.error})
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
    backend = _backend(shipment, _shop(ret))
    if shipment.status == "void_pending":  # a cancellation the carrier decides later
        outcome = backend.void_status(shipment.tracking_number, shipment.carrier_ref) \
            if hasattr(backend, "void_status") else None
        shipment.next_poll_at = now_utc() + timedelta(hours=1)
        session.commit()
        return apply_update(shipment, TrackingUpdate(cancelled=outcome)) if outcome is not None else shipment
    if not backend.capabilities.tracking:
        return shipment
    events = backend.track(shipment.tracking_number, shipment.carrier_ref)
    shipment.next_poll_at = now_utc() + poll_interval(shipment, backend.capabilities.tracking_webhook)
    session.commit()
    return apply_events(shipment, events)


def poll_interval(shipment: Shipment, has_webhook: bool) -> timedelta:
    """How long until the next tracking poll: soon while the parcel is fresh, then backing off the
    longer nothing happens; a daily safety net where the carrier sends webhooks."""
    if has_webhook:
        return timedelta(hours=24)
    last = max([datetime.fromisoformat(e["at"]) for e in shipment.events or []] + [shipment.created_at])
    quiet = now_utc() - last
    if quiet < timedelta(hours=24):
        return timedelta(minutes=30)
    if quiet < timedelta(days=3):
        return timedelta(hours=2)
    return timedelta(hours=6)


def apply_update(shipment: Shipment, update: TrackingUpdate) -> Shipment:
    """What a carrier's webhook said about the parcel: events, a confirmed or refused cancellation,
    a late label."""
    ret = shipment.return_
    if update.cancelled is not None and shipment.status == "void_pending":
        shipment.status = "voided"
        if update.cancelled:
            lc.record(ret, "label_voided", actor="carrier", public=True)
        else:
            lc.record(ret, "label_not_voided", actor="carrier", public=True,
                      data={"error": "the carrier refused the cancellation"})
        session.commit()
    if update.label is not None and update.label.pdf and shipment.status == "label_pending":
        _store_label(ret.shop_id, shipment, update.label)
        _ready(ret, shipment, lc.AWAITING_PICKUP if shipment.pickup_date else lc.LABEL_READY)
    if update.events:
        apply_events(shipment, list(update.events))
    return shipment


def apply_events(shipment: Shipment, events: list) -> Shipment:
    """New tracking events move the return: in transit, then delivered (= received)."""
    ret = shipment.return_
    if shipment.status in ("voided", "failed", "void_requested", "void_pending"):
        return shipment
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
        if policy_of(_shop(ret)).receive_on_delivery:
            mark_received(ret, "carrier")
        elif shipment.status != "delivered":
            shipment.status = "delivered"  # the warehouse receives it (and counts what came)
            lc.record(ret, "parcel_delivered", actor="carrier", public=True,
                      data={"tracking_number": shipment.tracking_number})
            session.commit()
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
