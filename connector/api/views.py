"""The merchant JSON API (/api/v1): push orders in, read returns out (JSON and CSV).

Authentication: `Authorization: Bearer <api key>`. The key's SHA-256 is looked up in
Shop.api_key_hash and compared in constant time; a missing or wrong key is a 401 JSON answer.
Every answer is JSON (the CSV export aside) and bad input is a 4xx with the reason, never a 500.
"""
from __future__ import annotations

import csv
import io
import json
import logging
from datetime import datetime, timezone
from typing import Any, Iterator

from flask import Blueprint, Response, g, jsonify, request, stream_with_context
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import selectinload
from werkzeug.exceptions import RequestEntityTooLarge

from connector import db
from connector.crypto import api_key_matches, hash_api_key
from connector.platforms.standalone.mapping import MappingError, order_from_json
from connector.returns import lifecycle as lc
from connector.returns.models import Order, Refund, Return, ReturnLine, Shop

bp = Blueprint("api", __name__, url_prefix="/api/v1")
log = logging.getLogger(__name__)

MAX_ORDER_BODY = 1024 * 1024  # an order with 500 lines is well under 1 MB
MAX_KEY_LENGTH = 200
DEFAULT_LIMIT = 100
MAX_LIMIT = 500
CSV_CHUNK = 500
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def _error(status: int, message: str, **extra):
    response = jsonify(error=message, **extra)
    response.status_code = status
    return response


def _field_errors(errors: list[dict[str, str]]):
    return _error(422, "the request is not valid; see errors", errors=errors)


# ============================================================================ authentication

@bp.before_request
def _authenticate():
    header = request.headers.get("Authorization", "")
    scheme, _sep, key = header.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key or len(key) > MAX_KEY_LENGTH:
        return _unauthorised()
    digest = hash_api_key(key)
    # The lookup is by hash (an attacker cannot steer it towards a prefix of the real key);
    # the final comparison is constant-time all the same.
    shop = db.session.scalar(select(Shop).where(Shop.api_key_hash == digest, Shop.active.is_(True)))
    if shop is None or not api_key_matches(key, shop.api_key_hash):
        return _unauthorised()
    g.api_shop = shop
    return None


def _unauthorised():
    response = _error(401, "missing or wrong API key: send 'Authorization: Bearer <api key>'")
    response.headers["WWW-Authenticate"] = 'Bearer realm="returns-connector"'
    return response


# ============================================================================ orders

def _read_json_body() -> tuple[Any, Response | None]:
    """The request body as parsed JSON, or an error answer (413, 422)."""
    if request.content_length is not None and request.content_length > MAX_ORDER_BODY:
        return None, _error(413, f"the body is larger than {MAX_ORDER_BODY // 1024} KB; send one order per request")
    request.max_content_length = MAX_ORDER_BODY  # also caps bodies sent without a Content-Length
    try:
        raw = request.get_data(cache=False)
    except RequestEntityTooLarge:
        return None, _error(413, f"the body is larger than {MAX_ORDER_BODY // 1024} KB; send one order per request")
    if not request.is_json:
        return None, _field_errors([{"field": "body", "message": "send a JSON object with Content-Type: application/json"}])
    try:
        return json.loads(raw, parse_constant=_refuse_constant), None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        message = "is not valid JSON" if not isinstance(exc, RecursionError) else "is nested too deeply"
        return None, _field_errors([{"field": "body", "message": message}])


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not allowed")


@bp.post("/orders")
def post_order():
    """Create or update one order (201 created, 200 updated or already newer here)."""
    shop: Shop = g.api_shop
    if shop.platform != "standalone":
        return _error(403, f"this is a {shop.platform} shop: its orders come from the platform, not from this API")
    payload, failure = _read_json_body()
    if failure is not None:
        return failure
    try:
        data = order_from_json(payload)
    except MappingError as exc:
        return _field_errors([e.as_dict() for e in exc.errors])

    from connector.returns import services

    existing = db.session.scalar(select(Order).where(Order.shop_id == shop.id, Order.platform_id == data.platform_id))
    newer_here = (existing is not None and existing.platform_updated_at is not None and data.updated_at is not None
                  and data.updated_at < existing.platform_updated_at)
    try:
        order = services.upsert_order(shop, data)
    except services.ValidationError as exc:
        db.session.rollback()
        return _field_errors([{"field": k, "message": v} for k, v in exc.errors.items()])
    except services.ServiceError as exc:
        db.session.rollback()
        return _error(422, exc.message)
    except SQLAlchemyError:
        db.session.rollback()
        log.warning("order %s of shop %s could not be stored", data.platform_id, shop.handle, exc_info=True)
        return _error(409, "the order could not be stored (another request changed it at the same time); retry")
    result = "created" if existing is None else ("ignored_older" if newer_here else "updated")
    body = {"result": result, "order": _order_json(order)}
    return jsonify(body), 201 if existing is None else 200


def _order_json(order: Order) -> dict[str, Any]:
    return {"id": order.platform_id, "number": order.number, "email": order.email, "currency": order.currency,
            "total": str(order.total), "lines": len(order.lines),
            "updated_at": _iso(order.platform_updated_at), "synced_at": _iso(order.synced_at)}


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(timezone.utc).isoformat() if value else None


# ============================================================================ returns

