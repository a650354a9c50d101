"""Install: token exchange, the authorization-code fallback, and the shop row they make.

Shopify is played by `responses`: the token endpoint answers as the token exchange / authorization
code grant docs show, the Admin GraphQL endpoint by ShopifyStub (ShopInfo validated against the
2026-04 schema).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import time
import tomllib
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
import responses
from sqlalchemy import func, select

from connector import db
from connector.platforms.shopify import auth, credentials
from connector.platforms.shopify.credentials import ShopifyCredentials
from connector.platforms.shopify.errors import ShopifyError
from connector.platforms.shopify.verify import oauth_message
from connector.returns.models import ReturnReason, Shop
from tests.shopify.conftest import API_KEY, API_SECRET, SHOP_DOMAIN
from tests.shopify.session_token import session_token

TOKEN_URL = f"https://{SHOP_DOMAIN}/admin/oauth/access_token"
BASE = "https://returns.example.com"
COST = {"requestedQueryCost": 4, "actualQueryCost": 4,
        "throttleStatus": {"maximumAvailable": 2000.0, "currentlyAvailable": 1996, "restoreRate": 100.0}}
SCOPES = "write_orders,read_all_orders,write_returns,read_customers,read_locations,read_fulfillments"


def token_answer(access: str = "shpat_exchanged_1", refresh: str = "shprt_exchanged_1") -> dict:
    """Shopify's answer for an expiring offline token (token exchange / code / refresh)."""
    return {"access_token": access, "expires_in": 3599, "refresh_token": refresh,
            "refresh_token_expires_in": 7776000, "scope": SCOPES}


def shop_info(name: str = "Demo Outdoor GmbH", locations: list | None = None) -> dict:
    return {"data": {
        "shop": {"id": "gid://shopify/Shop/548380009", "name": name, "myshopifyDomain": SHOP_DOMAIN,
                 "email": "owner@demo-outdoor.example", "contactEmail": "service@demo-outdoor.example",
                 "currencyCode": "EUR", "ianaTimezone": "Europe/Berlin", "shopAddress": {"countryCodeV2": "DE"}},
        "shopLocales": [{"locale": "en", "primary": False}, {"locale": "de", "primary": True}],
        "locations": {"nodes": locations if locations is not None else [
            {"id": "gid://shopify/Location/7000", "name": "Pop-up (no stock)", "isActive": True,
             "shipsInventory": False, "fulfillsOnlineOrders": False},
            {"id": "gid://shopify/Location/7001", "name": "Warehouse Berlin", "isActive": True,
             "shipsInventory": True, "fulfillsOnlineOrders": True}]},
    }, "extensions": {"cost": COST}}


@pytest.fixture
def jobs(monkeypatch):
    """The jobs install queues (the backfill runs elsewhere): recorded, not run."""
    from connector.returns.context import runtime
    queued: list[tuple[str, dict]] = []
    monkeypatch.setattr(runtime, "enqueue", lambda name, **kw: queued.append((name, kw)))
    return queued


@pytest.fixture
def token_endpoint(rsps):
    """The shop's token endpoint: answers in turn (the last repeats); requests are recorded."""
    state = {"answers": [(200, token_answer())], "bodies": []}

    def answer(request):
        state["bodies"].append(json.loads(request.body))
        assert request.headers["Content-Type"] == "application/json"
        queue = state["answers"]
        item = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(item, Exception):
            raise item
        status, body = item
        return status, {}, json.dumps(body)

    rsps.add_callback(responses.POST, TOKEN_URL, callback=answer, content_type="application/json")
    return state


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch):
    monkeypatch.setattr(auth, "_sleep", lambda seconds: None)


# ============================================================================ token exchange

def test_token_exchange_sends_the_documented_request(app, token_endpoint):
    token = session_token()
    before = datetime.now(timezone.utc)
    creds = auth.exchange_token(SHOP_DOMAIN, token)
    assert token_endpoint["bodies"] == [{
        "client_id": API_KEY,
        "client_secret": API_SECRET,
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "subject_token": token,
        "subject_token_type": "urn:ietf:params:oauth:token-type:id_token",
        "requested_token_type": "urn:shopify:params:oauth:token-type:offline-access-token",
        "expiring": "1",
    }]
    assert creds.access_token == "shpat_exchanged_1" and creds.refresh_token == "shprt_exchanged_1"
    assert before + timedelta(seconds=3590) < creds.expires_at < before + timedelta(seconds=3610)
    assert creds.refresh_token_expires_at > before + timedelta(days=89)
    assert creds.scopes() == set(SCOPES.split(","))


