"""The Shopify test fixtures themselves: tokens sealed at rest, GIDs on orders."""
from connector.platforms.shopify import credentials


def test_shop_tokens_are_sealed(shopify_shop):
    assert b"shpat_" not in (shopify_shop.credentials or b"")
    creds = credentials.load(shopify_shop)
    assert creds.access_token.startswith("shpat_") and not creds.expires_soon()
    assert "shpat_" not in repr(creds)


def test_orders_carry_gids(shopify_shop):
    from connector.returns.models import Order
    from connector import db
    order = db.session.query(Order).filter_by(shop_id=shopify_shop.id, number="1001").one()
    assert order.platform_id == "gid://shopify/Order/5000001001"
    assert order.lines[0].platform_id == "gid://shopify/LineItem/50000010011"
