"""The standalone shop's API: orders in (POST /api/v1/orders), returns out (JSON and CSV)."""
from __future__ import annotations

import copy
import csv
import io
import json
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from sqlalchemy import select

from connector import db
from connector.platforms.standalone.mapping import FLOAT_MESSAGE, MappingError, order_from_json
from connector.returns import services
from connector.returns.models import Order, ReturnReason
from tests.factories import API_KEY, make_shop

KEY = API_KEY + "demo-shop"
AUTH = {"Authorization": f"Bearer {KEY}"}

ORDER = {
    "id": "woo-5001", "number": "#5001", "email": "Max@Example.com", "currency": "EUR",
    "placed_at": "2025-03-01T10:00:00+01:00", "customer_name": "Max Muster",
    "shipping_address": {"name": "Max Muster", "line1": "Hauptstr. 3", "postcode": "80331", "city": "München",
                         "country": "de"},
    "taxes_included": True, "shipping_total": "4.90", "fulfilled_at": "2025-03-02T09:00:00Z",
    "updated_at": "2025-03-02T09:00:00Z", "tags": ["vip"], "locale": "de",
    "lines": [
        {"id": "l1", "title": "Fleece Jacket", "quantity": 1, "unit_price": "89.90", "sku": "FL-1",
         "variant": "L", "product_type": "Jackets", "tags": ["outerwear"], "tax_total": "14.35"},
        {"id": "l2", "title": "Beanie", "quantity": 2, "unit_price": "19.00", "discount_total": "3.80",
         "final_sale": True},
    ],
}


def _post(client, body, headers=None, **kw):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post("/api/v1/orders", data=data, headers={**AUTH, **(headers or {})},
                       content_type=kw.pop("content_type", "application/json"), **kw)


def _stored(shop, platform_id="woo-5001") -> Order | None:
    db.session.expire_all()
    return db.session.scalar(select(Order).where(Order.shop_id == shop.id, Order.platform_id == platform_id))


