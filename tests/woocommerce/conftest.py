"""Fixtures for the WooCommerce connector: a connected store and its REST API served by `responses`."""
from __future__ import annotations

import pytest
import responses

STORE_URL = "https://store.example.com"
API = f"{STORE_URL}/wp-json/wc/v3"


@pytest.fixture
def config(data_dir, database_url):
    from connector.config import Config
    return Config.from_env({}, data_dir=data_dir, database_url=database_url, jobs_immediate=True,
                           base_url="https://returns.example.com")


@pytest.fixture
def woo_shop(app):
    """The demo shop connected to a WooCommerce store (tests/woocommerce/factories.py)."""
    from tests.woocommerce.factories import make_woo_shop
    return make_woo_shop()


@pytest.fixture
def rsps():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock
