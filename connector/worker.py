"""The job worker: a Huey consumer (threads) with the periodic tasks, over the app's database.

`run_worker` is `connector worker`: it owns the main thread, where Huey installs its signal
handlers (SIGINT stops gracefully, SIGTERM at once, SIGHUP restarts). `start_consumer_thread`
runs a consumer in a background thread instead, without signal handlers (Python only allows
them in the main thread): for tests, and for any caller that keeps the main thread for itself.
"""
from __future__ import annotations

import logging
import threading

from flask import Flask
from huey.consumer import Consumer

from connector import jobs
from connector.config import Config

log = logging.getLogger("connector.worker")


class WorkerError(RuntimeError):
    """The worker cannot start with this configuration."""


def describe_queue() -> str:
    """Where the queue lives, for start-up logs: the SQLite file or the Redis server."""
    storage = jobs.huey.storage
    filename = getattr(storage, "filename", None)
    if filename:
        return f"SQLite queue at {filename}"
    pool = getattr(storage, "pool", None)
    kwargs = getattr(pool, "connection_kwargs", {}) if pool is not None else {}
    if kwargs:
        where = kwargs.get("path") or f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"
        return f"Redis queue at {where}"
    return f"{type(storage).__name__} queue"


def bind_app(app: Flask | None) -> Flask | None:
    """Run every task inside `app` (its database, mailer, storage) instead of one built from the
    environment on first use; returns the app bound before (None: build from the environment)."""
    # in_app_context builds `_worker_app` lazily from the environment; the worker, the demo and
    # the tests already hold the app the tasks must use, so they hand it over here.
    previous = jobs._worker_app
    jobs._worker_app = app
    return previous


def _check_not_immediate() -> None:
    if jobs.huey.immediate:
        raise WorkerError("the job queue is in immediate mode (JOBS_IMMEDIATE is set), so there is nothing "
                          "for a worker to consume; unset JOBS_IMMEDIATE to run the worker")


def run_worker(workers: int = 2, config: Config | None = None) -> None:
    """Build the app from the environment and consume jobs until stopped (Ctrl-C, SIGTERM)."""
    from connector import create_app

    config = config or Config.from_env()
    app = create_app(config)
    import connector.tasks  # noqa: F401  (declares the tasks on the shared queue)

    _check_not_immediate()
    bind_app(app)
    _configure_logging()
    log.info("worker starting: %s workers (threads), %s; database %s; periodic tasks on",
             workers, describe_queue(), _safe_url(config.database_url))
    consumer = jobs.huey.create_consumer(workers=workers, worker_type="thread", periodic=True)
    consumer.run()


class _ThreadedConsumer(Consumer):
    """A consumer whose loop runs outside the main thread: no signal handlers (stop() stops it)."""

    def _set_signal_handlers(self):
        pass


def start_consumer_thread(workers: int = 2, app: Flask | None = None,
                          periodic: bool = True) -> tuple[Consumer, threading.Thread]:
    """Start a consumer in a daemon thread and return it with the thread.

    Stop it with `consumer.stop(graceful=True)` then `thread.join()`. When `app` is given,
    tasks run in its context (see `bind_app`).
    """
    import connector.tasks  # noqa: F401

    _check_not_immediate()
    if app is not None:
        bind_app(app)
    consumer = _ThreadedConsumer(jobs.huey, workers=workers, worker_type="thread", periodic=periodic,
                                 initial_delay=0.05, max_delay=1.0)
    thread = threading.Thread(target=consumer.run, name="huey-consumer", daemon=True)
    thread.start()
    log.info("worker thread started: %s workers, %s", workers, describe_queue())
    return consumer, thread


def _configure_logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _safe_url(url: str) -> str:
    """The database URL without its password."""
    from sqlalchemy.engine import make_url
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unreadable URL fails later with its own error; here it is only logged
        return "<unreadable DATABASE_URL>"
