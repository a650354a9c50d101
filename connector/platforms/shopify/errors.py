"""Shopify failures, each a PlatformError whose message a merchant can act on."""
from __future__ import annotations

from connector.returns.ports import PlatformError


class ShopifyError(PlatformError):
    """A Shopify call failed; `retryable` says whether trying again later may help."""


class ReconnectRequired(ShopifyError):
    """The shop's token is gone or refused (uninstalled, revoked, refresh token expired):
    the merchant must open the app in their Shopify admin again to reconnect it."""

    def __init__(self, shop_domain: str, detail: str = ""):
        message = (f"Shopify refused the app's access to {shop_domain}. Open Returns Connector from your "
                   "Shopify admin (Apps) to reconnect it.")
        super().__init__(f"{message} ({detail})" if detail else message, retryable=False)
        self.shop_domain = shop_domain


class ScopeMissing(ShopifyError):
    """The app lacks an access scope the call needs (ACCESS_DENIED): the merchant must approve the
    app's updated permissions in their Shopify admin."""

    def __init__(self, detail: str, scope: str | None = None):
        needed = f" ({scope})" if scope else ""
        super().__init__(f"The app is missing a Shopify permission{needed}: open Returns Connector from your "
                         f"Shopify admin and approve the requested access. Shopify said: {detail}",
                         retryable=False)
        self.scope = scope


class UserErrors(ShopifyError):
    """A mutation answered with userErrors: Shopify's own words, shown verbatim to the merchant."""

    def __init__(self, operation: str, errors: list[dict]):
        words = "; ".join(e.get("message", "") for e in errors if e.get("message")) or "unknown error"
        super().__init__(f"Shopify refused {operation}: {words}", retryable=False)
        self.operation = operation
        self.errors = errors
