"""The worker: a real Huey consumer takes a queued job and runs it against the app's database.

The rest of the suite runs jobs inline (JOBS_IMMEDIATE); these tests switch the shared queue to
a real backend (a SQLite file, or Redis when TEST_REDIS_URL is set), start a consumer in a
thread, and restore inline mode afterwards.
"""
from __future__ import annotations

import os
import time
from contextlib import contextmanager

import pytest

from connector import jobs
from connector.worker import bind_app, describe_queue, start_consumer_thread

TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL")


@contextmanager
def real_queue(app, **storage):
    """Point the queue at real storage with inline mode off; put everything back afterwards."""
    jobs.configure(immediate=False, **storage)
    previous = bind_app(app)
    try:
        yield
    finally:
        bind_app(previous)
        jobs.configure(immediate=True)


@contextmanager
def consumer_running(app):
    consumer, thread = start_consumer_thread(workers=1, app=app, periodic=False)
    try:
        yield
    finally:
        consumer.stop(graceful=True)
        thread.join(timeout=15)
    assert not thread.is_alive(), "the consumer thread did not stop"


def wait_for(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def _queued_alert_is_sent_by_the_consumer(app, shop, outbox):
    from connector import tasks

    tasks.alert_merchant(shop.id, "Stuck job", "R-1001 has waited two hours for its label.")
    assert outbox() == [], "the job ran inline although the queue is not immediate"
    assert len(jobs.huey) == 1  # waiting in the queue's storage
    with consumer_running(app):
        assert wait_for(lambda: len(outbox()) == 1), "the consumer did not run the queued job"
    mail = outbox()[0]
    assert mail["To"] == "support@example.com"  # read from the test's database by the worker thread
    assert mail["Subject"] == "[Demo Outdoor GmbH] Stuck job"
    assert len(jobs.huey) == 0


def test_sqlite_queue_consumer_runs_a_queued_job(app, shop, outbox, tmp_path):
    with real_queue(app, sqlite_path=tmp_path / "jobs.db"):
        assert describe_queue() == f"SQLite queue at {tmp_path / 'jobs.db'}"
        _queued_alert_is_sent_by_the_consumer(app, shop, outbox)


def test_redis_queue_consumer_runs_a_queued_job(app, shop, outbox):
    if not TEST_REDIS_URL:
        pytest.skip("TEST_REDIS_URL not set: Redis queue test skipped")
    with real_queue(app, redis_url=TEST_REDIS_URL):
        jobs.huey.flush()  # leftovers of an earlier, interrupted run
        assert describe_queue().startswith("Redis queue at ")
        _queued_alert_is_sent_by_the_consumer(app, shop, outbox)


def test_worker_refuses_to_start_in_immediate_mode(app):
    from connector.worker import WorkerError

    assert jobs.huey.immediate
    with pytest.raises(WorkerError, match="JOBS_IMMEDIATE"):
        start_consumer_thread(workers=1)
