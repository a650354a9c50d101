"""The store's WooCommerce secrets, sealed with the app's ENCRYPTION_KEY in `Shop.credentials`.

    consumer_key, consumer_secret   the REST API keys delivered by wc-auth (read_write)
    key_id                          WooCommerce's id of that key (shown in its admin)
    webhook_secret                  the secret our webhooks are created with (per store)
    plugin_secret                   shared with the WordPress plugin for signing (see signing.py)
Nothing here is logged; the repr hides every secret.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from flask import current_app


@dataclass(frozen=True)
class WooCredentials:
    consumer_key: str
    consumer_secret: str
    key_id: int | None = None
    webhook_secret: str | None = None
    plugin_secret: str | None = None

    def with_(self, **changes: Any) -> "WooCredentials":
        return replace(self, **changes)

    def __repr__(self) -> str:
        return f"WooCredentials(key_id={self.key_id!r}, consumer_key='…{self.consumer_key[-4:]}')"


def _box():
    return current_app.extensions["connector.secrets"]


def load(shop) -> WooCredentials | None:
    data = _box().open(shop.credentials).get("woocommerce")
    return WooCredentials(**data) if data else None


def save(shop, creds: WooCredentials | None) -> None:
    """Seal `creds` into the shop row (None removes them). The caller commits."""
    data = _box().open(shop.credentials)
    if creds is None:
        data.pop("woocommerce", None)
    else:
        data["woocommerce"] = asdict(creds)
    shop.credentials = _box().seal(data) if data else None
