"""Signed links for shoppers: the single-use sign-in link and the long-lived status link.

Both are itsdangerous `URLSafeTimedSerializer` tokens over SECRET_KEY, each with its own salt so
that one kind can never be replayed as the other.

- Sign-in link: payload shop id + email + a random jti; valid 30 minutes; spent once (the jti is
  written to `UsedToken`).
- Status link: payload shop id + return id; valid 90 days; may be opened any number of times (it
  goes into emails so the shopper can come back to the return and its label).
"""
from __future__ import annotations

import secrets
from datetime import timedelta
from urllib.parse import quote, urlencode

from flask import current_app
from itsdangerous import BadData, URLSafeTimedSerializer
from sqlalchemy.exc import IntegrityError

from connector import db
from connector.returns.models import Return, Shop, UsedToken

SIGNIN_SALT = "portal.signin-link"
STATUS_SALT = "portal.status-link"
SIGNIN_MAX_AGE = timedelta(minutes=30)
STATUS_MAX_AGE = timedelta(days=90)


class TokenError(Exception):
    """The token is malformed, tampered with, expired, spent, or meant for another shop."""


def _serializer(salt: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=salt)


def _base_url() -> str:
    return current_app.config["CONNECTOR"].base_url.rstrip("/")


def _portal_url(shop: Shop, path: str, **query: str) -> str:
    url = f"{_base_url()}/portal/{quote(shop.handle, safe='')}/{path}"
    return f"{url}?{urlencode(query)}" if query else url


# ------------------------------------------------------------------------------- sign-in link

def signin_token(shop: Shop, email: str) -> str:
    return _serializer(SIGNIN_SALT).dumps({"s": shop.id, "e": email, "j": secrets.token_hex(16)})


def signin_link(shop: Shop, email: str) -> str:
    """An absolute URL that signs `email` in to `shop`'s portal once, within 30 minutes."""
    return _portal_url(shop, "link", t=signin_token(shop, email))


def read_signin_token(shop: Shop, token: str) -> tuple[str, str]:
    """Check the token without spending it; return (email, spent-marker). Raises TokenError."""
    try:
        data = _serializer(SIGNIN_SALT).loads(token, max_age=int(SIGNIN_MAX_AGE.total_seconds()))
    except (BadData, UnicodeError, ValueError, TypeError):
        raise TokenError("bad or expired sign-in link") from None
    if not isinstance(data, dict) or data.get("s") != shop.id:
        raise TokenError("sign-in link for another shop")
    email, jti = data.get("e"), data.get("j")
    if not isinstance(email, str) or not isinstance(jti, str) or not jti:
        raise TokenError("malformed sign-in link")
    spent = f"signin:{jti}"[:64]
    if db.session.get(UsedToken, spent) is not None:
        raise TokenError("sign-in link already used")
    return email, spent


def spend_signin_token(shop: Shop, token: str) -> str:
    """Check the token, mark it spent, and return its email. Raises TokenError.

    Commits the spent jti at once: a link that has been used stays spent, whatever follows.
    """
    email, spent = read_signin_token(shop, token)
    try:
        db.session.add(UsedToken(jti=spent))
        db.session.commit()
    except IntegrityError:  # used twice at the same moment: one of them wins
        db.session.rollback()
        raise TokenError("sign-in link already used") from None
    return email


# -------------------------------------------------------------------------------- status link

def status_token(ret: Return) -> str:
    return _serializer(STATUS_SALT).dumps({"s": ret.shop_id, "r": ret.id})


def status_link(ret: Return) -> str:
    """An absolute URL (config.base_url) to the return's status page, valid for 90 days.

    Whoever holds it may see the status page and download the label; the return must have its
    number (i.e. be confirmed) and its shop loaded.
    """
    shop = db.session.get(Shop, ret.shop_id)
    return _portal_url(shop, f"returns/{quote(ret.rma, safe='')}", t=status_token(ret))


def read_status_token(shop: Shop, token: str) -> int:
    """The return id a status token grants access to. Raises TokenError."""
    try:
        data = _serializer(STATUS_SALT).loads(token, max_age=int(STATUS_MAX_AGE.total_seconds()))
    except (BadData, UnicodeError, ValueError, TypeError):
        raise TokenError("bad or expired status link") from None
    if not isinstance(data, dict) or data.get("s") != shop.id or not isinstance(data.get("r"), int):
        raise TokenError("status link for another shop")
    return data["r"]
