"""POST /woocommerce/webhooks/<handle>: every WooCommerce webhook of one connected store.

The request only verifies, stores and enqueues (DESIGN principle 2) and answers in milliseconds;
what a topic means is `handlers.process_delivery`, run by the `woocommerce_webhook` job. No
WooCommerce call happens here.

    raw body (at most MAX_BODY bytes, else 413)
    -> the WooCommerce shop with that handle, active (else 404, nothing stored)
    -> the creation ping: the body is exactly `webhook_id=<digits>` and there is no
       X-WC-Webhook-Signature header: 200, nothing stored (WooCommerce keeps the webhook
       "pending" and pings again until it gets a 2xx)
    -> X-WC-Webhook-Signature = base64 HMAC-SHA256 of the raw body with the shop's webhook secret,
       compared in constant time (else 401, nothing stored)
    -> X-WC-Webhook-Topic (else `<X-WC-Webhook-Resource>.<X-WC-Webhook-Event>`) (else 400)
    -> WebhookDelivery row unique on (platform, dedupe_key): a duplicate is 200 and enqueues nothing
    -> commit, then enqueue woocommerce_webhook(delivery_id); 200

Dedupe key: "<topic> <resource id> <version>". X-WC-Webhook-Delivery-ID is not unique (WooCommerce
makes it from the webhook id and the current second) and a store may send the same change twice,
so the version is the resource's own `date_modified_gmt` from the body. Bodies without one (an
`order.deleted` is `{"id": 16}`, an `action.*` is `{"action": ..., "arg": 15}`) use
"d:<delivery id>": a repeat within the same second is one row, a later deletion of a restored
order is a new one (the handlers are idempotent, so a second row would cost nothing anyway).
Known limit of keying on the date: two saves of one order within the same second give one row;
the second state then comes with the modified_after poll (sync.py).

A signed body that is not a JSON object is stored closed with its error (200: WooCommerce never
retries, and a 4xx would only count towards disabling the webhook), kept for inspection, never
processed. Unknown or deactivated handles get 404: after five failed deliveries WooCommerce
disables the webhook, which is what a store that is no longer connected here should get (the
connect flow recreates disabled webhooks when the store connects again).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re

from flask import Blueprint, Response, request
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from werkzeug.exceptions import RequestEntityTooLarge

from connector.db import session
from connector.dbtypes import utcnow
from connector.platforms.woocommerce import credentials
from connector.returns.context import runtime
from connector.returns.models import Shop, WebhookDelivery

bp = Blueprint("woocommerce_webhooks", __name__)
log = logging.getLogger("connector.woocommerce.webhooks")

PLATFORM = "woocommerce"
# An order with many lines and notes is tens of kB; 2 MB leaves room and stops a flood of big
# bodies from filling memory and the database.
MAX_BODY = 2 * 1024 * 1024
PING_RE = re.compile(rb"webhook_id=\d{1,20}")
HANDLE_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
TOPIC_RE = re.compile(r"[a-z0-9_]{1,30}\.[a-z0-9_]{1,60}")
DELIVERY_ID_RE = re.compile(r"[A-Za-z0-9]{1,64}")
MODIFIED_RE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")
RESOURCE_ID_RE = re.compile(r"\d{1,20}")


def _answer(status: int, text: str = "") -> Response:
    """A short plain-text answer: WooCommerce logs the status, people debugging read the text."""
    return Response(text, status=status, mimetype="text/plain")


def is_ping(raw: bytes, signature: str | None) -> bool:
    """True for WooCommerce's creation ping: exactly `webhook_id=N`, form-encoded, unsigned."""
    return signature is None and PING_RE.fullmatch(raw) is not None


def verify_signature(raw: bytes, header: str | None, secret: str | None) -> bool:
    """True when `header` (X-WC-Webhook-Signature) is the base64 HMAC-SHA256 of the exact raw body
    bytes with `secret`. Verify before parsing: any re-encoding breaks the MAC."""
    if not header or not secret:
        return False
    expected = base64.b64encode(hmac.new(secret.encode("utf-8"), raw, hashlib.sha256).digest())
    return hmac.compare_digest(expected, header.strip().encode("ascii", "replace"))


