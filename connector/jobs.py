"""The job queue: Huey on SQLite by default, on Redis when REDIS_URL is set.

The queue only wakes workers; the database holds the truth (DESIGN principle 1). Tasks are
defined in `connector.tasks` and run inside an application context (`in_app_context`).
The instance is built from the environment at import, as the worker and the web processes
must agree on it before any task is declared.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

from huey import RedisHuey, SqliteHuey
from huey.storage import SqliteStorage


class QueueStorage(SqliteStorage):
    """Huey's SQLite storage with `synchronous=NORMAL`, as connector.db uses for the database.

    Huey's default (FULL) fsyncs every enqueue, some milliseconds inside each web request that
    enqueues (a webhook: most of its time). In WAL mode NORMAL never corrupts the file; a power
    loss may lose the last enqueued jobs, which the reconciler re-drives from the database (the
    queue only wakes workers, DESIGN principle 1).
    """

    def _create_connection(self):
        conn = super()._create_connection()
        conn.execute("pragma synchronous=NORMAL")
        return conn


def make_huey(environ=None):
    env = os.environ if environ is None else environ
    immediate = env.get("JOBS_IMMEDIATE", "") in ("1", "true", "yes")
    if env.get("REDIS_URL"):
        return RedisHuey("connector", url=env["REDIS_URL"], immediate=immediate)
    data_dir = Path(env.get("DATA_DIR", "var"))
    data_dir.mkdir(parents=True, exist_ok=True)
    return SqliteHuey("connector", filename=str((data_dir / "jobs.db").resolve()), immediate=immediate,
                      storage_class=QueueStorage)


huey = make_huey()


def configure(*, immediate: bool | None = None, redis_url: str | None = None,
              sqlite_path: Path | None = None) -> None:
    """Point the queue's storage elsewhere at run time (demo, tests) without redeclaring tasks."""
    # First: Huey's immediate setter recreates the storage from the constructor's arguments
    # (memory when immediate), which would undo a storage chosen below.
    if immediate is not None:
        huey.immediate = immediate
    if redis_url:
        from huey.storage import RedisStorage
        huey.storage = RedisStorage("connector", url=redis_url)
    elif sqlite_path:
        Path(sqlite_path).parent.mkdir(parents=True, exist_ok=True)
        huey.storage = QueueStorage("connector", filename=str(sqlite_path))


_worker_app = None


def in_app_context(fn):
    """Run a task body inside an app context: the caller's, or one app built once per worker."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from flask import has_app_context

        if has_app_context():
            return fn(*args, **kwargs)
        global _worker_app
        if _worker_app is None:
            from connector import create_app
            _worker_app = create_app()
        with _worker_app.app_context():
            return fn(*args, **kwargs)

    return wrapper
