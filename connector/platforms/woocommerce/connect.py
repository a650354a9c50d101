"""Connecting a WooCommerce store: wc-auth key provisioning, the keys check, and the webhooks.

    GET  /woocommerce/connect?store_url=https://shop.example&return_url=...
         (from the plugin's settings page or the connector) validates the URL, creates or finds
         the store's pending Shop, and redirects the merchant to WooCommerce's
         <store>/wc-auth/v1/authorize (app_name "Returns Connector", scope read_write, user_id = a
         signed token naming the pending shop, return_url, callback_url).
    POST /woocommerce/auth/callback
         WooCommerce posts {key_id, user_id, consumer_key, consumer_secret, key_permissions} from
         the store's server. The signed user_id (itsdangerous, salt "wc-auth", 1 hour, single use:
         its nonce must match the shop's pending one) binds the keys to the shop; they are sealed
         (credentials.save), and the answer is exactly 200 with an empty body (anything else makes
         WooCommerce show the merchant an error). A bad, expired or used user_id gets 400 and
         nothing is stored. After the answer, the `woocommerce_setup` job runs `first_setup`.
    GET  /woocommerce/connected   where WooCommerce sends the merchant back when no return_url was given.

`first_setup(shop)`: checks the keys with one call (GET orders?per_page=1), creates the webhooks,
then enqueues the backfill. `setup(shop)`: makes sure our webhooks exist and are active (the
periodic poll calls it about hourly): a webhook WooCommerce disabled (it does after repeated
delivery failures) is switched back on, a deleted one is created again, and the merchant is told.

Webhook topics: order.created, order.updated, order.deleted, order.restored. WooCommerce has no
refund topic: a refund fires `woocommerce_order_refunded`, one of order.updated's hooks (see the
recorded tests/fixtures/woocommerce/fixtures/webhooks_create.json), so refunds arrive as
order.updated and the poll reads the refunds of orders that list any. Every webhook is created
with the store's webhook secret and delivery_url BASE_URL/woocommerce/webhooks/<handle>.

`connect_with_keys(...)` does the same for the CLI, without the callback (stores the callback can
not reach, e.g. behind a firewall).
"""
from __future__ import annotations

import ipaddress
import json
import logging
import re
import secrets
from datetime import datetime, timezone
from typing import Any, Callable
from urllib.parse import urlencode, urlsplit, urlunsplit

from flask import Blueprint, Response, abort, current_app, redirect, render_template, request
from itsdangerous import BadData, URLSafeTimedSerializer
from sqlalchemy import select

from connector.db import session
from connector.platforms.woocommerce import credentials
from connector.platforms.woocommerce.client import WooClient
from connector.platforms.woocommerce.credentials import WooCredentials
from connector.platforms.woocommerce.errors import ReconnectRequired, WooError
from connector.returns.context import _, runtime
from connector.returns.models import Shop

log = logging.getLogger("connector.woocommerce.connect")

bp = Blueprint("woocommerce_connect", __name__, template_folder="templates")

APP_NAME = "Returns Connector"
TOKEN_SALT = "wc-auth"
TOKEN_MAX_AGE = 3600
MAX_CALLBACK_BYTES = 4096
TOPICS = ("order.created", "order.updated", "order.deleted", "order.restored")
WEBHOOK_NAME = "Returns Connector {topic}"
_KEY_RE = re.compile(r"^ck_[0-9a-f]{40}$")
_SECRET_RE = re.compile(r"^cs_[0-9a-f]{40}$")


class ConnectError(ValueError):
    """The store URL (or a key) cannot be used; the message says why, for the merchant."""


# ---------------------------------------------------------------------------- store URLs


