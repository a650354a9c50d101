"""Returns created or changed in Shopify's own interface are mirrored into the connector: once,
however many webhooks arrive, and our own returns only learn their Shopify status (and follow a
decision taken in Shopify's admin)."""
from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from connector import db
from connector.platforms.shopify.client import ShopifyClient
from connector.platforms.shopify.returns_mirror import mirror_return
from connector.returns import lifecycle as lc
from connector.returns.models import Event, Return
from connector.returns.ports import OrderData, OrderLineData
from connector.returns.services.platform import OPENING
from tests.factories import now
from tests.shopify.factories import line_gid, order_gid
from tests.shopify.returns_fake import ShopifyReturnsFake, portal_return


@pytest.fixture
def fake(shopify, shopify_shop, monkeypatch):
    monkeypatch.setattr(ShopifyClient, "_backoff", lambda self, attempt: 0.0)
    return ShopifyReturnsFake(shopify, shopify_shop)


def returns_count() -> int:
    return db.session.scalar(select(func.count()).select_from(Return))


def test_a_return_created_in_shopifys_admin_appears_once(shopify_shop, shopify, fake, outbox):
    gid = fake.add_return(order_gid("1001"), [(line_gid("1001", 1), 1, "too-small", "Sleeves are short"),
                                              (line_gid("1001", 2), 2, "color", "")])
    ret = mirror_return(shopify_shop, gid)
    assert ret.origin == "platform" and ret.platform_id == gid and ret.platform_status == "OPEN"
    assert ret.rma == "R-1001" and ret.order.number == "1001" and ret.email == "erika@example.com"
    assert ret.state == lc.AWAITING_SHIPMENT and ret.shipment is None  # the merchant ships it in Shopify
    jacket, socks = ret.lines
    assert (jacket.order_line.title, jacket.quantity, jacket.reason.code, jacket.comment) == (
        "Trail Jacket", 1, "too_small", "Sleeves are short")
    assert (socks.quantity, socks.reason.code) == (2, "other")  # Shopify's "color": no such reason here
    rli, rfo = fake.returns[gid]["lines"][0], fake.returns[gid]["rfos"][0]
    assert jacket.platform_id == rli["id"] and jacket.platform_data["parts"][0]["rfo"] == rfo["id"]
    assert [e.data["to"] for e in ret.events if e.kind == "state"] == [lc.REQUESTED, lc.APPROVED,
                                                                       lc.AWAITING_SHIPMENT]
    assert {e.actor for e in ret.events} == {"merchant:Shopify"}
    assert outbox() == []  # Shopify has told the shopper

    again = mirror_return(shopify_shop, gid)  # returns/approve after returns/request, or a redelivery
    assert again.id == ret.id and returns_count() == 1
    assert db.session.scalar(select(func.count()).select_from(Event).where(Event.return_id == ret.id)) == 3


def test_a_request_in_shopify_is_requested_here_and_follows_its_approval(shopify_shop, shopify, fake):
    gid = fake.add_return(order_gid("1003"), [(line_gid("1003", 1), 1, "damaged", "Sole came off")],
                          status="REQUESTED")
    ret = mirror_return(shopify_shop, gid)
    assert ret.state == lc.REQUESTED and ret.platform_status == "REQUESTED"
    assert ret.lines[0].reason.code == "damaged" and ret.locale == "fr"
    fake.returns[gid]["status"] = "OPEN"
    fake.open_rfo(fake.returns[gid])
    assert mirror_return(shopify_shop, gid).id == ret.id
    assert ret.state == lc.AWAITING_SHIPMENT and ret.platform_status == "OPEN"
    assert shopify.calls("ReturnApproveRequest") == []  # Shopify approved it: nothing to tell it
    assert ret.lines[0].platform_data["parts"][0]["rfo"] == fake.returns[gid]["rfos"][0]["id"]
    assert returns_count() == 1


def test_a_return_declined_in_shopify_before_we_saw_it_is_mirrored_as_rejected(shopify_shop, fake):
    gid = fake.add_return(order_gid("1001"), [(line_gid("1001", 1), 1, None, "")], status="DECLINED")
    fake.returns[gid]["decline"] = {"reason": "FINAL_SALE", "note": "Worn"}
    ret = mirror_return(shopify_shop, gid)
    assert ret.state == lc.REJECTED and ret.lines[0].reason.code == "other"
    assert [e.data.get("note") for e in ret.events if e.data.get("to") == lc.REJECTED] == ["Worn"]


def test_our_own_return_only_gets_its_status(shopify_shop, shopify, fake):
    ret = portal_return(shopify_shop)
    events = len(ret.events)
    assert mirror_return(shopify_shop, ret.platform_id).id == ret.id  # the webhook for our own returnCreate
    assert returns_count() == 1 and len(ret.events) == events and ret.origin == "portal"

    fake.returns[ret.platform_id]["status"] = "CLOSED"  # closed by staff in Shopify's admin
    mirror_return(shopify_shop, ret.platform_id)
    assert ret.platform_status == "CLOSED" and ret.state == lc.LABEL_READY  # no legal move to closed from here
    (change,) = [e for e in ret.events if e.kind == "platform_status"]
    assert change.data == {"from": "OPEN", "to": "CLOSED", "platform_id": ret.platform_id}


