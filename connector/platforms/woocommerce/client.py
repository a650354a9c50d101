"""The WooCommerce REST client (wc/v3): requests, retried, in WooCommerce's own words.

    client = WooClient.for_shop(shop)                     # store_url from platform_data, keys sealed
    orders, headers = client.get("orders", params={"per_page": 100, "page": 1})
    refund = client.post("orders/15/refunds", json={...})
    for page in client.paged("orders", {"orderby": "modified", "order": "asc"}): ...

Pitfalls it follows (DESIGN.md, "Platform facts"):
- query parameters go through `params=` only; an endpoint with "?" in it is refused (a query
  string in the endpoint breaks the OAuth 1.0a signature and gets double-encoded);
- a timeout of (5 s connect, 30 s read): WooCommerce's own client defaults to 5 s in total, which
  large order pages exceed;
- paging with `page=N` up to `X-WP-TotalPages`, never by following `Link` (it carries the
  previous request's OAuth signature).

Authentication: over https, HTTP Basic with the consumer key and secret; over plain http (a local
store only), OAuth 1.0a one-legged with HMAC-SHA256, as WooCommerce requires there.

Errors: WooCommerce answers `{"code", "message", "data": {"status"}}` (or `"data": 500`). A 401,
or a 403 with an authentication code, raises `ReconnectRequired`; any other answer >= 400 raises
`WooError(message=WooCommerce's message, status, code)`, retryable for 5xx and 429 after the
retries ran out. Connection errors and timeouts are retried with exponential backoff and jitter
for GET/PUT/DELETE (the same request applied twice ends the same). A POST that may have reached
the store (read timeout, connection dropped after sending, 5xx) is never sent again here: it
raises `WooError(retryable=True)` so that the caller looks the thing up before creating it again.
Nothing here logs a key, a request body or an answer (customer data).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import random
import secrets
import time
from typing import Any, Callable, Iterator
from urllib.parse import quote, urlsplit

import requests

from connector.platforms.woocommerce import API_NAMESPACE
from connector.platforms.woocommerce.errors import ReconnectRequired, WooError

log = logging.getLogger("connector.woocommerce.client")

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0
MAX_ATTEMPTS = 4  # the first try and three repeats
MAX_WAIT = 60.0
PER_PAGE = 100  # WooCommerce's maximum (101 is refused: rest_invalid_param)
USER_AGENT = "ReturnsConnector (+https://github.com/returns-connector)"

# 403 codes that mean "these keys may not do this": reconnecting (read_write keys) is the cure.
_AUTH_CODES = {"woocommerce_rest_authentication_error", "woocommerce_rest_cannot_view",
               "woocommerce_rest_cannot_create", "woocommerce_rest_cannot_edit",
               "woocommerce_rest_cannot_delete", "rest_forbidden", "woocommerce_rest_invalid_signature",
               "woocommerce_rest_oauth1_error", "woocommerce_rest_authentication_missing_parameter"}
_RETRY_STATUS = {429, 500, 502, 503, 504}


def api_base(store_url: str) -> str:
    return f"{store_url.rstrip('/')}/wp-json/{API_NAMESPACE}/"


# ---------------------------------------------------------------------------- OAuth 1.0a


def _enc(value: Any) -> str:
    """PHP's rawurlencode (RFC 3986: only A-Z a-z 0-9 - _ . ~ unescaped)."""
    return quote(str(value), safe="-_.~")