def normalise_store_url(url: str, *, production: bool) -> str:
    """`url` as "scheme://host[:port][/path]" without a trailing slash, query or fragment. https is
    required, except for localhost / 127.0.0.1 outside production (a local WooCommerce)."""
    url = (url or "").strip()
    if len(url) > 255:
        raise ConnectError(_("The store address is too long."))
    parts = urlsplit(url if "://" in url else f"https://{url}")
    host = (parts.hostname or "").lower()
    if not host or parts.username or parts.password:
        raise ConnectError(_("Enter your store's address, like https://shop.example.com."))
    if parts.scheme != "https" and not (parts.scheme == "http" and not production and _is_local(host)):
        raise ConnectError(_("The store address must start with https://."))
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def _is_local(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def handle_for(host: str) -> str:
    """A free shop handle made from the store's host ("shop.example.com" -> "shop-example-com")."""
    base = re.sub(r"[^a-z0-9]+", "-", host.lower().removeprefix("www.")).strip("-")[:56] or "store"
    handle, n = base, 1
    while session.scalar(select(Shop.id).where(Shop.handle == handle)) is not None:
        n += 1
        handle = f"{base}-{n}"
    return handle


def find_or_create_shop(store_url: str, *, handle: str | None = None) -> Shop:
    """The store's Shop (matched by its store URL), or a new inactive one with the default return
    reasons. The caller commits."""
    host = urlsplit(store_url).hostname or ""
    for shop in session.scalars(select(Shop).where(Shop.platform == "woocommerce", Shop.domain == host)):
        if (shop.platform_data or {}).get("store_url") == store_url:
            return shop
    if handle is not None:
        existing = session.scalar(select(Shop).where(Shop.handle == handle))
        if existing is not None:
            if existing.platform != "woocommerce" or (existing.platform_data or {}).get("store_url") not in (None, store_url):
                raise ConnectError(f"the handle {handle!r} belongs to another shop")
            existing.platform, existing.domain = "woocommerce", host
            existing.platform_data = {**(existing.platform_data or {}), "store_url": store_url}
            return existing
    from connector.platforms.standalone.defaults import add_default_reasons

    shop = Shop(handle=handle or handle_for(host), name=host, platform="woocommerce", domain=host,
                active=False, platform_data={"store_url": store_url, "connection": "pending"})
    session.add(shop)
    session.flush()
    add_default_reasons(shop)
    return shop


# ---------------------------------------------------------------------------- signed user_id


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.secret_key, salt=TOKEN_SALT)


def sign_user_id(shop: Shop, nonce: str) -> str:
    return _serializer().dumps({"shop": shop.id, "nonce": nonce})


def shop_for_user_id(user_id: str) -> Shop | None:
    """The pending shop `user_id` names, when it is ours, fresh (1 hour) and not used yet."""
    if not isinstance(user_id, str) or len(user_id) > 512:
        return None
    try:
        data = _serializer().loads(user_id, max_age=TOKEN_MAX_AGE)
    except BadData:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("shop"), int) or not isinstance(data.get("nonce"), str):
        return None
    shop = session.get(Shop, data["shop"])
    if shop is None or shop.platform != "woocommerce":
        return None
    pending = (shop.platform_data or {}).get("connect_nonce") or ""
    if not pending or not secrets.compare_digest(pending, data["nonce"]):
        return None
    return shop


def authorize_url(shop: Shop, return_url: str) -> str:
    """The store's wc-auth page for `shop`, with a fresh single-use user_id."""
    nonce = secrets.token_urlsafe(16)
    shop.platform_data = {**(shop.platform_data or {}), "connect_nonce": nonce}
    base_url = current_app.config["CONNECTOR"].base_url
    query = urlencode({"app_name": APP_NAME, "scope": "read_write", "user_id": sign_user_id(shop, nonce),
                       "return_url": return_url, "callback_url": f"{base_url}/woocommerce/auth/callback"})
    return f"{shop.platform_data['store_url']}/wc-auth/v1/authorize?{query}"


# ---------------------------------------------------------------------------- views


