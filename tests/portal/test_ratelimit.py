"""Fixed-window rate limits counted in the database (shared by every web process)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from werkzeug.exceptions import TooManyRequests

from connector import db, ratelimit
from connector.returns.models import RateLimitHit

WINDOW = timedelta(minutes=15)
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc)


def test_counts_up_to_the_limit_within_one_window(app):
    answers = [ratelimit.hit("k", limit=3, window=WINDOW, now=T0 + timedelta(minutes=i)) for i in range(5)]
    assert answers == [True, True, True, False, False]
    [row] = db.session.query(RateLimitHit).all()
    assert row.count == 5 and row.window_start == T0


def test_a_new_window_starts_from_zero(app):
    for _ in range(3):
        ratelimit.hit("k", limit=3, window=WINDOW, now=T0)
    assert not ratelimit.hit("k", limit=3, window=WINDOW, now=T0 + timedelta(minutes=14, seconds=59))
    assert ratelimit.hit("k", limit=3, window=WINDOW, now=T0 + timedelta(minutes=15))


def test_keys_are_counted_apart(app):
    assert ratelimit.hit("a", limit=1, window=WINDOW, now=T0)
    assert ratelimit.hit("b", limit=1, window=WINDOW, now=T0)
    assert not ratelimit.hit("a", limit=1, window=WINDOW, now=T0)


def test_old_windows_are_tidied_away(app):
    ratelimit.hit("old", limit=1, window=WINDOW, now=T0)
    ratelimit.hit("new", limit=1, window=WINDOW, now=T0 + timedelta(days=3))
    assert ratelimit.purge(now=T0 + timedelta(days=3)) == 1
    assert [r.key for r in db.session.query(RateLimitHit).all()] == ["new"]


def test_enforce_counts_every_key_and_raises_429(app):
    with pytest.raises(TooManyRequests):
        for _ in range(3):
            ratelimit.enforce(("x", 2, WINDOW), ("y", 100, WINDOW))
    counts = {r.key: r.count for r in db.session.query(RateLimitHit).all()}
    assert counts == {"x": 3, "y": 3}


def test_keys_do_not_keep_emails_in_clear():
    key = ratelimit.key_for("portal-link:1", " Erika@Example.com ")
    assert "erika" not in key.lower() and key == ratelimit.key_for("portal-link:1", "erika@example.com")


def test_windows_longer_than_a_day_are_refused(app):
    with pytest.raises(ValueError):
        ratelimit.hit("k", limit=1, window=timedelta(days=2))
