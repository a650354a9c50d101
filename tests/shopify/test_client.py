"""The Admin GraphQL client and the expiring offline tokens behind it, against Shopify's documented
answers: cost throttling, 429 / THROTTLED, 5xx and timeouts, 401 with one refresh, rotated refresh
tokens, invalid_grant, ACCESS_DENIED and userErrors."""
from __future__ import annotations

import json
import logging
import threading
from datetime import datetime, timedelta, timezone

import pytest
import requests
import responses
from sqlalchemy import text

from connector import db
from connector.platforms.shopify import credentials, tokens
from connector.platforms.shopify.client import METER, ShopifyClient
from connector.platforms.shopify.credentials import ShopifyCredentials
from connector.platforms.shopify.errors import ReconnectRequired, ScopeMissing, ShopifyError, UserErrors
from tests.shopify.factories import ACCESS_TOKEN, REFRESH_TOKEN, SHOP_DOMAIN

TOKEN_URL = f"https://{SHOP_DOMAIN}/admin/oauth/access_token"
NEW_ACCESS = "shpat_rotated_access_token"
NEW_REFRESH = "shprt_rotated_refresh_token"
EMPTY_PAGE = {"orders": {"pageInfo": {"hasNextPage": False, "endCursor": None}, "nodes": []}}
CATCH_UP_VARS = {"first": 10, "after": None, "query": None}


def cost(requested=12, actual=12, available=1990.0, maximum=2000.0, rate=100.0):
    """`extensions.cost` as Shopify sends it with every Admin GraphQL answer."""
    return {"cost": {"requestedQueryCost": requested, "actualQueryCost": actual,
                     "throttleStatus": {"maximumAvailable": maximum, "currentlyAvailable": available,
                                        "restoreRate": rate}}}


def ok(data, **cost_kw):
    return {"data": data, "extensions": cost(**cost_kw)}


THROTTLED = {"errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED",
                                                              "documentation": "https://shopify.dev/api/usage/rate-limits"}}],
             "extensions": {"cost": {"requestedQueryCost": 752, "actualQueryCost": None,
                                     "throttleStatus": {"maximumAvailable": 1000.0, "currentlyAvailable": 666,
                                                        "restoreRate": 50.0}}}}
INVALID_TOKEN = (401, {"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"})


def token_answer(access=NEW_ACCESS, refresh=NEW_REFRESH):
    """Shopify's answer to a refresh_token grant (expiring offline token)."""
    return {"access_token": access, "expires_in": 3600, "refresh_token": refresh,
            "refresh_token_expires_in": 7776000, "scope": "read_orders,write_orders,write_returns"}


class FakeTime:
    """A monotonic clock that only `sleep` moves: the client waits without the test waiting."""

    def __init__(self):
        self.now = 1000.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def fresh_meter():
    METER.clear()
    yield
    METER.clear()


@pytest.fixture
def fake_time():
    return FakeTime()


@pytest.fixture
def client(shopify_shop, fake_time):
    return ShopifyClient.for_shop(shopify_shop, sleep=fake_time.sleep, clock=fake_time.clock, jitter=lambda: 0.0)


def stored_credentials(shop) -> ShopifyCredentials:
    """The shop's tokens as committed in the database (read on a separate connection)."""
    from flask import current_app

    with db.engine().connect() as conn:
        sealed = conn.execute(text("SELECT credentials FROM shops WHERE id = :id"), {"id": shop.id}).scalar_one()
    data = current_app.extensions["connector.secrets"].open(sealed)
    return ShopifyCredentials.from_json(data["shopify"])


# ---------------------------------------------------------------------------- requests and throttling


def test_execute_posts_the_document_with_its_operation_name_and_token(client, shopify):
    shopify.on("OrdersCatchUp", ok(EMPTY_PAGE))
    assert client.execute("OrdersCatchUp", CATCH_UP_VARS) == EMPTY_PAGE
    request = shopify.requests("OrdersCatchUp")[0]
    body = json.loads(request.body)
    assert body["operationName"] == "OrdersCatchUp" and "query OrdersCatchUp" in body["query"]
    assert request.headers["X-Shopify-Access-Token"] == ACCESS_TOKEN
    assert request.url == f"https://{SHOP_DOMAIN}/admin/api/2026-04/graphql.json"


