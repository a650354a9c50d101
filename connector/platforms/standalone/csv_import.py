"""Import a standalone shop's orders from CSV: one row per order line, rows grouped by order_id.

The file is streamed (csv.DictReader over the open file): only one order's rows are held at a
time, so a file of any size imports in constant memory. The rows of one order must therefore
stand together; an order_id that comes back after other orders is reported, not merged, because
its first part has already been stored. An order with any invalid row is not imported at all.
"""
from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, TextIO

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from connector import db
from connector.platforms.standalone.mapping import (CSV_COLUMNS, MappingError, missing_csv_columns,
                                                    order_from_csv_rows)
from connector.returns.models import Order, Shop

log = logging.getLogger(__name__)

MAX_FAILURES_KEPT = 200  # a report of a broken million-row file must not fill the memory
MAX_ROWS_PER_ORDER = 1000


class CsvImportError(Exception):
    """The file as a whole cannot be read (missing columns, bad encoding, broken quoting)."""


@dataclass
class Failure:
    order_id: str  # or "row N" when the row has no order_id
    reasons: list[str]


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    failed: int = 0
    rows: int = 0
    failures: list[Failure] = field(default_factory=list)  # the first MAX_FAILURES_KEPT
    ignored_columns: list[str] = field(default_factory=list)

    @property
    def orders(self) -> int:
        return self.created + self.updated + self.failed

    def fail(self, order_id: str, reasons: list[str]) -> None:
        self.failed += 1
        if len(self.failures) < MAX_FAILURES_KEPT:
            self.failures.append(Failure(order_id, reasons))


def import_orders_file(shop: Shop, path: str | Path, *,
                       progress: Callable[[int], None] | None = None) -> ImportReport:
    """Open `path` (UTF-8, a BOM is fine) and import it; see `import_orders`."""
    with open(path, newline="", encoding="utf-8-sig") as stream:
        return import_orders(shop, stream, progress=progress)


def import_orders(shop: Shop, stream: TextIO, *, progress: Callable[[int], None] | None = None,
                  progress_every: int = 1000) -> ImportReport:
    """Import every order in `stream` into `shop` through services.upsert_order.

    Returns the counts and the reasons of the failed orders; `progress(n)` is called after every
    `progress_every` orders. Raises CsvImportError when the file itself is unreadable (what was
    imported before that point stays imported; the message says where it stopped).
    """
    reader = csv.DictReader(stream)
    try:
        header = [h.strip() for h in (reader.fieldnames or [])]
    except (csv.Error, UnicodeDecodeError) as exc:
        raise CsvImportError(f"the file cannot be read (save it as UTF-8 CSV): {exc}") from exc
    missing = missing_csv_columns(header)
    if missing:
        raise CsvImportError(f"the header lacks the column(s): {', '.join(missing)} "
                             f"(expected columns: {', '.join(CSV_COLUMNS)})")
    reader.fieldnames = header
    report = ImportReport(ignored_columns=[h for h in header if h not in CSV_COLUMNS])
    done: set[str] = set()
    for count, (order_id, rows) in enumerate(_groups(reader, report), start=1):
        if order_id in done:
            report.fail(order_id, [f"row {rows[0][0]}: the rows of order {order_id} are not together; "
                                   "keep each order's rows next to each other"])
        elif len(rows) > MAX_ROWS_PER_ORDER:
            report.fail(order_id, [f"row {rows[0][0]}: more than {MAX_ROWS_PER_ORDER} lines in one order"])
        else:
            _import_one(shop, order_id, rows, report)
        done.add(order_id)
        if progress and count % progress_every == 0:
            progress(count)
    return report


def _groups(reader: csv.DictReader, report: ImportReport) -> Iterator[tuple[str, list]]:
    """Yield (order_id, [(row number, row), ...]) for each run of rows with the same order_id.

    Row numbers count the header as row 1, as a spreadsheet shows them. Rows without an
    order_id are reported here and skipped.
    """
    current: str | None = None
    rows: list[tuple[int, dict]] = []
    number = 1
    try:
        for row in reader:
            number += 1
            report.rows += 1
            order_id = (row.get("order_id") or "").strip()
            if not order_id:
                report.fail(f"row {number}", [f"row {number}: order_id is required"])
                continue
            if order_id != current and rows:
                yield current, rows
                rows = []
            current = order_id
            rows.append((number, row))
    except (csv.Error, UnicodeDecodeError) as exc:
        raise CsvImportError(f"the file cannot be read after row {number} (save it as UTF-8 CSV): {exc}") from exc
    if rows:
        yield current, rows


def _import_one(shop: Shop, order_id: str, rows: list, report: ImportReport) -> None:
    from connector.returns import services

    try:
        data = order_from_csv_rows(rows)
    except MappingError as exc:
        report.fail(order_id, [str(e) for e in exc.errors])
        return
    existed = db.session.scalar(select(Order.id).where(
        Order.shop_id == shop.id, Order.platform_id == data.platform_id)) is not None
    try:
        services.upsert_order(shop, data)
    except services.ValidationError as exc:
        db.session.rollback()
        report.fail(order_id, [f"{k}: {v}" for k, v in exc.errors.items()] or [exc.message])
        return
    except services.ServiceError as exc:
        db.session.rollback()
        report.fail(order_id, [exc.message])
        return
    except SQLAlchemyError as exc:  # e.g. a concurrent import of the same order
        db.session.rollback()
        log.warning("CSV import of order %s failed: %s", order_id, exc)
        report.fail(order_id, [f"the database refused the order ({type(exc).__name__}); try again"])
        return
    if existed:
        report.updated += 1
    else:
        report.created += 1