def _returns_query():
    """The shop's submitted returns filtered by ?state= and ?updated_since=, or a 422 answer."""
    shop: Shop = g.api_shop
    query = select(Return).where(Return.shop_id == shop.id, Return.state != lc.DRAFT)
    errors = []
    state = request.args.get("state", "").strip()
    if state:
        if state not in lc.STATES or state == lc.DRAFT:
            errors.append({"field": "state", "message": "must be one of " + ", ".join(s for s in lc.STATES if s != lc.DRAFT)})
        else:
            query = query.where(Return.state == state)
    since_text = request.args.get("updated_since", "").strip()
    if since_text:
        try:
            since = datetime.fromisoformat(since_text.replace(" ", "+"))  # a raw '+' in a query string is a space
            if since.tzinfo is None:
                raise ValueError
            query = query.where(Return.updated_at >= since.astimezone(timezone.utc))
        except ValueError:
            errors.append({"field": "updated_since", "message": "must be ISO-8601 with a UTC offset, e.g. 2025-03-01T00:00:00Z"})
    return query, errors


def _loaded(query):
    return query.options(selectinload(Return.order), selectinload(Return.refunds), selectinload(Return.shipments),
                         selectinload(Return.lines).selectinload(ReturnLine.order_line),
                         selectinload(Return.lines).selectinload(ReturnLine.reason))


def _refund_json(refund: Refund | None) -> dict[str, Any] | None:
    if refund is None:
        return None
    return {"state": refund.state, "amount": str(refund.amount), "currency": refund.currency,
            "manual": refund.manual, "method": refund.method, "shipping": str(refund.shipping_amount),
            "deductions": refund.deductions, "platform_refund_id": refund.platform_refund_id,
            "created_at": _iso(refund.created_at), "completed_at": _iso(refund.completed_at)}


def _latest_refund(ret: Return) -> Refund | None:
    return ret.refunds[-1] if ret.refunds else None


def _return_json(ret: Return) -> dict[str, Any]:
    shipment = ret.shipment
    return {
        "rma": ret.rma, "number": ret.number, "state": ret.state, "order_id": ret.order.platform_id,
        "order_number": ret.order.number, "email": ret.email, "is_withdrawal": ret.is_withdrawal,
        "method": ret.method, "carrier": ret.carrier, "fee": str(ret.fee), "currency": ret.currency,
        "refund_method": ret.refund_method, "created_at": _iso(ret.created_at),
        "confirmed_at": _iso(ret.confirmed_at), "updated_at": _iso(ret.updated_at),
        "tracking_number": shipment.tracking_number if shipment else None,
        "lines": [{
            "order_line_id": line.order_line.platform_id, "sku": line.order_line.sku,
            "title": line.order_line.title, "variant": line.order_line.variant_title,
            "quantity": line.quantity, "reason": line.reason.code if line.reason else None,
            "comment": line.comment, "received_quantity": line.received_quantity, "grade": line.grade,
            "disposition": line.disposition, "inspection_note": line.inspection_note,
        } for line in ret.lines],
        "refund": _refund_json(_latest_refund(ret)),
        "refunds": [_refund_json(r) for r in ret.refunds],
    }


@bp.get("/returns")
def list_returns():
    """Returns oldest change first; page with ?updated_since=<last updated_at> (inclusive)."""
    query, errors = _returns_query()
    try:
        limit = int(request.args.get("limit", DEFAULT_LIMIT))
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError
    except ValueError:
        errors.append({"field": "limit", "message": f"must be a whole number from 1 to {MAX_LIMIT}"})
        limit = DEFAULT_LIMIT
    if errors:
        return _field_errors(errors)
    rows = db.session.scalars(_loaded(query).order_by(Return.updated_at, Return.id).limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    return jsonify(returns=[_return_json(r) for r in rows], count=len(rows), has_more=more,
                   next_updated_since=_iso(rows[-1].updated_at) if more else None)


CSV_HEADER = ("rma", "state", "created_at", "updated_at", "order_number", "email", "is_withdrawal", "method",
              "tracking_number", "sku", "title", "variant", "quantity", "reason", "comment", "received_quantity",
              "grade", "disposition", "inspection_note", "refund_state", "refund_amount", "refund_manual", "currency")


def csv_safe(value: Any) -> str:
    """A cell a spreadsheet shows as text: one starting with = + - @ (a formula) gets a leading '."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def _csv_rows(ret: Return) -> Iterator[list[str]]:
    refund = _latest_refund(ret)
    shipment = ret.shipment
    for line in ret.lines:
        yield [csv_safe(v) for v in (
            ret.rma, ret.state, _iso(ret.created_at), _iso(ret.updated_at), ret.order.number, ret.email,
            "yes" if ret.is_withdrawal else "no", ret.method, shipment.tracking_number if shipment else "",
            line.order_line.sku, line.order_line.title, line.order_line.variant_title, line.quantity,
            line.reason.code if line.reason else "", line.comment, line.received_quantity, line.grade,
            line.disposition, line.inspection_note, refund.state if refund else "",
            refund.amount if refund else "", ("yes" if refund.manual else "no") if refund else "", ret.currency)]


@bp.get("/returns.csv")
def export_returns_csv():
    """One row per returned line, streamed in batches so a large shop exports in constant memory."""
    query, errors = _returns_query()
    if errors:
        return _field_errors(errors)
    shop: Shop = g.api_shop

    def generate() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer, quoting=csv.QUOTE_MINIMAL)
        writer.writerow(CSV_HEADER)
        last_id = 0
        while True:
            batch = db.session.scalars(_loaded(query.where(Return.id > last_id)).order_by(Return.id)
                                       .limit(CSV_CHUNK)).all()
            for ret in batch:
                writer.writerows(_csv_rows(ret))
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
            if len(batch) < CSV_CHUNK:
                return
            last_id = batch[-1].id

    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M")
    return Response(stream_with_context(generate()), mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="returns-{shop.handle}-{stamp}.csv"',
        "Cache-Control": "no-store"})
