"""The Admin GraphQL documents, one `.graphql` file each in `graphql/`, loaded by file name.

A document holds one operation (plus any fragments it uses); tests validate every file against the
Admin schema of `API_VERSION` and every variables dict the client sends against its document.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

DOCUMENTS_DIR = Path(__file__).with_name("graphql")


@lru_cache(maxsize=None)
def load(name: str) -> str:
    """The text of `graphql/<name>.graphql`; KeyError when there is no such document."""
    path = DOCUMENTS_DIR / f"{name}.graphql"
    if not path.is_file():
        raise KeyError(f"no GraphQL document {name!r} in {DOCUMENTS_DIR}")
    return path.read_text(encoding="utf-8")


def names() -> list[str]:
    return sorted(p.stem for p in DOCUMENTS_DIR.glob("*.graphql"))
