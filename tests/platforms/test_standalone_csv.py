"""Importing a standalone shop's orders from CSV, and the shop commands of the CLI."""
from __future__ import annotations

import csv
import io
import re
from decimal import Decimal

import click
import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from connector import db
from connector.cli import main
from connector.platforms.standalone.commands import add_shop, import_orders_csv, list_shops
from connector.platforms.standalone.csv_import import CsvImportError, import_orders
from connector.platforms.standalone.mapping import CSV_COLUMNS
from connector.returns import services
from connector.returns.models import Order, ReturnReason, Shop

GOOD = dict(order_id="A-1", order_number="2001", email="anna@example.com", currency="EUR",
            placed_at="2025-05-01T10:00:00+02:00", customer_name="Anna Beispiel", country="DE", postcode="50667",
            city="Köln", line1="Domplatz 1", line_id="A-1-1", sku="TEE-S", title="T-Shirt", variant="S",
            quantity="2", unit_price="19.90", discount_total="0", tax_total="6.36", final_sale="",
            fulfilled_at="2025-05-02T08:00:00Z", delivered_at="", taxes_included="true", shipping_total="4.90")


def _csv(rows: list[dict], columns=CSV_COLUMNS) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: "" for c in columns} | row)
    return out.getvalue()


def _rows() -> list[dict]:
    return [
        GOOD,  # row 2
        {**GOOD, "line_id": "A-1-2", "sku": "CAP", "title": "Cap", "variant": "", "quantity": "1",
         "unit_price": "15.00", "tax_total": "2.39", "final_sale": "yes"},  # row 3
        {**GOOD, "order_id": "B-2", "order_number": "2002", "email": "bad-email", "line_id": "B-2-1",
         "quantity": "0", "unit_price": "12.5.0"},  # row 4: three problems
        {**GOOD, "order_id": "C-3", "order_number": "2003", "email": "carl@example.com", "line_id": "C-3-1",
         "placed_at": "2025-05-03"},  # row 5: no offset
        {**GOOD, "order_id": "D-4", "order_number": "2004", "email": "dora@example.com", "line_id": "D-4-1",
         "currency": "USD"},  # row 6
        {**GOOD, "order_id": "D-4", "order_number": "2004", "email": "other@example.com", "line_id": "D-4-2"},  # row 7
        {**GOOD, "order_id": "", "line_id": "X"},  # row 8: no order id
        {**GOOD, "order_id": "E-5", "order_number": "2005", "email": "eva@example.com", "line_id": "E-5-1",
         "unit_price": "7.50", "quantity": "1"},  # row 9
    ]


def _order(shop, platform_id):
    return db.session.scalar(select(Order).where(Order.shop_id == shop.id, Order.platform_id == platform_id))


def test_good_orders_are_imported_and_bad_ones_reported_by_row(shop):
    report = import_orders(shop, io.StringIO(_csv(_rows())))
    assert (report.created, report.updated, report.failed, report.rows) == (2, 0, 4, 8)
    reasons = {f.order_id: " | ".join(f.reasons) for f in report.failures}
    assert set(reasons) == {"B-2", "C-3", "D-4", "row 8"}
    assert "row 4: email: is not an email address" in reasons["B-2"]
    assert "row 4: quantity" in reasons["B-2"] and "row 4: unit_price" in reasons["B-2"]
    assert "row 5: placed_at: needs a UTC offset" in reasons["C-3"]
    assert "row 7: email: differs from row 6 of the same order" in reasons["D-4"]
    assert "row 8: order_id is required" in reasons["row 8"]

    order = _order(shop, "A-1")
    assert order.number == "2001" and order.email == "anna@example.com" and order.postcode == "50667"
    assert order.shipping_address["city"] == "Köln" and order.customer_name == "Anna Beispiel"
    assert [(line.sku, line.quantity, line.unit_price, line.final_sale) for line in order.lines] == [
        ("TEE-S", 2, Decimal("19.90"), False), ("CAP", 1, Decimal("15.00"), True)]
    assert order.total == Decimal("59.70")  # 2 x 19.90 + 15.00 + 4.90 shipping
    assert _order(shop, "E-5") is not None
    assert _order(shop, "B-2") is None and _order(shop, "D-4") is None  # a bad row fails its whole order