def topic_of(headers) -> str | None:
    """The delivery's topic, lower case ("order.updated"), or None when absent or malformed."""
    topic = (headers.get("X-WC-Webhook-Topic") or "").strip().lower()
    if not topic:
        resource = (headers.get("X-WC-Webhook-Resource") or "").strip().lower()
        event = (headers.get("X-WC-Webhook-Event") or "").strip().lower()
        topic = f"{resource}.{event}" if resource and event else ""
    return topic if TOPIC_RE.fullmatch(topic) else None


def dedupe_key(topic: str, payload, raw: bytes, delivery_id: str) -> str:
    """"<topic> <resource id> <version>" (see the module docstring); a body that names no resource
    is keyed by its SHA-256, so only identical bytes count as the same delivery."""
    resource_id = None
    version = None
    if isinstance(payload, dict):
        candidate = payload.get("id") if "id" in payload else payload.get("arg")  # action.* bodies
        if isinstance(candidate, (int, str)) and not isinstance(candidate, bool) \
                and RESOURCE_ID_RE.fullmatch(str(candidate)):
            resource_id = str(candidate)
        modified = payload.get("date_modified_gmt")
        if isinstance(modified, str) and MODIFIED_RE.fullmatch(modified):
            version = modified
    if resource_id is None:
        return f"{topic} sha256:{hashlib.sha256(raw).hexdigest()}"
    if version is None:
        version = f"d:{delivery_id}" if delivery_id else f"sha256:{hashlib.sha256(raw).hexdigest()}"
    return f"{topic} {resource_id} {version}"


def _shop(handle: str) -> Shop | None:
    if not HANDLE_RE.fullmatch(handle):
        return None
    shop = session.scalar(select(Shop).where(Shop.handle == handle, Shop.platform == PLATFORM))
    return shop if shop is not None and shop.active else None


@bp.post("/woocommerce/webhooks/<handle>")
def receive(handle: str) -> Response:
    """Verify, dedupe, store and enqueue one WooCommerce webhook delivery (or answer the ping)."""
    request.max_content_length = MAX_BODY
    try:
        raw = request.get_data(cache=False)
    except RequestEntityTooLarge:
        return _answer(413, "payload too large")
    shop = _shop(handle)
    if shop is None:
        session.rollback()
        return _answer(404, "unknown store")
    signature = request.headers.get("X-WC-Webhook-Signature")
    if is_ping(raw, signature):
        session.rollback()
        return _answer(200, "pong")
    creds = credentials.load(shop)
    if not verify_signature(raw, signature, creds.webhook_secret if creds else None):
        session.rollback()
        return _answer(401, "invalid signature")
    topic = topic_of(request.headers)
    if topic is None:
        session.rollback()
        return _answer(400, "missing or malformed X-WC-Webhook-Topic")
    delivery_header = (request.headers.get("X-WC-Webhook-Delivery-ID") or "").strip()
    delivery_id = delivery_header if DELIVERY_ID_RE.fullmatch(delivery_header) else ""

    error = None
    try:
        payload = json.loads(raw)
        if not isinstance(payload, dict):
            error = "payload: the body is not a JSON object"
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError alike
        payload, error = None, f"payload: the body is not JSON ({exc})"[:2000]

    now = utcnow()
    row = WebhookDelivery(shop_id=shop.id, platform=PLATFORM, topic=topic,
                          dedupe_key=dedupe_key(topic, payload, raw, delivery_id)[:255],
                          payload=raw.decode("utf-8", "replace"), received_at=now,
                          # Closed at once: nothing can process it, the reconciler must not re-drive it.
                          processed_at=now if error else None, error=error)
    session.add(row)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        return _answer(200, "duplicate")
    if error:
        log.info("woocommerce webhook %s for shop %s stored as delivery %s, not processed: %s",
                 topic, shop.id, row.id, error[:200])
        return _answer(200, "stored, not processed")
    try:
        runtime.enqueue("woocommerce_webhook", delivery_id=row.id)
    except Exception:  # noqa: BLE001 - the row is stored; the reconciler re-drives it
        log.exception("woocommerce webhook %s stored as delivery %s but not enqueued", topic, row.id)
    return _answer(200, "ok")
