"""Expiring offline tokens: a fresh access token for each call, refreshed one shop at a time.

An expiring offline access token lives one hour. Its refresh token is exchanged at
`POST https://<shop>/admin/oauth/access_token` with JSON `{client_id, client_secret, grant_type:
"refresh_token", refresh_token}`; Shopify answers `{access_token, expires_in, refresh_token,
refresh_token_expires_in, scope}` and the old refresh token is replaced. So:

- the rotated refresh token is stored (sealed, committed) before the new access token is used;
- one shop's refreshes are serialised: a per-process lock and `SELECT ... FOR UPDATE` on the shop
  row (PostgreSQL; SQLite has one writer anyway). After the lock the credentials are read again,
  and when another worker has refreshed meanwhile its token is used instead of refreshing twice;
- `invalid_grant` (refresh token expired or revoked), a shop without tokens, or an inactive shop
  is `ReconnectRequired`: only the merchant opening the app again (token exchange) helps.

`refresh` ends the session's current transaction (it commits): callers make outside calls between
units of work, never inside one (DESIGN principle 1). Tokens are never logged.
"""
from __future__ import annotations

import logging
import random
import threading
import time
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from typing import Callable

import requests
from flask import current_app
from sqlalchemy import select

from connector.db import session
from connector.platforms.shopify import credentials
from connector.platforms.shopify.client import CONNECT_TIMEOUT, checked_domain
from connector.platforms.shopify.credentials import ShopifyCredentials
from connector.platforms.shopify.errors import ReconnectRequired, ShopifyError

log = logging.getLogger("connector.shopify.tokens")

REFRESH_ATTEMPTS = 3
STILL_USABLE = timedelta(seconds=60)
# Shopify's token endpoint answers in well under a second; a short read timeout keeps the shop
# row's lock (held during the exchange) short for the other workers waiting on it.
REFRESH_READ_TIMEOUT = 10.0
_locks: dict[str, threading.Lock] = defaultdict(threading.Lock)
_locks_guard = threading.Lock()


def fresh_credentials(shop) -> ShopifyCredentials:
    """The shop's credentials with an access token that does not expire in the next minutes."""
    creds = _usable(shop, credentials.load(shop) if shop.active else None)
    if creds.expires_soon():
        try:
            creds = refresh(shop)
        except ShopifyError as exc:
            # Shopify's token endpoint is down but the token still has minutes left: use them.
            if not exc.retryable or creds.expires_at - datetime.now(timezone.utc) < STILL_USABLE:
                raise
            log.warning("shopify %s: token refresh failed (%s); the current token is still valid", shop.domain, exc)
    return creds


def refresh(shop, stale_token: str | None = None, *, http: requests.Session | None = None,
            sleep: Callable[[float], None] = time.sleep, now: datetime | None = None) -> ShopifyCredentials:
    """Exchange the shop's refresh token for new tokens, store them, and return them.

    `stale_token` is the access token Shopify just refused: when the stored token differs, another
    worker has refreshed already and its credentials are returned as they are. Without it (a
    token about to expire) the refresh is skipped when the stored token no longer expires soon.
    """
    domain = checked_domain(shop.domain)
    with _lock_for(domain):
        try:
            locked = _lock_row(shop)
            creds = _usable(locked, credentials.load(locked) if locked.active else None)
            if stale_token is not None and creds.access_token != stale_token:
                session.commit()
                return creds
            if stale_token is None and not creds.expires_soon(now):
                session.commit()
                return creds
            if not creds.refresh_token:
                raise ReconnectRequired(domain, "the token cannot be refreshed (no refresh token)")
            now = now or datetime.now(timezone.utc)
            if creds.refresh_token_expires_at and creds.refresh_token_expires_at <= now:
                raise ReconnectRequired(domain, "the refresh token has expired")
            body = _exchange(domain, creds.refresh_token, http or requests, sleep)
            new = ShopifyCredentials.from_token_response(body, now=now)
            if not new.refresh_token:  # not rotated (not expected): keep the one we hold
                new = ShopifyCredentials(new.access_token, new.scope or creds.scope, new.expires_at,
                                         creds.refresh_token, creds.refresh_token_expires_at)
            if not new.scope:
                new = ShopifyCredentials(new.access_token, creds.scope, new.expires_at, new.refresh_token,
                                         new.refresh_token_expires_at)
            credentials.save(locked, new)
            session.commit()  # the rotated refresh token is stored before the new token is used
            log.info("shopify %s: access token refreshed", domain)
            return new
        except BaseException:
            # Releases the row lock; nothing of ours was written. Committing (not rolling back)
            # keeps what the caller flushed before handing over.
            try:
                session.commit()
            except Exception:
                session.rollback()
            raise