def test_importing_again_updates_instead_of_duplicating(shop):
    import_orders(shop, io.StringIO(_csv([GOOD])))
    report = import_orders(shop, io.StringIO(_csv([{**GOOD, "customer_name": "Anna Neu", "delivered_at":
                                                    "2025-05-04T12:00:00Z"}])))
    assert (report.created, report.updated, report.failed) == (0, 1, 0)
    assert _order(shop, "A-1").customer_name == "Anna Neu"
    assert db.session.scalar(select(func.count()).select_from(Order).where(Order.platform_id == "A-1")) == 1


def test_imported_orders_can_be_found_by_the_shopper(shop):
    import_orders(shop, io.StringIO(_csv([GOOD])))
    assert services.find_order_for_login(shop, "#2001", "anna@example.com") is not None


def test_rows_of_one_order_must_stand_together(shop):
    rows = [GOOD, {**GOOD, "order_id": "E-5", "order_number": "2005", "line_id": "E-5-1"},
            {**GOOD, "line_id": "A-1-9"}]
    report = import_orders(shop, io.StringIO(_csv(rows)))
    assert (report.created, report.failed) == (2, 1)
    assert "rows of order A-1 are not together" in report.failures[0].reasons[0]
    assert [line.platform_id for line in _order(shop, "A-1").lines] == ["A-1-1"]


def test_missing_columns_stop_the_import_before_anything_is_stored(shop):
    text = _csv([GOOD], columns=[c for c in CSV_COLUMNS if c not in ("email", "unit_price")])
    with pytest.raises(CsvImportError, match="email, unit_price"):
        import_orders(shop, io.StringIO(text))
    assert _order(shop, "A-1") is None


def test_unknown_columns_are_reported_and_ignored(shop):
    report = import_orders(shop, io.StringIO(_csv([{**GOOD, "colour": "red"}], columns=[*CSV_COLUMNS, "colour"])))
    assert report.created == 1 and report.ignored_columns == ["colour"]


def test_extra_cells_are_an_error_of_that_row(shop):
    text = _csv([GOOD]).rstrip("\n") + ",surplus\n"
    report = import_orders(shop, io.StringIO(text))
    assert report.failed == 1 and "row 2: has more cells than the header has columns" in report.failures[0].reasons


def test_progress_is_reported_every_n_orders(shop):
    rows = [{**GOOD, "order_id": f"P-{i}", "order_number": str(3000 + i), "line_id": f"P-{i}-1"} for i in range(5)]
    seen = []
    report = import_orders(shop, io.StringIO(_csv(rows)), progress=seen.append, progress_every=2)
    assert report.created == 5 and seen == [2, 4]


def test_the_file_is_streamed_not_read_whole(shop):
    """The reader pulls lines one at a time: it never calls read() for the whole file."""

    class LinesOnly(io.StringIO):
        def read(self, *args):
            raise AssertionError("the whole file was read at once")

    report = import_orders(shop, LinesOnly(_csv(_rows())))
    assert report.created == 2


# ---------------------------------------------------------------------------- commands


def test_import_command_echoes_the_report(shop, tmp_path, capsys):
    path = tmp_path / "orders.csv"
    path.write_text(_csv(_rows()), encoding="utf-8")
    with pytest.raises(click.ClickException, match="4 order"):
        import_orders_csv(shop.handle, str(path))
    out = capsys.readouterr().out
    assert "8 rows, 6 orders: 2 created, 0 updated, 4 failed" in out
    assert "failed B-2:" in out and "row 4: email: is not an email address" in out


