"""Test data: a standalone shop with reasons and orders, built through the real models."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

from werkzeug.security import generate_password_hash

from connector import db
from connector.crypto import hash_api_key
from connector.returns.models import Order, OrderLine, ReturnReason, Shop

ADMIN_PASSWORD = "correct horse battery"
API_KEY = "rc_test_api_key_0123456789"

REASONS = [
    # code, labels, comment_required, photo_required, shop_fault, parent code
    ("too_small", {"en": "Too small", "de": "Zu klein", "es": "Demasiado pequeño", "fr": "Trop petit"}, False, False, False, "size"),
    ("too_big", {"en": "Too big", "de": "Zu groß", "es": "Demasiado grande", "fr": "Trop grand"}, False, False, False, "size"),
    ("size", {"en": "Size or fit", "de": "Größe oder Passform", "es": "Talla o ajuste", "fr": "Taille ou coupe"}, False, False, False, None),
    ("changed_mind", {"en": "Changed my mind", "de": "Meinung geändert", "es": "He cambiado de opinión", "fr": "J'ai changé d'avis"}, False, False, False, None),
    ("damaged", {"en": "Arrived damaged", "de": "Beschädigt angekommen", "es": "Llegó dañado", "fr": "Arrivé endommagé"}, True, True, True, None),
    ("wrong_item", {"en": "Wrong item sent", "de": "Falscher Artikel geliefert", "es": "Artículo equivocado", "fr": "Mauvais article envoyé"}, True, False, True, None),
    ("other", {"en": "Other", "de": "Anderer Grund", "es": "Otro motivo", "fr": "Autre raison"}, True, False, False, None),
]


def now() -> datetime:
    return datetime.now(timezone.utc)


def make_reasons(shop: Shop) -> dict[str, ReturnReason]:
    by_code: dict[str, ReturnReason] = {}
    for position, (code, labels, comment, photo, fault, _parent) in enumerate(REASONS):
        by_code[code] = ReturnReason(shop_id=shop.id, code=code, labels=labels, comment_required=comment,
                                     photo_required=photo, shop_fault=fault, position=position)
        db.session.add(by_code[code])
    db.session.flush()
    for code, *_rest, parent in REASONS:
        if parent:
            by_code[code].parent_id = by_code[parent].id
    db.session.flush()
    return by_code


def make_order(shop: Shop, number: str, email: str, *, lines: list[dict], country: str = "DE",
               postcode: str = "10115", currency: str | None = None, delivered_days_ago: int | None = 3,
               fulfilled_days_ago: int | None = 5, taxes_included: bool = True,
               shipping_total: str = "4.90", name: str = "Erika Mustermann", locale: str | None = None) -> Order:
    order = Order(
        shop_id=shop.id, platform_id=f"ord-{number}", number=number, email=email.lower(), customer_name=name,
        currency=currency or shop.currency, country=country, postcode=postcode.replace(" ", "").upper(),
        locale=locale,
        shipping_address={"name": name, "line1": "Musterstraße 1", "postcode": postcode, "city": "Berlin",
                          "country": country},
        taxes_included=taxes_included, shipping_total=Decimal(shipping_total),
        placed_at=now() - timedelta(days=(fulfilled_days_ago or 0) + 1),
        fulfilled_at=now() - timedelta(days=fulfilled_days_ago) if fulfilled_days_ago is not None else None,
        delivered_at=now() - timedelta(days=delivered_days_ago) if delivered_days_ago is not None else None,
    )
    total = Decimal(shipping_total)
    for i, spec in enumerate(lines):
        line = OrderLine(shop_id=shop.id, platform_id=f"{number}-{i + 1}", sku=spec.get("sku", f"SKU-{number}-{i}"),
                         title=spec["title"], variant_title=spec.get("variant", ""),
                         product_type=spec.get("product_type", ""), product_tags=spec.get("tags", []),
                         quantity=spec.get("quantity", 1), unit_price=Decimal(spec["price"]),
                         discount_total=Decimal(spec.get("discount", "0")), tax_total=Decimal(spec.get("tax", "0")),
                         final_sale=spec.get("final_sale", False))
        order.lines.append(line)
        total += line.unit_price * line.quantity - line.discount_total
        if not taxes_included:
            total += line.tax_total
    order.total = total
    db.session.add(order)
    db.session.flush()
    return order


def make_shop(handle: str = "demo-shop", name: str = "Demo Outdoor GmbH", currency: str = "EUR",
              with_orders: bool = True) -> Shop:
    shop = Shop(handle=handle, name=name, platform="standalone", currency=currency, locale="en", country="DE",
                timezone="Europe/Berlin", support_email="support@example.com",
                admin_password_hash=generate_password_hash(ADMIN_PASSWORD),
                api_key_hash=hash_api_key(API_KEY + handle),
                branding={"primary_color": "#1f5f4a", "logo_url": None},
                return_address={"name": name, "line1": "Lagerweg 5", "postcode": "04109", "city": "Leipzig",
                                "country": "DE"},
                policy={})
    db.session.add(shop)
    db.session.flush()
    make_reasons(shop)
    if with_orders:
        make_order(shop, "1001", "erika@example.com", lines=[
            {"title": "Trail Jacket", "variant": "M / Blue", "price": "129.00", "tax": "20.60", "sku": "JKT-M-BLU"},
            {"title": "Merino Socks", "variant": "42-44", "price": "15.00", "quantity": 3, "discount": "4.50",
             "tax": "6.46", "sku": "SCK-4244"},
            {"title": "Gift Card", "price": "25.00", "final_sale": True, "sku": "GIFT-25"},
        ])
        make_order(shop, "1002", "old@example.com", delivered_days_ago=90, fulfilled_days_ago=92, lines=[
            {"title": "Rain Pants", "price": "79.00", "tax": "12.61"}])
        make_order(shop, "1003", "jean@example.fr", country="FR", postcode="75001", locale="fr", lines=[
            {"title": "Hiking Boots", "variant": "43", "price": "159.00", "tax": "26.50"}])
    db.session.commit()
    return shop
