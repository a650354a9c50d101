"""Test data for the WooCommerce connector, built through the real models."""
from __future__ import annotations

from connector import db
from connector.platforms.woocommerce import credentials
from connector.platforms.woocommerce.credentials import WooCredentials
from tests.factories import make_shop

STORE_URL = "https://store.example.com"
CONSUMER_KEY = "ck_d48f835b6307eff23a03467f7926d4421fa1b7a7"
CONSUMER_SECRET = "cs_68c472d27f1a61d30cdba8d5d93a210ed604d771"
WEBHOOK_SECRET = "test-secret"  # the secret of the recorded deliveries (vectors.json)
PLUGIN_SECRET = "rcps_0f8a2c4e6b1d3f5a7c9e0b2d4f6a8c1e"  # the secret of plugin_vectors.json


def make_woo_shop(handle: str = "alpine-store", with_orders: bool = True):
    """The demo shop (tests/factories.py) as a connected WooCommerce store: keys, webhook and plugin
    secrets sealed; orders keep their numbers as WooCommerce ids (order 1001 has platform_id "1001",
    its lines "1001-1", "1001-2", ...)."""
    shop = make_shop(handle=handle, with_orders=with_orders)
    shop.platform = "woocommerce"
    shop.domain = "store.example.com"
    shop.platform_data = {"store_url": STORE_URL}
    credentials.save(shop, WooCredentials(consumer_key=CONSUMER_KEY, consumer_secret=CONSUMER_SECRET, key_id=2,
                                          webhook_secret=WEBHOOK_SECRET, plugin_secret=PLUGIN_SECRET))
    from connector.returns.models import Order
    for order in db.session.query(Order).filter_by(shop_id=shop.id):
        order.platform_id = order.number
    db.session.commit()
    return shop
