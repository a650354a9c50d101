"""Engine and session: one scoped session per thread, bound by `init_db`.

Flask-independent so that jobs, the CLI and the domain's tests share it; `init_app` only adds
the request teardown. SQLite runs in WAL mode with foreign keys on and a busy timeout, so the
web process and the worker can share one file.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, scoped_session, sessionmaker


class Base(DeclarativeBase):
    pass


session = scoped_session(sessionmaker(expire_on_commit=False))
_engine: Engine | None = None


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite gets WAL, foreign keys and a busy timeout."""
    if url.startswith("sqlite"):
        path = url.split("sqlite:///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


def init_db(url: str) -> Engine:
    """Bind the scoped session to a (new) engine for `url` and return it."""
    global _engine
    session.remove()
    if _engine is not None:
        _engine.dispose()
    _engine = make_engine(url)
    session.configure(bind=_engine)
    return _engine


def engine() -> Engine:
    if _engine is None:
        raise RuntimeError("database not initialised: call connector.db.init_db(url) first")
    return _engine


@contextmanager
def transaction():
    """Commit on success, roll back on error, on the current thread's session."""
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise


def init_app(app) -> None:
    @app.teardown_appcontext
    def _remove_session(exc=None):
        session.remove()
