"""Which platform adapter serves a shop: one entry per platform key."""
from __future__ import annotations

from connector.returns.models import Shop
from connector.returns.ports import PlatformAdapter


def adapter_for(shop: Shop) -> PlatformAdapter:
    """The adapter bound to `shop`; a platform that is not built yet says so."""
    if shop.platform == "standalone":
        from connector.platforms.standalone.adapter import StandaloneAdapter
        return StandaloneAdapter(shop)
    if shop.platform == "shopify":
        from connector.platforms.shopify.adapter import ShopifyAdapter
        return ShopifyAdapter(shop)
    raise NotImplementedError(
        f"the {shop.platform!r} platform connector is not built yet (shop {shop.handle!r}); "
        "only standalone and Shopify shops are supported in this version")
