"""Which carrier backends exist, and how to get one.

The built-in backends (`selfship`, `sandbox`) are always there. Other packages add theirs through
the entry point group ``connector.carriers`` (name = the backend's `key`, value =
``module:Class``), so a carrier can ship as its own distribution without touching this code.

A backend class has the class attributes `key`, `name` and `capabilities`
(ports.CarrierCapabilities) and is built as ``cls(settings)`` with a plain dict of settings
(credentials, account numbers, ...); the instance implements ports.CarrierBackend.
"""
from __future__ import annotations

import functools
import logging
import warnings
from importlib.metadata import EntryPoint, entry_points

from connector.returns.ports import CarrierBackend, CarrierCapabilities

ENTRY_POINT_GROUP = "connector.carriers"

log = logging.getLogger(__name__)


class CarrierPluginWarning(UserWarning):
    """An installed carrier plugin could not be loaded; it is left out, the rest keep working."""


class UnknownCarrier(KeyError):
    """No backend is registered under this key."""

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0]) if self.args else ""


def _builtins() -> dict[str, type]:
    from connector.carriers.sandbox import SandboxBackend
    from connector.carriers.selfship import SelfShipBackend
    return {cls.key: cls for cls in (SelfShipBackend, SandboxBackend)}


def _problem(ep: EntryPoint, cls: object) -> str | None:
    """Why `cls`, loaded from `ep`, is not a usable backend class (None when it is)."""
    if not isinstance(cls, type):
        return f"{ep.value} is not a class"
    missing = [attr for attr in ("key", "name", "capabilities") if not hasattr(cls, attr)]
    if missing:
        return f"{ep.value} lacks the class attribute(s) {', '.join(missing)}"
    if not isinstance(cls.capabilities, CarrierCapabilities):
        return f"{ep.value}.capabilities is not a CarrierCapabilities"
    if cls.key != ep.name:
        # Shipments store the key; a mismatch would make them unreachable after a restart.
        return f"entry point name {ep.name!r} differs from {ep.value}.key {cls.key!r}"
    return None


def _report(message: str) -> None:
    log.warning(message)
    warnings.warn(message, CarrierPluginWarning, stacklevel=3)


@functools.cache
def _plugins() -> dict[str, type]:
    """Backends from installed entry points; broken ones are reported and left out.

    A plugin may not replace a built-in under the same key with another class; it is reported
    and the built-in kept (the package's own entry points name the built-in classes themselves).
    """
    builtins = _builtins()
    found: dict[str, type] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            cls = ep.load()
        except Exception as exc:  # a plugin's import error must not take the app down
            _report(f"carrier backend {ep.name!r} ({ep.value}) could not be loaded and is "
                    f"not available: {type(exc).__name__}: {exc}")
            continue
        problem = _problem(ep, cls)
        if problem:
            _report(f"carrier backend {ep.name!r} is not available: {problem}")
            continue
        if ep.name in builtins and builtins[ep.name] is not cls:
            _report(f"carrier backend {ep.name!r} from {ep.value} is ignored: "
                    f"{ep.name!r} is a built-in backend")
            continue
        found[ep.name] = cls
    return found


def refresh() -> None:
    """Forget the entry points read so far (after installing a plugin at run time, and in tests)."""
    _plugins.cache_clear()


def available() -> dict[str, type]:
    """All backend classes by key: the built-ins plus the installed plugins, sorted by key."""
    return dict(sorted({**_builtins(), **_plugins()}.items()))


def get_backend(key: str, settings: dict | None = None) -> CarrierBackend:
    """A backend instance for `key`, built with `settings`. Unknown key: UnknownCarrier (a KeyError)."""
    backends = available()
    try:
        cls = backends[key]
    except KeyError:
        known = ", ".join(backends) or "none"
        raise UnknownCarrier(f"unknown carrier backend {key!r}; known backends: {known}") from None
    return cls(settings)
