"""The shop's Shopify tokens, sealed with the app's ENCRYPTION_KEY in `Shop.credentials`.

An expiring offline token lives one hour; its refresh token rotates on every refresh, so each
refresh must be stored before the new access token is used (`save`). Nothing here is logged.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from flask import current_app

# Refresh this long before the access token expires, so a call never starts with a dying token.
REFRESH_MARGIN = timedelta(minutes=5)


@dataclass(frozen=True)
class ShopifyCredentials:
    access_token: str
    scope: str = ""
    expires_at: datetime | None = None  # None: a non-expiring token (older installs)
    refresh_token: str | None = None
    refresh_token_expires_at: datetime | None = None

    def expires_soon(self, now: datetime | None = None) -> bool:
        if self.expires_at is None:
            return False
        now = now or datetime.now(timezone.utc)
        return now + REFRESH_MARGIN >= self.expires_at

    def scopes(self) -> set[str]:
        return {s.strip() for s in self.scope.split(",") if s.strip()}

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("expires_at", "refresh_token_expires_at"):
            data[key] = data[key].isoformat() if data[key] else None
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ShopifyCredentials":
        def when(value):
            return datetime.fromisoformat(value) if value else None
        return cls(access_token=data["access_token"], scope=data.get("scope", ""),
                   expires_at=when(data.get("expires_at")), refresh_token=data.get("refresh_token"),
                   refresh_token_expires_at=when(data.get("refresh_token_expires_at")))

    @classmethod
    def from_token_response(cls, body: dict[str, Any], now: datetime | None = None) -> "ShopifyCredentials":
        """From Shopify's access-token answer (token exchange, refresh or authorization code)."""
        now = now or datetime.now(timezone.utc)
        expires_in = body.get("expires_in")
        refresh_in = body.get("refresh_token_expires_in")
        return cls(access_token=body["access_token"], scope=body.get("scope", ""),
                   expires_at=now + timedelta(seconds=int(expires_in)) if expires_in else None,
                   refresh_token=body.get("refresh_token"),
                   refresh_token_expires_at=now + timedelta(seconds=int(refresh_in)) if refresh_in else None)

    def __repr__(self) -> str:  # never print a token
        return f"ShopifyCredentials(scope={self.scope!r}, expires_at={self.expires_at!r})"


def _box():
    return current_app.extensions["connector.secrets"]


def load(shop) -> ShopifyCredentials | None:
    """The shop's tokens, or None when it has none (never installed, or uninstalled)."""
    data = _box().open(shop.credentials)
    token = data.get("shopify")
    return ShopifyCredentials.from_json(token) if token else None


def save(shop, creds: ShopifyCredentials | None) -> None:
    """Seal `creds` into the shop row (None revokes). The caller commits."""
    data = _box().open(shop.credentials)
    if creds is None:
        data.pop("shopify", None)
    else:
        data["shopify"] = creds.to_json()
    shop.credentials = _box().seal(data) if data else None
