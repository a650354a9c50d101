"""A shop's carrier connections: the merchant's accounts with carrier backends.

A connection names a backend (registry key), holds what the merchant entered for it (the
backend's `settings_fields`: secret ones sealed with the app's SecretBox in `credentials`, the
rest in `settings`), test mode, the methods it serves for which destination countries, and the
return address per country (a domestic address abroad, as 3PLs offer: a Swiss shopper sends to a
Swiss address). The services ask here which connection serves a method for a shopper's country
(`serving`) and build the backend from it (`backend_of`).

A shop without connections uses the built-in backends its policy names (`policy.carriers`:
sandbox and selfship in the demo); once it has one, only its connections (and "ship it yourself")
are offered.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from flask import current_app
from sqlalchemy import select

from connector.carriers import registry
from connector.db import session
from connector.returns.context import _
from connector.returns.models import CarrierConnection, Shop
from connector.returns.ports import METHODS, CarrierBackend, CarrierError, CarrierRetryable, SettingField

ANY_COUNTRY = "*"
CARRIER_METHODS = tuple(m for m in METHODS if m != "selfship")  # selfship needs no carrier
DEFAULT_CUTOFF_HOUR = 24  # no cut-off unless the merchant sets the carrier's


class ConnectionInvalid(ValueError):
    """What the merchant entered cannot make a connection; the message says which field."""


@dataclass(frozen=True)
class Serving:
    """The connection that performs `method` for a country, and its backend."""

    connection: CarrierConnection
    backend: CarrierBackend


def fields_of(backend_key: str) -> tuple[SettingField, ...]:
    """The settings a merchant enters for this backend (its class's `settings_fields`)."""
    return tuple(getattr(registry.available()[backend_key], "settings_fields", ()) or ())


def _box():
    return current_app.extensions["connector.secrets"]


def _clean_methods(methods: dict[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for method, countries in (methods or {}).items():
        if method not in CARRIER_METHODS:
            raise ConnectionInvalid(f"unknown return method {method!r}")
        codes = sorted({str(c).strip().upper() for c in countries or [] if str(c).strip()})
        if any(c != ANY_COUNTRY and (len(c) != 2 or not c.isalpha()) for c in codes):
            raise ConnectionInvalid(_("%(method)s: countries are two-letter codes (DE, AT) or * for all",
                                      method=method))
        if codes:
            out[method] = [ANY_COUNTRY] if ANY_COUNTRY in codes else codes
    return out


def _clean_addresses(addresses: dict[str, Any]) -> dict[str, dict[str, str]]:
    out = {}
    for country, address in (addresses or {}).items():
        key = str(country).strip().upper()
        if key != ANY_COUNTRY and (len(key) != 2 or not key.isalpha()):
            raise ConnectionInvalid(_("Return address for %(country)s: use a two-letter country code or *",
                                      country=country))
        fields = {k: str(v).strip() for k, v in (address or {}).items() if str(v or "").strip()}
        missing = [f for f in ("name", "line1", "postcode", "city", "country") if not fields.get(f)]
        if missing:
            raise ConnectionInvalid(_("Return address for %(country)s: %(fields)s missing", country=key,
                                      fields=", ".join(missing)))
        out[key] = fields
    return out


def save(shop: Shop, backend_key: str, values: dict[str, Any], *, name: str, test_mode: bool,
         methods: dict[str, Any], return_addresses: dict[str, Any] | None = None,
         cutoff_hour: int | None = None, connection: CarrierConnection | None = None) -> CarrierConnection:
    """Create (or update `connection`) from what the merchant entered. A secret left empty on an
    update keeps the stored one. Raises ConnectionInvalid naming the field that is wrong."""
    if backend_key not in registry.available():
        raise ConnectionInvalid(f"unknown carrier backend {backend_key!r}")
    if connection is not None and (connection.shop_id != shop.id or connection.backend != backend_key):
        raise ConnectionInvalid("this connection belongs to another shop or backend")
    fields = fields_of(backend_key)
    kept = _box().open(connection.credentials) if connection is not None else {}
    sealed, plain = {}, {}
    for field in fields:
        value = str(values.get(field.name) or "").strip()
        if field.secret:
            value = value or kept.get(field.name, "")
        if field.required and not value:
            raise ConnectionInvalid(_("%(field)s is required", field=_(field.label)))
        if field.choices and value and value not in {c for c, _label in field.choices}:
            raise ConnectionInvalid(_("%(field)s: choose one of %(choices)s", field=_(field.label),
                                      choices=", ".join(c for c, _l in field.choices)))
        if value:
            (sealed if field.secret else plain)[field.name] = value
    if cutoff_hour is not None:
        if not 0 <= int(cutoff_hour) <= 24:
            raise ConnectionInvalid(_("The cut-off hour is between 0 and 24."))
        plain["cutoff_hour"] = int(cutoff_hour)
    conn = connection or CarrierConnection(shop_id=shop.id, backend=backend_key,
                                           webhook_token=secrets.token_urlsafe(24))
    conn.name = (name or "").strip()[:200] or registry.available()[backend_key].name
    conn.settings = plain
    conn.credentials = _box().seal(sealed) if sealed else None
    conn.test_mode = bool(test_mode)
    conn.methods = _clean_methods(methods)
    conn.return_addresses = _clean_addresses(return_addresses or {})
    if connection is None:
        session.add(conn)
    session.flush()
    backend_of(conn)  # the backend validates its settings now, not at the shopper's first label
    return conn


def backend_settings(conn: CarrierConnection) -> dict[str, Any]:
    """What the backend is built with: the plain settings, the opened secrets, test mode, data dir."""
    return {**(conn.settings or {}), **_box().open(conn.credentials), "test_mode": bool(conn.test_mode),
            "data_dir": str(current_app.config["CONNECTOR"].data_dir)}


def stored_secret_names(conn: CarrierConnection) -> list[str]:
    """Which secret fields hold a value (their names only: the admin says "stored", never the value)."""
    return sorted(_box().open(conn.credentials))


def backend_of(conn: CarrierConnection) -> CarrierBackend:
    """The connection's backend instance (ValueError when its settings do not suffice)."""
    return registry.get_backend(conn.backend, backend_settings(conn))


def of_shop(shop: Shop, *, active_only: bool = True) -> list[CarrierConnection]:
    query = select(CarrierConnection).where(CarrierConnection.shop_id == shop.id)
    if active_only:
        query = query.where(CarrierConnection.active.is_(True))
    return list(session.scalars(query.order_by(CarrierConnection.position, CarrierConnection.id)))


def get(shop: Shop, connection_id: int | None) -> CarrierConnection | None:
    """The shop's connection by id; None for another shop's (tenant isolation) or none."""
    if connection_id is None:
        return None
    conn = session.get(CarrierConnection, connection_id)
    return conn if conn is not None and conn.shop_id == shop.id else None


def serves_country(conn: CarrierConnection, method: str, country: str) -> bool:
    countries = (conn.methods or {}).get(method) or []
    return ANY_COUNTRY in countries or country.upper() in countries


def return_address(shop: Shop, conn: CarrierConnection | None, country: str) -> dict[str, Any]:
    """Where a parcel from `country` goes back to: the connection's address for that country, its
    default ("*"), else the shop's return address."""
    addresses = (conn.return_addresses or {}) if conn is not None else {}
    return dict(addresses.get(country.upper()) or addresses.get(ANY_COUNTRY) or shop.return_address or {})


def serving(shop: Shop, method: str, country: str,
            conns: list[CarrierConnection] | None = None) -> Serving | None:
    """The first active connection (by position) that serves `method` for a shopper in `country`
    and whose backend can perform it there: the method (capabilities.serves) and, when the parcel
    crosses a border to its return address, international parcels. `conns`: the shop's active
    connections when the caller has them already (of_shop)."""
    for conn in of_shop(shop) if conns is None else conns:
        if not serves_country(conn, method, country):
            continue
        try:
            backend = backend_of(conn)
        except (ValueError, KeyError, CarrierError):
            continue  # a connection whose backend is gone or misconfigured offers nothing
        caps = backend.capabilities
        if not caps.serves(method):
            continue
        destination = (return_address(shop, conn, country).get("country") or shop.country or "").upper()
        if destination and destination != country.upper() and not caps.international:
            continue
        return Serving(conn, backend)
    return None


def cutoff_hour(conn: CarrierConnection | None) -> int:
    if conn is None:
        return DEFAULT_CUTOFF_HOUR
    return int((conn.settings or {}).get("cutoff_hour", DEFAULT_CUTOFF_HOUR))


@dataclass(frozen=True)
class CheckResult:
    """What "check credentials" found: accepted, refused (the carrier's words), or unreachable
    (no answer: nothing is known about the credentials, and nothing is recorded)."""

    accepted: bool
    unreachable: bool = False
    message: str = ""


def check(conn: CarrierConnection) -> CheckResult:
    """The merchant's "check credentials": one call to the carrier. Its answer is kept on the
    connection; a carrier that did not answer leaves the last outcome as it was."""
    try:
        backend_of(conn).check_credentials()
    except CarrierRetryable as exc:
        return CheckResult(False, unreachable=True, message=str(exc)[:2000] or type(exc).__name__)
    except (CarrierError, ValueError) as exc:
        result = CheckResult(False, message=str(exc)[:2000] or type(exc).__name__)
    else:
        result = CheckResult(True)
    conn.checked_at = datetime.now(timezone.utc)
    conn.check_error = None if result.accepted else result.message
    session.commit()
    return result


def by_webhook_token(token: str) -> CarrierConnection | None:
    if not token or len(token) > 64:
        return None
    return session.scalar(select(CarrierConnection).where(CarrierConnection.webhook_token == token))
