"""The bodies of `connector carriers` and `connector sandbox advance` (connector/cli.py parses)."""
from __future__ import annotations

import re
from dataclasses import fields

import click
from flask import current_app
from sqlalchemy import select

from connector import db
from connector.carriers.registry import available
from connector.carriers.sandbox import SandboxBackend
from connector.returns.models import Return, Shop
from connector.returns.ports import CarrierCapabilities, CarrierError

_RMA_RE = re.compile(r"(?:R-?|#)?(\d+)", re.IGNORECASE)


def list_carriers() -> None:
    """Print every registered backend: key, name, and one yes/no column per capability."""
    capabilities = [f.name for f in fields(CarrierCapabilities)]
    rows = [["key", "name", *capabilities]]
    for key, cls in available().items():
        rows.append([key, cls.name, *("yes" if getattr(cls.capabilities, c) else "no" for c in capabilities)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


def parse_rma(rma: str) -> int:
    """The return number in "R-1042", "1042" or "#1042"."""
    match = _RMA_RE.fullmatch(rma.strip())
    if not match:
        raise click.ClickException(f"{rma!r} is not an RMA; write it as R-1042 or 1042")
    return int(match.group(1))


def _find_return(rma: str, shop_handle: str | None) -> Return:
    number = parse_rma(rma)
    query = select(Return, Shop.handle).join(Shop, Shop.id == Return.shop_id).where(Return.number == number)
    if shop_handle:
        shop_id = db.session.scalar(select(Shop.id).where(Shop.handle == shop_handle))
        if shop_id is None:
            raise click.ClickException(f"no shop with handle {shop_handle!r}")
        query = query.where(Return.shop_id == shop_id)
    found = db.session.execute(query).all()
    where = f" in shop {shop_handle!r}" if shop_handle else ""
    if not found:
        raise click.ClickException(f"no return R-{number}{where}")
    if len(found) > 1:
        handles = ", ".join(sorted(handle for _, handle in found))
        raise click.ClickException(f"R-{number} exists in several shops ({handles}); choose one with --shop")
    return found[0][0]


def advance_sandbox(rma: str, shop_handle: str | None) -> None:
    """Move the return's sandbox parcel one tracking step on, then let the return follow.

    Runs inside an app context. The carrier side moves first; `refresh_tracking` then reads it
    back exactly as the periodic tracking poll would, so the demo exercises the real path.
    """
    ret = _find_return(rma, shop_handle)
    shipment = ret.shipment
    if shipment is None:
        raise click.ClickException(f"{ret.rma} has no shipment yet (is it approved, and has the label job run?)")
    if shipment.carrier != SandboxBackend.key:
        raise click.ClickException(f"{ret.rma} ships with {shipment.carrier!r}, not the sandbox carrier")
    if not shipment.tracking_number:
        raise click.ClickException(f"{ret.rma}'s sandbox shipment has no tracking number yet")
    backend = SandboxBackend(settings={"data_dir": current_app.config["CONNECTOR"].data_dir})
    try:
        event = backend.advance(shipment.tracking_number)
    except CarrierError as exc:
        raise click.ClickException(f"{ret.rma}: {exc}") from exc
    if event is None:
        raise click.ClickException(f"{ret.rma}'s parcel {shipment.tracking_number} is already delivered")
    from connector.returns.services import refresh_tracking

    with db.transaction():
        refresh_tracking(shipment)
    click.echo(f"{ret.rma} parcel {shipment.tracking_number}: {event.status} ({event.description}, "
               f"{event.location or 'no location'}); the return is now {ret.state}")
