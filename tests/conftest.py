"""Shared fixtures: an app on a migrated database (SQLite by default, PostgreSQL when
TEST_DATABASE_URL is set), a test client, the outbox, and a seeded standalone shop.

Tests that need a service skip with the reason when it is absent.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

# Before anything imports connector.jobs: tasks run inline unless a test starts a real consumer.
_TMP = Path(tempfile.mkdtemp(prefix="connector-tests-"))
os.environ.setdefault("DATA_DIR", str(_TMP / "default"))
os.environ["JOBS_IMMEDIATE"] = "1"

import pytest  # noqa: E402
from sqlalchemy import text  # noqa: E402

from connector import create_app, db  # noqa: E402
from connector.config import Config  # noqa: E402
from connector.migrate import upgrade  # noqa: E402

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL")


@pytest.fixture(scope="session")
def template_sqlite() -> Path:
    """A SQLite file migrated once; each test copies it (the migrations run for real)."""
    path = _TMP / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_migrated():
    if not TEST_DATABASE_URL:
        return None
    from connector.migrate import downgrade
    try:
        downgrade(TEST_DATABASE_URL, "base")
    except Exception:
        pass
    upgrade(TEST_DATABASE_URL)
    return TEST_DATABASE_URL


def _truncate_all(url: str) -> None:
    engine = db.make_engine(url)
    with engine.begin() as conn:
        tables = [r[0] for r in conn.execute(text(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename <> 'alembic_version'"))]
        if tables:
            conn.execute(text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture
def data_dir(tmp_path) -> Path:
    return tmp_path


@pytest.fixture
def database_url(data_dir, template_sqlite, postgres_migrated, request) -> str:
    """SQLite copy by default; PostgreSQL (truncated) when TEST_DATABASE_URL is set."""
    if postgres_migrated and "sqlite_only" not in request.keywords:
        _truncate_all(postgres_migrated)
        return postgres_migrated
    path = data_dir / "connector.db"
    shutil.copy(template_sqlite, path)
    return f"sqlite:///{path}"


@pytest.fixture
def config(data_dir, database_url) -> Config:
    return Config.from_env({}, data_dir=data_dir, database_url=database_url, jobs_immediate=True,
                           base_url="http://localhost")


@pytest.fixture
def app(config):
    app = create_app(config)
    app.config.update(TESTING=True)
    with app.app_context():
        yield app
    db.session.remove()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def outbox(config):
    """Read the mail outbox: a list of email.message.EmailMessage, oldest first."""
    from email import policy
    from email.parser import BytesParser

    def read():
        folder = config.outbox_dir
        if not folder.exists():
            return []
        return [BytesParser(policy=policy.default).parsebytes(p.read_bytes())
                for p in sorted(folder.glob("*.eml"))]

    return read


@pytest.fixture
def shop(app):
    """A seeded standalone shop with reasons and a handful of orders (see tests/factories.py)."""
    from tests.factories import make_shop
    return make_shop()
