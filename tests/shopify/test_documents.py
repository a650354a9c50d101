"""Every GraphQL document the app sends is valid against the Admin 2026-04 schema."""
from pathlib import Path

import pytest

from connector.platforms.shopify import documents
from tests.shopify.schema import operations, validate_document

GRAPHQL_DIR = Path(documents.DOCUMENTS_DIR)
ALL_FILES = sorted(GRAPHQL_DIR.rglob("*.graphql"))


def test_there_are_documents():
    assert ALL_FILES, f"no .graphql files under {GRAPHQL_DIR}"


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: str(p.relative_to(GRAPHQL_DIR)))
def test_document_validates_against_the_admin_schema(path):
    errors = validate_document(path.read_text(encoding="utf-8"))
    assert errors == [], f"{path.name}: {errors}"


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: str(p.relative_to(GRAPHQL_DIR)))
def test_document_holds_one_operation_named_as_its_file(path):
    """The client sends `operationName` = the file name; Shopify runs the operation of that name."""
    ops = operations(path.read_text(encoding="utf-8"))
    assert [op.name.value if op.name else None for op in ops] == [path.stem]


def test_bulk_query_sent_is_valid_with_its_date_filled_in():
    from datetime import datetime, timezone

    from connector.platforms.shopify.backfill import bulk_query

    text = bulk_query(datetime(2025, 4, 1, 12, 30, tzinfo=timezone.utc))
    assert "created_at:>='2025-04-01T12:30:00Z'" in text
    assert "BACKFILL_SINCE" not in text and text.startswith("{")
    assert validate_document(text) == []
