"""`connector demo`: a fresh SQLite install with a seeded shop, web server and worker in one process.

The worker (Huey consumer) runs in the main thread, because Huey installs its signal handlers
there and Python allows them nowhere else; the web server runs in a background thread. Ctrl-C
(SIGINT) stops the consumer gracefully, SIGTERM at once; either way the web server is shut
down after it. Everything lives in `data_dir`, which is wiped and recreated on each start:
database, job queue, files, the sandbox carrier's parcels, and the mail outbox.
"""
from __future__ import annotations

import errno
import logging
import os
import shutil
import socket
import sys
import threading
from pathlib import Path

from connector import jobs
from connector.config import Config

MARKER = ".connector-demo"  # only a folder carrying it (or an empty one) is ever wiped

log = logging.getLogger("connector.demo")


class DemoError(SystemExit):
    """The demo cannot start; the message says why and what to do (exit status 1)."""

    def __init__(self, message: str):
        super().__init__(f"connector demo: {message}")


def run_demo(host: str = "127.0.0.1", port: int = 8000, data_dir: str | Path = "var/demo") -> None:
    """Wipe `data_dir`, migrate a fresh database, seed the demo shop, and serve until stopped."""
    from werkzeug.serving import make_server

    from connector import create_app
    from connector.migrate import upgrade
    from connector.seed import seed_demo_shop
    from connector.worker import bind_app, describe_queue

    data_dir = Path(data_dir).expanduser().resolve()
    _check_port(host, port)  # before anything is wiped
    _reset(data_dir)

    base_url = f"http://{_url_host(host)}:{port}"
    database_url = f"sqlite:///{data_dir / 'connector.db'}"
    # The environment too, not only the Config: the commands printed below, and anything that
    # builds its own app from the environment, must find this demo's folder.
    os.environ.update(DATA_DIR=str(data_dir), DATABASE_URL=database_url, BASE_URL=base_url)
    for name in ("JOBS_IMMEDIATE", "REDIS_URL", "MAIL_URL"):
        os.environ.pop(name, None)

    _configure_logging()
    upgrade(database_url)
    jobs.configure(immediate=False, sqlite_path=data_dir / "jobs.db")
    config = Config.from_env(jobs_immediate=False, redis_url=None, mail_url=None)
    app = create_app(config)
    bind_app(app)
    with app.app_context():
        shop, password, sample = seed_demo_shop()
        handle = shop.handle

    try:
        server = make_server(host, port, app, threaded=True)
    except SystemExit:  # werkzeug has printed why (the port was taken since the check)
        raise DemoError(f"cannot listen on {host}:{port}; choose another port with --port") from None
    web = threading.Thread(target=server.serve_forever, name="demo-web", daemon=True)
    web.start()

    _print_banner(base_url=base_url, handle=handle, password=password, sample=sample,
                  data_dir=data_dir, outbox=config.outbox_dir, queue=describe_queue())
    consumer = jobs.huey.create_consumer(workers=2, worker_type="thread", periodic=True)
    try:
        consumer.run()
    finally:
        server.shutdown()
        server.server_close()
        web.join(timeout=5)
        print(f"Demo stopped. Its data stays in {data_dir} until the next `connector demo`.", flush=True)


def _check_port(host: str, port: int) -> None:
    """Fail with a clear message when `host:port` cannot be listened on."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise DemoError(f"cannot resolve host {host!r}: {exc}") from None
    family, kind, proto, _name, address = infos[0]
    probe = socket.socket(family, kind, proto)
    try:
        # As the real server does, so that a port in TIME_WAIT is not taken for a busy one.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(address)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise DemoError(f"port {port} on {host} is already in use (is another demo or server running?); "
                            f"stop it or choose another port with --port") from None
        raise DemoError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    finally:
        probe.close()


def _reset(data_dir: Path) -> None:
    """Empty `data_dir` for a fresh demo, refusing folders the demo did not make."""
    if data_dir.exists():
        if not data_dir.is_dir():
            raise DemoError(f"{data_dir} is a file, not a folder; choose another --data-dir")
        if any(data_dir.iterdir()) and not (data_dir / MARKER).exists():
            raise DemoError(f"{data_dir} is not empty and was not made by `connector demo`; it is left "
                            f"alone. Choose an empty or new folder with --data-dir")
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True)
    (data_dir / MARKER).write_text("Made by `connector demo`; wiped on each start.\n")


def _url_host(host: str) -> str:
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _configure_logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Huey lists every task at start and logs each run; the demo's own lines are enough.
    logging.getLogger("huey").setLevel(logging.WARNING)


def _print_banner(*, base_url: str, handle: str, password: str, sample: dict, data_dir: Path, outbox: Path,
                  queue: str) -> None:
    env = f"DATA_DIR={_shell_quote(str(data_dir))}"
    lines = [
        "",
        "Returns Connector demo is running.",
        "",
        f"  Shopper portal:  {base_url}/portal/{handle}/",
        f"                   try order {sample['order_number']} with {sample['email']}"
        f" (or postcode {sample['postcode']})",
        f"  Merchant admin:  {base_url}/admin/{handle}/",
        f"                   password: {password}",
        f"  Mail outbox:     {outbox}  (every mail is an .eml file)",
        f"  Data folder:     {data_dir}  ({queue})",
        "",
        "  Move the sandbox parcel of return R-1001 on (in transit, delivered), from another shell:",
        f"    {env} connector sandbox advance R-1001",
        "",
        "Press Ctrl-C to stop.",
        "",
    ]
    print("\n".join(lines), flush=True)


def _shell_quote(value: str) -> str:
    import shlex
    return shlex.quote(value)
