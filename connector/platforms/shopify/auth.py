"""Getting a shop's tokens, and installing the shop.

- `exchange_token`: Shopify-managed installation. The embedded app's session token (an ID token
  from App Bridge) is exchanged at `https://<shop>/admin/oauth/access_token` for an **expiring
  offline token** (one hour, with a refresh token that rotates on every refresh; the refresh
  itself lives with the client, which stores each rotated pair).
- `authorize_url` / `exchange_code`: the authorization-code grant, the fallback for installs that
  do not start inside the Shopify admin (the routes verify HMAC, state, shop and timestamp first).
- `install`: create or reactivate the shop's row from its tokens, read the shop's facts
  (ShopInfo), give it the default return reasons, and queue the order backfill.

Wire code only talks HTTP here; `install` is the one place that turns Shopify's answer into a
Shop. Tokens never reach a log or an exception message.
"""
from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlencode

import requests
from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from connector import db
from connector.platforms.shopify import credentials
from connector.platforms.shopify.credentials import ShopifyCredentials
from connector.platforms.shopify.errors import ShopifyError
from connector.platforms.shopify.verify import valid_shop_domain
from connector.returns.models import ReturnReason, Shop

log = logging.getLogger("connector.shopify.auth")

# Names from Shopify's token exchange documentation (RFC 8693 grant, Shopify token types).
TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"
OFFLINE_ACCESS_TOKEN_TYPE = "urn:shopify:params:oauth:token-type:offline-access-token"

# The access the app asks for in the authorization-code grant. Shopify-managed installs take the
# scopes from embedded_ui/shopify/shopify.app.toml; tests keep the two lists equal.
ACCESS_SCOPES = ("write_orders", "read_all_orders", "write_returns", "read_customers", "read_locations",
                 "read_fulfillments")

TIMEOUT = (5, 20)  # connect, read (seconds)
ATTEMPTS = 3
BACKOFF = 0.5  # seconds, doubled per attempt
_sleep = time.sleep  # tests replace it


class TokenRequestRefused(ShopifyError):
    """Shopify refused to issue a token (an expired or foreign session token, a used code, an app
    that is not installed): the merchant opens the app from the Shopify admin again."""

    def __init__(self, shop_domain: str, status: int, detail: str):
        super().__init__(f"Shopify refused to connect {shop_domain} ({status}): {detail}. Open Returns "
                         "Connector from your Shopify admin (Apps) to try again.", retryable=False)
        self.status = status


def _app_credentials() -> tuple[str, str]:
    config = current_app.config["CONNECTOR"]
    if not config.shopify_api_key or not config.shopify_api_secret:
        raise ShopifyError("SHOPIFY_API_KEY and SHOPIFY_API_SECRET are not configured", retryable=False)
    return config.shopify_api_key, config.shopify_api_secret


def _shop_or_error(shop_domain: str) -> str:
    domain = valid_shop_domain(shop_domain)
    if domain is None:
        raise ValueError("not a myshopify.com shop domain")
    return domain


