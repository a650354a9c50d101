"""The `connector` command. Each command is thin: it parses, then calls the module that owns the work."""
from __future__ import annotations

import sys

import click

from connector.config import Config


def _app(config: Config | None = None):
    from connector import create_app
    return create_app(config)


@click.group()
def main():
    """Returns Connector: returns portal, warehouse grading and refunds."""


# --------------------------------------------------------------------------- running

@main.command()
@click.option("--port", default=8000, show_default=True, help="Port for the web server.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--data-dir", default="var/demo", show_default=True, help="Folder for the demo's database, files and outbox.")
def demo(port: int, host: str, data_dir: str):
    """Fresh SQLite demo: a seeded shop, web server and worker in one process."""
    from connector.demo import run_demo
    run_demo(host=host, port=port, data_dir=data_dir)


@main.command()
@click.option("--port", default=8000, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
def serve(port: int, host: str):
    """Development web server (production: gunicorn 'connector:create_app()')."""
    _app().run(host=host, port=port, threaded=True)


@main.command()
@click.option("--workers", default=2, show_default=True)
def worker(workers: int):
    """Run the job worker (Huey consumer) with the periodic reconciler."""
    from connector.worker import run_worker
    run_worker(workers=workers)


@main.group("db")
def db_group():
    """Database schema."""


@db_group.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str):
    """Apply the Alembic migrations to DATABASE_URL."""
    from connector.migrate import upgrade
    cfg = Config.from_env()
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(cfg.database_url, revision)
    click.echo(f"database at {revision}")


# --------------------------------------------------------------------------- shops and orders

@main.group(invoke_without_command=True)
@click.pass_context
def shops(ctx):
    """List shops (or add one with `connector shops add`)."""
    if ctx.invoked_subcommand is None:
        from connector.platforms.standalone.commands import list_shops
        with _app().app_context():
            list_shops()


@shops.command("add")
@click.argument("handle")
@click.option("--name", required=True)
@click.option("--currency", default="EUR", show_default=True)
@click.option("--locale", default="en", show_default=True)
@click.option("--country", default="DE", show_default=True)
@click.option("--timezone", "tz", default="Europe/Berlin", show_default=True)
@click.option("--password", default=None, help="Admin password (generated and printed when omitted).")
def shops_add(handle, name, currency, locale, country, tz, password):
    """Add a standalone shop; prints its admin password and API key once."""
    from connector.platforms.standalone.commands import add_shop
    with _app().app_context():
        add_shop(handle=handle, name=name, currency=currency, locale=locale, country=country,
                 timezone=tz, password=password)


@main.command("import-orders")
@click.argument("shop")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
def import_orders(shop: str, file: str):
    """Import orders from a CSV file into a standalone shop."""
    from connector.platforms.standalone.commands import import_orders_csv
    with _app().app_context():
        import_orders_csv(shop, file)


@main.command()
@click.argument("shop")
def sync(shop: str):
    """Sync a shop's orders from its platform."""
    from connector.platforms.sync import sync_shop
    with _app().app_context():
        sync_shop(shop)


# --------------------------------------------------------------------------- shopify

@main.group()
def shopify():
    """Shopify shops: connection status and the order backfill."""


@shopify.command("status")
@click.argument("shop")
def shopify_status(shop: str):
    """Tokens (expiry and scopes, never the token), backfill progress and catch-up of SHOP."""
    from connector.platforms.shopify.commands import show_status
    with _app().app_context():
        show_status(shop)


@shopify.command("backfill")
@click.argument("shop")
@click.option("--restart", is_flag=True, help="Start a new bulk import even if one ran before.")
def shopify_backfill(shop: str, restart: bool):
    """Import SHOP's past orders from Shopify now, following the bulk operation to its end."""
    from connector.platforms.shopify.commands import run_backfill
    with _app().app_context():
        run_backfill(shop, restart=restart)


# --------------------------------------------------------------------------- woocommerce

@main.group()
def woocommerce():
    """WooCommerce stores: connect with REST keys made by hand."""


@woocommerce.command("connect")
@click.argument("store_url")
@click.option("--shop", "handle", default=None, help="Shop handle (made from the store's host when omitted).")
@click.option("--consumer-key", required=True, help="ck_... (WooCommerce > Settings > Advanced > REST API, read/write).")
@click.option("--consumer-secret", required=True, help="cs_...")
def woocommerce_connect(store_url: str, handle: str | None, consumer_key: str, consumer_secret: str):
    """Connect STORE_URL: store the keys sealed, create the webhooks, import the orders now."""
    from connector.platforms.woocommerce.commands import run_connect
    app = _app()
    with app.app_context():
        run_connect(store_url, handle=handle, consumer_key=consumer_key, consumer_secret=consumer_secret,
                    production=app.config["CONNECTOR"].is_production)


# --------------------------------------------------------------------------- carriers

@main.command()
def carriers():
    """List the registered carrier backends and their capabilities."""
    from connector.carriers.commands import list_carriers
    list_carriers()


@main.group()
def sandbox():
    """The sandbox carrier (demos and tests)."""


@sandbox.command("advance")
@click.argument("rma")
@click.option("--shop", default=None, help="Shop handle (needed when several shops have this RMA).")
def sandbox_advance(rma: str, shop: str | None):
    """Move a return's sandbox parcel one tracking step on (in transit, delivered)."""
    from connector.carriers.commands import advance_sandbox
    with _app().app_context():
        advance_sandbox(rma, shop)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
