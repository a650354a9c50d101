"""The app proxy's front door, at the WSGI level: verify what Shopify forwards to /shopify/proxy/...
and hand it on as a portal request for the verified shop, marked as proxied.

Shopify forwards `https://<storefront>/apps/returns/<rest>?<query>` to
`BASE_URL/shopify/proxy/<rest>?<query>&shop=&logged_in_customer_id=&path_prefix=&timestamp=&signature=`
(signature: hex HMAC-SHA256 of all parameters, see verify.verify_proxy_signature). For every such
request the gate

1. verifies the signature with the app's client secret (and the previous one after a rotation),
   the timestamp (90 s), and that `shop` is a known, active Shopify shop of ours; anything else is
   a short plain 401, before Flask, the session or a view sees the request;
2. rewrites PATH_INFO to `/portal/<that shop's handle>/<rest>`: the handle comes from the verified
   shop, never from the URL, so a request signed for one shop can only ever reach that shop's portal;
3. drops Shopify's own parameters from QUERY_STRING (the portal sees only the shopper's, and never
   copies a signature into a link), drops any Cookie header (Shopify strips them anyway; the proxied
   portal must not depend on one), and takes the shopper's address from Shopify's X-Forwarded-For
   (otherwise every shopper would share Shopify's address in the portal's rate limits);
4. puts a `ProxyRequest` at `environ[ENVIRON_KEY]`. Only this gate sets that key (a client cannot:
   headers arrive as HTTP_*), and everything proxy-specific inside the app keys on it.

"""
from __future__ import annotations

import logging
import re
import secrets
import time
from dataclasses import dataclass
from typing import Callable, Iterable
from urllib.parse import parse_qsl

from sqlalchemy import select

from connector import db
from connector.platforms.shopify.verify import VerificationError, verify_proxy_signature
from connector.returns.models import Shop

log = logging.getLogger("connector.shopify.proxy")

PREFIX = "/shopify/proxy"
ENVIRON_KEY = "connector.shopify_proxy"
# What Shopify adds to the storefront's query; the portal never sees these.
SHOPIFY_PARAMS = frozenset({"shop", "logged_in_customer_id", "path_prefix", "timestamp", "signature", "hmac"})
# `/apps/returns` (prefix apps|a|community|tools, a subpath the merchant may change), possibly after
# a locale folder. Signed by Shopify, checked anyway: it is written into every link we build.
_PATH_PREFIX = re.compile(r"(?:/[A-Za-z0-9_-]{1,64}){1,4}")
_CUSTOMER_ID = re.compile(r"\d{1,20}")
MAX_QUERY = 8192


@dataclass(frozen=True)
class ProxyRequest:
    """A verified app proxy request: whose shop, where the portal lives on the storefront, who."""

    shop_id: int
    handle: str
    domain: str  # the shop's myshopify.com domain
    path_prefix: str  # "/apps/returns": the portal's root on the storefront
    customer_id: str | None  # Shopify's numeric id of a signed-in customer, None when anonymous
    marker: str  # a per-request placeholder for the session token in the URLs the portal builds

    @property
    def customer_gid(self) -> str | None:
        return f"gid://shopify/Customer/{self.customer_id}" if self.customer_id else None

    def __repr__(self) -> str:
        return f"ProxyRequest(shop={self.domain!r}, path_prefix={self.path_prefix!r}, customer={self.customer_id!r})"


def proxied(environ) -> ProxyRequest | None:
    """The verified proxy request behind this WSGI environ, or None for any other request."""
    value = environ.get(ENVIRON_KEY)
    return value if isinstance(value, ProxyRequest) else None


