"""Portal test helpers: a `shopper` that browses like a browser (reads the CSRF token from the
page it last loaded and sends it back), and shortcuts through the return flow."""
from __future__ import annotations

import html
import io
import re

import pytest
from PIL import Image
from werkzeug.datastructures import MultiDict

from connector import db
from connector.returns.models import Order, Return

_CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def csrf_from(page: str) -> str | None:
    match = _CSRF.search(page)
    return html.unescape(match.group(1)) if match else None


def _fresh_g() -> None:
    """The `app` fixture keeps one app context for the whole test, so `g` outlives a request
    (Flask-WTF caches the CSRF token there, Flask-Babel the locale). Empty it, as a real server
    does between requests."""
    from flask import g
    for name in list(vars(g)):
        g.pop(name, None)


class Shopper:
    """A test client with a memory of the last CSRF token it saw."""

    def __init__(self, client, handle: str = "demo-shop"):
        self.client = client
        self.handle = handle
        self.token: str | None = None

    def url(self, path: str = "") -> str:
        return f"/portal/{self.handle}/{path}"

    def get(self, path: str = "", **kw):
        _fresh_g()
        resp = self.client.get(self.url(path) if not path.startswith("/") else path, **kw)
        self._remember(resp)
        return resp

    def post(self, path: str, data=None, *, csrf: bool = True, **kw):
        data = MultiDict(data or {})
        if csrf and "csrf_token" not in data:
            if self.token is None:
                self.get("")
            data["csrf_token"] = self.token
        _fresh_g()
        resp = self.client.post(self.url(path) if not path.startswith("/") else path, data=data, **kw)
        self._remember(resp)
        return resp

    def _remember(self, resp):
        if resp.mimetype == "text/html":
            token = csrf_from(resp.get_data(as_text=True))
            if token:
                self.token = token

    # -------------------------------------------------------------------------- flow shortcuts

    def sign_in(self, number: str = "1001", contact: str = "erika@example.com"):
        self.get("")
        return self.post("", {"order_number": number, "contact": contact})

    def choose_items(self, order: Order, data: dict, **kw):
        self.get(f"orders/{order.id}/items")
        return self.post(f"orders/{order.id}/items", data, **kw)

    def through_to_summary(self, order: Order, items: dict, method: str = "pickup"):
        resp = self.choose_items(order, items)
        assert resp.status_code == 302, resp.get_data(as_text=True)
        resp = self.post(f"orders/{order.id}/method", {"method": method})
        assert resp.status_code == 302, resp.get_data(as_text=True)
        page = self.get(f"orders/{order.id}/instructions").get_data(as_text=True)
        codes = re.findall(r'name="checklist" id="checklist-([a-z_]+)"', page)
        resp = self.post(f"orders/{order.id}/instructions", address_form(order) + [("checklist", c) for c in codes])
        assert resp.status_code == 302, resp.get_data(as_text=True)
        return self.get(f"orders/{order.id}/summary")


def address_form(order: Order) -> list[tuple[str, str]]:
    a = order.shipping_address
    return [("address-name", a["name"]), ("address-line1", a["line1"]), ("address-line2", ""),
            ("address-postcode", a["postcode"]), ("address-city", a["city"]), ("address-country", a["country"]),
            ("address-phone", "+49 30 1234567")]


@pytest.fixture
def shopper(client, shop):
    return Shopper(client)


@pytest.fixture
def order_1001(shop) -> Order:
    return db.session.query(Order).filter_by(shop_id=shop.id, number="1001").one()


def lines_of(order: Order) -> dict[str, int]:
    """Order line ids by title."""
    return {line.title: line.id for line in order.lines}


def reason_id(shop, code: str) -> int:
    from connector.returns.models import ReturnReason
    return db.session.query(ReturnReason).filter_by(shop_id=shop.id, code=code).one().id


def returns_of(shop) -> list[Return]:
    db.session.expire_all()
    return db.session.query(Return).filter_by(shop_id=shop.id).order_by(Return.id).all()


def image_bytes(fmt: str = "JPEG", size=(64, 48), colour=(200, 40, 40), **save) -> bytes:
    img = Image.new("RGBA" if fmt == "PNG" else "RGB", size, colour)
    out = io.BytesIO()
    img.save(out, format=fmt, **save)
    return out.getvalue()
