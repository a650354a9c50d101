"""Webhook deliveries as Shopify sends them: documented payloads, signed raw bytes, headers."""
from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import uuid
from pathlib import Path
from typing import Any

from tests.shopify.conftest import API_SECRET, SHOP_DOMAIN

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "shopify" / "webhooks"


def payload(name: str) -> dict[str, Any]:
    """A fresh copy of a documented sample payload (tests/fixtures/shopify/webhooks/<name>.json)."""
    return copy.deepcopy(json.loads((FIXTURES / f"{name}.json").read_text()))


def sign(body: bytes, secret: str = API_SECRET) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def body_of(data: dict[str, Any] | bytes | str) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, str):
        return data.encode()
    return json.dumps(data).encode()


def headers(topic: str, body: bytes, *, shop: str = SHOP_DOMAIN, event_id: str | None = None,
            secret: str = API_SECRET, hmac_header: str | None = None) -> dict[str, str]:
    """The headers of a delivery (shopify.dev/docs/api/webhooks, "Headers")."""
    return {
        "Content-Type": "application/json",
        "X-Shopify-Topic": topic,
        "X-Shopify-Hmac-Sha256": hmac_header if hmac_header is not None else sign(body, secret),
        "X-Shopify-Shop-Domain": shop,
        "X-Shopify-API-Version": "2026-04",
        "X-Shopify-Webhook-Id": str(uuid.uuid4()),
        "X-Shopify-Triggered-At": "2026-05-01T10:00:00.000000Z",
        "X-Shopify-Event-Id": event_id or str(uuid.uuid4()),
    }


def deliver(client, topic: str, data: dict[str, Any] | bytes | str, **kw):
    """POST one signed delivery to /shopify/webhooks; returns the response."""
    body = body_of(data)
    return client.post("/shopify/webhooks", data=body, headers=headers(topic, body, **kw))


def order_payload(number: str, *, updated_at: str = "2026-05-01T10:00:00+02:00", email: str = "erika@example.com",
                  lines: int = 1, title: str = "Trail Jacket") -> dict[str, Any]:
    """The documented orders/create sample turned into order `number` of the test shop, with GIDs
    as tests/shopify/factories.py gives them (order_gid / line_gid)."""
    from tests.shopify.factories import line_gid, order_gid

    data = json.loads(json.dumps(payload("orders_create")).replace('"USD"', '"EUR"'))  # the shop's currency
    order_id = int(order_gid(number).rsplit("/", 1)[1])
    data.update(id=order_id, admin_graphql_api_id=order_gid(number), name=f"#{number}", email=email,
                contact_email=email, updated_at=updated_at, cancelled_at=None, cancel_reason=None)
    data["line_items"] = data["line_items"][:lines]
    for position, item in enumerate(data["line_items"], start=1):
        gid = line_gid(number, position)
        item.update(id=int(gid.rsplit("/", 1)[1]), admin_graphql_api_id=gid)
    data["line_items"][0]["title"] = title
    return data
