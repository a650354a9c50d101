"""`connector shopify status|backfill`: the operator's view of a shop's Shopify connection."""
from __future__ import annotations

import click
import pytest
import responses

from connector.platforms.shopify import backfill, commands
from connector.platforms.shopify.client import METER
from tests.shopify.order_nodes import jsonl, line_node, order_node
from tests.shopify.test_backfill import FILE_URL, operation_answer, run_answer


@pytest.fixture(autouse=True)
def fresh_meter():
    METER.clear()


def test_status_shows_scopes_and_backfill_but_never_a_token(shopify_shop, capsys):
    commands.show_status("demo-shop")
    out = capsys.readouterr().out
    assert "demo-shop.myshopify.com" in out and "write_returns" in out
    assert "backfill: not started" in out
    assert "shpat_" not in out and "shprt_" not in out


def test_backfill_runs_in_the_foreground_until_imported(shopify_shop, shopify, rsps, capsys):
    shopify.on("BulkOrdersRun", run_answer())
    shopify.on("BulkOperationGet", [operation_answer("RUNNING", object_count="3"),
                                    operation_answer("COMPLETED", url=FILE_URL, object_count="3")])
    rsps.add(responses.GET, FILE_URL, body=jsonl([order_node("4001", lines=[line_node("4001", 1)])]),
             content_type="application/jsonl")
    assert commands.run_backfill("demo-shop", restart=False, poll_seconds=0) == "IMPORTED"
    out = capsys.readouterr().out
    assert "backfill started" in out and "RUNNING" in out and "1 orders imported" in out
    assert backfill.state(shopify_shop)["status"] == "IMPORTED"
    # --restart starts a new bulk operation even after a finished one
    shopify.on("BulkOperationGet", operation_answer("COMPLETED", url=FILE_URL, object_count="3"))
    commands.run_backfill("demo-shop", restart=True, poll_seconds=0)
    assert len(shopify.calls("BulkOrdersRun")) == 2


def test_backfill_of_a_failed_operation_says_why(shopify_shop, shopify):
    shopify.on("BulkOrdersRun", run_answer())
    shopify.on("BulkOperationGet", operation_answer("FAILED", error_code="INTERNAL_SERVER_ERROR"))
    with pytest.raises(click.ClickException, match="INTERNAL_SERVER_ERROR"):
        commands.run_backfill("demo-shop", restart=False, poll_seconds=0)


def test_commands_refuse_other_platforms(shop):
    with pytest.raises(click.ClickException, match="not a Shopify shop"):
        commands.show_status("demo-shop")
