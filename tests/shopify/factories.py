"""Test data for the Shopify connector, built through the real models."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from connector import db
from connector.platforms.shopify import credentials
from connector.platforms.shopify.credentials import ShopifyCredentials
from tests.factories import make_shop

SHOP_DOMAIN = "demo-shop.myshopify.com"
ACCESS_TOKEN = "shpat_test_access_token"
REFRESH_TOKEN = "shprt_test_refresh_token"
SCOPES = "read_orders,write_orders,read_all_orders,write_returns,read_customers,read_locations"


def order_gid(number: str) -> str:
    return f"gid://shopify/Order/{5000000000 + int(number)}"


def line_gid(number: str, position: int) -> str:
    return f"gid://shopify/LineItem/{(5000000000 + int(number)) * 10 + position}"


def make_shopify_shop(handle: str = "demo-shop", domain: str = SHOP_DOMAIN, with_orders: bool = True):
    """The demo shop (tests/factories.py) installed from Shopify: orders and lines carry GIDs
    (Order 1001 is gid://shopify/Order/5000001001, its first line ...LineItem/50000010011)."""
    shop = make_shop(handle=handle, with_orders=with_orders)
    shop.platform = "shopify"
    shop.domain = domain
    shop.platform_data = {"installed_at": datetime.now(timezone.utc).isoformat(),
                          "location_id": "gid://shopify/Location/7001"}
    credentials.save(shop, ShopifyCredentials(
        access_token=ACCESS_TOKEN, scope=SCOPES,
        expires_at=datetime.now(timezone.utc) + timedelta(hours=1), refresh_token=REFRESH_TOKEN,
        refresh_token_expires_at=datetime.now(timezone.utc) + timedelta(days=90)))
    from connector.returns.models import Order
    for order in db.session.query(Order).filter_by(shop_id=shop.id):
        order.platform_id = order_gid(order.number)
        for position, line in enumerate(order.lines, start=1):
            line.platform_id = line_gid(order.number, position)
    db.session.commit()
    return shop
