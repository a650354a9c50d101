"""Connecting a store: the wc-auth redirect, the key callback (sealed keys, exactly 200 and an
empty body, tampered user_id refused), the webhooks set up with the secret, and their repair."""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from sqlalchemy import select

from connector import db
from connector.platforms.woocommerce import connect, credentials
from connector.returns.models import ReturnReason, Shop

FIX = Path(__file__).parents[1] / "fixtures" / "woocommerce"
CALLBACK = json.loads((FIX / "deliveries" / "wc_auth_callback.json").read_text())
WEBHOOKS = json.loads((FIX / "fixtures" / "webhooks_create.json").read_text())
ORDER = json.loads((FIX / "fixtures" / "order_created_v3.json").read_text())
NEW_STORE = "https://shop.example.org"
NEW_API = f"{NEW_STORE}/wp-json/wc/v3"
HOOK_URL = "https://returns.example.com/woocommerce/webhooks/{handle}"


def _authorize(client, store=NEW_STORE, **extra):
    resp = client.get("/woocommerce/connect", query_string={"store_url": store, **extra})
    return resp


def _webhook(id_, topic, handle, status="active"):
    hook = copy.deepcopy(WEBHOOKS["webhook_create_order_updated"]["json"])
    resource, event = topic.split(".")
    hook.update(id=id_, topic=topic, resource=resource, event=event, status=status,
                name=f"Returns Connector {topic}", delivery_url=HOOK_URL.format(handle=handle))
    return hook


def _serve_setup(rsps, api, handle, existing=()):
    """WooCommerce's answers to the keys check, the webhooks list and creation, and the backfill."""
    rsps.get(f"{api}/orders", json=[ORDER], headers={"X-WP-Total": "1", "X-WP-TotalPages": "1"})
    rsps.get(f"{api}/webhooks", json=list(existing), headers={"X-WP-Total": str(len(existing)), "X-WP-TotalPages": "1"})
    counter = iter(range(10, 100))

    def create(request):
        body = json.loads(request.body)
        return 201, {}, json.dumps(_webhook(next(counter), body["topic"], handle))
    rsps.add_callback(responses.POST, f"{api}/webhooks", callback=create)
    rsps.add_callback(responses.PUT, re.compile(rf"{api}/webhooks/\d+"),
                      callback=lambda r: (200, {}, json.dumps(_webhook(int(r.url.rsplit("/", 1)[1]),
                                                                         "order.updated", handle))))


def test_connect_redirects_to_wc_auth_with_a_pending_shop(client, app):
    resp = _authorize(client, f"{NEW_STORE}/", return_url=f"{NEW_STORE}/wp-admin/admin.php?page=rc")
    assert resp.status_code == 302
    target = urlsplit(resp.headers["Location"])
    assert f"{target.scheme}://{target.netloc}{target.path}" == f"{NEW_STORE}/wc-auth/v1/authorize"
    query = {k: v[0] for k, v in parse_qs(target.query).items()}
    assert query["app_name"] == "Returns Connector" and query["scope"] == "read_write"
    assert query["callback_url"] == "https://returns.example.com/woocommerce/auth/callback"
    assert query["return_url"] == f"{NEW_STORE}/wp-admin/admin.php?page=rc"
    shop = db.session.scalar(select(Shop).where(Shop.domain == "shop.example.org"))
    assert shop.platform == "woocommerce" and shop.handle == "shop-example-org" and not shop.active
    assert shop.platform_data["store_url"] == NEW_STORE
    assert connect.shop_for_user_id(query["user_id"]).id == shop.id
    assert db.session.query(ReturnReason).filter_by(shop_id=shop.id).count() == 7


@pytest.mark.parametrize("store,return_url", [("http://shop.example.org", None), ("", None),
                                              (NEW_STORE, "https://evil.example.net/x")])
def test_connect_refuses_bad_addresses(client, app, store, return_url):
    extra = {"return_url": return_url} if return_url else {}
    assert _authorize(client, store, **extra).status_code == 400


def test_localhost_over_http_is_allowed_in_development(client, app):
    assert _authorize(client, "http://localhost:8080").status_code == 302


