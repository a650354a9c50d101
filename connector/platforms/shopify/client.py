"""The Admin GraphQL client: one POST per document, cost-aware, retried, in words a merchant can act on.

    client = ShopifyClient.for_shop(shop)                    # tokens from credentials, refreshed
    data = client.execute("OrdersCatchUp", {"first": 10, "after": None, "query": "..."})
    payload = client.mutate("RefundCreate", variables, field="refundCreate")

`execute(name, variables)` sends `graphql/<name>.graphql` (whose operation is called `name`) to
https://<shop>/admin/api/<API_VERSION>/graphql.json and returns the answer's `data`. It raises:

- `ReconnectRequired`: no token, or Shopify refused the token again after one refresh (401/403);
- `ScopeMissing`: an `ACCESS_DENIED` error (the scope Shopify names is on `.scope`);
- `ShopifyError(retryable=True)`: network errors, timeouts, 5xx and throttling that outlasted the
  retries; `ShopifyError(retryable=False)`: any other GraphQL error;
- `UserErrors` (from `mutate` only): the mutation answered with non-empty `userErrors`.

Throttling. Shopify meters calls with a leaky bucket of cost points per shop (`extensions.cost`:
`requestedQueryCost`, `actualQueryCost`, `throttleStatus {maximumAvailable, currentlyAvailable,
restoreRate}`). The client remembers, per shop domain, the bucket from the last answer and, per
document, the cost it last requested; before a call it waits (through the injectable `sleep`) for
as long as the bucket needs to refill to that cost, instead of sending a call that would be
throttled. The bucket state lives in this process only (a module-level map guarded by a lock):
several worker processes each keep their own view and correct it from every answer, and a call
that is throttled anyway (429, or 200 with `THROTTLED`) is retried after the wait Shopify's numbers
imply (or `Retry-After`).

Repeats. A query is always safe to send again. A mutation is repeated after an ambiguous failure
(read timeout, connection lost, 5xx) only when its document carries `@idempotent(key:)`, because
Shopify then applies the key once; any other mutation raises `ShopifyError(retryable=True)` at
once so that the caller's own find-before-retry logic runs (e.g. `find_return`). Throttled calls
and connect timeouts were never run, so they are repeated for every operation.

Nothing here logs a token, a variable or a response body (customer data).
"""
from __future__ import annotations

import logging
import random
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import requests

from connector.platforms.shopify import API_VERSION, documents
from connector.platforms.shopify.errors import ReconnectRequired, ScopeMissing, ShopifyError, UserErrors

log = logging.getLogger("connector.shopify.client")

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0
MAX_ATTEMPTS = 4  # network errors and 5xx: the first try and three repeats
MAX_THROTTLED = 8  # 429 / THROTTLED answers in a row before giving up (the job retries later)
MAX_WAIT = 60.0  # longest single wait for the bucket or a Retry-After
USER_AGENT = "ReturnsConnector (+https://github.com/returns-connector)"

_SCOPE_RE = re.compile(r"\b((?:unauthenticated_)?(?:read|write)_[a-z_]+)\b")
_MUTATION_RE = re.compile(r"^\s*mutation\b", re.MULTILINE)
_IDEMPOTENT_RE = re.compile(r"@idempotent\s*\(")


def graphql_url(shop_domain: str) -> str:
    return f"https://{shop_domain}/admin/api/{API_VERSION}/graphql.json"


def checked_domain(shop_domain: str | None) -> str:
    """`shop_domain` when it is a plain `<name>.myshopify.com`; a token or the app secret is never
    sent anywhere else, whatever a database row says."""
    from connector.platforms.shopify.verify import valid_shop_domain

    domain = valid_shop_domain(shop_domain)
    if domain is None:
        raise ShopifyError(f"not a Shopify shop domain: {shop_domain!r}", retryable=False)
    return domain


# ---------------------------------------------------------------------------- the cost bucket


