"""The application shell: configuration safety, health check, migrations, CLI basics."""
from __future__ import annotations

import os

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, inspect

from connector import create_app
from connector.cli import main
from connector.config import DEV_SECRET_KEY, Config, ConfigError
from connector.migrate import downgrade, upgrade

TABLES = {"shops", "orders", "order_lines", "return_reasons", "returns", "return_lines", "shipments", "refunds",
          "events", "stored_files", "webhook_deliveries", "used_tokens", "rate_limits"}


def test_production_refuses_the_development_secret(tmp_path):
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        create_app(Config.from_env({"CONNECTOR_ENV": "production", "DATA_DIR": str(tmp_path)}))


def test_production_refuses_the_development_encryption_key(tmp_path):
    env = {"CONNECTOR_ENV": "production", "DATA_DIR": str(tmp_path), "SECRET_KEY": "x" * 40}
    with pytest.raises(ConfigError, match="ENCRYPTION_KEY"):
        create_app(Config.from_env(env))


def test_development_runs_on_embedded_defaults(tmp_path):
    cfg = Config.from_env({"DATA_DIR": str(tmp_path)})
    assert cfg.secret_key == DEV_SECRET_KEY and cfg.database_url.startswith("sqlite:///")
    assert cfg.redis_url is None and cfg.mail_url is None


def test_healthz_answers_with_the_database(client):
    resp = client.get("/healthz")
    assert resp.status_code == 200 and resp.get_json() == {"status": "ok"}


def test_security_headers_on_every_page(client, shop):
    resp = client.get("/portal/demo-shop/")
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert "script-src 'self'" in resp.headers["Content-Security-Policy"]


def test_migrations_create_every_table_and_roll_back(tmp_path):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    upgrade(url)
    engine = create_engine(url)
    assert TABLES <= set(inspect(engine).get_table_names())
    downgrade(url, "base")
    assert not TABLES & set(inspect(engine).get_table_names())
    engine.dispose()


@pytest.mark.skipif(not os.environ.get("TEST_DATABASE_URL"), reason="TEST_DATABASE_URL not set: PostgreSQL check skipped")
def test_models_match_the_migrations_on_postgresql(postgres_migrated):
    import connector.returns.models  # noqa: F401  (the tables on Base.metadata)
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from connector.db import Base, make_engine
    engine = make_engine(os.environ["TEST_DATABASE_URL"])
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == []


def test_models_match_the_migrations_on_sqlite(tmp_path):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    import connector.returns.models  # noqa: F401
    from connector.db import Base, make_engine
    url = f"sqlite:///{tmp_path / 'm.db'}"
    upgrade(url)
    engine = make_engine(url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    # SQLite stores amounts as text by design (exact decimals): type differences are expected there.
    assert [d for d in diff if d[0] not in ("modify_type",) and not (isinstance(d, list))] == []


def test_db_upgrade_command(tmp_path):
    result = CliRunner().invoke(main, ["db", "upgrade"], env={"DATA_DIR": str(tmp_path), "DATABASE_URL": ""})
    assert result.exit_code == 0, result.output
    assert (tmp_path / "connector.db").exists()


def test_sync_explains_standalone_shops(app, shop):
    from connector.platforms.sync import sync_shop
    assert sync_shop("demo-shop") == 0


def test_unbuilt_platforms_say_so(app, shop):
    from connector.platforms.registry import adapter_for
    shop.platform = "magento"
    with pytest.raises(NotImplementedError, match="not built yet"):
        adapter_for(shop)


def test_database_file_storage_round_trip(app):
    """Labels made by a worker machine are readable by a web machine through the shared database."""
    from connector import db
    from connector.storage import DatabaseStorage

    storage = DatabaseStorage(db.engine)
    assert not storage.exists("shop-1/labels/a.pdf")
    storage.put("shop-1/labels/a.pdf", b"%PDF-1")
    storage.put("shop-1/labels/a.pdf", b"%PDF-2")
    assert storage.exists("shop-1/labels/a.pdf") and storage.get("shop-1/labels/a.pdf") == b"%PDF-2"
    storage.delete("shop-1/labels/a.pdf")
    with pytest.raises(FileNotFoundError):
        storage.get("shop-1/labels/a.pdf")


def test_file_storage_follows_the_database():
    assert Config.from_env({}).file_storage == "local"
    assert Config.from_env({"DATABASE_URL": "postgresql://db/x"}).file_storage == "database"
    with pytest.raises(ConfigError):
        Config.from_env({"FILE_STORAGE": "s3"})