def test_a_second_store_on_another_path_gets_its_own_handle(client, app):
    _authorize(client)
    _authorize(client, f"{NEW_STORE}/shop2")
    handles = sorted(db.session.scalars(select(Shop.handle).where(Shop.domain == "shop.example.org")))
    assert handles == ["shop-example-org", "shop-example-org-2"]


def _user_id(client):
    resp = _authorize(client)
    return parse_qs(urlsplit(resp.headers["Location"]).query)["user_id"][0]


def _deliver(client, user_id, **changes):
    body = dict(json.loads(CALLBACK["body"]), user_id=user_id, **changes)
    return client.post("/woocommerce/auth/callback", data=json.dumps(body, separators=(",", ":")),
                       headers={"Content-Type": CALLBACK["headers"]["Content-Type"],
                                "User-Agent": CALLBACK["headers"]["User-Agent"]})


def test_callback_stores_keys_sealed_answers_200_empty_then_sets_up(client, app, rsps):
    user_id = _user_id(client)
    _serve_setup(rsps, NEW_API, "shop-example-org")
    resp = _deliver(client, user_id)
    resp.close()
    assert resp.status_code == 200 and resp.data == b""
    shop = db.session.scalar(select(Shop).where(Shop.domain == "shop.example.org"))
    db.session.refresh(shop)
    assert b"ck_d48f835b" not in shop.credentials  # sealed
    creds = credentials.load(shop)
    assert creds.consumer_key == "ck_d48f835b6307eff23a03467f7926d4421fa1b7a7" and creds.key_id == 2
    assert creds.webhook_secret and creds.plugin_secret
    # after the answer: keys checked, webhooks created with the secret, backfill run
    created = [json.loads(c.request.body) for c in rsps.calls
               if c.request.method == "POST" and "/wc/v3/webhooks" in c.request.url]
    assert sorted(h["topic"] for h in created) == sorted(connect.TOPICS)
    assert all(h["secret"] == creds.webhook_secret for h in created)
    assert {h["delivery_url"] for h in created} == {HOOK_URL.format(handle="shop-example-org")}
    assert shop.active and shop.platform_data["connection"] == "connected"
    assert shop.platform_data["backfill"]["status"] == "done" and shop.platform_data["backfill"]["imported"] == 1
    assert "connect_nonce" not in shop.platform_data


def test_the_same_user_id_works_once(client, app, rsps):
    user_id = _user_id(client)
    _serve_setup(rsps, NEW_API, "shop-example-org")
    _deliver(client, user_id).close()
    assert _deliver(client, user_id, consumer_key="ck_" + "0" * 40).status_code == 400


@pytest.mark.parametrize("tamper", ["flip", "store-42", ""])
def test_tampered_user_id_is_refused_and_nothing_stored(client, app, tamper):
    user_id = _user_id(client)
    bad = {"flip": user_id[:-2] + ("A" if user_id[-2] != "A" else "B") + user_id[-1], "store-42": "store-42",
           "": ""}[tamper]
    resp = _deliver(client, bad)
    assert resp.status_code == 400
    shop = db.session.scalar(select(Shop).where(Shop.domain == "shop.example.org"))
    db.session.refresh(shop)
    assert shop.credentials is None and not shop.active


def test_expired_user_id_is_refused(client, app, monkeypatch):
    user_id = _user_id(client)
    monkeypatch.setattr(connect, "TOKEN_MAX_AGE", -1)
    assert _deliver(client, user_id).status_code == 400


def test_read_only_keys_are_refused(client, app):
    assert _deliver(client, _user_id(client), key_permissions="read").status_code == 400


def test_reconnect_keeps_the_webhook_and_plugin_secrets(woo_shop, app):
    before = credentials.load(woo_shop)
    connect.store_keys(woo_shop, "ck_" + "1" * 40, "cs_" + "2" * 40, key_id=5)
    after = credentials.load(woo_shop)
    assert after.consumer_key == "ck_" + "1" * 40
    assert (after.webhook_secret, after.plugin_secret) == (before.webhook_secret, before.plugin_secret)


