"""What the services need from outside the domain, injected once by the application.

The domain stays free of Flask, HTTP, platforms and carriers: `build_app` (or a test) sets these
hooks. An unset hook raises a clear error instead of silently doing nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


def _unset(name: str) -> Callable[..., Any]:
    def fail(*_args, **_kwargs):
        raise RuntimeError(f"connector.returns.context.{name} is not configured (build the app first)")
    return fail


@dataclass
class Runtime:
    # enqueue(job_name, **kwargs): hand a job to the queue (runs inline in immediate mode)
    enqueue: Callable[..., None] = _unset("enqueue")
    # storage with put/get/exists/delete by key
    storage: Any = None
    # carrier(key, shop, connection_id=None) -> CarrierBackend (the shop's connection, else built-in `key`)
    carrier: Callable[..., Any] = _unset("carrier")
    # the shop's carrier connections (connector.carriers.connections): serving, return_address, ...
    carriers: Any = None
    # carrier_class(key) -> the backend class (capabilities without credentials)
    carrier_class: Callable[..., Any] = _unset("carrier_class")
    # adapter(shop) -> PlatformAdapter
    adapter: Callable[..., Any] = _unset("adapter")
    # gettext(message) -> translated message in the current request's language
    gettext: Callable[[str], str] = staticmethod(lambda s: s)


runtime = Runtime()


def _(message: str, **params: Any) -> str:
    """Translate a user-facing message (the app installs flask_babel's gettext)."""
    text = runtime.gettext(message)
    return text % params if params else text


def N_(message: str) -> str:
    """Mark a message for extraction (pybabel's N_ keyword) without translating it yet: for text
    kept in constants and translated with _() when shown."""
    return message
