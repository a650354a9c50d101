"""`connector sync SHOP`: pull the shop's orders from its platform through the adapter."""
from __future__ import annotations

import click

from connector.platforms.registry import adapter_for
from connector.returns import services


def sync_shop(handle: str) -> int:
    shop = services.get_shop(handle)
    if shop is None:
        raise click.ClickException(f"no shop with handle {handle!r} (see `connector shops`)")
    if shop.platform == "standalone":
        click.echo(f"{handle} is a standalone shop: orders arrive through POST /api/v1/orders "
                   "or `connector import-orders`; there is nothing to pull.")
        return 0
    adapter = adapter_for(shop)
    count = 0
    for data in adapter.iter_orders(since=None):
        services.upsert_order(shop, data)
        count += 1
        if count % 1000 == 0:
            click.echo(f"  {count} orders synced...")
    click.echo(f"{count} orders synced for {handle}")
    return count
