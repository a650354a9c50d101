#!/usr/bin/env python3
"""Lint the Shopify theme app extension with Shopify's theme-check; exit 1 on any error.

Usage: python3 scripts/theme_check.py [EXTENSION_DIR] [--fail-on error|warning] [--no-install]

npm's `@shopify/theme-check-node` has no command of its own: its `dist/cli.js <dir>` prints three
JSON documents on stdout (the offenses, the resolved config, the checked files) and always exits 0,
whatever it found. This script installs a pinned version into `.ci/node/` when it is missing (npm,
no network needed once installed; theme-check itself falls back to the Liquid docs it bundles when
it cannot reach GitHub), runs it, reads the first JSON document and fails on offenses of severity 0
(error), or also 1 (warning) with `--fail-on warning`. Severity 2 (info) never fails.

Only the standard library: CI calls it before any virtualenv exists.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_EXTENSION = ROOT / "embedded_ui" / "shopify" / "extensions" / "returns-link"
# Pinned so that a new theme-check release (new checks) changes CI only when we choose to.
PACKAGE = "@shopify/theme-check-node"
VERSION = "3.29.1"
PREFIX = ROOT / ".ci" / "node"
PACKAGE_DIR = PREFIX / "node_modules" / "@shopify" / "theme-check-node"
CLI = PACKAGE_DIR / "dist" / "cli.js"
SEVERITY = {0: "ERROR", 1: "WARNING", 2: "INFO"}
TIMEOUT_SECONDS = 300


class ThemeCheckFailed(Exception):
    """theme-check could not run, or its output could not be read."""


def installed_version() -> str | None:
    """Version of the theme-check package in `.ci/node`, or None when it is not installed."""
    manifest = PACKAGE_DIR / "package.json"
    if not CLI.is_file() or not manifest.is_file():
        return None
    return json.loads(manifest.read_text(encoding="utf-8")).get("version")


def install() -> None:
    """Install the pinned theme-check into `.ci/node` (kept out of git, see .gitignore)."""
    npm = shutil.which("npm")
    if npm is None:
        raise ThemeCheckFailed("npm is not installed: theme-check needs Node.js and npm")
    PREFIX.mkdir(parents=True, exist_ok=True)
    print(f"theme-check: installing {PACKAGE}@{VERSION} into {PREFIX.relative_to(ROOT)}/",
          flush=True)
    done = subprocess.run(
        [npm, "install", "--no-save", "--no-audit", "--no-fund", "--prefix", str(PREFIX),
         f"{PACKAGE}@{VERSION}"],
        capture_output=True, text=True, timeout=TIMEOUT_SECONDS,
    )
    if done.returncode != 0 or installed_version() != VERSION:
        raise ThemeCheckFailed(f"npm install {PACKAGE}@{VERSION} failed:\n{done.stderr.strip()}")


def run(extension: Path) -> tuple[list[dict], list[str]]:
    """Run theme-check on `extension`; return (offenses, checked file URIs)."""
    node = shutil.which("node")
    if node is None:
        raise ThemeCheckFailed("node is not installed: theme-check needs Node.js")
    done = subprocess.run(
        [node, str(CLI), str(extension)], capture_output=True, text=True, timeout=TIMEOUT_SECONDS,
    )
    if done.returncode != 0:
        raise ThemeCheckFailed(
            f"theme-check crashed (exit {done.returncode}):\n{done.stderr.strip()}")
    return parse_output(done.stdout)


def parse_output(stdout: str) -> tuple[list[dict], list[str]]:
    """Read cli.js's stdout: offenses, then the config, then the list of checked files."""
    decoder = json.JSONDecoder()
    documents = []
    rest = stdout.lstrip()
    try:
        while rest and len(documents) < 3:
            document, end = decoder.raw_decode(rest)
            documents.append(document)
            rest = rest[end:].lstrip()
    except json.JSONDecodeError as err:
        raise ThemeCheckFailed(f"unreadable theme-check output ({err}):\n{stdout[:2000]}") from err
    if len(documents) != 3:
        raise ThemeCheckFailed(f"unexpected theme-check output:\n{stdout[:2000]}")
    offenses, _config, files = documents
    if not isinstance(offenses, list) or not isinstance(files, list):
        raise ThemeCheckFailed(f"unexpected theme-check output:\n{stdout[:2000]}")
    return offenses, files


def describe(offense: dict, extension: Path) -> str:
    """One readable line: `ERROR blocks/x.liquid:12:5 [CheckName] message`."""
    path = Path(unquote(urlparse(offense.get("uri", "")).path))
    try:
        where = str(path.relative_to(extension))
    except ValueError:
        where = str(path)
    start = offense.get("start") or {}
    if "line" in start:  # 0-based in theme-check's output
        where += f":{start['line'] + 1}:{start.get('character', 0) + 1}"
    level = SEVERITY.get(offense.get("severity"), str(offense.get("severity")))
    return f"{level:<7} {where} [{offense.get('check')}] {offense.get('message')}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("extension", nargs="?", type=Path, default=DEFAULT_EXTENSION)
    parser.add_argument("--fail-on", choices=("error", "warning"), default="error")
    parser.add_argument("--no-install", action="store_true",
                        help="fail instead of installing theme-check when it is missing")
    args = parser.parse_args(argv)
    extension = args.extension.resolve()
    if not (extension / "shopify.extension.toml").is_file():
        print(f"theme-check: {extension} is not an extension directory (no shopify.extension.toml)",
              file=sys.stderr)
        return 2
    try:
        if installed_version() != VERSION:
            if args.no_install:
                raise ThemeCheckFailed(f"{PACKAGE}@{VERSION} is not installed in {PREFIX}")
            install()
        offenses, files = run(extension)
    except (ThemeCheckFailed, subprocess.TimeoutExpired) as err:
        print(f"theme-check: {err}", file=sys.stderr)
        return 2
    if not files:
        print(f"theme-check: no files checked in {extension}", file=sys.stderr)
        return 2

    worst_allowed = 0 if args.fail_on == "error" else 1
    offenses.sort(key=lambda o: (o.get("severity", 9), o.get("uri", ""),
                                 (o.get("start") or {}).get("line", 0)))
    for offense in offenses:
        print(describe(offense, extension))
    counts = {name: sum(1 for o in offenses if o.get("severity") == level)
              for level, name in SEVERITY.items()}
    failing = [o for o in offenses if o.get("severity", 0) <= worst_allowed]
    summary = ", ".join(f"{n} {name.lower()}(s)" for name, n in counts.items())
    shown = extension.relative_to(ROOT) if extension.is_relative_to(ROOT) else extension
    print(f"theme-check {VERSION}: {len(files)} files in {shown}: {summary}")
    if failing:
        print(f"theme-check: FAILED, {len(failing)} offense(s) at or above {args.fail_on} level",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