@dataclass
class Bucket:
    """Shopify's view of a shop's cost bucket at `observed_at` (a monotonic clock reading)."""

    maximum: float
    available: float
    restore_rate: float
    observed_at: float

    def available_at(self, now: float) -> float:
        refill = self.restore_rate * max(0.0, now - self.observed_at)
        return min(self.maximum, self.available + refill)

    def wait_for(self, cost: float, now: float) -> float:
        """Seconds until the bucket holds `cost` points (never more than it can hold)."""
        if cost <= 0 or self.restore_rate <= 0:
            return 0.0
        short = min(cost, self.maximum) - self.available_at(now)
        return max(0.0, short / self.restore_rate)


class _Meter:
    """Per shop domain buckets and per document expected costs, shared by the clients of a process."""

    def __init__(self):
        self._lock = threading.Lock()
        self.buckets: dict[str, Bucket] = {}
        self.costs: dict[str, float] = {}

    def reserve(self, domain: str, document: str, now: float) -> float:
        """Seconds to wait before sending `document`; the expected cost is taken from the bucket
        at once, so that threads sharing a shop do not all spend the same points."""
        with self._lock:
            bucket = self.buckets.get(domain)
            cost = self.costs.get(document, 0.0)
            if bucket is None or cost <= 0:
                return 0.0
            wait = bucket.wait_for(cost, now)
            bucket.available = bucket.available_at(now + wait) - min(cost, bucket.maximum)
            bucket.observed_at = now + wait
            return wait

    def observe(self, domain: str, document: str, cost: dict | None, now: float) -> None:
        if not isinstance(cost, dict):
            return
        status = cost.get("throttleStatus") or {}
        with self._lock:
            requested = cost.get("requestedQueryCost")
            if isinstance(requested, (int, float)):
                self.costs[document] = float(requested)
            try:
                self.buckets[domain] = Bucket(maximum=float(status["maximumAvailable"]),
                                              available=float(status["currentlyAvailable"]),
                                              restore_rate=float(status["restoreRate"]), observed_at=now)
            except (KeyError, TypeError, ValueError):
                pass

    def throttled_wait(self, domain: str, cost: dict | None) -> float | None:
        """The wait Shopify's numbers imply after a throttled answer, or None without numbers."""
        if not isinstance(cost, dict):
            return None
        status = cost.get("throttleStatus") or {}
        try:
            requested = float(cost["requestedQueryCost"])
            available = float(status["currentlyAvailable"])
            rate = float(status["restoreRate"])
        except (KeyError, TypeError, ValueError):
            return None
        if rate <= 0:
            return None
        return max(0.0, (requested - available) / rate)

    def clear(self) -> None:
        with self._lock:
            self.buckets.clear()
            self.costs.clear()


METER = _Meter()


# ---------------------------------------------------------------------------- the client