def test_token_exchange_refusal_keeps_shopifys_words(app, token_endpoint):
    token_endpoint["answers"] = [(400, {"error": "invalid_subject_token",
                                        "error_description": "The session token has expired"})]
    with pytest.raises(auth.TokenRequestRefused, match="The session token has expired") as caught:
        auth.exchange_token(SHOP_DOMAIN, session_token())
    assert caught.value.status == 400 and not caught.value.retryable
    assert len(token_endpoint["bodies"]) == 1  # a refusal is not repeated


def test_token_exchange_retries_5xx_and_lost_connections(app, token_endpoint):
    token_endpoint["answers"] = [(503, {}), requests.ConnectionError("reset"), (200, token_answer("shpat_third"))]
    assert auth.exchange_token(SHOP_DOMAIN, session_token()).access_token == "shpat_third"
    assert len(token_endpoint["bodies"]) == 3
    token_endpoint["answers"] = [(502, {})]
    token_endpoint["bodies"].clear()
    with pytest.raises(ShopifyError) as caught:
        auth.exchange_token(SHOP_DOMAIN, session_token())
    assert caught.value.retryable and len(token_endpoint["bodies"]) == auth.ATTEMPTS


def test_token_requests_go_to_myshopify_domains_only(app, token_endpoint):
    for domain in ("evil.com", "demo-shop.myshopify.com.evil.com", "demo-shop.myshopify.com:8443"):
        with pytest.raises(ValueError):
            auth.exchange_token(domain, session_token())
        with pytest.raises(ValueError):
            auth.exchange_code(domain, "code")
    assert token_endpoint["bodies"] == []


def test_a_read_timeout_does_not_resend_a_single_use_code(app, token_endpoint):
    token_endpoint["answers"] = [requests.ReadTimeout("slow"), (200, token_answer())]
    with pytest.raises(ShopifyError) as caught:
        auth.exchange_code(SHOP_DOMAIN, "0907a61c0c8d55e99db179b68161bc00")
    assert caught.value.retryable and len(token_endpoint["bodies"]) == 1


def test_scopes_asked_for_are_the_app_configurations():
    toml = Path(__file__).parents[2] / "embedded_ui" / "shopify" / "shopify.app.toml"
    if not toml.exists():
        pytest.skip("embedded_ui/shopify/shopify.app.toml is not there")
    scopes = tomllib.loads(toml.read_text())["access_scopes"]["scopes"]
    assert set(scopes.split(",")) == set(auth.ACCESS_SCOPES)


# ============================================================================ install

def _install(shopify, creds: ShopifyCredentials | None = None, info: dict | None = None) -> Shop:
    shopify.on("ShopInfo", info or shop_info())
    return auth.install(SHOP_DOMAIN, creds or ShopifyCredentials.from_token_response(token_answer()))


def test_install_creates_the_shop_once_with_sealed_tokens(app, shopify, jobs):
    shop = _install(shopify)
    assert (shop.platform, shop.domain, shop.handle, shop.active) == ("shopify", SHOP_DOMAIN, "demo-shop", True)
    assert (shop.name, shop.currency, shop.timezone, shop.locale, shop.country) == (
        "Demo Outdoor GmbH", "EUR", "Europe/Berlin", "de", "DE")
    assert shop.support_email == "service@demo-outdoor.example"
    assert shop.platform_data["location_id"] == "gid://shopify/Location/7001"  # active and ships inventory
    assert shop.platform_data["installed_at"] and not shop.platform_data.get("install_pending")
    assert b"shpat_" not in shop.credentials and b"shprt_" not in shop.credentials
    stored = credentials.load(shop)
    assert (stored.access_token, stored.refresh_token) == ("shpat_exchanged_1", "shprt_exchanged_1")
    assert shopify.requests("ShopInfo")[0].headers["X-Shopify-Access-Token"] == "shpat_exchanged_1"
    reasons = db.session.scalars(select(ReturnReason.code).where(ReturnReason.shop_id == shop.id)).all()
    assert {"size", "too_small", "changed_mind", "damaged", "other"} <= set(reasons)
    assert jobs == [("shopify_backfill", {"shop_id": shop.id})]
    assert auth.is_installed(shop)