@bp.get("/woocommerce/connect")
def start():
    """Without `store_url`: the page where the merchant enters it. With it: on to WooCommerce."""
    cfg = current_app.config["CONNECTOR"]
    given = request.args.get("store_url")
    if given is None:
        return render_template("woocommerce/connect.html", store_url="", error=None)
    try:
        store_url = normalise_store_url(given, production=cfg.is_production)
    except ConnectError as exc:
        return render_template("woocommerce/connect.html", store_url=given[:300], error=str(exc)), 400
    return_url = request.args.get("return_url") or f"{cfg.base_url}/woocommerce/connected"
    if not _allowed_return(return_url, store_url, cfg.base_url):
        abort(Response(_("The return address must be on your store or on this app."), status=400,
                       mimetype="text/plain"))
    shop = find_or_create_shop(store_url)
    target = authorize_url(shop, return_url)
    session.commit()
    return redirect(target, code=302)


def _allowed_return(url: str, store_url: str, base_url: str) -> bool:
    """WooCommerce sends the merchant to `return_url` afterwards: only the store or this app."""
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and any(
        (parts.scheme, parts.netloc.lower()) == (urlsplit(u).scheme, urlsplit(u).netloc.lower())
        for u in (store_url, base_url))


@bp.post("/woocommerce/auth/callback")
def callback():
    raw = request.get_data(cache=False)[:MAX_CALLBACK_BYTES + 1]
    if len(raw) > MAX_CALLBACK_BYTES:
        return Response("body too large", status=413, mimetype="text/plain")
    try:
        body = json.loads(raw)
    except ValueError:
        return Response("not JSON", status=400, mimetype="text/plain")
    if not isinstance(body, dict):
        return Response("not a key delivery", status=400, mimetype="text/plain")
    shop = shop_for_user_id(body.get("user_id"))
    if shop is None:
        log.warning("woocommerce key delivery with a bad, expired or used user_id refused")
        return Response("unknown or expired user_id", status=400, mimetype="text/plain")
    key, secret = str(body.get("consumer_key") or ""), str(body.get("consumer_secret") or "")
    if not _KEY_RE.match(key) or not _SECRET_RE.match(secret):
        return Response("malformed keys", status=400, mimetype="text/plain")
    if body.get("key_permissions") != "read_write":
        return Response("read_write keys are needed", status=400, mimetype="text/plain")
    key_id = body.get("key_id")
    store_keys(shop, key, secret, key_id=key_id if isinstance(key_id, int) else None)
    data = dict(shop.platform_data or {})
    data.pop("connect_nonce", None)  # single use
    data.update(connection="keys_received", keys_received_at=_now_iso())
    shop.platform_data = data
    session.commit()
    shop_id = shop.id
    app = current_app._get_current_object()
    response = Response(b"", status=200)

    def after() -> None:  # the keys check and webhooks are outside calls: never inside the request
        with app.app_context():
            runtime.enqueue("woocommerce_setup", shop_id=shop_id)
    response.call_on_close(after)
    return response


@bp.get("/woocommerce/connected")
def connected():
    ok = request.args.get("success") == "1"
    text = (_("Your store is connected. Returns Connector now imports your orders; you can close this page.")
            if ok else _("The store was not connected: the access was not approved in WooCommerce."))
    return render_template("woocommerce/connected.html", ok=ok, message=text)


# ---------------------------------------------------------------------------- keys and setup


def store_keys(shop: Shop, consumer_key: str, consumer_secret: str, *, key_id: int | None = None) -> WooCredentials:
    """Seal the REST keys into the shop, keeping its webhook and plugin secrets (made here when
    missing). The caller commits."""
    old = credentials.load(shop)
    creds = WooCredentials(consumer_key=consumer_key, consumer_secret=consumer_secret, key_id=key_id,
                           webhook_secret=(old.webhook_secret if old else None) or secrets.token_urlsafe(32),
                           plugin_secret=(old.plugin_secret if old else None) or secrets.token_urlsafe(32))
    credentials.save(shop, creds)
    return creds


