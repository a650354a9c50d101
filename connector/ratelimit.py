"""Fixed-window rate limits, counted in the database so every web process shares them.

A limit is a key (e.g. "portal-link-email:<hash>"), a maximum and a window length. Each call to
`hit` counts one request in the current window (windows start at multiples of the window length
since the epoch) and says whether the count is still within the maximum. `enforce` counts several
keys at once and answers 429 when any of them is over.

Counting runs on its own connection and commits at once: a hit stays counted even when the
request that made it fails later, and the request's own session is left alone.
"""
from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
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


def hit(key: str, *, limit: int, window: timedelta, now: datetime | None = None) -> bool:
    """Count one request for `key`; True while the window's count is at most `limit`."""
    if not timedelta(seconds=1) <= window <= MAX_WINDOW:
        raise ValueError(f"rate limit windows must be between 1 second and {MAX_WINDOW}")
    now = now or utcnow()
    start = window_start(now, window)
    table = RateLimitHit.__table__
    this_window = (table.c.key == key) & (table.c.window_start == start)
    bump = update(table).where(this_window).values(count=table.c.count + 1)
    with db.engine().begin() as conn:
        if conn.execute(bump).rowcount == 0:
            try:
                with conn.begin_nested():
                    conn.execute(insert(table).values(key=key, window_start=start, count=1))
            except IntegrityError:  # another process opened the window first
                conn.execute(bump)
            # A new window is rare enough to tidy up here instead of in a periodic job.
            conn.execute(delete(table).where(table.c.window_start < now - _RETENTION))
        count = conn.execute(select(table.c.count).where(this_window)).scalar_one()
    return count <= limit


def enforce(*limits: tuple[str, int, timedelta]) -> None:
    """Count a request against every (key, limit, window); raise 429 when any is exceeded.

    Every key is counted even when an earlier one is already over, so that a client cannot
    probe one limit while hiding behind another.
    """
    allowed = [hit(key, limit=limit, window=window) for key, limit, window in limits]
    if not all(allowed):
        raise TooManyRequests()


def key_for(kind: str, value: str) -> str:
    """A rate-limit key that does not store personal data (emails, addresses) in clear."""
    digest = hashlib.sha256(value.strip().lower().encode("utf-8", "surrogatepass")).hexdigest()[:40]
    return f"{kind}:{digest}"
