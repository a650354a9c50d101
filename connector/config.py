"""Configuration from the environment, with safe development defaults.

Every setting has a development default except the Shopify credentials. In production
(`CONNECTOR_ENV=production`) the app refuses to start while `SECRET_KEY` or `ENCRYPTION_KEY`
still hold their development values.
"""
from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

DEV_SECRET_KEY = "dev-secret-key-change-me"
DEV_ENCRYPTION_KEY = base64.urlsafe_b64encode(hashlib.sha256(b"dev-encryption-key").digest()).decode()


class ConfigError(RuntimeError):
    """The configuration cannot be used (e.g. a development secret in production)."""


@dataclass
class Config:
    env: str = "development"
    data_dir: Path = Path("var")
    database_url: str = ""
    redis_url: str | None = None
    secret_key: str = DEV_SECRET_KEY
    encryption_key: str = DEV_ENCRYPTION_KEY
    base_url: str = "http://localhost:8000"
    mail_url: str | None = None
    mail_from: str = "Returns <returns@localhost>"
    shopify_api_key: str | None = None
    shopify_api_secret: str | None = None
    # The secret before the last rotation in the Partner Dashboard: session tokens and webhooks
    # signed with it still verify until it is removed.
    shopify_api_secret_previous: str | None = None
    # How far back the install backfill reaches (days); orders older than 60 days need the
    # read_all_orders scope.
    shopify_backfill_days: int = 365
    # How far back a WooCommerce store's first backfill reaches (days, by order modification date).
    woocommerce_backfill_days: int = 365
    # Upper bound of any request body (photos included); Flask answers 413 above it.
    max_content_length: int = 16 * 1024 * 1024
    max_photo_bytes: int = 8 * 1024 * 1024
    max_photos_per_line: int = 5
    # Reverse proxies in front of the app (Fly.io: 1); their X-Forwarded-For gives the client
    # address that rate limits count. 0 trusts no header.
    proxy_hops: int = 0
    # Where labels and photos live: "local" (DATA_DIR/files) or "database" (shared by machines).
    # Default: local on SQLite, database otherwise.
    file_storage: str = ""
    # Huey runs tasks inline when true (tests, one-off scripts).
    jobs_immediate: bool = False
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides) -> "Config":
        env = os.environ if environ is None else environ
        data_dir = Path(env.get("DATA_DIR", "var"))
        cfg = cls(
            env=env.get("CONNECTOR_ENV", "development"),
            data_dir=data_dir,
            database_url=env.get("DATABASE_URL") or f"sqlite:///{(data_dir / 'connector.db').resolve()}",
            redis_url=env.get("REDIS_URL") or None,
            secret_key=env.get("SECRET_KEY", DEV_SECRET_KEY),
            encryption_key=env.get("ENCRYPTION_KEY", DEV_ENCRYPTION_KEY),
            base_url=env.get("BASE_URL", "http://localhost:8000").rstrip("/"),
            mail_url=env.get("MAIL_URL") or None,
            mail_from=env.get("MAIL_FROM", "Returns <returns@localhost>"),
            shopify_api_key=env.get("SHOPIFY_API_KEY") or None,
            shopify_api_secret=env.get("SHOPIFY_API_SECRET") or None,
            shopify_api_secret_previous=env.get("SHOPIFY_API_SECRET_PREVIOUS") or None,
            shopify_backfill_days=int(env.get("SHOPIFY_BACKFILL_DAYS", "365") or 365),
            woocommerce_backfill_days=int(env.get("WOOCOMMERCE_BACKFILL_DAYS", "365") or 365),
            jobs_immediate=env.get("JOBS_IMMEDIATE", "") in ("1", "true", "yes"),
            proxy_hops=int(env.get("PROXY_HOPS", "0") or 0),
            file_storage=env.get("FILE_STORAGE", ""),
        )
        names = {f.name for f in fields(cls)}
        for key, value in overrides.items():
            if key not in names:
                raise TypeError(f"unknown setting {key!r}")
            setattr(cfg, key, value)
        cfg.data_dir = Path(cfg.data_dir)
        if not cfg.database_url:
            cfg.database_url = f"sqlite:///{(cfg.data_dir / 'connector.db').resolve()}"
        if not cfg.file_storage:
            cfg.file_storage = "local" if cfg.database_url.startswith("sqlite") else "database"
        if cfg.file_storage not in ("local", "database"):
            raise ConfigError(f"FILE_STORAGE must be 'local' or 'database', not {cfg.file_storage!r}")
        return cfg

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def outbox_dir(self) -> Path:
        return self.data_dir / "outbox"

    @property
    def files_dir(self) -> Path:
        return self.data_dir / "files"

    @property
    def jobs_db_path(self) -> Path:
        return self.data_dir / "jobs.db"

    def check(self) -> None:
        """Raise ConfigError when this configuration must not run."""
        if self.is_production:
            if self.secret_key == DEV_SECRET_KEY or len(self.secret_key) < 32:
                raise ConfigError("SECRET_KEY is the development default or shorter than 32 characters; "
                                  "set a random SECRET_KEY to run with CONNECTOR_ENV=production")
            if self.encryption_key == DEV_ENCRYPTION_KEY:
                raise ConfigError("ENCRYPTION_KEY is the development default; set a Fernet key "
                                  "(python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')")