def oauth1_signature(method: str, url: str, params: list[tuple[str, str]], consumer_secret: str) -> str:
    """WooCommerce's one-legged OAuth 1.0a HMAC-SHA256 signature (WC_REST_Authentication::
    check_oauth_signature): METHOD & enc(url without query) & enc of the sorted, encoded
    `k=v` pairs (oauth_* included, oauth_signature not) joined with '&'; key = secret + '&'."""
    pairs = sorted((_enc(k), _enc(v)) for k, v in params if k != "oauth_signature")
    joined = "%26".join(_enc(f"{k}={v}") for k, v in pairs)
    base = f"{method.upper()}&{_enc(url.split('?', 1)[0])}&{joined}"
    digest = hmac.new(f"{consumer_secret}&".encode(), base.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def oauth1_params(method: str, url: str, query: list[tuple[str, str]], consumer_key: str, consumer_secret: str,
                  *, timestamp: int | None = None, nonce: str | None = None) -> list[tuple[str, str]]:
    """`query` plus the oauth_* parameters, signed."""
    oauth = [("oauth_consumer_key", consumer_key),
             ("oauth_timestamp", str(int(time.time()) if timestamp is None else timestamp)),
             ("oauth_nonce", nonce or secrets.token_hex(20)),
             ("oauth_signature_method", "HMAC-SHA256")]
    signed = list(query) + oauth
    return signed + [("oauth_signature", oauth1_signature(method, url, signed, consumer_secret))]


def _flatten(params: dict[str, Any] | None) -> list[tuple[str, str]]:
    """Query parameters as (name, text) pairs; lists repeat the name with "[]" (status[]=any),
    booleans as WooCommerce reads them."""
    pairs: list[tuple[str, str]] = []
    for key, value in (params or {}).items():
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            pairs.extend((f"{key}[]", _text(v)) for v in value)
        else:
            pairs.append((key, _text(value)))
    return pairs


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# ---------------------------------------------------------------------------- the client


class WooClient:
    """One store's REST API. Not thread-safe (one requests.Session); cheap to create."""

    def __init__(self, store_url: str, consumer_key: str, consumer_secret: str, *,
                 session: requests.Session | None = None, sleep: Callable[[float], None] = time.sleep,
                 jitter: Callable[[], float] = random.random, max_attempts: int = MAX_ATTEMPTS):
        parts = urlsplit(store_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise WooError(f"not a store URL: {store_url!r}")
        self.store_url = store_url.rstrip("/")
        self.base = api_base(self.store_url)
        self.https = parts.scheme == "https"
        self._key = consumer_key
        self._secret = consumer_secret
        self.session = session or requests.Session()
        self.session.headers.setdefault("User-Agent", USER_AGENT)
        self.sleep = sleep
        self.jitter = jitter
        self.max_attempts = max_attempts
        self.calls = 0  # requests sent (benchmarks and progress output read it)

    @classmethod
    def for_shop(cls, shop, **kwargs) -> "WooClient":
        from connector.platforms.woocommerce import credentials

        store_url = (shop.platform_data or {}).get("store_url")
        creds = credentials.load(shop)
        if not store_url or creds is None or not creds.consumer_key:
            raise ReconnectRequired(store_url or shop.domain or shop.handle, "no API keys stored")
        return cls(store_url, creds.consumer_key, creds.consumer_secret, **kwargs)

    def __repr__(self) -> str:  # never the keys
        return f"WooClient({self.store_url!r})"

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> "WooClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- verbs

    def get(self, endpoint: str, params: dict[str, Any] | None = None) -> tuple[Any, Any]:
        """(decoded JSON, response headers) of GET `endpoint`."""
        resp = self.request("GET", endpoint, params=params)
        return _json(resp), resp.headers

    def post(self, endpoint: str, json: Any = None, params: dict[str, Any] | None = None, *,
             namespace: str | None = None) -> Any:
        """POST `endpoint` (under wc/v3, or under another REST `namespace` that accepts the same
        keys, such as the plugin's returns-connector/v1)."""
        return _json(self.request("POST", endpoint, params=params, json=json, namespace=namespace))

    def put(self, endpoint: str, json: Any = None, params: dict[str, Any] | None = None) -> Any:
        return _json(self.request("PUT", endpoint, params=params, json=json))

    def delete(self, endpoint: str, params: dict[str, Any] | None = None) -> Any:
        return _json(self.request("DELETE", endpoint, params=params))

    def paged(self, endpoint: str, params: dict[str, Any] | None = None, *, start_page: int = 1,
              on_page: Callable[[int, int, int], None] | None = None) -> Iterator[list[Any]]:
        """Each page's items of a collection, page=N from `start_page` up to X-WP-TotalPages
        (re-read from every answer: the total moves while orders arrive). `on_page(page, pages,
        total)` is called after each page is read."""
        page = start_page
        while True:
            query = dict(params or {}, per_page=PER_PAGE, page=page)
            items, headers = self.get(endpoint, query)
            pages = _int(headers.get("X-WP-TotalPages"))
            total = _int(headers.get("X-WP-Total"))
            if on_page:
                on_page(page, pages, total)
            if items:
                yield items
            if not items or page >= pages:
                return
            page += 1

    # -- the wire

    def request(self, method: str, endpoint: str, *, params: dict[str, Any] | None = None,
                json: Any = None, namespace: str | None = None) -> requests.Response:
        if "?" in endpoint or "#" in endpoint:
            raise ValueError("query parameters go in params=, never in the endpoint string")
        base = f"{self.store_url}/wp-json/{namespace.strip('/')}/" if namespace else self.base
        url = base + endpoint.lstrip("/")
        method = method.upper()
        query = _flatten(params)
        failures = 0
        while True:
            kwargs: dict[str, Any] = {"timeout": (CONNECT_TIMEOUT, READ_TIMEOUT)}
            if self.https:
                kwargs["auth"] = (self._key, self._secret)
                kwargs["params"] = query
            else:  # plain http (a local store): WooCommerce only accepts OAuth 1.0a there
                kwargs["params"] = oauth1_params(method, url, query, self._key, self._secret)
            if json is not None:
                kwargs["json"] = json
            self.calls += 1
            try:
                resp = self.session.request(method, url, **kwargs)
            except requests.ConnectTimeout as exc:  # never reached the store: safe for every verb
                failures = self._again(method, endpoint, failures, True, f"connect timeout ({exc.__class__.__name__})")
                continue
            except (requests.Timeout, requests.ConnectionError) as exc:
                failures = self._again(method, endpoint, failures, method != "POST",
                                       f"no answer ({exc.__class__.__name__})")
                continue
            if resp.status_code < 400:
                return resp
            error = _error(resp)
            if resp.status_code == 401 or (resp.status_code == 403 and error[0] in _AUTH_CODES):
                raise ReconnectRequired(self.store_url, error[1] or error[0] or f"HTTP {resp.status_code}")
            if resp.status_code in _RETRY_STATUS:
                # 429 was never run; a 5xx POST may have been (WooCommerce deletes a refund a
                # gateway refused, but other creations may stay): the caller decides.
                may_repeat = method != "POST" or resp.status_code == 429
                if may_repeat and failures + 1 < self.max_attempts:
                    failures = self._again(method, endpoint, failures, True, f"HTTP {resp.status_code}",
                                           retry_after=resp.headers.get("Retry-After"))
                    continue
                raise WooError(error[1] or f"WooCommerce answered HTTP {resp.status_code}",
                               retryable=resp.status_code == 429 or method != "POST" or error[1] is None,
                               status=resp.status_code, code=error[0])
            raise WooError(error[1] or f"WooCommerce answered HTTP {resp.status_code}",
                           status=resp.status_code, code=error[0])

    def _again(self, method: str, endpoint: str, failures: int, may_repeat: bool, what: str,
               retry_after: str | None = None) -> int:
        """Sleep before the next attempt, or raise a retryable WooError when that may not happen."""
        failures += 1
        if not may_repeat:
            raise WooError(f"WooCommerce at {self.store_url} did not answer {method} {endpoint}: {what}; "
                           "it may have been applied", retryable=True)
        if failures >= self.max_attempts:
            raise WooError(f"WooCommerce at {self.store_url} is not answering ({what}, {failures} tries)",
                           retryable=True)
        delay = self._backoff(failures, retry_after)
        log.info("woocommerce %s %s: %s; again in %.1fs", method, endpoint, what, delay)
        self.sleep(delay)
        return failures

    def _backoff(self, failures: int, retry_after: str | None = None) -> float:
        """0.5, 1, 2 s ... plus up to as much again (full jitter on top); Retry-After when given."""
        if retry_after:
            try:
                return min(float(retry_after), MAX_WAIT)
            except ValueError:
                pass
        base = 0.5 * (2 ** (failures - 1))
        return min(base + base * self.jitter(), MAX_WAIT)


def _json(resp: requests.Response) -> Any:
    if resp.status_code == 204 or not resp.content:
        return None
    try:
        return resp.json()
    except ValueError as exc:
        # A PHP notice or a caching plugin's HTML in front of the JSON: worth another try later.
        raise WooError(f"WooCommerce answered HTTP {resp.status_code} with something that is not JSON",
                       retryable=True, status=resp.status_code) from exc


def _error(resp: requests.Response) -> tuple[str | None, str | None]:
    """(code, message) of WooCommerce's error JSON, (None, None) when there is none."""
    try:
        body = resp.json()
    except ValueError:
        return None, None
    if not isinstance(body, dict):
        return None, None
    code, message = body.get("code"), body.get("message")
    return (str(code) if code else None), (str(message) if message else None)


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