def is_proxy_path(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


class ProxyGate:
    """WSGI middleware in front of the Flask app (see the module docstring)."""

    def __init__(self, wsgi_app: Callable, config, clock: Callable[[], float] = time.time):
        self.wsgi_app = wsgi_app
        self.config = config
        self.clock = clock

    def __call__(self, environ, start_response):
        environ.pop(ENVIRON_KEY, None)
        path = environ.get("PATH_INFO") or ""
        if not is_proxy_path(path):
            return self.wsgi_app(environ, start_response)
        try:
            proxy = self.verify(environ.get("QUERY_STRING") or "")
        except VerificationError as exc:
            log.info("app proxy request refused: %s", exc)
            return _refuse(start_response)
        self._rewrite(environ, proxy, path[len(PREFIX):] or "/")
        return self.wsgi_app(environ, start_response)

    # ------------------------------------------------------------------------------- checks

    def verify(self, query: str) -> ProxyRequest:
        """The ProxyRequest for a signed query string; raises VerificationError."""
        if len(query) > MAX_QUERY:
            raise VerificationError("proxy: the query is too long")
        keys = [self.config.shopify_api_secret, self.config.shopify_api_secret_previous]
        params = verify_proxy_signature(query, keys, now=self.clock())
        path_prefix = params.get("path_prefix") or ""
        if not _PATH_PREFIX.fullmatch(path_prefix):
            raise VerificationError("proxy: path_prefix is not a plain path")
        customer = params.get("logged_in_customer_id") or ""
        if customer and not _CUSTOMER_ID.fullmatch(customer):
            raise VerificationError("proxy: logged_in_customer_id is not a number")
        shop = self._shop(params["shop"])
        if shop is None:
            raise VerificationError("proxy: not a shop of ours")
        return ProxyRequest(shop_id=shop.id, handle=shop.handle, domain=params["shop"], path_prefix=path_prefix,
                            customer_id=customer or None, marker=f"proxysession{secrets.token_hex(16)}")

    @staticmethod
    def _shop(domain: str):
        # A connection of its own: the request's scoped session has not started yet, and must not
        # inherit a transaction from here.
        with db.engine().connect() as conn:
            return conn.execute(select(Shop.id, Shop.handle).where(
                Shop.platform == "shopify", Shop.domain == domain, Shop.active.is_(True))).first()

    # ------------------------------------------------------------------------------ rewrite

    def _rewrite(self, environ, proxy: ProxyRequest, rest: str) -> None:
        environ[ENVIRON_KEY] = proxy
        environ["PATH_INFO"] = f"/portal/{proxy.handle}{rest if rest.startswith('/') else '/' + rest}"
        environ["QUERY_STRING"] = _without_shopify_params(environ.get("QUERY_STRING") or "")
        environ.pop("HTTP_COOKIE", None)
        client = _client_address(environ.get("HTTP_X_FORWARDED_FOR"), self.config.proxy_hops)
        if client:
            environ["REMOTE_ADDR"] = client


def _without_shopify_params(query: str) -> str:
    """The query string without Shopify's parameters, the shopper's kept byte for byte."""
    kept = []
    for part in query.split("&"):
        if not part:
            continue
        pairs = parse_qsl(part, keep_blank_values=True)
        key = pairs[0][0] if pairs else part.split("=", 1)[0]
        if key not in SHOPIFY_PARAMS:
            kept.append(part)
    return "&".join(kept)


def _client_address(forwarded_for: str | None, proxy_hops: int) -> str | None:
    """The shopper's address as Shopify reports it: X-Forwarded-For's entry just before the ones
    our own reverse proxies (config.proxy_hops, already trusted by ProxyFix) added."""
    if not forwarded_for:
        return None
    entries = [e.strip() for e in forwarded_for.split(",") if e.strip()]
    index = len(entries) - (proxy_hops + 1)
    if index < 0:
        return None
    value = entries[index]
    return value if len(value) <= 64 and re.fullmatch(r"[0-9A-Fa-f:.]+", value) else None


def _refuse(start_response) -> Iterable[bytes]:
    body = b"Unauthorized: invalid app proxy request.\n"
    start_response("401 UNAUTHORIZED", [("Content-Type", "text/plain; charset=utf-8"),
                                        ("Content-Length", str(len(body))), ("Cache-Control", "no-store")])
    return [body]
