"""Fixed-window rate limits, counted in the database so every web process shares them.

A limit is a key (e.g. "portal-link-email:<hash>"), a maximum and a window length. Each call to
`hit` counts one request in the current window (windows start at multiples of the window length
since the epoch) and says whether the count is still within the maximum. `enforce` counts several
keys at once and answers 429 when any of them is over.

Counting runs on its own connection and commits at once: a hit stays counted even when the
request that made it fails later, and the request's own session is left alone. Old windows are
purged by the reconciler (`purge`), not on the request path.
"""
from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone

from sqlalchemy import delete
from werkzeug.exceptions import TooManyRequests

from connector import db
from connector.dbtypes import utcnow
from connector.returns.models import RateLimitHit

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# Windows are at most a day long; rows older than this are of no use to any window and are removed.
MAX_WINDOW = timedelta(days=1)
_RETENTION = 2 * MAX_WINDOW


def window_start(now: datetime, window: timedelta) -> datetime:
    """The start of the fixed window of length `window` that contains `now`."""
    seconds = int(window.total_seconds())
    elapsed = int((now - _EPOCH).total_seconds())
    return _EPOCH + timedelta(seconds=elapsed - elapsed % seconds)


def _upsert(dialect: str):
    """INSERT ... ON CONFLICT DO UPDATE for the dialect: one statement per key, no read-then-write race."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    return dialect_insert


def count(limits: list[tuple[str, int, timedelta]], now: datetime | None = None) -> list[bool]:
    """Count one request against every (key, limit, window) in one transaction.

    Returns, per limit, whether its window's count is still at most its maximum. One upsert per
    key and a single commit keep this to about a millisecond on SQLite (bench/portal_lookup.py).
    """
    now = now or utcnow()
    table = RateLimitHit.__table__
    engine = db.engine()
    insert_ = _upsert(engine.dialect.name)
    answers = []
    with engine.begin() as conn:
        for key, limit, window in limits:
            if not timedelta(seconds=1) <= window <= MAX_WINDOW:
                raise ValueError(f"rate limit windows must be between 1 second and {MAX_WINDOW}")
            stmt = insert_(table).values(key=key, window_start=window_start(now, window), count=1)
            stmt = stmt.on_conflict_do_update(index_elements=["key", "window_start"],
                                              set_={"count": table.c.count + 1}).returning(table.c.count)
            answers.append(conn.execute(stmt).scalar_one() <= limit)
    return answers


def hit(key: str, *, limit: int, window: timedelta, now: datetime | None = None) -> bool:
    """Count one request for `key`; True while the window's count is at most `limit`."""
    return count([(key, limit, window)], now)[0]


def purge(now: datetime | None = None) -> int:
    """Delete windows too old to matter (the reconciler calls this every minute)."""
    with db.engine().begin() as conn:
        result = conn.execute(delete(RateLimitHit.__table__).where(
            RateLimitHit.__table__.c.window_start < (now or utcnow()) - _RETENTION))
    return result.rowcount


def enforce(*limits: tuple[str, int, timedelta]) -> None:
    """Count a request against every (key, limit, window); raise 429 when any is exceeded.

    Every key is counted even when an earlier one is already over, so that a client cannot
    probe one limit while hiding behind another.
    """
    if not all(count(list(limits))):
        raise TooManyRequests()


def key_for(kind: str, value: str) -> str:
    """A rate-limit key that does not store personal data (emails, addresses) in clear."""
    digest = hashlib.sha256(value.strip().lower().encode("utf-8", "surrogatepass")).hexdigest()[:40]
    return f"{kind}:{digest}"