def test_second_install_updates_the_same_shop_with_the_rotated_tokens(app, shopify, jobs):
    first = _install(shopify)
    rotated = ShopifyCredentials.from_token_response(token_answer("shpat_second", "shprt_second"))
    second = _install(shopify, rotated, shop_info(name="Demo Outdoor (renamed)"))
    assert second.id == first.id
    assert db.session.scalar(select(func.count()).select_from(Shop).where(Shop.domain == SHOP_DOMAIN)) == 1
    assert credentials.load(second).access_token == "shpat_second"
    assert credentials.load(second).refresh_token == "shprt_second"
    assert second.name == "Demo Outdoor (renamed)"
    assert db.session.scalar(select(func.count()).select_from(ReturnReason)
                             .where(ReturnReason.shop_id == second.id)) == 7  # not added twice
    assert jobs == [("shopify_backfill", {"shop_id": first.id})]  # one backfill


def test_an_uninstalled_shop_reinstalls_into_its_own_row(app, shopify, jobs):
    shop = _install(shopify)
    shop.policy = {"window_days": 60}
    db.session.commit()
    # What app/uninstalled leaves behind: inactive, tokens revoked.
    credentials.save(shop, None)
    shop.active = False
    shop.platform_data = {**shop.platform_data, "uninstalled_at": datetime.now(timezone.utc).isoformat()}
    db.session.commit()
    assert not auth.is_installed(shop)

    again = _install(shopify, ShopifyCredentials.from_token_response(token_answer("shpat_back", "shprt_back")))
    assert again.id == shop.id and again.active and again.handle == "demo-shop"
    assert "uninstalled_at" not in again.platform_data
    assert again.policy == {"window_days": 60}  # the merchant's settings survive
    assert credentials.load(again).access_token == "shpat_back"
    assert jobs == [("shopify_backfill", {"shop_id": shop.id})] * 2  # orders since are fetched again


def test_the_handle_is_made_unique(app, shop, shopify, jobs):
    """A standalone shop already uses "demo-shop"."""
    installed = _install(shopify)
    assert installed.id != shop.id and installed.handle == "demo-shop-2"


def test_tokens_survive_a_failed_shop_info_and_the_next_load_finishes(app, shopify, jobs):
    shopify.on("ShopInfo", {"errors": [{"message": "Access denied for locations field. Required access: "
                                                   "`read_locations` access scope.",
                                        "extensions": {"code": "ACCESS_DENIED"}}]})
    creds = ShopifyCredentials.from_token_response(token_answer())
    with pytest.raises(ShopifyError):
        auth.install(SHOP_DOMAIN, creds)
    db.session.rollback()
    shop = auth.find_shop(SHOP_DOMAIN)
    assert credentials.load(shop).refresh_token == "shprt_exchanged_1"  # never lost
    assert not auth.is_installed(shop) and jobs == []
    shop = _install(shopify)
    assert auth.is_installed(shop) and jobs == [("shopify_backfill", {"shop_id": shop.id})]


def test_location_falls_back_to_the_first_active_one(app, shopify, jobs):
    shop = _install(shopify, info=shop_info(locations=[
        {"id": "gid://shopify/Location/1", "name": "Old", "isActive": False, "shipsInventory": True,
         "fulfillsOnlineOrders": True},
        {"id": "gid://shopify/Location/2", "name": "Shop", "isActive": True, "shipsInventory": False,
         "fulfillsOnlineOrders": False}]))
    assert shop.platform_data["location_id"] == "gid://shopify/Location/2"


def test_expired_refresh_token_means_not_installed(app, shopify, jobs):
    shop = _install(shopify)
    now = datetime.now(timezone.utc)
    credentials.save(shop, ShopifyCredentials("shpat_old", SCOPES, now - timedelta(hours=1), "shprt_old",
                                              now - timedelta(minutes=1)))
    db.session.commit()
    assert not auth.has_usable_tokens(shop) and not auth.is_installed(shop)
    credentials.save(shop, ShopifyCredentials("shpat_old", SCOPES, now - timedelta(hours=1), "shprt_ok",
                                              now + timedelta(days=1)))
    assert auth.has_usable_tokens(shop)  # the client refreshes it


# ============================================================================ authorization-code grant

def signed_query(params: dict, secret: str = API_SECRET) -> str:
    mac = hmac.new(secret.encode(), oauth_message(params.items()).encode(), hashlib.sha256).hexdigest()
    return urlencode({**params, "hmac": mac})