def test_a_request_declined_in_shopifys_admin_rejects_ours_without_declining_it_again(shopify_shop, shopify, fake):
    shopify_shop.policy = {"auto_approve": False}
    db.session.commit()
    ret = portal_return(shopify_shop)
    assert ret.platform_status == "REQUESTED"
    fake.returns[ret.platform_id].update(status="DECLINED", decline={"reason": "RETURN_PERIOD_ENDED",
                                                                     "note": "Too late, sorry"})
    mirror_return(shopify_shop, ret.platform_id)
    assert ret.state == lc.REJECTED and ret.platform_status == "DECLINED"
    assert shopify.calls("ReturnDeclineRequest") == []


def test_a_request_approved_in_shopifys_admin_approves_ours_and_the_label_follows(shopify_shop, shopify, fake):
    shopify_shop.policy = {"auto_approve": False}
    db.session.commit()
    ret = portal_return(shopify_shop)
    fake.returns[ret.platform_id]["status"] = "OPEN"
    fake.open_rfo(fake.returns[ret.platform_id])
    mirror_return(shopify_shop, ret.platform_id)
    assert ret.state == lc.LABEL_READY and ret.shipment.tracking_number
    assert shopify.calls("ReturnApproveRequest") == []
    assert len(shopify.calls("ReverseDeliveryCreateWithShipping")) == 1


def test_a_return_cancelled_in_shopify_cancels_ours(shopify_shop, shopify, fake):
    ret = portal_return(shopify_shop)
    fake.returns[ret.platform_id]["status"] = "CANCELED"
    mirror_return(shopify_shop, ret.platform_id)
    assert ret.state == lc.CANCELLED and shopify.calls("ReturnCancel") == []


def test_a_return_our_worker_is_opening_is_left_to_it(shopify_shop, fake, monkeypatch):
    from connector.returns.context import runtime

    real = runtime.enqueue
    monkeypatch.setattr(runtime, "enqueue", lambda name, **kw: None if name == "sync_platform" else real(name, **kw))
    ret = portal_return(shopify_shop)
    ret.platform_status = OPENING  # the worker claimed it, Shopify created it, the webhook came first
    db.session.commit()
    gid = fake.add_return(order_gid("1001"), [(line_gid("1001", 1), 1, "changed-mind", "")])
    assert mirror_return(shopify_shop, gid).id == ret.id
    assert returns_count() == 1 and ret.platform_id is None


def test_the_order_of_a_return_is_synced_first_when_it_is_missing(shopify_shop, fake, monkeypatch):
    from connector.platforms.shopify import sync

    new_order, new_line = "gid://shopify/Order/6000000001", "gid://shopify/LineItem/60000000011"
    fetched = []

    def fetch_order(shop, gid, **kw):
        fetched.append(gid)
        return OrderData(platform_id=gid, number="2001", email="Max@Example.com", currency="EUR", placed_at=now(),
                         updated_at=now(), lines=(OrderLineData(new_line, "Wool Cap", 2, Decimal("25.00")),))

    monkeypatch.setattr(sync, "fetch_order", fetch_order)
    gid = fake.add_return(new_order, [(new_line, 1, "too-large", "")])
    ret = mirror_return(shopify_shop, gid)
    assert fetched == [new_order]
    assert ret.order.number == "2001" and ret.email == "max@example.com"
    assert (ret.lines[0].order_line.title, ret.lines[0].reason.code) == ("Wool Cap", "too_big")


def test_a_return_shopify_does_not_know_is_not_mirrored(shopify_shop, fake):
    assert mirror_return(shopify_shop, "gid://shopify/Return/404") is None
    assert returns_count() == 0


def test_two_webhooks_at_once_make_one_return(app, shopify_shop, fake):
    gid = fake.add_return(order_gid("1001"), [(line_gid("1001", 1), 1, "too-small", "")])
    shop_id = shopify_shop.id
    db.session.remove()
    barrier = threading.Barrier(2)
    outcomes = []

    def webhook():
        from connector.returns.models import Shop

        with app.app_context():
            shop = db.session.get(Shop, shop_id)
            barrier.wait()
            try:
                outcomes.append(mirror_return(shop, gid).id)
            except Exception as exc:  # SQLite: the loser may find the database locked; it is retried
                db.session.rollback()
                outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=webhook) for _ in range(2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert returns_count() == 1
    (ret,) = db.session.scalars(select(Return))
    assert ret.platform_id == gid and ret.id in outcomes


def test_a_mirrored_return_shows_in_the_admin(client, shopify_shop, fake):
    from tests.admin.conftest import Admin

    gid = fake.add_return(order_gid("1001"), [(line_gid("1001", 1), 1, "too-small", "Sleeves are short")])
    ret = mirror_return(shopify_shop, gid)
    admin = Admin(client, shopify_shop.handle)
    assert admin.login().status_code == 302
    page = admin.get(f"returns/{ret.id}")
    assert page.status_code == 200 and "R-1001" in page.get_data(as_text=True)
    assert "Sleeves are short" in page.get_data(as_text=True)


def test_a_refunded_return_closed_in_shopifys_admin_is_closed_here(shopify_shop, shopify, fake):
    from connector.returns import services

    ret = portal_return(shopify_shop)
    services.mark_received(ret, "merchant:anna")
    services.request_refund(ret, "merchant:anna")
    assert ret.state == lc.REFUNDED and ret.platform_status == "OPEN"  # not graded: still open in Shopify
    fake.returns[ret.platform_id]["status"] = "CLOSED"
    mirror_return(shopify_shop, ret.platform_id)
    assert ret.state == lc.CLOSED and ret.platform_status == "CLOSED"
