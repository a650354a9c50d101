"""The Shopify Admin 2026-04 schema (copied from ../shared/shopify) and validation helpers.

`validate_document(text)` checks a document against the schema; `validate_variables(text, vars)`
checks that a variables dict is what the document's operation accepts (types, required fields,
enum values, unknown input fields), as Shopify would before running it.
"""
from __future__ import annotations

import gzip
import json
from functools import lru_cache
from pathlib import Path

from graphql import (DocumentNode, FragmentDefinitionNode, GraphQLSchema, OperationDefinitionNode,
                     build_client_schema, parse, validate)
from graphql.execution.values import get_variable_values

SCHEMA_PATH = Path(__file__).parent.parent / "fixtures" / "shopify" / "admin-2026-04.schema.json.gz"


@lru_cache(maxsize=1)
def schema() -> GraphQLSchema:
    data = json.load(gzip.open(SCHEMA_PATH))
    built = build_client_schema(data.get("data", data))
    built._validation_errors = []  # graphql-core 3.3 rejects Shopify's schema otherwise
    return built


def operations(text: str) -> list[OperationDefinitionNode]:
    return [d for d in parse(text).definitions if isinstance(d, OperationDefinitionNode)]


def validate_document(text: str) -> list[str]:
    """Error messages for each operation of `text` (with the fragments it uses); [] when valid."""
    doc = parse(text)
    frags = [d for d in doc.definitions if isinstance(d, FragmentDefinitionNode)]
    errors = []
    for op in operations(text):
        errors += [e.message for e in validate(schema(), DocumentNode(definitions=(op, *frags)))
                   if "is never used" not in e.message]
    return errors


def validate_variables(text: str, variables: dict | None, operation_name: str | None = None) -> list[str]:
    """Error messages for `variables` sent with `text`'s operation; [] when Shopify would accept them."""
    ops = operations(text)
    op = next((o for o in ops if operation_name is None or (o.name and o.name.value == operation_name)), None)
    if op is None:
        return [f"no operation {operation_name!r} in the document"]
    result = get_variable_values(schema(), op.variable_definitions or [], variables or {})
    if isinstance(result, list):
        return [e.message for e in result]
    return []
