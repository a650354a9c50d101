"""`connector sandbox advance`: the demo's way to move a parcel, through the real tracking path."""
from __future__ import annotations

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from connector import cli, db
from connector.carriers.commands import parse_rma
from connector.returns.models import Return, ReturnReason, Shop

# Blueprints other helpers are still writing; until they exist the app cannot be built, and the
# tests that need it skip with this reason instead of failing for a reason outside this package.
_NOT_YET_WRITTEN = {"connector.portal.views", "connector.admin.views", "connector.api.views"}


@pytest.fixture
def app_or_skip(request):
    try:
        return request.getfixturevalue("app")
    except ModuleNotFoundError as exc:
        if exc.name in _NOT_YET_WRITTEN:
            pytest.skip(f"the app cannot be built yet: {exc.name} is not written")
        raise


@pytest.fixture
def run(app_or_skip, monkeypatch):
    """Run a `connector` command against the test app (the CLI would build one from the environment)."""
    monkeypatch.setattr(cli, "_app", lambda config=None: app_or_skip)

    def invoke(*args: str):
        return CliRunner().invoke(cli.main, list(args))

    return invoke


def make_return(shop, method: str = "dropoff") -> int:
    """A confirmed return of the Trail Jacket from order #1001; jobs run inline. Returns its id."""
    from connector.returns import services

    order = services.find_order_for_login(shop, "1001", "erika@example.com")
    ret = services.start_draft(shop, order, email=order.email, locale="en")
    reason = db.session.scalar(select(ReturnReason).where(ReturnReason.shop_id == shop.id,
                                                          ReturnReason.code == "changed_mind"))
    services.set_items(ret, [services.ItemChoice(order.lines[0].id, 1, reason.id)])
    services.set_method(ret, method)
    services.set_instructions(ret, dict(order.shipping_address), [code for code, _t in services.checklist_items(ret)])
    services.confirm(ret)
    return ret.id


def state_of(return_id: int) -> str:
    db.session.expire_all()
    return db.session.get(Return, return_id).state


@pytest.fixture
def demo_shop(app_or_skip):
    from tests.factories import make_shop
    return make_shop()


@pytest.mark.parametrize(("text", "number"), [("R-1042", 1042), ("r-1042", 1042), ("1042", 1042),
                                              ("#1042", 1042), (" R1042 ", 1042)])
def test_rma_spellings(text, number):
    assert parse_rma(text) == number


def test_not_an_rma():
    import click
    with pytest.raises(click.ClickException, match="R-1042 or 1042"):
        parse_rma("order-7")


def test_advance_moves_the_return_to_in_transit_then_received(demo_shop, run):
    """Each call is one carrier scan; the return follows through refresh_tracking, as with a real poll."""
    return_id = make_return(demo_shop)
    rma = db.session.get(Return, return_id).rma
    assert state_of(return_id) == "label_ready"

    result = run("sandbox", "advance", rma)
    assert result.exit_code == 0, result.output
    assert "in_transit" in result.output and "the return is now in_transit" in result.output
    assert state_of(return_id) == "in_transit"

    assert run("sandbox", "advance", rma.removeprefix("R-")).exit_code == 0  # out for delivery
    result = run("sandbox", "advance", rma, "--shop", "demo-shop")
    assert result.exit_code == 0, result.output
    assert "delivered" in result.output and "the return is now received" in result.output
    assert state_of(return_id) == "received"

    result = run("sandbox", "advance", rma)
    assert result.exit_code == 1
    assert "already delivered" in result.output


def test_unknown_rma(demo_shop, run):
    result = run("sandbox", "advance", "R-9999")
    assert result.exit_code == 1
    assert "no return R-9999" in result.output


def test_unknown_shop(demo_shop, run):
    result = run("sandbox", "advance", "R-1001", "--shop", "nope")
    assert result.exit_code == 1
    assert "no shop with handle 'nope'" in result.output


def test_same_rma_in_two_shops_needs_the_shop(demo_shop, run):
    from tests.factories import make_shop
    other = make_shop(handle="other-shop")
    make_return(demo_shop)
    other_id = make_return(other)
    assert db.session.get(Return, other_id).rma == "R-1001"

    result = run("sandbox", "advance", "R-1001")
    assert result.exit_code == 1
    assert "demo-shop, other-shop" in result.output and "--shop" in result.output

    result = run("sandbox", "advance", "R-1001", "--shop", "other-shop")
    assert result.exit_code == 0, result.output
    assert state_of(other_id) == "in_transit"


def test_return_without_shipment(demo_shop, run):
    demo_shop = db.session.get(Shop, demo_shop.id)
    demo_shop.policy = {**(demo_shop.policy or {}), "auto_approve": False}
    db.session.commit()
    return_id = make_return(demo_shop)
    assert state_of(return_id) == "requested"
    result = run("sandbox", "advance", "R-1001")
    assert result.exit_code == 1
    assert "has no shipment yet" in result.output


def test_return_shipped_by_the_shopper_is_not_a_sandbox_parcel(demo_shop, run):
    make_return(demo_shop, method="selfship")
    result = run("sandbox", "advance", "R-1001")
    assert result.exit_code == 1
    assert "ships with 'selfship', not the sandbox carrier" in result.output
