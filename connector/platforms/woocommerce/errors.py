"""WooCommerce failures, each a PlatformError whose message a merchant can act on."""
from __future__ import annotations

from connector.returns.ports import PlatformError


class WooError(PlatformError):
    """A WooCommerce call failed; `retryable` says whether trying again later may help.
    `status` and `code` are WooCommerce's answer when there was one."""

    def __init__(self, message: str, *, retryable: bool = False, status: int | None = None, code: str | None = None):
        super().__init__(message, retryable=retryable)
        self.status = status
        self.code = code


class ReconnectRequired(WooError):
    """The store refused the app's keys (revoked, deleted, permissions lowered): reconnect."""

    def __init__(self, store_url: str, detail: str = ""):
        message = (f"WooCommerce at {store_url} refused the connector's API keys. Connect the store again "
                   "from the plugin's settings page (WooCommerce > Returns Connector).")
        super().__init__(f"{message} ({detail})" if detail else message, retryable=False, status=401)
        self.detail = detail
