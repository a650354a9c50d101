"""Chromium for the Shopify browser tests, each in a thread of its own.

Playwright's sync API refuses to start twice in one thread, and tests/browser keeps a session-wide
instance in the main thread; a walk here therefore runs with its own Playwright in its own thread.
"""
from __future__ import annotations

import threading
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run"]


def with_playwright(walk, timeout: float = 300) -> None:
    """Run `walk(playwright)` in a thread with its own sync Playwright; re-raise what it raised."""
    outcome: dict = {}

    def target():
        from playwright.sync_api import sync_playwright
        try:
            with sync_playwright() as p:
                walk(p)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="chromium-walk", daemon=True)
    thread.start()
    thread.join(timeout=timeout)
    if thread.is_alive():
        pytest.fail(f"the browser walk did not finish in {timeout:.0f} s")
    if "error" in outcome:
        raise outcome["error"]