class ShopifyClient:
    """A shop's Admin GraphQL endpoint. `refresh(stale_token) -> new_token` is called once when
    Shopify refuses the token (401/403); without it such an answer is ReconnectRequired."""

    def __init__(self, shop_domain: str, access_token: str, *,
                 refresh: Callable[[str], str] | None = None,
                 http: requests.Session | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic,
                 jitter: Callable[[], float] = random.random,
                 max_attempts: int = MAX_ATTEMPTS,
                 meter: _Meter = METER):
        self.shop_domain = checked_domain(shop_domain)
        if not access_token:
            raise ReconnectRequired(self.shop_domain, "no access token")
        self._token = access_token
        self._refresh = refresh
        self.http = http or requests.Session()
        self.sleep = sleep
        self.clock = clock
        self.jitter = jitter
        self.max_attempts = max_attempts
        self.meter = meter

    @classmethod
    def for_shop(cls, shop, **kwargs) -> "ShopifyClient":
        """A client for `shop` with its current token (refreshed first when it expires soon)."""
        from connector.platforms.shopify import tokens

        creds = tokens.fresh_credentials(shop)
        return cls(shop.domain, creds.access_token,
                   refresh=lambda stale: tokens.refresh(shop, stale_token=stale).access_token, **kwargs)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> "ShopifyClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:  # never print the token
        return f"ShopifyClient({self.shop_domain!r})"

    @property
    def url(self) -> str:
        return graphql_url(self.shop_domain)

    # ------------------------------------------------------------------ public calls

    def execute(self, document: str, variables: dict[str, Any] | None = None, *,
                retry_ambiguous: bool | None = None) -> dict[str, Any]:
        """Run `graphql/<document>.graphql` with `variables`; the answer's `data`."""
        text = documents.load(document)
        if retry_ambiguous is None:
            retry_ambiguous = not _MUTATION_RE.search(_strip_comments(text)) or bool(_IDEMPOTENT_RE.search(text))
        payload = {"query": text, "variables": variables or {}, "operationName": document}
        failures = throttled = 0
        refreshed = False
        while True:
            wait = self.meter.reserve(self.shop_domain, document, self.clock())
            if wait > 0:
                log.info("shopify %s: waiting %.1f s for the cost bucket before %s", self.shop_domain, wait, document)
                self.sleep(min(wait, MAX_WAIT))
            try:
                resp = self.http.post(self.url, json=payload, headers=self._headers(),
                                      timeout=(CONNECT_TIMEOUT, READ_TIMEOUT))
            except requests.RequestException as exc:
                never_sent = isinstance(exc, requests.ConnectTimeout)
                failures += 1
                self._give_up_or_back_off(document, failures, retry_ambiguous or never_sent,
                                          f"{type(exc).__name__}", exc)
                continue
            status = resp.status_code
            if status in (401, 403):
                scope = _scope_in(resp.text) if status == 403 else None
                if scope:
                    raise ScopeMissing(f"HTTP 403 on {document}", scope=scope)
                if refreshed or self._refresh is None:
                    raise ReconnectRequired(self.shop_domain, f"HTTP {status} on {document}")
                log.info("shopify %s: HTTP %s on %s, refreshing the token once", self.shop_domain, status, document)
                self._token = self._refresh(self._token)
                refreshed = True
                continue
            if status == 429:
                throttled += 1
                body = _json_or_none(resp)
                cost = (body or {}).get("extensions", {}).get("cost") if isinstance(body, dict) else None
                self.meter.observe(self.shop_domain, document, cost, self.clock())
                delay = _retry_after(resp)
                if delay is None:
                    delay = self.meter.throttled_wait(self.shop_domain, cost)
                self._throttled(document, throttled, delay)
                continue
            if status >= 500:
                failures += 1
                self._give_up_or_back_off(document, failures, retry_ambiguous, f"HTTP {status}")
                continue
            if status != 200:
                raise ShopifyError(_http_refusal(status, document), retryable=False)
            body = _json_or_none(resp)
            if not isinstance(body, dict):
                failures += 1
                self._give_up_or_back_off(document, failures, retry_ambiguous, "an answer that is not JSON")
                continue
            cost = (body.get("extensions") or {}).get("cost")
            self.meter.observe(self.shop_domain, document, cost, self.clock())
            errors = body.get("errors")
            if errors:
                errors = _error_list(errors)
                codes = {_code(e) for e in errors}
                if "THROTTLED" in codes:
                    throttled += 1
                    self._throttled(document, throttled, self.meter.throttled_wait(self.shop_domain, cost))
                    continue
                if "ACCESS_DENIED" in codes:
                    denied = next(e for e in errors if _code(e) == "ACCESS_DENIED")
                    ext = denied.get("extensions") or {}
                    scope = _scope_in(str(ext.get("requiredAccess") or "")) or _scope_in(denied.get("message", ""))
                    raise ScopeMissing(denied.get("message") or "access denied", scope=scope)
                if "INTERNAL_SERVER_ERROR" in codes:
                    failures += 1
                    self._give_up_or_back_off(document, failures, retry_ambiguous, "INTERNAL_SERVER_ERROR")
                    continue
                words = "; ".join(str(e.get("message", "")) for e in errors)[:1000]
                raise ShopifyError(f"Shopify refused {document}: {words}", retryable=False)
            data = body.get("data")
            if not isinstance(data, dict):
                raise ShopifyError(f"Shopify answered {document} without data", retryable=False)
            return data

    def mutate(self, document: str, variables: dict[str, Any], field: str, **kwargs) -> dict[str, Any]:
        """Run a mutation document; its payload `data[field]`. UserErrors when `userErrors` is not empty."""
        data = self.execute(document, variables, **kwargs)
        payload = data.get(field)
        if not isinstance(payload, dict):
            raise ShopifyError(f"Shopify answered {document} without {field}", retryable=False)
        errors = payload.get("userErrors") or []
        if errors:
            raise UserErrors(document, errors)
        return payload

    # ------------------------------------------------------------------ internals

    def _headers(self) -> dict[str, str]:
        return {"X-Shopify-Access-Token": self._token, "Content-Type": "application/json",
                "Accept": "application/json", "User-Agent": USER_AGENT}

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter on top: 0.5, 1, 2, 4 s (+ up to as much again)."""
        base = min(8.0, 0.5 * 2 ** (attempt - 1))
        return base + base * self.jitter()

    def _give_up_or_back_off(self, document: str, failures: int, may_repeat: bool, what: str,
                             exc: Exception | None = None) -> None:
        if not may_repeat:
            raise ShopifyError(f"Shopify did not answer {document} ({what}); it was not repeated because "
                               "it may have been applied", retryable=True) from exc
        if failures >= self.max_attempts:
            raise ShopifyError(f"Shopify did not answer {document} after {failures} attempts ({what})",
                               retryable=True) from exc
        delay = self._backoff(failures)
        log.warning("shopify %s: %s on %s (attempt %d), retrying in %.1f s",
                    self.shop_domain, what, document, failures, delay)
        self.sleep(delay)

    def _throttled(self, document: str, throttled: int, delay: float | None) -> None:
        if throttled > MAX_THROTTLED:
            raise ShopifyError(f"Shopify kept throttling {document}; it will be tried again later", retryable=True)
        if delay is None:
            delay = self._backoff(throttled)
        delay = min(MAX_WAIT, max(0.2, delay) + 0.1 * self.jitter())
        log.info("shopify %s: %s throttled, retrying in %.1f s", self.shop_domain, document, delay)
        self.sleep(delay)


def _strip_comments(text: str) -> str:
    return re.sub(r"#[^\n]*", "", text)


def _json_or_none(resp: requests.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None


def _error_list(errors: Any) -> list[dict]:
    if isinstance(errors, list):
        return [e if isinstance(e, dict) else {"message": str(e)} for e in errors]
    return [{"message": str(errors)}]


def _code(error: dict) -> str | None:
    ext = error.get("extensions")
    return ext.get("code") if isinstance(ext, dict) else None


def _scope_in(text: str) -> str | None:
    """The access scope(s) a Shopify message names ("Required access: `read_orders` access scope")."""
    found = list(dict.fromkeys(_SCOPE_RE.findall(text or "")))
    return ", ".join(found) if found else None


def _retry_after(resp: requests.Response) -> float | None:
    value = resp.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _http_refusal(status: int, document: str) -> str:
    reasons = {
        402: "the store's Shopify plan is unpaid or the store is frozen",
        404: "the store does not exist any more (closed or renamed)",
        423: "the store is locked by Shopify",
    }
    reason = reasons.get(status, "the request was refused")
    return f"Shopify answered HTTP {status} to {document}: {reason}"
