"""The CLI's shop commands: list shops, add a standalone shop, import orders from CSV.

Called by `connector.cli` inside an app context; output goes through click.echo, and a request
that cannot be done raises click.ClickException with the reason.
"""
from __future__ import annotations

import re
import secrets
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click
from babel.numbers import list_currencies
from sqlalchemy import func, select
from werkzeug.security import generate_password_hash

from connector import db
from connector.crypto import hash_api_key, new_api_key
from connector.i18n import LANGUAGES
from connector.platforms.standalone.csv_import import CsvImportError, import_orders_file
from connector.platforms.standalone.defaults import add_default_reasons
from connector.returns.models import Order, Return, Shop
from connector.returns.policy import ReturnPolicy

HANDLE_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
# Path segments the admin and portal use themselves (e.g. /admin/static/...).
RESERVED_HANDLES = frozenset({"static", "api", "admin", "portal", "login", "logout", "healthz"})
MIN_PASSWORD_LENGTH = 10


def list_shops() -> None:
    """Echo one line per shop: handle, platform, name, orders and returns."""
    orders = dict(db.session.execute(select(Order.shop_id, func.count()).group_by(Order.shop_id)).all())
    returns = dict(db.session.execute(
        select(Return.shop_id, func.count()).where(Return.state != "draft").group_by(Return.shop_id)).all())
    shops = db.session.scalars(select(Shop).order_by(Shop.handle)).all()
    if not shops:
        click.echo("no shops yet (add one with `connector shops add HANDLE --name NAME`)")
        return
    for shop in shops:
        state = "" if shop.active else "  (inactive)"
        click.echo(f"{shop.handle}\t{shop.platform}\t{shop.name}\t"
                   f"orders: {orders.get(shop.id, 0)}\treturns: {returns.get(shop.id, 0)}{state}")


def check_handle(handle: str) -> str | None:
    """Why `handle` cannot be a shop handle, or None when it can."""
    if not HANDLE_RE.match(handle):
        return ("a handle is 1-64 lower-case letters, digits and hyphens, "
                "not starting or ending with a hyphen (e.g. demo-shop)")
    if handle in RESERVED_HANDLES:
        return f"{handle!r} is reserved"
    return None


def add_shop(*, handle: str, name: str, currency: str = "EUR", locale: str = "en", country: str = "DE",
             timezone: str = "Europe/Berlin", password: str | None = None) -> Shop:
    """Create a standalone shop with the default policy and reasons; print its password and API key once.

    Only hashes are stored, so this is the one moment they can be seen.
    """
    handle = handle.strip()
    currency = currency.strip().upper()
    country = country.strip().upper()
    problem = check_handle(handle)
    if problem:
        raise click.ClickException(problem)
    if not name.strip():
        raise click.ClickException("the shop needs a name")
    if currency not in list_currencies():
        raise click.ClickException(f"{currency!r} is not an ISO 4217 currency code (e.g. EUR)")
    if locale not in LANGUAGES:
        raise click.ClickException(f"locale must be one of {', '.join(LANGUAGES)}")
    if not re.fullmatch(r"[A-Z]{2}", country):
        raise click.ClickException("country must be a two-letter ISO code (e.g. DE)")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise click.ClickException(f"{timezone!r} is not a time zone (e.g. Europe/Berlin)") from None
    if password is not None and len(password) < MIN_PASSWORD_LENGTH:
        raise click.ClickException(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    if db.session.scalar(select(Shop.id).where(Shop.handle == handle)) is not None:
        raise click.ClickException(f"a shop with the handle {handle!r} already exists")

    generated = password is None
    password = password or secrets.token_urlsafe(12)
    api_key = new_api_key()
    with db.transaction():
        shop = Shop(handle=handle, name=name.strip(), platform="standalone", currency=currency, locale=locale,
                    country=country, timezone=timezone, policy=ReturnPolicy().to_dict(), branding={},
                    return_address={}, admin_password_hash=generate_password_hash(password),
                    api_key_hash=hash_api_key(api_key))
        db.session.add(shop)
        db.session.flush()
        add_default_reasons(shop)
    click.echo(f"shop {handle!r} created")
    click.echo(f"admin:    /admin/{handle}/")
    click.echo(f"portal:   /portal/{handle}/")
    if generated:
        click.echo(f"password: {password}")
    click.echo(f"API key:  {api_key}")
    click.echo("Keep the API key (and the password) now: only their hashes are stored.")
    return shop


def import_orders_csv(shop_handle: str, path: str) -> None:
    """Import orders from the CSV at `path` into the standalone shop `shop_handle` and echo a report.

    Exits non-zero (ClickException) when any order failed; the valid ones are imported regardless.
    """
    shop = db.session.scalar(select(Shop).where(Shop.handle == shop_handle))
    if shop is None:
        raise click.ClickException(f"no shop with the handle {shop_handle!r} (see `connector shops`)")
    if shop.platform != "standalone":
        raise click.ClickException(f"{shop_handle!r} is a {shop.platform} shop; its orders come from "
                                   "the platform (`connector sync`), not from CSV")
    try:
        report = import_orders_file(shop, path, progress=lambda n: click.echo(f"... {n} orders"))
    except CsvImportError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot read {path}: {exc.strerror or exc}") from None
    if report.ignored_columns:
        click.echo(f"ignored columns: {', '.join(report.ignored_columns)}")
    click.echo(f"{report.rows} rows, {report.orders} orders: {report.created} created, "
               f"{report.updated} updated, {report.failed} failed")
    for failure in report.failures:
        click.echo(f"failed {failure.order_id}:")
        for reason in failure.reasons:
            click.echo(f"  {reason}")
    if report.failed > len(report.failures):
        click.echo(f"... and {report.failed - len(report.failures)} more failed orders")
    if report.failed:
        # A non-zero exit lets a scheduled import notice; the valid orders are stored all the same.
        raise click.ClickException(f"{report.failed} order(s) were not imported (reasons above)")
