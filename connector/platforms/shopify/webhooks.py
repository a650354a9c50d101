"""POST /shopify/webhooks: every Shopify topic, compliance topics included.

The request only verifies, stores and enqueues (DESIGN principle 2), and answers in
milliseconds; what a topic means is `handlers.process_delivery`, run by the `shopify_webhook` job.

    raw body (at most MAX_BODY bytes, else 413)
    -> X-Shopify-Hmac-Sha256 against the current and the previous client secret (else 401)
    -> X-Shopify-Shop-Domain (anchored *.myshopify.com), X-Shopify-Topic, X-Shopify-Event-Id
       (else X-Shopify-Webhook-Id) (else 400)
    -> a shop we do not know: 200, nothing stored (an uninstalled-and-redacted shop, or a stray)
    -> WebhookDelivery row, unique on (platform, "<topic> <event id>"): a duplicate is 200 and
       enqueues nothing; a body that is not a JSON object is stored with its error (kept for
       inspection) and answered 400
    -> commit, then enqueue shopify_webhook(delivery_id); 200

The dedupe key joins topic and event id because Shopify gives every delivery of one merchant
action the same X-Shopify-Event-Id (a refund fires refunds/create and orders/updated alike).
No Shopify call happens here.
"""
from __future__ import annotations

import json
import logging
import re

from flask import Blueprint, Response, current_app, request
from sqlalchemy import String, Text, bindparam, insert, select
from sqlalchemy.exc import IntegrityError
from werkzeug.exceptions import RequestEntityTooLarge

from connector.db import engine
from connector.dbtypes import UTCDateTime, utcnow
from connector.platforms.shopify.verify import valid_shop_domain, verify_webhook
from connector.returns.context import runtime
from connector.returns.models import Shop, WebhookDelivery

bp = Blueprint("shopify_webhooks", __name__)
log = logging.getLogger("connector.shopify.webhooks")

PLATFORM = "shopify"
# Shopify's order payloads are a few kB, a large order some 100 kB; 2 MB leaves room and stops a
# flood of big bodies from filling memory and the database.
MAX_BODY = 2 * 1024 * 1024
TOPIC_RE = re.compile(r"[a-z0-9_]{1,40}/[a-z0-9_]{1,40}")
DELIVERY_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,150}")


def _answer(status: int, text: str = "") -> Response:
    """A short plain-text answer: Shopify reads only the status, people debugging read the text."""
    return Response(text, status=status, mimetype="text/plain")


def _secrets() -> list[str | None]:
    config = current_app.config["CONNECTOR"]
    return [config.shopify_api_secret, config.shopify_api_secret_previous]


@bp.post("/shopify/webhooks")
def receive() -> Response:
    """Verify, dedupe, store and enqueue one Shopify webhook delivery."""
    request.max_content_length = MAX_BODY
    try:
        raw = request.get_data(cache=False)
    except RequestEntityTooLarge:
        return _answer(413, "payload too large")
    if not verify_webhook(raw, request.headers.get("X-Shopify-Hmac-Sha256"), _secrets()):
        return _answer(401, "invalid hmac")

    domain = valid_shop_domain(request.headers.get("X-Shopify-Shop-Domain", ""))
    topic = (request.headers.get("X-Shopify-Topic") or "").strip().lower()
    event_id = (request.headers.get("X-Shopify-Event-Id") or request.headers.get("X-Shopify-Webhook-Id") or "").strip()
    if domain is None or not TOPIC_RE.fullmatch(topic) or not DELIVERY_ID_RE.fullmatch(event_id):
        return _answer(400, "missing or malformed X-Shopify-Shop-Domain, X-Shopify-Topic or X-Shopify-Event-Id")

    text = raw.decode("utf-8", "replace")
    error = _malformed(text)
    try:
        delivery_id = _store(domain, topic, f"{topic} {event_id}", text, error)
    except IntegrityError:
        return _answer(200, "duplicate")
    if delivery_id is None:
        # Nothing of this shop is held (never installed, or deleted by shop/redact): storing its
        # deliveries would keep data we have no use for. 200 so Shopify does not retry.
        return _answer(200, "unknown shop")
    if error:
        log.warning("shopify webhook %s for %s kept unprocessed: %s", topic, domain, error)
        return _answer(400, error)
    try:
        runtime.enqueue("shopify_webhook", delivery_id=delivery_id)
    except Exception:  # noqa: BLE001 - the row is stored; the reconciler re-drives it
        log.exception("shopify webhook %s stored as delivery %s but not enqueued", topic, delivery_id)
    return _answer(200, "ok")


# The hot path's one statement, built once: INSERT ... SELECT ... RETURNING finds the shop and
# writes the delivery in one round trip (no row when no Shopify shop has the domain). Core tables,
# not the ORM: the request needs no objects, and a prebuilt statement skips compiling and caching.
_DELIVERIES = WebhookDelivery.__table__
_SHOPS = Shop.__table__
_STORE = insert(_DELIVERIES).from_select(
    ["shop_id", "platform", "topic", "dedupe_key", "payload", "received_at", "processed_at", "error"],
    select(_SHOPS.c.id, bindparam("p_platform", type_=String), bindparam("p_topic", type_=String),
           bindparam("p_key", type_=String), bindparam("p_payload", type_=Text),
           bindparam("p_received", type_=UTCDateTime), bindparam("p_processed", type_=UTCDateTime),
           bindparam("p_error", type_=Text))
    .where(_SHOPS.c.platform == bindparam("p_shop_platform", type_=String),
           _SHOPS.c.domain == bindparam("p_domain", type_=String)),
).returning(_DELIVERIES.c.id)


def _store(domain: str, topic: str, dedupe_key: str, text: str, error: str | None) -> int | None:
    """Insert the delivery for the Shopify shop at `domain` and commit; its id, or None when no
    such shop exists. A second delivery of the same key raises IntegrityError."""
    now = utcnow()
    with engine().begin() as conn:  # a transaction of its own: nothing else is written here
        return conn.execute(_STORE, {
            "p_platform": PLATFORM, "p_topic": topic, "p_key": dedupe_key, "p_payload": text, "p_received": now,
            "p_processed": now if error else None, "p_error": error, "p_shop_platform": PLATFORM,
            "p_domain": domain}).scalar()


def _malformed(text: str) -> str | None:
    """Why the body cannot be processed, or None when it is a JSON object."""
    try:
        payload = json.loads(text)
    except ValueError as exc:
        return f"the body is not JSON: {exc}"[:500]
    if not isinstance(payload, dict):
        return "the body is not a JSON object"
    return None
