"""Carriers' tracking webhooks: POST /carriers/webhooks/<token>.

Each carrier connection has its own unguessable token in the URL the merchant registers with the
carrier (shown on the connection's admin page). The backend verifies the delivery (its signature,
in constant time: parse_webhook raises WebhookRejected -> 401) and reads it into TrackingUpdates;
they are queued (`carrier_webhook` job) and the answer is 200 at once, so a slow database never
makes the carrier retry. Applying an update twice changes nothing (known events are skipped, a
cancellation is recorded once), so the carrier's redeliveries are harmless.
"""
from __future__ import annotations

import base64
import logging
from datetime import datetime
from typing import Any

from flask import Blueprint, abort, request
from sqlalchemy import or_, select

from connector.carriers import connections
from connector.db import session
from connector.returns import services
from connector.returns.context import runtime
from connector.returns.models import Shipment
from connector.returns.ports import CarrierError, Label, TrackingEvent, TrackingUpdate, WebhookRejected

log = logging.getLogger("connector.carriers.webhooks")

bp = Blueprint("carrier_webhooks", __name__)

MAX_BODY = 1024 * 1024


@bp.post("/carriers/webhooks/<token>")
def receive(token: str):
    request.max_content_length = MAX_BODY
    conn = connections.by_webhook_token(token)
    if conn is None or not conn.active:
        abort(404)
    try:
        backend = connections.backend_of(conn)
    except (KeyError, ValueError):
        abort(404)
    if not backend.capabilities.tracking_webhook:
        abort(404)
    body = request.get_data(cache=False)
    try:
        updates = backend.parse_webhook(dict(request.headers), body)
    except WebhookRejected as exc:
        log.warning("carrier webhook for connection %s refused: %s", conn.id, exc)
        abort(401)
    except (CarrierError, ValueError) as exc:
        log.warning("carrier webhook for connection %s unreadable: %s", conn.id, exc)
        abort(400)
    if updates:
        runtime.enqueue("carrier_webhook", connection_id=conn.id, updates=[to_json(u) for u in updates])
    return "", 200


def to_json(update: TrackingUpdate) -> dict[str, Any]:
    """A TrackingUpdate as the queue carries it (JSON)."""
    label = update.label
    return {"tracking_number": update.tracking_number, "carrier_ref": update.carrier_ref,
            "cancelled": update.cancelled,
            "events": [{"at": e.at.isoformat(), "status": e.status, "description": e.description,
                        "location": e.location} for e in update.events],
            "label": None if label is None else {
                "tracking_number": label.tracking_number, "carrier_ref": label.carrier_ref,
                "tracking_url": label.tracking_url,
                "pdf": base64.b64encode(label.pdf).decode() if label.pdf else None,
                "qr_png": base64.b64encode(label.qr_png).decode() if label.qr_png else None}}


def from_json(data: dict[str, Any]) -> TrackingUpdate:
    label = data.get("label")
    return TrackingUpdate(
        tracking_number=data.get("tracking_number"), carrier_ref=data.get("carrier_ref"),
        cancelled=data.get("cancelled"),
        events=tuple(TrackingEvent(at=datetime.fromisoformat(e["at"]), status=e["status"],
                                   description=e.get("description", ""), location=e.get("location", ""))
                     for e in data.get("events") or []),
        label=None if not label else Label(
            tracking_number=label.get("tracking_number") or "", carrier_ref=label.get("carrier_ref"),
            tracking_url=label.get("tracking_url"),
            pdf=base64.b64decode(label["pdf"]) if label.get("pdf") else None,
            qr_png=base64.b64decode(label["qr_png"]) if label.get("qr_png") else None))


def apply_updates(connection_id: int, updates: list[dict[str, Any]]) -> int:
    """Job body: apply each update to the shipment of this connection (never another's) that it
    names by tracking number or carrier reference; how many shipments it touched."""
    touched = 0
    for data in updates:
        update = from_json(data)
        keys = [Shipment.tracking_number == update.tracking_number] if update.tracking_number else []
        keys += [Shipment.carrier_ref == update.carrier_ref] if update.carrier_ref else []
        if not keys:
            continue
        for shipment in session.scalars(select(Shipment).where(Shipment.connection_id == connection_id,
                                                               or_(*keys))):
            services.apply_update(shipment, update)
            touched += 1
    return touched
