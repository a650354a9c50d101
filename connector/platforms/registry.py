"""Which platform adapter serves a shop: one entry per platform key."""
from __future__ import annotations

from connector.returns.models import Shop
from connector.returns.ports import PlatformAdapter


def adapter_for(shop: Shop) -> PlatformAdapter:
    """The adapter bound to `shop`; an unknown platform says so."""
    if shop.platform == "standalone":
        from connector.platforms.standalone.adapter import StandaloneAdapter
        return StandaloneAdapter(shop)
    if shop.platform == "shopify":
        from connector.platforms.shopify.adapter import ShopifyAdapter
        return ShopifyAdapter(shop)
    if shop.platform == "woocommerce":
        from connector.platforms.woocommerce.adapter import WooCommerceAdapter
        return WooCommerceAdapter(shop)
    raise NotImplementedError(
        f"the {shop.platform!r} platform connector is not built yet (shop {shop.handle!r}); "
        "the platforms are standalone, shopify and woocommerce")
