"""The CLI's WooCommerce commands: connect a store with keys made by hand (stores the wc-auth
callback cannot reach), then set up its webhooks and import its orders in the foreground.

Called by `connector.cli` inside an app context; output through click.echo; a request that cannot
be done raises click.ClickException with the reason. Keys are never echoed.
"""
from __future__ import annotations

import click

from connector.platforms.woocommerce import connect
from connector.platforms.woocommerce.errors import WooError


def run_connect(store_url: str, *, handle: str | None, consumer_key: str, consumer_secret: str,
                production: bool) -> None:
    try:
        url = connect.normalise_store_url(store_url, production=production)
    except connect.ConnectError as exc:
        raise click.ClickException(str(exc)) from exc

    def progress(state: dict) -> None:
        click.echo(f"  page {state.get('page')}/{state.get('pages')}: {state.get('imported')} orders imported")

    click.echo(f"connecting {url} ...")
    try:
        shop = connect.connect_with_keys(url, consumer_key, consumer_secret, handle=handle, progress=progress)
    except (connect.ConnectError, WooError) as exc:
        raise click.ClickException(str(exc)) from exc
    state = (shop.platform_data or {}).get("backfill") or {}
    click.echo(f"{shop.handle}: connected, webhooks {', '.join(sorted((shop.platform_data or {}).get('webhooks', {})))}; "
               f"{state.get('imported', 0)} orders imported")