def _usable(shop, creds: ShopifyCredentials | None) -> ShopifyCredentials:
    if not shop.active:
        raise ReconnectRequired(shop.domain or "?", "the shop is not active (uninstalled)")
    if creds is None or not creds.access_token:
        raise ReconnectRequired(shop.domain or "?", "no access token")
    return creds


def _lock_for(domain: str) -> threading.Lock:
    with _locks_guard:
        return _locks[domain]


def _lock_row(shop):
    """The shop row, locked for this transaction and read again from the database."""
    from connector.returns.models import Shop

    return session.scalars(select(Shop).where(Shop.id == shop.id).with_for_update()
                           .execution_options(populate_existing=True)).one()


def _app_credentials() -> tuple[str, str]:
    config = current_app.config["CONNECTOR"]
    if not config.shopify_api_key or not config.shopify_api_secret:
        raise ShopifyError("SHOPIFY_API_KEY and SHOPIFY_API_SECRET are not configured", retryable=False)
    return config.shopify_api_key, config.shopify_api_secret


def _exchange(domain: str, refresh_token: str, http, sleep) -> dict:
    """POST the refresh grant; Shopify's JSON answer. Lost answers are retried with the same
    refresh token: Shopify keeps the previous refresh token valid until its replacement is used."""
    client_id, client_secret = _app_credentials()
    body = {"client_id": client_id, "client_secret": client_secret, "grant_type": "refresh_token",
            "refresh_token": refresh_token}
    url = f"https://{domain}/admin/oauth/access_token"
    for attempt in range(1, REFRESH_ATTEMPTS + 1):
        try:
            resp = http.post(url, json=body, headers={"Accept": "application/json"},
                             timeout=(CONNECT_TIMEOUT, REFRESH_READ_TIMEOUT))
        except requests.RequestException as exc:
            if attempt == REFRESH_ATTEMPTS:
                raise ShopifyError(f"Shopify did not answer the token refresh ({type(exc).__name__})",
                                   retryable=True) from exc
            sleep(_backoff(attempt))
            continue
        if resp.status_code == 200:
            try:
                answer = resp.json()
            except ValueError:
                answer = None
            if not isinstance(answer, dict) or not answer.get("access_token"):
                raise ShopifyError("Shopify answered the token refresh without an access token", retryable=True)
            return answer
        if resp.status_code in (400, 401, 403):
            error = _oauth_error(resp)
            if error == "invalid_client":  # the app's own key or secret: reconnecting cannot help
                raise ShopifyError("Shopify refused the app's credentials (invalid_client): check "
                                   "SHOPIFY_API_KEY and SHOPIFY_API_SECRET", retryable=False)
            if error == "invalid_grant" or resp.status_code in (401, 403):
                raise ReconnectRequired(domain, f"the refresh token was refused ({error or resp.status_code})")
            raise ShopifyError(f"Shopify refused the token refresh ({error or resp.status_code})", retryable=False)
        if resp.status_code == 429 or resp.status_code >= 500:
            if attempt == REFRESH_ATTEMPTS:
                raise ShopifyError(f"Shopify did not refresh the token (HTTP {resp.status_code})", retryable=True)
            retry_after = resp.headers.get("Retry-After")
            try:
                delay = float(retry_after) if retry_after else _backoff(attempt)
            except ValueError:
                delay = _backoff(attempt)
            sleep(min(delay, 30.0))
            continue
        raise ShopifyError(f"Shopify refused the token refresh (HTTP {resp.status_code})", retryable=False)
    raise AssertionError("unreachable")


def _oauth_error(resp: requests.Response) -> str | None:
    try:
        body = resp.json()
    except ValueError:
        return None
    if isinstance(body, dict):
        error = body.get("error")
        return str(error)[:100] if error else None
    return None


def _backoff(attempt: int) -> float:
    base = 0.5 * 2 ** (attempt - 1)
    return base + base * random.random()