# ---------------------------------------------------------------------------- authentication


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer wrong-key", f"Basic {KEY}", "Bearer " + "x" * 500])
def test_missing_or_wrong_key_is_401_json(client, shop, header):
    headers = {} if header is None else {"Authorization": header}
    response = client.post("/api/v1/orders", json=ORDER, headers=headers)
    assert response.status_code == 401
    assert response.is_json and "API key" in response.json["error"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/api/v1/returns", headers=headers).status_code == 401
    assert _stored(shop) is None


def test_the_key_decides_the_shop(client, shop):
    other = make_shop(handle="other-shop", with_orders=False)
    response = _post(client, ORDER, headers={"Authorization": f"Bearer {API_KEY}other-shop"})
    assert response.status_code == 201
    assert _stored(other) is not None and _stored(shop) is None


def test_an_inactive_shops_key_no_longer_works(client, shop):
    shop.active = False
    db.session.commit()
    assert _post(client, ORDER).status_code == 401


# ---------------------------------------------------------------------------- create and update


def test_create_then_update(client, shop):
    response = _post(client, ORDER)
    assert response.status_code == 201
    assert response.json["result"] == "created" and response.json["order"]["number"] == "5001"
    order = _stored(shop)
    assert order.email == "max@example.com" and order.number == "5001" and order.country == "DE"
    assert order.placed_at == datetime(2025, 3, 1, 9, 0, tzinfo=timezone.utc)
    assert [(line.platform_id, line.unit_price, line.quantity) for line in order.lines] == [
        ("l1", Decimal("89.90"), 1), ("l2", Decimal("19.00"), 2)]
    assert order.lines[1].final_sale and order.lines[0].product_tags == ["outerwear"]
    assert order.total == Decimal("129.00")  # 89.90 + 2 x 19.00 - 3.80 + 4.90 shipping, computed when not sent

    changed = {**ORDER, "updated_at": "2025-03-05T12:00:00Z", "delivered_at": "2025-03-04T15:00:00+00:00",
               "total": "130.00"}
    response = _post(client, changed)
    assert response.status_code == 200 and response.json["result"] == "updated"
    order = _stored(shop)
    assert order.delivered_at == datetime(2025, 3, 4, 15, 0, tzinfo=timezone.utc)
    assert order.total == Decimal("130.00")
    assert len(db.session.scalars(select(Order).where(Order.shop_id == shop.id,
                                                      Order.platform_id == "woo-5001")).all()) == 1


def test_older_update_does_not_overwrite_newer(client, shop):
    _post(client, {**ORDER, "updated_at": "2025-03-05T12:00:00Z", "customer_name": "Newer Name"})
    response = _post(client, {**ORDER, "updated_at": "2025-03-04T12:00:00Z", "customer_name": "Older Name"})
    assert response.status_code == 200 and response.json["result"] == "ignored_older"
    assert _stored(shop).customer_name == "Newer Name"


# ---------------------------------------------------------------------------- validation


def _errors(response) -> dict[str, str]:
    assert response.status_code == 422, response.get_data(as_text=True)
    return {e["field"]: e["message"] for e in response.json["errors"]}


def test_float_amounts_are_refused_with_a_clear_message(client, shop):
    body = copy.deepcopy(ORDER)
    body["shipping_total"] = 4.9
    body["lines"][0]["unit_price"] = 89.9
    errors = _errors(_post(client, body))
    assert errors == {"shipping_total": FLOAT_MESSAGE, "lines[0].unit_price": FLOAT_MESSAGE}
    assert "send amounts as strings" in FLOAT_MESSAGE
    assert _stored(shop) is None


def test_every_problem_is_listed_at_once(client, shop):
    body = copy.deepcopy(ORDER)
    del body["email"]
    body.update(currency="EURO", placed_at="2025-03-01T10:00:00", locale="german", unknown="x")
    body["shipping_address"]["country"] = "Germany"
    body["lines"][0].update(quantity=0, unit_price="-1.00", discount_total="1e3")
    body["lines"][1].update(id="l1", quantity=True, tags="not-a-list", colour="red")
    errors = _errors(_post(client, body))
    assert set(errors) == {
        "email", "currency", "placed_at", "locale", "unknown", "shipping_address.country",
        "lines[0].quantity", "lines[0].unit_price", "lines[0].discount_total", "lines[1].id",
        "lines[1].quantity", "lines[1].tags", "lines[1].colour"}
    assert errors["placed_at"].startswith("needs a UTC offset")
    assert errors["unknown"] == "is not a known field"


@pytest.mark.parametrize("body, field", [
    ({**ORDER, "lines": []}, "lines"),
    ({**ORDER, "lines": "l1"}, "lines"),
    ({k: v for k, v in ORDER.items() if k != "lines"}, "lines"),
    ({**ORDER, "id": ""}, "id"),
    ({**ORDER, "id": "x" * 65}, "id"),
    ({**ORDER, "number": "#"}, "number"),
    ({**ORDER, "email": "not-an-email"}, "email"),
    ({**ORDER, "total": 100}, "total"),
    ({**ORDER, "taxes_included": "yes"}, "taxes_included"),
    ({**ORDER, "customer_name": "Max\x00Muster"}, "customer_name"),
    ({**ORDER, "lines": [{**ORDER["lines"][0], "discount_total": "100.00"}]}, "lines[0].discount_total"),
    ({**ORDER, "lines": [ORDER["lines"][0]] * 501}, "lines"),
    ({**ORDER, "shipping_address": "Hauptstr. 3"}, "shipping_address"),
])
def test_invalid_orders_are_422(client, shop, body, field):
    assert field in _errors(_post(client, body))


@pytest.mark.parametrize("raw, content_type", [
    ("<html><body><form>order</form></body></html>", "text/html"),
    ("<html><body>order</body></html>", "application/json"),
    ("{\"id\": ", "application/json"),
    ("[1, 2, 3]", "application/json"),
    ("\"just a string\"", "application/json"),
    ("{\"id\": NaN}", "application/json"),
    ("[" * 100_000 + "]" * 100_000, "application/json"),
    (b"\xff\xfe\x00garbage", "application/json"),
    ("", "application/json"),
])
def test_bodies_that_are_not_an_order_object_are_422_not_500(client, shop, raw, content_type):
    response = _post(client, raw, content_type=content_type)
    assert response.status_code == 422 and response.is_json
    assert response.json["errors"][0]["field"] == "body"


def test_huge_payload_is_413(client, shop):
    body = {**ORDER, "customer_name": "x" * (2 * 1024 * 1024)}
    response = _post(client, body)
    assert response.status_code == 413 and response.is_json
    assert _stored(shop) is None


def test_html_in_text_is_kept_as_text(client, shop):
    body = copy.deepcopy(ORDER)
    body["lines"][0]["title"] = "<script>alert(1)</script> Jacket"
    assert _post(client, body).status_code == 201
    assert _stored(shop).lines[0].title == "<script>alert(1)</script> Jacket"


def test_orders_of_platform_shops_are_not_taken(client, shop):
    shop.platform = "shopify"
    db.session.commit()
    response = _post(client, ORDER)
    assert response.status_code == 403 and "shopify" in response.json["error"]


# ---------------------------------------------------------------------------- the mapping itself


def test_mapping_turns_json_into_order_data():
    data = order_from_json(ORDER)
    assert data.platform_id == "woo-5001" and data.number == "5001" and data.email == "max@example.com"
    assert data.shipping_address["country"] == "DE" and data.tags == ("vip",) and data.locale == "de"
    assert data.lines[0].variant_title == "L" and data.lines[0].product_type == "Jackets"
    assert data.lines[0].tax_total == Decimal("14.35") and data.lines[1].discount_total == Decimal("3.80")
    assert data.fulfilled_at == datetime(2025, 3, 2, 9, 0, tzinfo=timezone.utc) and data.delivered_at is None
    assert data.total == Decimal("129.00")


def test_mapping_adds_line_tax_to_the_total_when_prices_are_net():
    body = {**ORDER, "taxes_included": False, "shipping_tax": "0.93"}
    assert order_from_json(body).total == Decimal("129.00") + Decimal("14.35") + Decimal("0.93")


def test_mapping_accepts_numeric_ids():
    data = order_from_json({**ORDER, "id": 5001, "number": 5001,
                            "lines": [{**ORDER["lines"][0], "id": 77}]})
    assert (data.platform_id, data.number, data.lines[0].platform_id) == ("5001", "5001", "77")


def test_mapping_error_lists_fields():
    with pytest.raises(MappingError) as caught:
        order_from_json({"id": "x"})
    fields = {e.field for e in caught.value.errors}
    assert {"number", "email", "currency", "placed_at", "lines"} <= fields


# ---------------------------------------------------------------------------- returns out


def _reason(shop, code):
    return db.session.scalar(select(ReturnReason).where(ReturnReason.shop_id == shop.id, ReturnReason.code == code))


def _return(shop, comment="Too warm", reason="other", line=0):
    order = db.session.scalar(select(Order).where(Order.shop_id == shop.id, Order.number == "1001"))
    ret = services.start_draft(shop, order, email=order.email, locale="en")
    services.set_items(ret, [services.ItemChoice(order.lines[line].id, 1, _reason(shop, reason).id, comment=comment)])
    services.set_method(ret, "selfship")
    services.set_instructions(ret, dict(order.shipping_address), [c for c, _t in services.checklist_items(ret)])
    return services.confirm(ret)


def test_returns_list_with_lines_grades_and_refund(client, shop):
    ret = _return(shop)
    services.mark_received(ret, "merchant:test")
    services.inspect(ret, "merchant:test", {ret.lines[0].id: {"grade": "B", "disposition": "refurbish", "note": "Lint"}})
    services.request_refund(ret, "merchant:test")
    response = client.get("/api/v1/returns", headers=AUTH)
    assert response.status_code == 200
    (item,) = response.json["returns"]
    assert item["rma"] == "R-1001" and item["state"] == "refunded" and item["order_number"] == "1001"
    assert item["email"] == "erika@example.com"
    assert {"sku": "JKT-M-BLU", "quantity": 1, "reason": "other", "grade": "B", "disposition": "refurbish",
            "received_quantity": 1}.items() <= item["lines"][0].items()
    assert item["refund"]["state"] == "succeeded" and item["refund"]["manual"] is True
    assert Decimal(item["refund"]["amount"]) == Decimal("129.00")


def test_returns_filter_by_state_and_updated_since(client, shop):
    first = _return(shop)
    second = _return(shop, reason="changed_mind", comment="", line=1)
    services.mark_received(second, "merchant:test")
    received = client.get("/api/v1/returns?state=received", headers=AUTH).json["returns"]
    assert [r["rma"] for r in received] == [second.rma]
    future = client.get("/api/v1/returns?updated_since=2999-01-01T00:00:00Z", headers=AUTH).json
    assert future["returns"] == []
    since = first.updated_at.isoformat()
    assert len(client.get("/api/v1/returns", query_string={"updated_since": since}, headers=AUTH).json["returns"]) == 2
    page = client.get("/api/v1/returns?limit=1", headers=AUTH).json
    assert page["count"] == 1 and page["has_more"] and page["next_updated_since"]


@pytest.mark.parametrize("query, field", [("state=lost", "state"), ("state=draft", "state"),
                                          ("updated_since=yesterday", "updated_since"),
                                          ("updated_since=2025-03-01T00:00:00", "updated_since"),
                                          ("limit=0", "limit"), ("limit=abc", "limit")])
def test_bad_filters_are_422(client, shop, query, field):
    assert field in _errors(client.get(f"/api/v1/returns?{query}", headers=AUTH))


def test_another_shops_returns_are_never_listed(client, shop):
    _return(shop)
    make_shop(handle="other-shop", with_orders=False)
    other = {"Authorization": f"Bearer {API_KEY}other-shop"}
    assert client.get("/api/v1/returns", headers=other).json["returns"] == []
    rows = list(csv.reader(io.StringIO(client.get("/api/v1/returns.csv", headers=other).get_data(as_text=True))))
    assert len(rows) == 1  # the header only


def test_csv_export_quotes_properly_and_defuses_formulas(client, shop):
    _return(shop, comment='=HYPERLINK("https://evil.example","click"), "quoted"\nsecond line')
    response = client.get("/api/v1/returns.csv", headers=AUTH)
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert len(rows) == 1
    row = rows[0]
    assert row["rma"] == "R-1001" and row["sku"] == "JKT-M-BLU" and row["reason"] == "other"
    assert row["comment"] == '\'=HYPERLINK("https://evil.example","click"), "quoted"\nsecond line'


@pytest.mark.parametrize("value, expected", [("=1+1", "'=1+1"), ("+49 30", "'+49 30"), ("-2", "'-2"),
                                             ("@SUM(A1)", "'@SUM(A1)"), ("plain", "plain"), (None, ""), (3, "3")])
def test_csv_cells_that_look_like_formulas_get_a_quote(value, expected):
    from connector.api.views import csv_safe
    assert csv_safe(value) == expected