def test_import_command_refuses_an_unknown_shop_and_an_unreadable_file(shop, tmp_path):
    with pytest.raises(click.ClickException, match="no shop with the handle"):
        import_orders_csv("nope", str(tmp_path / "x.csv"))
    bad = tmp_path / "latin1.csv"
    bad.write_bytes(_csv([GOOD]).replace("Köln", "K\u00f6ln").encode("latin-1"))
    with pytest.raises(click.ClickException, match="cannot be read"):
        import_orders_csv(shop.handle, str(bad))


def test_cli_imports_through_the_console_script(shop, tmp_path, config):
    path = tmp_path / "orders.csv"
    path.write_text(_csv([GOOD, {**GOOD, "line_id": "A-1-2", "title": "Cap", "unit_price": "15.00"}]),
                    encoding="utf-8-sig")
    result = CliRunner().invoke(main, ["import-orders", shop.handle, str(path)],
                                env={"DATA_DIR": str(config.data_dir), "DATABASE_URL": config.database_url})
    assert result.exit_code == 0, result.output
    assert "2 rows, 1 orders: 1 created, 0 updated, 0 failed" in result.output
    db.session.expire_all()
    assert len(_order(shop, "A-1").lines) == 2


def test_add_shop_creates_a_working_standalone_shop(app, client, capsys):
    shop = add_shop(handle="berg-shop", name="Berg & Tal", currency="chf", locale="de", country="ch",
                    timezone="Europe/Zurich")
    out = capsys.readouterr().out
    password = re.search(r"password: (\S+)", out).group(1)
    api_key = re.search(r"API key:  (\S+)", out).group(1)
    assert shop.platform == "standalone" and shop.currency == "CHF" and shop.country == "CH"
    assert shop.admin_password_hash and password not in shop.admin_password_hash
    assert services.policy_of(shop).window_days == 30 and shop.policy["fees"]["dropoff"] == "3.95"
    reasons = db.session.scalars(select(ReturnReason).where(ReturnReason.shop_id == shop.id)).all()
    assert len(reasons) == 7 and {r.code for r in reasons} >= {"size", "too_small", "damaged", "other"}
    by_code = {r.code: r for r in reasons}
    assert by_code["too_small"].parent_id == by_code["size"].id and by_code["damaged"].shop_fault
    assert by_code["wrong_item"].labels["fr"] == "Mauvais article envoyé"
    # The printed secrets work: the API takes the key, the admin takes the password.
    response = client.get("/api/v1/returns", headers={"Authorization": f"Bearer {api_key}"})
    assert response.status_code == 200
    from tests.admin.conftest import Admin
    assert Admin(client, "berg-shop").login(password=password).status_code == 302


def test_add_shop_with_a_given_password_does_not_print_it(app, capsys):
    add_shop(handle="given-pw", name="Given", password="a long enough password")
    out = capsys.readouterr().out
    assert "password:" not in out and "API key:" in out


@pytest.mark.parametrize("kwargs, message", [
    ({"handle": "Bad Handle"}, "lower-case letters"),
    ({"handle": "-dash"}, "lower-case letters"),
    ({"handle": "static"}, "reserved"),
    ({"currency": "EURO"}, "ISO 4217"),
    ({"locale": "it"}, "locale must be one of"),
    ({"country": "Germany"}, "two-letter"),
    ({"timezone": "Mars/Base"}, "not a time zone"),
    ({"password": "short"}, "at least 10"),
])
def test_add_shop_refuses_bad_input(app, kwargs, message):
    with pytest.raises(click.ClickException, match=message):
        add_shop(**{"handle": "new-shop", "name": "New", **kwargs})
    assert db.session.scalar(select(Shop).where(Shop.handle == "new-shop")) is None


def test_add_shop_refuses_a_taken_handle(shop):
    with pytest.raises(click.ClickException, match="already exists"):
        add_shop(handle="demo-shop", name="Again")


def test_list_shops_shows_counts(shop, capsys):
    list_shops()
    line = capsys.readouterr().out.strip()
    assert line.split("\t")[:3] == ["demo-shop", "standalone", "Demo Outdoor GmbH"]
    assert "orders: 3" in line and "returns: 0" in line
