"""Errors, clock and the small helpers every use case shares."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Iterable

from sqlalchemy import select

from connector.db import session
from connector.returns.context import runtime
from connector.returns.models import Order, Return, Shop
from connector.returns.policy import ReturnPolicy


# How long the database waits for an outside step before the reconciler re-drives it.
STEP_DEADLINE = timedelta(minutes=10)


MAX_COMMENT = 2000


class ServiceError(Exception):
    """A use case refused; `message` is translated and fit to show the user."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


class ValidationError(ServiceError):
    """Input errors keyed by field name."""

    def __init__(self, errors: dict[str, str]):
        super().__init__(next(iter(errors.values())) if errors else "invalid")
        self.errors = errors


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def get_shop(handle: str) -> Shop | None:
    if not handle or len(handle) > 64:
        return None
    return session.scalar(select(Shop).where(Shop.handle == handle, Shop.active.is_(True)))


def policy_of(shop: Shop) -> ReturnPolicy:
    return ReturnPolicy.from_dict(shop.policy or {})


def get_return(shop: Shop, return_id: int) -> Return | None:
    """The return `return_id` if it belongs to `shop`."""
    return session.scalar(select(Return).where(Return.shop_id == shop.id, Return.id == return_id))


def get_return_by_number(shop: Shop, number: int) -> Return | None:
    return session.scalar(select(Return).where(Return.shop_id == shop.id, Return.number == number))


def get_order(shop: Shop, order_id: int) -> Order | None:
    return session.scalar(select(Order).where(Order.shop_id == shop.id, Order.id == order_id))


def _shop(ret: Return) -> Shop:
    return session.get(Shop, ret.shop_id)


def _enqueue_all(jobs: Iterable[tuple[str, dict]]) -> None:
    for name, kwargs in jobs:
        runtime.enqueue(name, **kwargs)


def _set_pending(ret: Return, step: str | None, delay: timedelta = STEP_DEADLINE) -> None:
    ret.pending_step = step
    ret.pending_until = now_utc() + delay if step else None


def _backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(30 * 2 ** max(attempts - 1, 0), 6 * 3600))