def delivery_url(shop: Shop) -> str:
    return f"{current_app.config['CONNECTOR'].base_url}/woocommerce/webhooks/{shop.handle}"


def check_keys(shop: Shop, client: WooClient) -> None:
    """One call with the stored keys (raises ReconnectRequired when they are refused); the first
    order found tells the store's currency."""
    orders, _headers = client.get("orders", {"per_page": 1})
    if orders and isinstance(orders, list) and orders[0].get("currency"):
        shop.currency = str(orders[0]["currency"]).upper()[:3]


def first_setup(shop: Shop, *, client: WooClient | None = None) -> None:
    """After the keys arrived: check them, create the webhooks, activate the shop, start the backfill."""
    client = client or WooClient.for_shop(shop)
    try:
        check_keys(shop, client)
    except ReconnectRequired as exc:
        keys_refused(shop, exc)
        return
    setup(shop, client=client, tell_merchant=False)
    shop.active = True
    _set(shop, connection="connected", connected_at=_now_iso(), connection_error=None)
    session.commit()
    push_plugin_secret(shop, client=client)
    runtime.enqueue("woocommerce_backfill", shop_id=shop.id)


def keys_refused(shop: Shop, exc: ReconnectRequired) -> bool:
    """The store refused the connector's keys (revoked, deleted, read-only): mark the connection
    "refused" and mail the merchant how to reconnect, once per refusal (the poll meets it every five
    minutes until they do). True when this call made the mark. Connecting again (first_setup,
    connect_with_keys) sets the connection back to "connected"."""
    session.rollback()  # whatever the failed call left half done
    session.refresh(shop)
    was = (shop.platform_data or {}).get("connection")
    _set(shop, connection="refused", connection_error=str(exc)[:500], refused_at=_now_iso())
    session.commit()
    if was == "refused":
        return False
    log.warning("woocommerce %s: the store refused the connector's keys: %s", shop.domain, exc)
    runtime.enqueue("alert_merchant", shop_id=shop.id,
                    subject=_("WooCommerce refused Returns Connector's access to your store"),
                    text=_("%(store)s refused the API keys of Returns Connector (%(error)s). Until you connect "
                           "the store again, orders are not synced and refunds cannot be sent. Connect it "
                           "again from WordPress (WooCommerce > Returns Connector > Connect again) or here: %(url)s",
                           store=shop.domain or shop.handle, error=exc.detail or exc.status,
                           url=reconnect_url(shop)))
    return True


def reconnect_url(shop: Shop) -> str:
    """The connector's page that sends the merchant to WooCommerce to approve the keys again."""
    store_url = (shop.platform_data or {}).get("store_url") or (f"https://{shop.domain}" if shop.domain else "")
    query = f"?{urlencode({'store_url': store_url})}" if store_url else ""
    return f"{current_app.config['CONNECTOR'].base_url}/woocommerce/connect{query}"


PLUGIN_NAMESPACE = "returns-connector/v1"


def push_plugin_secret(shop: Shop, *, client: WooClient | None = None) -> bool:
    """Hand the WordPress plugin its shop handle, signing secret and portal URL through the
    plugin's REST route (authenticated with the store's own API keys). True when the plugin took
    them; False, recorded for the merchant, when the plugin is not installed or refused: the
    connection works without it, only the plugin's links and meta box wait for it."""
    client = client or WooClient.for_shop(shop)
    creds = credentials.load(shop)
    portal_url = f"{current_app.config['CONNECTOR'].base_url}/portal/{shop.handle}/"
    try:
        client.post("secret", json={"shop": shop.handle, "plugin_secret": creds.plugin_secret,
                                    "portal_url": portal_url}, namespace=PLUGIN_NAMESPACE)
    except WooError as exc:
        log.warning("woocommerce %s: the plugin did not take its secret: %s", shop.domain, exc)
        _set(shop, plugin="missing" if exc.status == 404 else "refused", plugin_error=str(exc)[:300])
        session.commit()
        return False
    _set(shop, plugin="connected", plugin_error=None)
    session.commit()
    return True


