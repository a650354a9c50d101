"""Fixtures for the Shopify connector: app credentials, a Shopify shop, a stubbed Admin API."""
from __future__ import annotations

import pytest
import responses

from connector.config import Config

API_KEY = "test-api-key"
API_SECRET = "test-api-secret"
SHOP_DOMAIN = "demo-shop.myshopify.com"


@pytest.fixture
def config(data_dir, database_url) -> Config:
    return Config.from_env({}, data_dir=data_dir, database_url=database_url, jobs_immediate=True,
                           base_url="https://returns.example.com", shopify_api_key=API_KEY,
                           shopify_api_secret=API_SECRET)


@pytest.fixture
def shopify_shop(app):
    """The seeded demo shop as an installed Shopify shop: GID platform ids, an expiring offline token."""
    from tests.shopify.factories import make_shopify_shop
    return make_shopify_shop()


@pytest.fixture
def rsps():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def shopify(rsps):
    """The shop's Admin GraphQL endpoint (tests/shopify/stub.py)."""
    from tests.shopify.stub import ShopifyStub
    return ShopifyStub(rsps, SHOP_DOMAIN)