def _refusal_detail(resp: requests.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.reason or "no details"
    if isinstance(body, dict):
        words = body.get("error_description") or body.get("error") or body.get("errors")
        if words:
            return str(words)[:300]
    return resp.reason or "no details"


def _request_token(shop_domain: str, body: dict[str, Any], *, resend_after_timeout: bool) -> ShopifyCredentials:
    """POST `body` to the shop's token endpoint and read the credentials from the answer.

    Connection failures, 429 and 5xx are retried with backoff. A read timeout is retried only when
    `resend_after_timeout` (a token exchange may be repeated; an authorization code is single-use,
    so resending it after Shopify may have used it only earns a 400).
    """
    url = f"https://{shop_domain}/admin/oauth/access_token"
    problem = "no answer"
    for attempt in range(ATTEMPTS):
        if attempt:
            _sleep(BACKOFF * 2 ** (attempt - 1))
        try:
            resp = requests.post(url, json=body, headers={"Accept": "application/json"}, timeout=TIMEOUT)
        except requests.ConnectionError as exc:  # includes ConnectTimeout: nothing reached Shopify
            problem = type(exc).__name__
            continue
        except requests.Timeout:  # ReadTimeout: Shopify may have acted on the request
            if not resend_after_timeout:
                raise ShopifyError(f"Shopify did not answer the token request for {shop_domain} in time; "
                                   "please try again.", retryable=True) from None
            problem = "timeout"
            continue
        if resp.status_code == 429 or resp.status_code >= 500:
            problem = f"HTTP {resp.status_code}"
            continue
        if resp.status_code != 200:
            raise TokenRequestRefused(shop_domain, resp.status_code, _refusal_detail(resp))
        try:
            answer = resp.json()
            return ShopifyCredentials.from_token_response(answer)
        except (ValueError, KeyError, TypeError):
            raise ShopifyError(f"Shopify's token answer for {shop_domain} could not be read",
                               retryable=True) from None
    log.warning("token request for %s failed after %s attempts: %s", shop_domain, ATTEMPTS, problem)
    raise ShopifyError(f"Shopify could not be reached to connect {shop_domain} ({problem}); please try again.",
                       retryable=True)


def exchange_token(shop_domain: str, session_token: str) -> ShopifyCredentials:
    """Exchange a verified App Bridge session token for an expiring offline access token.

    The caller has verified `session_token` (verify.decode_session_token) and that it speaks for
    `shop_domain`. Raises TokenRequestRefused (Shopify said no, e.g. an expired session token)
    or ShopifyError (retryable: Shopify could not be reached).
    """
    domain = _shop_or_error(shop_domain)
    api_key, secret = _app_credentials()
    return _request_token(domain, {
        "client_id": api_key,
        "client_secret": secret,
        "grant_type": TOKEN_EXCHANGE_GRANT,
        "subject_token": session_token,
        "subject_token_type": ID_TOKEN_TYPE,
        "requested_token_type": OFFLINE_ACCESS_TOKEN_TYPE,
        "expiring": "1",  # an expiring offline token with a refresh token (required for public apps)
    }, resend_after_timeout=True)


def authorize_url(shop_domain: str, state: str, redirect_uri: str) -> str:
    """Where to send the merchant to approve the app (authorization-code grant, offline access:
    no `grant_options[]`). `state` is the nonce the callback must bring back."""
    domain = _shop_or_error(shop_domain)
    api_key, _secret = _app_credentials()
    query = urlencode({"client_id": api_key, "scope": ",".join(ACCESS_SCOPES), "redirect_uri": redirect_uri,
                       "state": state})
    return f"https://{domain}/admin/oauth/authorize?{query}"


def exchange_code(shop_domain: str, code: str) -> ShopifyCredentials:
    """Exchange the authorization code from a verified callback for an expiring offline token."""
    domain = _shop_or_error(shop_domain)
    api_key, secret = _app_credentials()
    return _request_token(domain, {"client_id": api_key, "client_secret": secret, "code": code, "expiring": "1"},
                          resend_after_timeout=False)


# ============================================================================ install

def _handle_for(domain: str) -> str:
    """A free shop handle from the domain's first label: demo-shop, else demo-shop-2, -3, ..."""
    from connector.platforms.standalone.commands import check_handle

    base = domain.split(".", 1)[0][:56].strip("-") or "shop"
    if check_handle(base) is not None:  # a reserved word ("admin", "static"...)
        base = f"{base}-shop"
    candidate, n = base, 1
    while db.session.scalar(select(Shop.id).where(Shop.handle == candidate)) is not None:
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def find_shop(shop_domain: str) -> Shop | None:
    """The Shopify shop row for `shop_domain` (installed or not), or None."""
    domain = valid_shop_domain(shop_domain)
    if domain is None:
        return None
    return db.session.scalar(select(Shop).where(Shop.platform == "shopify", Shop.domain == domain)
                             .order_by(Shop.id).limit(1))


def _shop_row(domain: str) -> Shop:
    shop = find_shop(domain)
    if shop is not None:
        return shop
    shop = Shop(handle=_handle_for(domain), name=domain.split(".", 1)[0], platform="shopify", domain=domain,
                active=True, platform_data={})
    db.session.add(shop)
    try:
        db.session.flush()
    except IntegrityError:
        # Two first loads raced (same handle): the other one made the row; use it.
        db.session.rollback()
        shop = find_shop(domain)
        if shop is None:
            raise
    return shop


def has_usable_tokens(shop: Shop, now: datetime | None = None) -> bool:
    """True when the stored tokens can still reach Shopify: the access token is valid, or it can
    be refreshed (a refresh token that has not expired)."""
    creds = credentials.load(shop)
    if creds is None or not creds.access_token:
        return False
    now = now or datetime.now(timezone.utc)
    if creds.expires_at is None or creds.expires_at > now:
        return True
    return bool(creds.refresh_token and (creds.refresh_token_expires_at is None
                                         or creds.refresh_token_expires_at > now))


def is_installed(shop: Shop | None) -> bool:
    """True when the shop is active, its install finished (facts read), and its tokens work."""
    facts = (shop.platform_data or {}) if shop is not None else {}
    return bool(shop is not None and shop.active and shop.platform == "shopify" and facts.get("installed_at")
                and not facts.get("install_pending") and not facts.get("uninstalled_at")
                and has_usable_tokens(shop))


def _pick_location(nodes: list[dict]) -> dict | None:
    """The location returned stock goes back to: the first active one that ships inventory, else
    the first active one (the "primary location" is deprecated in the Admin API)."""
    active = [n for n in nodes if n.get("isActive", True)]
    return next((n for n in active if n.get("shipsInventory")), None) or (active[0] if active else None)


def _apply_shop_info(shop: Shop, data: dict[str, Any]) -> None:
    info = data.get("shop") or {}
    if info.get("name"):
        shop.name = info["name"][:200]
    if info.get("currencyCode"):
        shop.currency = info["currencyCode"][:3]
    if info.get("ianaTimezone"):
        shop.timezone = info["ianaTimezone"][:64]
    country = (info.get("shopAddress") or {}).get("countryCodeV2")
    if country:
        shop.country = country[:2]
    email = info.get("contactEmail") or info.get("email")
    if email and not shop.support_email:
        shop.support_email = email[:255]
    locales = data.get("shopLocales") or []
    primary = next((l["locale"] for l in locales if l.get("primary")), None)
    if primary:
        shop.locale = primary[:8]
    location = _pick_location((data.get("locations") or {}).get("nodes") or [])
    facts = dict(shop.platform_data or {})
    facts["shop_gid"] = info.get("id")
    if location:
        facts["location_id"] = location["id"]
        facts["location_name"] = location.get("name")
    shop.platform_data = facts


def install(shop_domain: str, creds: ShopifyCredentials) -> Shop:
    """Create or reactivate the Shopify shop `shop_domain` with `creds`; return it (committed).

    The tokens are stored (sealed) and committed first, so a rotated refresh token is never lost
    even when reading the shop's facts fails afterwards (ShopifyError propagates, and the next
    app load finishes the install). Idempotent: a second install updates the same row; a shop
    that was uninstalled becomes active again with its returns and settings intact.
    """
    from connector.platforms.shopify.client import ShopifyClient
    from connector.platforms.standalone.defaults import add_default_reasons
    from connector.returns.context import runtime

    domain = _shop_or_error(shop_domain)
    shop = _shop_row(domain)
    # Active, installed and never revoked (an uninstall removes the tokens): only the tokens are
    # renewed, e.g. after the refresh token expired; no new backfill.
    facts = shop.platform_data or {}
    was_installed = bool(shop.active and facts.get("installed_at") and not facts.get("uninstalled_at")
                         and not facts.get("install_pending") and credentials.load(shop) is not None)
    shop.active = True
    credentials.save(shop, creds)
    facts = dict(shop.platform_data or {})
    facts.pop("uninstalled_at", None)
    facts["scopes"] = sorted(creds.scopes())
    if not was_installed:
        facts["install_pending"] = True  # until the steps below are done (is_installed is False)
    shop.platform_data = facts
    db.session.commit()

    data = ShopifyClient.for_shop(shop).execute("ShopInfo", {})
    _apply_shop_info(shop, data)
    if db.session.scalar(select(ReturnReason.id).where(ReturnReason.shop_id == shop.id).limit(1)) is None:
        add_default_reasons(shop)
    facts = dict(shop.platform_data or {})
    first_install = not facts.get("installed_at")
    now = datetime.now(timezone.utc).isoformat()
    if not was_installed:
        facts["installed_at"] = now
    facts["connected_at"] = now
    facts.pop("install_pending", None)
    shop.platform_data = facts
    db.session.commit()
    log.info("shopify %s: installed as %s (%s)", domain, shop.handle,
             "first install" if first_install else "tokens renewed" if was_installed else "reinstall")
    if not was_installed:
        # Orders from before the install (the backfill job resumes from its own cursor).
        runtime.enqueue("shopify_backfill", shop_id=shop.id)
    return shop