def setup(shop: Shop, *, client: WooClient | None = None, tell_merchant: bool = True) -> dict[str, str]:
    """Make sure every topic has an active webhook of ours; {topic: what was done} for the ones
    that needed work ("created", "enabled"). A disabled one is switched back on with the current
    secret; a missing one is created. The merchant is told when `tell_merchant`."""
    client = client or WooClient.for_shop(shop)
    creds = credentials.load(shop)
    if creds is None:
        raise ReconnectRequired(shop.domain or shop.handle, "no API keys stored")
    if not creds.webhook_secret:
        creds = creds.with_(webhook_secret=secrets.token_urlsafe(32))
        credentials.save(shop, creds)
    url = delivery_url(shop)
    ours: dict[str, dict[str, Any]] = {}
    for page in client.paged("webhooks", {}):
        for hook in page:
            if hook.get("delivery_url") == url and hook.get("topic") in TOPICS:
                held = ours.get(hook["topic"])
                if held is None or (hook.get("status") == "active" and held.get("status") != "active"):
                    ours[hook["topic"]] = hook
    done: dict[str, str] = {}
    ids: dict[str, int] = {}
    for topic in TOPICS:
        hook = ours.get(topic)
        if hook is None:
            hook = client.post("webhooks", json={"name": WEBHOOK_NAME.format(topic=topic), "topic": topic,
                                                 "delivery_url": url, "secret": creds.webhook_secret,
                                                 "status": "active"})
            done[topic] = "created"
        elif hook.get("status") != "active":
            hook = client.put(f"webhooks/{int(hook['id'])}", json={"status": "active", "secret": creds.webhook_secret})
            done[topic] = "enabled"
        ids[topic] = int(hook["id"])
    _set(shop, webhooks=ids, webhooks_checked_at=_now_iso())
    session.commit()
    if done and tell_merchant:
        log.warning("woocommerce %s: webhooks repaired: %s", shop.domain, done)
        runtime.enqueue("alert_merchant", shop_id=shop.id,
                        subject=_("Your store's webhooks for Returns Connector were repaired"),
                        text=_("WooCommerce had disabled or deleted these webhooks of Returns Connector: "
                               "%(topics)s. They were switched on or created again. WooCommerce disables a "
                               "webhook after repeated delivery failures; orders changed meanwhile are read "
                               "by the regular sync.", topics=", ".join(sorted(done))))
    return done


def connect_with_keys(store_url: str, consumer_key: str, consumer_secret: str, *, handle: str | None = None,
                      client_factory: Callable[[Shop], WooClient] | None = None,
                      progress: Callable[[dict[str, Any]], None] | None = None) -> Shop:
    """The CLI's connect: the shop (created when missing), the keys sealed, keys checked,
    webhooks set up, then the backfill run inline (`progress` after each page)."""
    from connector.platforms.woocommerce import sync

    if not _KEY_RE.match(consumer_key or "") or not _SECRET_RE.match(consumer_secret or ""):
        raise ConnectError("the consumer key must look like ck_<40 hex> and the secret like cs_<40 hex>")
    shop = find_or_create_shop(store_url, handle=handle)
    store_keys(shop, consumer_key, consumer_secret)
    session.commit()
    client = client_factory(shop) if client_factory else WooClient.for_shop(shop)
    check_keys(shop, client)
    setup(shop, client=client, tell_merchant=False)
    shop.active = True
    _set(shop, connection="connected", connected_at=_now_iso(), connection_error=None, connect_nonce=None)
    session.commit()
    push_plugin_secret(shop, client=client)
    sync.backfill(shop, client=client, restart=True, progress=progress)
    return shop


def _set(shop: Shop, **changes: Any) -> None:
    data = dict(shop.platform_data or {})
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    shop.platform_data = data


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()
