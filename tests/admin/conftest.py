"""Admin test helpers: a signed-in client that reads CSRF tokens from the pages, and returns in any state."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from connector import db
from connector.returns import services
from connector.returns.models import Order, ReturnReason
from tests.factories import ADMIN_PASSWORD

TOKEN_RE = re.compile(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"')


def csrf_token(html: str) -> str:
    match = TOKEN_RE.search(html)
    assert match, "the page has no CSRF token"
    return match.group(1)


class Admin:
    """Drives the admin like a browser: GET a page, take its CSRF token, POST the form."""

    def __init__(self, client, handle: str = "demo-shop"):
        self.client = client
        self.handle = handle

    def url(self, path: str = "") -> str:
        return f"/admin/{self.handle}/{path}"

    def login(self, password: str = ADMIN_PASSWORD, name: str = "Lena"):
        page = self.client.get(self.url("login"))
        return self.client.post(self.url("login"), data={"password": password, "name": name,
                                                         "csrf_token": csrf_token(page.get_data(as_text=True))})

    def get(self, path: str = "", **kw):
        return self.client.get(self.url(path), **kw)

    def post(self, path: str, data: dict | None = None, *, page: str | None = None, follow: bool = False):
        """POST `data` with the CSRF token taken from `page` (default: the admin home)."""
        html = self.client.get(self.url(page if page is not None else "")).get_data(as_text=True)
        return self.client.post(self.url(path), data={**(data or {}), "csrf_token": csrf_token(html)},
                                follow_redirects=follow)


@pytest.fixture
def admin(client, shop):
    helper = Admin(client, shop.handle)
    assert helper.login().status_code == 302
    return helper


def reason(shop, code):
    return db.session.scalar(select(ReturnReason).where(ReturnReason.shop_id == shop.id, ReturnReason.code == code))


def set_policy(shop, **values):
    policy = services.policy_of(shop)
    for key, value in values.items():
        setattr(policy, key, value)
    shop.policy = policy.to_dict()
    db.session.commit()


def make_return(shop, *, number="1001", method="selfship", quantities=None, reason_code="changed_mind",
                approve=None):
    """A confirmed return of order `number` (first line, 1 unit by default).

    `approve` None keeps the shop's policy; False turns auto-approval off first, so the return
    waits in `requested`.
    """
    if approve is False:
        set_policy(shop, auto_approve=False)
    order = db.session.scalar(select(Order).where(Order.shop_id == shop.id, Order.number == number))
    ret = services.start_draft(shop, order, email=order.email, locale="en")
    quantities = quantities or {order.lines[0].id: 1}
    chosen = reason(shop, reason_code)
    services.set_items(ret, [services.ItemChoice(line_id, qty, chosen.id,
                                                 comment="Seam torn at the shoulder" if chosen.comment_required else "",
                                                 photos=["shop-1/photos/seam.jpg"] if chosen.photo_required else [])
                             for line_id, qty in quantities.items()])
    services.set_method(ret, method)
    services.set_instructions(ret, dict(order.shipping_address), [c for c, _t in services.checklist_items(ret)])
    services.confirm(ret)
    return ret