def test_setup_recreates_a_deleted_and_enables_a_disabled_webhook(woo_shop, app, rsps, monkeypatch):
    from tests.woocommerce.conftest import API
    alerts = []
    from connector.returns import context
    real = context.runtime.enqueue
    monkeypatch.setattr(context.runtime, "enqueue",
                        lambda name, **kw: alerts.append(kw) if name == "alert_merchant" else real(name, **kw))
    existing = [_webhook(1, "order.created", "alpine-store"), _webhook(2, "order.updated", "alpine-store", "disabled"),
                _webhook(3, "order.restored", "alpine-store"),
                _webhook(9, "order.deleted", "someone-else")]  # another app's: not ours
    existing[3]["delivery_url"] = "https://other.example.com/hook"
    _serve_setup(rsps, API, "alpine-store", existing)
    done = connect.setup(woo_shop)
    assert done == {"order.updated": "enabled", "order.deleted": "created"}
    put = next(c for c in rsps.calls if c.request.method == "PUT")
    assert put.request.url.endswith("/webhooks/2")
    assert json.loads(put.request.body) == {"status": "active", "secret": "test-secret"}
    post = json.loads(next(c for c in rsps.calls if c.request.method == "POST").request.body)
    assert post["topic"] == "order.deleted" and post["secret"] == "test-secret"
    assert set(woo_shop.platform_data["webhooks"]) == set(connect.TOPICS)
    assert len(alerts) == 1 and "order.deleted" in alerts[0]["text"] and "order.updated" in alerts[0]["text"]


def test_setup_with_everything_in_place_does_nothing(woo_shop, app, rsps):
    from tests.woocommerce.conftest import API
    existing = [_webhook(i, t, "alpine-store") for i, t in enumerate(connect.TOPICS, 1)]
    _serve_setup(rsps, API, "alpine-store", existing)
    assert connect.setup(woo_shop) == {}
    assert [c.request.method for c in rsps.calls] == ["GET"]


def test_cli_connect_creates_the_shop_and_imports(app, rsps):
    from connector.cli import main

    _serve_setup(rsps, NEW_API, "shop-example-org")
    shop = connect.connect_with_keys(NEW_STORE, "ck_" + "a" * 40, "cs_" + "b" * 40, handle="my-store")
    assert shop.handle == "my-store" and shop.active and shop.currency == "EUR"
    assert shop.platform_data["backfill"]["imported"] == 1
    assert "connect" in main.commands["woocommerce"].commands  # a thin wrapper over connect_with_keys


def test_the_plugin_gets_its_secret_through_its_own_rest_route(woo_shop, rsps):
    import json as _json

    import responses as _responses

    from connector.platforms.woocommerce import connect, credentials

    route = "https://store.example.com/wp-json/returns-connector/v1/secret"
    rsps.add(_responses.POST, route, json={"ok": True, "shop": "alpine-store",
                                          "portal_url": "https://returns.example.com/portal/alpine-store/"})
    assert connect.push_plugin_secret(woo_shop) is True
    sent = _json.loads(rsps.calls[-1].request.body)
    assert sent == {"shop": "alpine-store", "plugin_secret": credentials.load(woo_shop).plugin_secret,
                    "portal_url": "https://returns.example.com/portal/alpine-store/"}
    assert rsps.calls[-1].request.headers["Authorization"].startswith("Basic ")  # the store's own keys
    assert woo_shop.platform_data["plugin"] == "connected"


def test_a_store_without_the_plugin_is_connected_all_the_same(woo_shop, rsps):
    import responses as _responses

    from connector.platforms.woocommerce import connect

    rsps.add(_responses.POST, "https://store.example.com/wp-json/returns-connector/v1/secret", status=404,
             json={"code": "rest_no_route", "message": "No route was found matching the URL and request method.",
                   "data": {"status": 404}})
    assert connect.push_plugin_secret(woo_shop) is False
    assert woo_shop.platform_data["plugin"] == "missing"
    assert "No route was found" in woo_shop.platform_data["plugin_error"]


def test_the_connector_has_a_page_to_enter_the_store_address(client):
    page = client.get("/woocommerce/connect")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and 'name="store_url"' in html and "Connect your WooCommerce store" in html
    bad = client.get("/woocommerce/connect", query_string={"store_url": "ftp://nope"})
    assert bad.status_code == 400 and 'aria-invalid="true"' in bad.get_data(as_text=True)
    done = client.get("/woocommerce/connected", query_string={"success": "1"})
    assert done.status_code == 200 and "Store connected" in done.get_data(as_text=True)
    refused = client.get("/woocommerce/connected", query_string={"success": "0"})
    assert "not approved" in refused.get_data(as_text=True)
