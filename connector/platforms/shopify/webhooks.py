"""POST /shopify/webhooks: every Shopify topic, compliance topics included.

The request only verifies, stores and enqueues (DESIGN principle 2), and answers in
milliseconds; what a topic means is `handlers.process_delivery`, run by the `shopify_webhook` job.

    raw body (at most MAX_BODY bytes, else 413)
    -> X-Shopify-Hmac-Sha256 against the current and the previous client secret (else 401)
    -> X-Shopify-Shop-Domain (anchored *.myshopify.com), X-Shopify-Topic, X-Shopify-Event-Id
       (else X-Shopify-Webhook-Id) (else 400)
    -> a shop we do not know: 200, nothing stored (an uninstalled-and-redacted shop, or a stray)
    -> WebhookDelivery row, unique on (platform, "<topic> <event id>"): a duplicate is 200 and
       enqueues nothing
    -> commit, then enqueue shopify_webhook(delivery_id); 200

The body is not parsed here: a signed body that is not the JSON its topic promises is closed by
the job with the reason and kept for inspection. Answering it with a 4xx would only make Shopify
send the same bytes again, and count failures against the subscription.

The dedupe key joins topic and event id because Shopify gives every delivery of one merchant
action the same X-Shopify-Event-Id (a refund fires refunds/create and orders/updated alike).
No Shopify call happens here.
"""
from __future__ import annotations

import fcntl
import logging
import os
import re
from contextlib import contextmanager
from functools import lru_cache
from typing import Callable

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

    with _writer_lock():
        try:
            delivery_id = _store(domain, topic, f"{topic} {event_id}", raw.decode("utf-8", "replace"))
        except IntegrityError:
            return _answer(200, "duplicate")
        if delivery_id is None:
            # Nothing of this shop is held (never installed, or deleted by shop/redact): storing
            # its deliveries would keep data we have no use for. 200 so Shopify does not retry.
            return _answer(200, "unknown shop")
        try:
            runtime.enqueue("shopify_webhook", delivery_id=delivery_id)
        except Exception:  # noqa: BLE001 - the row is stored; the reconciler re-drives it
            log.exception("shopify webhook %s stored as delivery %s but not enqueued", topic, delivery_id)
    return _answer(200, "ok")


# The hot path's one statement, built once: INSERT ... SELECT ... RETURNING finds the shop and
# writes the delivery in one round trip (no row when no Shopify shop has the domain).
_DELIVERIES = WebhookDelivery.__table__
_SHOPS = Shop.__table__
_STORE = insert(_DELIVERIES).from_select(
    ["shop_id", "platform", "topic", "dedupe_key", "payload", "received_at"],
    select(_SHOPS.c.id, bindparam("p_platform", type_=String), bindparam("p_topic", type_=String),
           bindparam("p_key", type_=String), bindparam("p_payload", type_=Text),
           bindparam("p_received", type_=UTCDateTime))
    .where(_SHOPS.c.platform == bindparam("p_shop_platform", type_=String),
           _SHOPS.c.domain == bindparam("p_domain", type_=String)),
).returning(_DELIVERIES.c.id)


_LOCK_FDS: dict[str, int] = {}  # lock file path -> open descriptor, one per process


@contextmanager
def _writer_lock():
    """On SQLite, one webhook writer at a time across the web processes, queued on a file lock.

    SQLite's own wait for a busy database sleeps 1, 2, 5, 10... ms between tries: under a burst of
    webhooks, workers writing the same file would spend their time asleep. A blocking flock wakes
    the next writer the moment the lock is free (measured: a third more deliveries per second
    with two workers). It only orders writers for speed; correctness never depends on it (threads
    of one process share the descriptor, and SQLite still guards the data). PostgreSQL needs
    nothing of the kind.
    """
    if engine().dialect.name != "sqlite":
        yield
        return
    path = str(current_app.config["CONNECTOR"].data_dir / "webhooks.lock")
    fd = _LOCK_FDS.get(path)
    if fd is None:
        fd = _LOCK_FDS[path] = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


@lru_cache(maxsize=4)
def _compiled(dialect) -> tuple[str, tuple[str, ...] | None, Callable | None]:
    """_STORE as the driver runs it: its SQL for `dialect`, the order of its positional
    parameters (None when the driver takes them by name) and the bind processor of the timestamp
    (UTCDateTime's own, so the value is stored exactly as the ORM stores it)."""
    compiled = _STORE.compile(dialect=dialect)
    order = tuple(compiled.positiontup) if compiled.positional else None
    return compiled.string, order, UTCDateTime().bind_processor(dialect)


def _store(domain: str, topic: str, dedupe_key: str, text: str) -> int | None:
    """Insert the delivery for the Shopify shop at `domain` and commit; its id, or None when no
    such shop exists. A second delivery of the same key raises IntegrityError.

    The prebuilt statement runs on the pooled driver connection: SQLAlchemy's execution layer
    (parameter processing, result objects) was a tenth of the request's time, measured.
    """
    eng = engine()
    sql, order, stamp = _compiled(eng.dialect)
    now = utcnow()
    params = {"p_platform": PLATFORM, "p_topic": topic, "p_key": dedupe_key, "p_payload": text,
              "p_received": stamp(now) if stamp else now, "p_shop_platform": PLATFORM, "p_domain": domain}
    conn = eng.raw_connection()
    try:
        cursor = conn.cursor()
        cursor.execute(sql, tuple(params[name] for name in order) if order else params)
        row = cursor.fetchone()
        conn.commit()
    except eng.dialect.loaded_dbapi.IntegrityError as exc:
        conn.rollback()
        raise IntegrityError(sql, None, exc) from exc
    except BaseException:
        conn.rollback()
        raise
    finally:
        conn.close()  # back to the pool
    return row[0] if row else None
