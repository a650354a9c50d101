"""The CLI's Shopify commands: a shop's connection status, and the backfill run by hand.

Called by `connector.cli` inside an app context; output through click.echo; a request that
cannot be done raises click.ClickException with the reason.
"""
from __future__ import annotations

import time

import click

from connector.platforms.shopify import backfill, credentials
from connector.platforms.shopify.errors import ShopifyError
from connector.returns import services
from connector.returns.models import Shop


def _shopify_shop(handle: str) -> Shop:
    shop = services.get_shop(handle)
    if shop is None:
        raise click.ClickException(f"no shop with handle {handle!r} (see `connector shops`)")
    if shop.platform != "shopify":
        raise click.ClickException(f"{handle} is a {shop.platform} shop, not a Shopify shop")
    return shop


def show_status(handle: str) -> None:
    """Echo what the connector knows of the shop's Shopify connection (never a token)."""
    shop = _shopify_shop(handle)
    creds = credentials.load(shop)
    data = shop.platform_data or {}
    click.echo(f"{shop.handle}: {shop.domain} ({'active' if shop.active else 'inactive'})")
    if creds is None:
        click.echo("  tokens: none (uninstalled or never installed: open the app from the Shopify admin)")
    else:
        expiry = creds.expires_at.isoformat() if creds.expires_at else "does not expire"
        click.echo(f"  tokens: access token until {expiry}; scopes {creds.scope or '-'}")
    current = backfill.state(shop)
    if current:
        click.echo(f"  backfill: {current.get('status')}, {current.get('imported', 0)} orders imported"
                   f" (started {current.get('started_at')}, orders since {current.get('since')})"
                   + (f"; error: {current['error']}" if current.get("error") else ""))
    else:
        click.echo("  backfill: not started")
    click.echo(f"  catch-up: last run {data.get('caught_up_at') or 'never'}"
               + (f"; error: {data['catch_up_error']}" if data.get("catch_up_error") else ""))


def run_backfill(handle: str, *, restart: bool, poll_seconds: float = backfill.POLL_SECONDS) -> str:
    """Start (or with `restart`, start again) the shop's backfill and follow it in the foreground
    until Shopify's bulk operation is imported or has failed; the final status."""
    shop = _shopify_shop(handle)
    if not shop.active:
        raise click.ClickException(f"{handle} is uninstalled: reinstall the app from the Shopify admin first")
    try:
        if restart or not backfill.state(shop).get("id") or backfill.state(shop).get("status") in backfill.FAILED:
            backfill.start(shop, restart=True)
            click.echo(f"backfill started for {shop.domain} (orders of the last "
                       f"{backfill.state(shop).get('days')} days)")
        while True:
            status = backfill.poll(shop)
            current = backfill.state(shop)
            click.echo(f"  {status}: {current.get('object_count', 0)} objects at Shopify, "
                       f"{current.get('imported', 0)} orders imported")
            if status not in backfill.PENDING:
                break
            time.sleep(poll_seconds)
    except ShopifyError as exc:
        raise click.ClickException(str(exc)) from exc
    if status != "IMPORTED":
        raise click.ClickException(f"the backfill ended {status}: {backfill.state(shop).get('error')}")
    return status