def test_waits_for_the_bucket_to_refill_to_the_documents_last_cost(client, shopify, fake_time):
    """After an answer leaves 100 of 1000 points restoring at 50/s, a call that cost 500 waits
    (500 - 100) / 50 = 8 s before it is sent, instead of being throttled."""
    shopify.on("OrdersCatchUp", ok(EMPTY_PAGE, requested=500, actual=480, available=100.0, maximum=1000.0, rate=50.0))
    client.execute("OrdersCatchUp", CATCH_UP_VARS)
    assert fake_time.sleeps == []
    client.execute("OrdersCatchUp", CATCH_UP_VARS)
    assert fake_time.sleeps == [pytest.approx(8.0)]
    assert len(shopify.calls("OrdersCatchUp")) == 2


def test_no_wait_when_the_bucket_has_refilled_meanwhile(client, shopify, fake_time):
    shopify.on("OrdersCatchUp", ok(EMPTY_PAGE, requested=500, available=100.0, maximum=1000.0, rate=50.0))
    client.execute("OrdersCatchUp", CATCH_UP_VARS)
    fake_time.now += 10  # 10 s later the bucket holds 600 points
    client.execute("OrdersCatchUp", CATCH_UP_VARS)
    assert fake_time.sleeps == []


def test_429_is_retried_after_retry_after(client, shopify, fake_time):
    shopify.on("OrdersCatchUp", [(429, {"errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}]},
                                  {"Retry-After": "2.0"}),
                                 ok(EMPTY_PAGE)])
    assert client.execute("OrdersCatchUp", CATCH_UP_VARS) == EMPTY_PAGE
    assert fake_time.sleeps[0] == pytest.approx(2.0)
    assert len(shopify.calls("OrdersCatchUp")) == 2


def test_throttled_answer_is_retried_after_the_wait_its_cost_implies(client, shopify, fake_time):
    """200 with THROTTLED: 752 requested, 666 available, 50 restored per second -> 1.72 s."""
    shopify.on("OrdersCatchUp", [THROTTLED, ok(EMPTY_PAGE)])
    assert client.execute("OrdersCatchUp", CATCH_UP_VARS) == EMPTY_PAGE
    assert fake_time.sleeps[0] == pytest.approx(1.72, abs=0.01)
    assert len(shopify.calls("OrdersCatchUp")) == 2


def test_throttling_that_never_ends_is_a_retryable_error(client, shopify):
    shopify.on("OrdersCatchUp", THROTTLED)
    with pytest.raises(ShopifyError) as caught:
        client.execute("OrdersCatchUp", CATCH_UP_VARS)
    assert caught.value.retryable


def test_5xx_then_success(client, shopify, fake_time):
    shopify.on("OrdersCatchUp", [(502, {"errors": "Bad Gateway"}), (503, {"errors": "Unavailable"}), ok(EMPTY_PAGE)])
    assert client.execute("OrdersCatchUp", CATCH_UP_VARS) == EMPTY_PAGE
    assert len(shopify.calls("OrdersCatchUp")) == 3
    assert fake_time.sleeps == [0.5, 1.0]  # exponential (jitter set to 0 here)


def test_timeouts_end_in_a_retryable_error_after_four_attempts(client, shopify, fake_time):
    shopify.on("OrdersCatchUp", requests.ReadTimeout("read timed out"))
    with pytest.raises(ShopifyError) as caught:
        client.execute("OrdersCatchUp", CATCH_UP_VARS)
    assert caught.value.retryable and not isinstance(caught.value, ReconnectRequired)
    assert len(shopify.calls("OrdersCatchUp")) == 4
    assert len(fake_time.sleeps) == 3


def test_client_uses_connect_and_read_timeouts(client, shopify, monkeypatch):
    seen = {}
    original = client.http.post

    def post(*args, **kwargs):
        seen.update(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(client.http, "post", post)
    shopify.on("OrdersCatchUp", ok(EMPTY_PAGE))
    client.execute("OrdersCatchUp", CATCH_UP_VARS)
    assert seen["timeout"] == (5.0, 30.0)


BULK_VARS = {"query": "{ orders { edges { node { id } } } }", "groupObjects": True}
BULK_OK = ok({"bulkOperationRunQuery": {"bulkOperation": {"id": "gid://shopify/BulkOperation/1", "status": "CREATED",
                                                          "createdAt": "2026-04-01T10:00:00Z"},
                                        "userErrors": []}})


def test_a_mutation_without_idempotency_key_is_not_repeated_after_a_5xx(client, shopify):
    """Shopify may have applied it: the caller's find-before-retry decides, not a blind repeat."""
    shopify.on("BulkOrdersRun", [(500, {"errors": "Internal"}), BULK_OK])
    with pytest.raises(ShopifyError) as caught:
        client.mutate("BulkOrdersRun", BULK_VARS, field="bulkOperationRunQuery")
    assert caught.value.retryable
    assert len(shopify.calls("BulkOrdersRun")) == 1


def test_an_idempotent_mutation_is_repeated_after_a_5xx(client, shopify, monkeypatch):
    from connector.platforms.shopify import documents

    original = documents.load("BulkOrdersRun")
    keyed = original.replace("bulkOperationRunQuery(query: $query, groupObjects: $groupObjects)",
                             'bulkOperationRunQuery(query: $query, groupObjects: $groupObjects) @idempotent(key: "k-1")')
    assert keyed != original
    monkeypatch.setattr(documents, "load", lambda name: keyed if name == "BulkOrdersRun" else original)
    shopify.on("BulkOrdersRun", [(500, {"errors": "Internal"}), BULK_OK])
    payload = client.mutate("BulkOrdersRun", BULK_VARS, field="bulkOperationRunQuery")
    assert payload["bulkOperation"]["id"] == "gid://shopify/BulkOperation/1"
    assert len(shopify.calls("BulkOrdersRun")) == 2


def test_a_connect_timeout_is_repeated_even_for_a_mutation(client, shopify):
    """A connection never made carried nothing to Shopify."""
    shopify.on("BulkOrdersRun", [requests.ConnectTimeout("connect timed out"), BULK_OK])
    client.mutate("BulkOrdersRun", BULK_VARS, field="bulkOperationRunQuery")
    assert len(shopify.calls("BulkOrdersRun")) == 2


# ---------------------------------------------------------------------------- errors a merchant can act on


def test_access_denied_is_scope_missing_with_the_scope(client, shopify):
    shopify.on("OrdersCatchUp", {
        "errors": [{"message": "Access denied for orders field. Required access: `read_orders` access scope.",
                    "locations": [{"line": 2, "column": 3}], "path": ["orders"],
                    "extensions": {"code": "ACCESS_DENIED", "documentation": "https://shopify.dev/api/usage/access-scopes",
                                   "requiredAccess": "`read_orders` access scope."}}],
        "data": {"orders": None}, "extensions": cost()})
    with pytest.raises(ScopeMissing) as caught:
        client.execute("OrdersCatchUp", CATCH_UP_VARS)
    assert caught.value.scope == "read_orders"
    assert not caught.value.retryable
    assert "read_orders" in str(caught.value)


def test_user_errors_raise_user_errors(client, shopify):
    shopify.on("BulkOrdersRun", ok({"bulkOperationRunQuery": {"bulkOperation": None, "userErrors": [
        {"field": ["query"], "message": "Invalid bulk query: unknown field", "code": "INVALID"}]}}))
    with pytest.raises(UserErrors) as caught:
        client.mutate("BulkOrdersRun", BULK_VARS, field="bulkOperationRunQuery")
    assert "Invalid bulk query" in str(caught.value)
    assert caught.value.errors[0]["code"] == "INVALID"


def test_other_graphql_errors_are_not_retried(client, shopify):
    shopify.on("OrdersCatchUp", {"errors": [{"message": "Query cost is 2050, which exceeds the single query max cost limit (1000).",
                                             "extensions": {"code": "MAX_COST_EXCEEDED"}}]})
    with pytest.raises(ShopifyError) as caught:
        client.execute("OrdersCatchUp", CATCH_UP_VARS)
    assert not caught.value.retryable and "1000" in str(caught.value)
    assert len(shopify.calls("OrdersCatchUp")) == 1


def test_a_foreign_domain_never_gets_a_token(app):
    with pytest.raises(ShopifyError):
        ShopifyClient("evil.example.com", "shpat_x")
    with pytest.raises(ShopifyError):
        ShopifyClient("x.myshopify.com.evil.com", "shpat_x")


# ---------------------------------------------------------------------------- tokens


def test_401_refreshes_the_token_once_and_retries(client, shopify, rsps, shopify_shop):
    rsps.add(responses.POST, TOKEN_URL, json=token_answer())
    shopify.on("OrdersCatchUp", [INVALID_TOKEN, ok(EMPTY_PAGE)])
    assert client.execute("OrdersCatchUp", CATCH_UP_VARS) == EMPTY_PAGE
    first, second = shopify.requests("OrdersCatchUp")
    assert first.headers["X-Shopify-Access-Token"] == ACCESS_TOKEN
    assert second.headers["X-Shopify-Access-Token"] == NEW_ACCESS
    grant = json.loads([c for c in rsps.calls if c.request.url == TOKEN_URL][0].request.body)
    assert grant == {"client_id": "test-api-key", "client_secret": "test-api-secret",
                     "grant_type": "refresh_token", "refresh_token": REFRESH_TOKEN}
    stored = stored_credentials(shopify_shop)
    assert (stored.access_token, stored.refresh_token) == (NEW_ACCESS, NEW_REFRESH)


def test_401_after_the_refresh_is_reconnect_required(client, shopify, rsps):
    rsps.add(responses.POST, TOKEN_URL, json=token_answer())
    shopify.on("OrdersCatchUp", INVALID_TOKEN)
    with pytest.raises(ReconnectRequired) as caught:
        client.execute("OrdersCatchUp", CATCH_UP_VARS)
    assert "reconnect" in str(caught.value).lower()
    assert len([c for c in rsps.calls if c.request.url == TOKEN_URL]) == 1
    assert len(shopify.calls("OrdersCatchUp")) == 2


def test_a_token_about_to_expire_is_refreshed_and_the_rotated_refresh_token_stored_before_use(
        shopify_shop, shopify, rsps):
    credentials.save(shopify_shop, ShopifyCredentials(
        access_token=ACCESS_TOKEN, scope="read_orders", expires_at=datetime.now(timezone.utc) + timedelta(minutes=2),
        refresh_token=REFRESH_TOKEN, refresh_token_expires_at=datetime.now(timezone.utc) + timedelta(days=30)))
    db.session.commit()
    rsps.add(responses.POST, TOKEN_URL, json=token_answer())
    seen_in_db = []

    def answer(variables, request):
        seen_in_db.append(stored_credentials(shopify_shop).refresh_token)
        return ok(EMPTY_PAGE)

    shopify.on("OrdersCatchUp", answer)
    client = ShopifyClient.for_shop(shopify_shop)
    client.execute("OrdersCatchUp", CATCH_UP_VARS)
    assert shopify.requests("OrdersCatchUp")[0].headers["X-Shopify-Access-Token"] == NEW_ACCESS
    assert seen_in_db == [NEW_REFRESH]  # committed before the new access token went out
    stored = stored_credentials(shopify_shop)
    assert stored.expires_at > datetime.now(timezone.utc) + timedelta(minutes=55)
    assert stored.refresh_token_expires_at > datetime.now(timezone.utc) + timedelta(days=89)


def test_a_token_with_minutes_left_is_used_while_the_token_endpoint_is_down(shopify_shop, shopify, rsps, monkeypatch):
    credentials.save(shopify_shop, ShopifyCredentials(
        access_token=ACCESS_TOKEN, scope="read_orders", expires_at=datetime.now(timezone.utc) + timedelta(minutes=3),
        refresh_token=REFRESH_TOKEN))
    db.session.commit()
    monkeypatch.setattr(tokens, "_backoff", lambda attempt: 0.0)  # no real waits between the attempts
    rsps.add(responses.POST, TOKEN_URL, status=503, json={"errors": "unavailable"})
    shopify.on("OrdersCatchUp", ok(EMPTY_PAGE))
    ShopifyClient.for_shop(shopify_shop).execute("OrdersCatchUp", CATCH_UP_VARS)
    assert shopify.requests("OrdersCatchUp")[0].headers["X-Shopify-Access-Token"] == ACCESS_TOKEN
    assert len([c for c in rsps.calls if c.request.url == TOKEN_URL]) == 3


def test_invalid_grant_is_reconnect_required(shopify_shop, rsps):
    rsps.add(responses.POST, TOKEN_URL, status=400,
             json={"error": "invalid_grant", "error_description": "The refresh token is invalid or has expired."})
    with pytest.raises(ReconnectRequired):
        tokens.refresh(shopify_shop, stale_token=ACCESS_TOKEN)
    assert stored_credentials(shopify_shop).refresh_token == REFRESH_TOKEN  # nothing overwritten


def test_refresh_is_skipped_when_another_worker_already_refreshed(shopify_shop, rsps):
    credentials.save(shopify_shop, ShopifyCredentials(
        access_token="shpat_refreshed_elsewhere", scope="read_orders",
        expires_at=datetime.now(timezone.utc) + timedelta(hours=1), refresh_token="shprt_elsewhere"))
    db.session.commit()
    creds = tokens.refresh(shopify_shop, stale_token=ACCESS_TOKEN)
    assert creds.access_token == "shpat_refreshed_elsewhere"
    assert not [c for c in rsps.calls if c.request.url == TOKEN_URL]


def test_concurrent_refreshes_of_one_shop_exchange_the_refresh_token_once(app, shopify_shop, rsps):
    """Two threads find the token refused at once: one refreshes, the other uses its result."""
    rsps.add(responses.POST, TOKEN_URL, json=token_answer())
    results, errors = [], []
    barrier = threading.Barrier(2)
    shop_id = shopify_shop.id

    def worker():
        from connector.returns.models import Shop
        with app.app_context():
            try:
                shop = db.session.get(Shop, shop_id)
                barrier.wait()
                results.append(tokens.refresh(shop, stale_token=ACCESS_TOKEN).access_token)
            except Exception as exc:  # pragma: no cover - shown on failure
                errors.append(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert results == [NEW_ACCESS, NEW_ACCESS]
    assert len([c for c in rsps.calls if c.request.url == TOKEN_URL]) == 1


@pytest.mark.skipif(not __import__("os").environ.get("TEST_DATABASE_URL"),
                    reason="needs PostgreSQL (TEST_DATABASE_URL): the row lock is what serialises processes")
def test_refreshes_from_two_processes_are_serialised_by_the_row_lock(app, shopify_shop, rsps, monkeypatch):
    """Without the per-process lock (as in two worker processes), SELECT ... FOR UPDATE on the shop
    row alone makes the second refresh wait and then use the first one's tokens."""
    monkeypatch.setattr(tokens, "_lock_for", lambda domain: threading.Lock())
    in_exchange = threading.Event()
    release = threading.Event()

    def slow_answer(request):
        in_exchange.set()
        release.wait(10)
        return 200, {}, json.dumps(token_answer())

    rsps.add_callback(responses.POST, TOKEN_URL, callback=slow_answer, content_type="application/json")
    results, errors = [], []
    shop_id = shopify_shop.id

    def worker():
        from connector.returns.models import Shop
        with app.app_context():
            try:
                results.append(tokens.refresh(db.session.get(Shop, shop_id), stale_token=ACCESS_TOKEN).access_token)
            except Exception as exc:  # pragma: no cover - shown on failure
                errors.append(exc)
            finally:
                db.session.remove()

    first = threading.Thread(target=worker)
    first.start()
    assert in_exchange.wait(10)
    second = threading.Thread(target=worker)
    second.start()
    second.join(1.0)
    assert second.is_alive()  # waiting on the row lock
    release.set()
    first.join(30)
    second.join(30)
    assert not errors and results == [NEW_ACCESS, NEW_ACCESS]
    assert len([c for c in rsps.calls if c.request.url == TOKEN_URL]) == 1


def test_a_refresh_answer_lost_on_the_way_is_asked_again(shopify_shop, rsps):
    rsps.add(responses.POST, TOKEN_URL, body=requests.ConnectionError("reset"))
    rsps.add(responses.POST, TOKEN_URL, json=token_answer())
    creds = tokens.refresh(shopify_shop, stale_token=ACCESS_TOKEN, sleep=lambda s: None)
    assert creds.refresh_token == NEW_REFRESH


def test_a_non_expiring_token_refused_is_reconnect_required(shopify_shop, shopify, rsps):
    credentials.save(shopify_shop, ShopifyCredentials(access_token=ACCESS_TOKEN, scope="read_orders"))
    db.session.commit()
    shopify.on("OrdersCatchUp", INVALID_TOKEN)
    with pytest.raises(ReconnectRequired):
        ShopifyClient.for_shop(shopify_shop).execute("OrdersCatchUp", CATCH_UP_VARS)
    assert not [c for c in rsps.calls if c.request.url == TOKEN_URL]


def test_no_token_or_inactive_shop_is_reconnect_required(shopify_shop):
    shopify_shop.active = False
    db.session.commit()
    with pytest.raises(ReconnectRequired):
        ShopifyClient.for_shop(shopify_shop)
    shopify_shop.active = True
    credentials.save(shopify_shop, None)
    db.session.commit()
    with pytest.raises(ReconnectRequired):
        ShopifyClient.for_shop(shopify_shop)


def test_tokens_never_reach_the_log(client, shopify, rsps, caplog):
    caplog.set_level(logging.DEBUG)
    rsps.add(responses.POST, TOKEN_URL, json=token_answer())
    shopify.on("OrdersCatchUp", [INVALID_TOKEN, (503, {}), ok(EMPTY_PAGE)])
    client.execute("OrdersCatchUp", CATCH_UP_VARS)
    logged = caplog.text + repr(client)
    for secret in (ACCESS_TOKEN, REFRESH_TOKEN, NEW_ACCESS, NEW_REFRESH, "test-api-secret"):
        assert secret not in logged