def start(client, **extra) -> str:
    """GET /shopify/auth for the demo shop; the `state` Shopify will bring back."""
    resp = client.get(f"/shopify/auth?{urlencode({'shop': SHOP_DOMAIN, **extra})}", base_url=BASE)
    assert resp.status_code == 302, resp.get_data(as_text=True)
    target = urlsplit(resp.headers["Location"])
    assert (target.scheme, target.netloc, target.path) == ("https", SHOP_DOMAIN, "/admin/oauth/authorize")
    query = parse_qs(target.query)
    assert query["client_id"] == [API_KEY]
    assert set(query["scope"][0].split(",")) == set(auth.ACCESS_SCOPES)
    assert query["redirect_uri"] == [f"{BASE}/shopify/auth/callback"]
    assert "grant_options[]" not in query  # offline access
    return query["state"][0]


def callback(client, state: str, *, shop: str = SHOP_DOMAIN, secret: str = API_SECRET, stamp: float | None = None,
             tamper=None):
    params = {"code": "0907a61c0c8d55e99db179b68161bc00", "host": "YWRtaW4uc2hvcGlmeS5jb20vc3RvcmUvZGVtby1zaG9w",
              "shop": shop, "state": state, "timestamp": str(int(stamp or time.time()))}
    query = signed_query(params, secret)
    if tamper:
        query = tamper(query)
    return client.get(f"/shopify/auth/callback?{query}", base_url=BASE)


def test_authorization_code_grant_installs_and_opens_the_app_in_the_admin(client, shopify, token_endpoint, jobs):
    state = start(client)
    shopify.on("ShopInfo", shop_info())
    resp = callback(client, state)
    assert resp.status_code == 302
    assert resp.headers["Location"] == f"https://admin.shopify.com/store/demo-shop/apps/{API_KEY}"
    assert token_endpoint["bodies"] == [{"client_id": API_KEY, "client_secret": API_SECRET,
                                         "code": "0907a61c0c8d55e99db179b68161bc00", "expiring": "1"}]
    shop = auth.find_shop(SHOP_DOMAIN)
    assert auth.is_installed(shop) and credentials.load(shop).access_token == "shpat_exchanged_1"
    # The state is used up: the same callback again is refused.
    assert callback(client, state).status_code == 403


def test_install_request_from_shopify_is_verified(client, token_endpoint):
    good = signed_query({"shop": SHOP_DOMAIN, "timestamp": str(int(time.time()))})
    assert client.get(f"/shopify/auth?{good}", base_url=BASE).status_code == 302
    bad = good.replace("hmac=", "hmac=0")
    assert client.get(f"/shopify/auth?{bad}", base_url=BASE).status_code == 400
    stale = signed_query({"shop": SHOP_DOMAIN, "timestamp": str(int(time.time()) - 3600)})
    assert client.get(f"/shopify/auth?{stale}", base_url=BASE).status_code == 400
    for shop in ("evil.com", "evil.com?x.myshopify.com", "demo-shop.myshopify.com.evil.com", ""):
        resp = client.get(f"/shopify/auth?{urlencode({'shop': shop})}", base_url=BASE)
        assert resp.status_code == 400 and "Location" not in resp.headers


@pytest.mark.parametrize("case", ["bad hmac", "one byte of a parameter", "wrong secret", "wrong state",
                                  "no state cookie", "foreign shop", "other shop than started",
                                  "stale timestamp", "future timestamp"])
def test_callback_refusals(client, app, shopify, token_endpoint, jobs, case):
    state = start(client)
    kwargs: dict = {}
    if case == "bad hmac":
        kwargs["tamper"] = lambda q: q.replace("hmac=", "hmac=f")
    elif case == "one byte of a parameter":
        kwargs["tamper"] = lambda q: q.replace("code=0907", "code=0908")
    elif case == "wrong secret":
        kwargs["secret"] = "not-the-app-secret"
    elif case == "wrong state":
        state = state[:-1] + ("A" if state[-1] != "A" else "B")
    elif case == "no state cookie":
        client = app.test_client()  # another browser: it never started this install
    elif case == "foreign shop":
        kwargs["shop"] = "evil.com"
    elif case == "other shop than started":
        kwargs["shop"] = "other-shop.myshopify.com"
    elif case == "stale timestamp":
        kwargs["stamp"] = time.time() - 3600
    elif case == "future timestamp":
        kwargs["stamp"] = time.time() + 600
    resp = callback(client, state, **kwargs)
    assert resp.status_code in (400, 403)
    assert token_endpoint["bodies"] == []  # no code was exchanged
    assert auth.find_shop(SHOP_DOMAIN) is None and jobs == []
