"""File storage for labels, QR codes and photos: a local folder by default.

Keys are relative paths chosen by the caller (e.g. "shop-3/labels/R-1042.pdf"); they never come
from user input unchecked, and `_path` refuses anything that would leave the root.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path


def _check_prefix(prefix: str) -> None:
    """A prefix names a folder (`shop-3/`): never empty, never the whole store."""
    if not prefix or not prefix.endswith("/") or prefix.strip("/") == "" or ".." in prefix.split("/"):
        raise ValueError(f"storage prefix must name a folder like 'shop-3/': {prefix!r}")


class LocalStorage:
    def __init__(self, root: Path):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root not in path.parents:
            raise ValueError(f"storage key escapes the root: {key!r}")
        return path

    def put(self, key: str, data: bytes) -> str:
        """Write atomically (temp file + rename) and return the key."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        return key

    def get(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def delete_prefix(self, prefix: str) -> None:
        """Delete every file whose key starts with `prefix` (a folder, e.g. "shop-3/")."""
        _check_prefix(prefix)
        folder = self._path(prefix.rstrip("/"))
        if folder.is_dir():
            shutil.rmtree(folder)


class DatabaseStorage:
    """Files as rows of `stored_files`, for several machines sharing one PostgreSQL database.

    Used when DATABASE_URL is not SQLite (or FILE_STORAGE=database): the worker that makes a
    label and the web machine that serves it then see the same bytes without a shared disk.
    Each call commits on its own connection, like the storage of a remote object store would.
    """

    def __init__(self, engine_getter):
        self._engine = engine_getter

    def _table(self):
        from connector.returns.models import StoredFile
        return StoredFile.__table__

    def put(self, key: str, data: bytes) -> str:
        from sqlalchemy import delete, insert
        table = self._table()
        with self._engine().begin() as conn:
            conn.execute(delete(table).where(table.c.key == key))
            conn.execute(insert(table).values(key=key, data=data, size=len(data)))
        return key

    def get(self, key: str) -> bytes:
        from sqlalchemy import select
        table = self._table()
        with self._engine().connect() as conn:
            data = conn.execute(select(table.c.data).where(table.c.key == key)).scalar()
        if data is None:
            raise FileNotFoundError(key)
        return bytes(data)

    def exists(self, key: str) -> bool:
        from sqlalchemy import select
        table = self._table()
        with self._engine().connect() as conn:
            return conn.execute(select(table.c.key).where(table.c.key == key)).first() is not None

    def delete(self, key: str) -> None:
        from sqlalchemy import delete
        table = self._table()
        with self._engine().begin() as conn:
            conn.execute(delete(table).where(table.c.key == key))

    def delete_prefix(self, prefix: str) -> None:
        """Delete every file whose key starts with `prefix` (a folder, e.g. "shop-3/")."""
        from sqlalchemy import delete
        _check_prefix(prefix)
        table = self._table()
        with self._engine().begin() as conn:
            conn.execute(delete(table).where(table.c.key.startswith(prefix, autoescape=True)))
