"""The demo shop: "Alpenglow Outdoor", a standalone shop with realistic orders and a few returns.

`seed_demo_shop` needs an application context (the services reach carriers, storage and the
queue through it). Everything is chosen by `random.Random(42)`, so two runs give the same shop,
orders and returns; only the dates follow the clock (orders lie in the last 60 days).
Orders go in through `services.upsert_order` and returns through the same use cases the portal
and the admin call, so the seeded data is data the app itself could have made.
"""
from __future__ import annotations

import random
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal

from werkzeug.security import generate_password_hash

from connector import db
from connector.platforms.standalone.defaults import add_default_reasons
from connector.returns import lifecycle as lc
from connector.returns import services
from connector.returns.models import Order, Return, ReturnReason, Shop
from connector.returns.ports import OrderData, OrderLineData
from connector.returns.policy import ReturnPolicy

HANDLE = "demo"
SHOP_NAME = "Alpenglow Outdoor"
CENT = Decimal("0.01")

LOGO_URL = "/portal/static/demo-logo.svg"  # shipped with the portal's static files

# Country -> (VAT rate for gross prices, or None where taxes are added on top; shipping fee)
COUNTRIES = {
    "DE": (Decimal("0.19"), Decimal("4.95")),
    "AT": (Decimal("0.20"), Decimal("6.95")),
    "FR": (Decimal("0.20"), Decimal("7.95")),
    "ES": (Decimal("0.21"), Decimal("7.95")),
    "NL": (Decimal("0.21"), Decimal("6.95")),
    "CH": (Decimal("0.081"), Decimal("12.90")),
    "US": (None, Decimal("19.00")),
}
US_SALES_TAX = Decimal("0.08")  # Colorado state + Denver, added on top of the prices

# One catalogue in EUR; USD and CHF prices are derived. (sku stem, title, type, price, variants, tags)
CATALOGUE = [
    ("AG-JKT-TRL", "Trail Shell Jacket", "Jackets", "179.00",
     ["S / Glacier Blue", "M / Glacier Blue", "L / Glacier Blue", "M / Moss", "L / Moss", "XL / Moss"], []),
    ("AG-VST-DWN", "Gipfel Down Vest", "Jackets", "129.00", ["S / Black", "M / Black", "L / Rust"], []),
    ("AG-FLC-MID", "Karwendel Fleece Midlayer", "Midlayers", "89.00", ["S / Heather", "M / Heather", "L / Navy"], []),
    ("AG-MER-LS", "Merino 200 Base Layer Long Sleeve", "Base layers", "69.90", ["S", "M", "L", "XL"], []),
    ("AG-MER-BRF", "Merino Boxer Briefs", "Underwear", "34.90", ["S", "M", "L"], ["hygiene"]),
    ("AG-SCK-HIK", "Merino Hiking Socks", "Socks", "19.90", ["36-38", "39-41", "42-44", "45-47"], []),
    ("AG-PNT-SFT", "Softshell Trekking Pants", "Pants", "99.00", ["46", "48", "50", "52", "W36", "W38"], []),
    ("AG-PNT-RAIN", "Rain Shell Pants", "Pants", "79.00", ["S", "M", "L"], []),
    ("AG-BT-RDG", "Ridgeline GTX Hiking Boots", "Footwear", "189.00", ["39", "40", "41", "42", "43", "44", "45"], []),
    ("AG-SH-TRN", "Trailrunner Shoes", "Footwear", "139.00", ["38", "40", "42", "44", "46"], []),
    ("AG-PCK-25", "Daypack 25 L", "Backpacks", "89.00", ["Slate", "Ochre"], []),
    ("AG-PCK-45", "Trekking Backpack 45+10 L", "Backpacks", "219.00", ["M/L", "S/M"], []),
    ("AG-POL-CRB", "Carbon Trekking Poles (pair)", "Equipment", "119.00", ["115-135 cm"], []),
    ("AG-HLP-400", "Headlamp 400 lm", "Equipment", "44.90", [""], []),
    ("AG-BTL-750", "Insulated Bottle 750 ml", "Equipment", "29.90", ["Steel", "Forest"], []),
    ("AG-TNT-2P", "Ultralight Tent 2P", "Tents", "349.00", [""], []),
    ("AG-SLB-M5", "Sleeping Bag -5 °C", "Sleeping", "229.00", ["Regular", "Long"], []),
    ("AG-MAT-UL", "Ultralight Sleeping Mat", "Sleeping", "119.00", ["Regular"], []),
    ("AG-BNE-WL", "Wool Beanie", "Accessories", "24.90", ["Charcoal", "Moss", "Rust"], []),
    ("AG-GLV-WND", "Windstopper Gloves", "Accessories", "39.90", ["S", "M", "L"], []),
    ("AG-CAP-OUT", "Outlet Sun Cap (final sale)", "Accessories", "14.90", ["One size"], ["final-sale"]),
]

PEOPLE = {
    "DE": [("Lena Schmidt", "Invalidenstraße 12", "10115", "Berlin"),
           ("Jonas Becker", "Sendlinger Straße 8", "80331", "München"),
           ("Sophie Wagner", "Große Bergstraße 154", "22767", "Hamburg"),
           ("Lukas Hoffmann", "Ehrenstraße 41", "50672", "Köln"),
           ("Marie Schäfer", "Karl-Liebknecht-Straße 25", "04107", "Leipzig"),
           ("Felix Koch", "Kaiser-Joseph-Straße 210", "79098", "Freiburg im Breisgau"),
           ("Hannah Richter", "Marienstraße 3", "70178", "Stuttgart"),
           ("Paul Klein", "Königsbrücker Straße 60", "01099", "Dresden"),
           ("Emma Wolf", "Berger Straße 118", "60316", "Frankfurt am Main"),
           ("Maximilian Schröder", "Hauptmarkt 14", "90403", "Nürnberg"),
           ("Mia Neumann", "Zugspitzstraße 27", "82467", "Garmisch-Partenkirchen"),
           ("Leon Zimmermann", "Bahnhofstraße 5", "87561", "Oberstdorf"),
           ("Clara Braun", "Lindenstraße 19", "93047", "Regensburg"),
           ("Tim Krüger", "Kröpeliner Straße 33", "18055", "Rostock"),
           ("Anna Hartmann", "Schillerstraße 7", "99084", "Erfurt"),
           ("Niklas Lange", "Am Markt 2", "37073", "Göttingen"),
           ("Laura Werner", "Rheinstraße 44", "64283", "Darmstadt"),
           ("Jan Schmitt", "Klosterstraße 9", "48143", "Münster"),
           ("Erika Mustermann", "Heidestraße 17", "51147", "Köln")],
    "AT": [("Katharina Gruber", "Mariahilfer Straße 88", "1070", "Wien"),
           ("Florian Huber", "Maria-Theresien-Straße 18", "6020", "Innsbruck"),
           ("Johanna Bauer", "Getreidegasse 21", "5020", "Salzburg"),
           ("Stefan Pichler", "Herrengasse 6", "8010", "Graz"),
           ("Theresa Moser", "Landstraße 33", "4020", "Linz"),
           ("Matthias Steiner", "Dorfstraße 4", "6370", "Kitzbühel")],
    "FR": [("Camille Dubois", "12 rue Oberkampf", "75011", "Paris"),
           ("Julien Moreau", "8 place Bellecour", "69002", "Lyon"),
           ("Élise Laurent", "3 rue Félix Poulat", "38000", "Grenoble"),
           ("Antoine Girard", "145 avenue Michel Croz", "74400", "Chamonix-Mont-Blanc"),
           ("Chloé Lefèvre", "6 rue Royale", "74000", "Annecy"),
           ("Hugo Fontaine", "27 cours Julien", "13006", "Marseille")],
    "ES": [("Lucía García", "Calle de Atocha 45", "28012", "Madrid"),
           ("Javier Fernández", "Carrer de Mallorca 210", "08008", "Barcelona"),
           ("Carmen Ruiz", "Calle Recogidas 12", "18005", "Granada"),
           ("Iñaki Etxeberria", "Calle Ledesma 7", "48001", "Bilbao"),
           ("Marta López", "Carrer de Colón 30", "46004", "València")],
    "NL": [("Daan de Vries", "Prinsengracht 263", "1016 GV", "Amsterdam"),
           ("Sanne Jansen", "Oudegracht 120", "3511 AW", "Utrecht"),
           ("Thijs van Dijk", "Witte de Withstraat 50", "3012 BR", "Rotterdam"),
           ("Femke Bakker", "Grote Markt 9", "9711 LV", "Groningen")],
    "US": [("Emily Carter", "1550 Wewatta St", "80202", "Denver")],
    "CH": [("Luca Meier", "Bahnhofstrasse 58", "8001", "Zürich")],
}
LOCALES = {"DE": "de", "AT": "de", "CH": "de", "FR": "fr", "ES": "es", "NL": None, "US": "en"}
GATEWAYS = ("stripe", "paypal", "klarna")


@dataclass
class _Placed:
    """An order as the seed plans it, before it becomes OrderData."""

    country: str
    person: tuple[str, str, str, str]
    placed_days_ago: int
    lines: list[tuple[int, int, int, Decimal]]  # (catalogue index, variant index, quantity, discount rate)
    fulfilled: bool = True


def seed_demo_shop(password: str | None = None) -> tuple[Shop, str, dict[str, str]]:
    """Create the "demo" shop with reasons, 43 orders and four returns; return the shop, its admin
    password (generated when not given) and `sample`: the number, email and postcode of a fresh,
    eligible German order with several lines to try the portal with.

    Raises ValueError when a shop with the handle "demo" already exists.
    """
    if db.session.query(Shop.id).filter(Shop.handle == HANDLE).first() is not None:
        raise ValueError(f"a shop with handle {HANDLE!r} already exists; the demo seeds a fresh database")
    password = password or secrets.token_urlsafe(12)
    rng = random.Random(42)
    now = datetime.now(timezone.utc).replace(microsecond=0)

    shop = _make_shop(password)
    reasons = {r.code: r for r in add_default_reasons(shop)}
    db.session.commit()

    plans = _plan_orders(rng)
    orders: list[Order] = []
    for number, plan in enumerate(plans, start=24001):
        orders.append(services.upsert_order(shop, _order_data(rng, plan, str(number), now)))

    sample = orders[-2]  # planned below as the fresh German order with several lines
    _seed_returns(shop, orders, reasons)
    return shop, password, {"order_number": sample.number, "email": sample.email, "postcode": sample.postcode}


# --------------------------------------------------------------------------- shop


def _make_shop(password: str) -> Shop:
    policy = ReturnPolicy(
        methods={"DE": ["pickup", "dropoff", "carrier_label", "selfship"],
                 "AT": ["pickup", "dropoff", "selfship"],
                 "FR": ["dropoff", "selfship"],
                 "ES": ["pickup", "carrier_label", "selfship"],
                 "*": ["dropoff", "selfship"]},
        excluded_tags=["hygiene"],
        refund_shipping="shop_fault",
        auto_approve_max_total=Decimal("300.00"),  # bigger returns wait for the merchant
    )
    shop = Shop(handle=HANDLE, name=SHOP_NAME, platform="standalone", currency="EUR", locale="en", country="DE",
                timezone="Europe/Berlin", support_email="service@alpenglow-outdoor.example",
                admin_password_hash=generate_password_hash(password),
                branding={"primary_color": "#2f6b4f", "logo_url": LOGO_URL},
                return_address={"name": "Alpenglow Outdoor GmbH, Retourenlager", "line1": "Torgauer Straße 231",
                                "line2": "Halle 4", "postcode": "04347", "city": "Leipzig", "country": "DE"},
                policy=policy.to_dict())
    db.session.add(shop)
    db.session.flush()
    return shop


# --------------------------------------------------------------------------- orders


def _plan_orders(rng: random.Random) -> list[_Placed]:
    """43 orders, oldest first; the last three are planned by hand: a large Spanish order, the
    sample order and an unfulfilled one."""
    countries = (["DE"] * 17 + ["AT"] * 6 + ["FR"] * 6 + ["ES"] * 5 + ["NL"] * 4 + ["US", "CH"])
    rng.shuffle(countries)
    seen = {c: 0 for c in PEOPLE}
    plans = []
    # Spread over the last 60 days; the oldest is well past its 30-day window.
    days = sorted((rng.randint(4, 60) for _ in countries), reverse=True)
    days[0] = 60
    for country, placed in zip(countries, days):
        person = PEOPLE[country][seen[country] % len(PEOPLE[country])]
        seen[country] += 1
        lines = []
        for index in rng.sample(range(len(CATALOGUE)), k=rng.choice((1, 1, 2, 2, 3))):
            quantity = 3 if CATALOGUE[index][0] == "AG-SCK-HIK" else rng.choice((1, 1, 1, 2))
            discount = rng.choice((Decimal("0"), Decimal("0"), Decimal("0"), Decimal("0.10"), Decimal("0.15")))
            lines.append((index, rng.randrange(len(CATALOGUE[index][4])), quantity, discount))
        plans.append(_Placed(country, person, placed, lines))
    # Worth more than the auto-approval limit: its return waits for the merchant.
    plans.append(_Placed("ES", PEOPLE["ES"][0], 9, [
        (_index("AG-TNT-2P"), 0, 1, Decimal("0")),
        (_index("AG-MAT-UL"), 0, 1, Decimal("0.10")),
    ]))
    # The sample: a German order delivered a few days ago with several returnable lines, a
    # discounted multi-pack and a final-sale cap (which the portal shows as not returnable).
    plans.append(_Placed("DE", PEOPLE["DE"][-1], 6, [
        (_index("AG-JKT-TRL"), 1, 1, Decimal("0")),
        (_index("AG-SCK-HIK"), 2, 3, Decimal("0.15")),
        (_index("AG-BT-RDG"), 4, 1, Decimal("0")),
        (_index("AG-CAP-OUT"), 0, 1, Decimal("0")),
    ]))
    plans.append(_Placed("AT", PEOPLE["AT"][0], 1, [(_index("AG-SLB-M5"), 0, 1, Decimal("0"))], fulfilled=False))
    return plans


def _index(sku_stem: str) -> int:
    return next(i for i, product in enumerate(CATALOGUE) if product[0] == sku_stem)


def _price(eur: str, currency: str) -> Decimal:
    price = Decimal(eur)
    if currency == "USD":
        return (price * Decimal("1.10")).quantize(Decimal("1"), rounding=ROUND_HALF_UP) - Decimal("0.01")
    if currency == "CHF":
        return (price * Decimal("0.96")).quantize(Decimal("1"), rounding=ROUND_HALF_UP) - Decimal("0.10")
    return price


def _order_data(rng: random.Random, plan: _Placed, number: str, now: datetime) -> OrderData:
    country = plan.country
    currency = {"US": "USD", "CH": "CHF"}.get(country, "EUR")
    vat, shipping = COUNTRIES[country]
    taxes_included = vat is not None
    name, street, postcode, city = plan.person
    placed_at = now - timedelta(days=plan.placed_days_ago, hours=rng.randint(0, 12), minutes=rng.randint(0, 59))
    fulfilled_at = placed_at + timedelta(days=1, hours=rng.randint(1, 8)) if plan.fulfilled else None
    delivered_at = fulfilled_at + timedelta(days=rng.randint(1, 3)) if fulfilled_at else None
    if delivered_at and delivered_at > now:
        delivered_at = None  # still with the carrier
    lines = []
    subtotal = Decimal("0")
    tax_sum = Decimal("0")
    for i, (index, variant_index, quantity, discount_rate) in enumerate(plan.lines):
        sku_stem, title, product_type, eur, variants, tags = CATALOGUE[index]
        variant = variants[variant_index]
        unit_price = _price(eur, currency)
        discount = (unit_price * quantity * discount_rate).quantize(CENT, rounding=ROUND_HALF_UP)
        after_discount = unit_price * quantity - discount
        if taxes_included:
            tax = (after_discount * vat / (1 + vat)).quantize(CENT, rounding=ROUND_HALF_UP)
        else:
            tax = (after_discount * US_SALES_TAX).quantize(CENT, rounding=ROUND_HALF_UP)
        suffix = variant.split(" / ")[0].replace(" ", "").upper() if variant else ""
        lines.append(OrderLineData(
            platform_id=f"{number}-{i + 1}", title=title, quantity=quantity, unit_price=unit_price,
            sku=f"{sku_stem}-{suffix}" if suffix else sku_stem, variant_title=variant,
            product_type=product_type, product_tags=tuple(tags), discount_total=discount, tax_total=tax,
            final_sale="final-sale" in tags))
        subtotal += after_discount
        tax_sum += tax
    if taxes_included and subtotal >= Decimal("150"):
        shipping = Decimal("0")  # free shipping above 150 in the EU
    shipping_tax = (shipping * vat / (1 + vat)).quantize(CENT, rounding=ROUND_HALF_UP) if taxes_included \
        else Decimal("0")
    total = subtotal + shipping + (Decimal("0") if taxes_included else tax_sum)
    first, _, last = name.partition(" ")
    address = {"name": name, "line1": street, "line2": "", "postcode": postcode, "city": city, "country": country,
               "phone": ""}
    if country == "US":
        address["region"] = "CO"
    return OrderData(
        platform_id=f"demo-{number}", number=number,
        email=f"{_ascii(first)}.{_ascii(last)}@example.com".lower(), currency=currency,
        placed_at=placed_at, lines=tuple(lines), customer_name=name, locale=LOCALES[country],
        shipping_address=address, taxes_included=taxes_included, shipping_total=shipping,
        shipping_tax=shipping_tax, total=total.quantize(CENT), payment_gateway=rng.choice(GATEWAYS),
        tags=("web",), fulfilled_at=fulfilled_at, delivered_at=delivered_at, updated_at=placed_at)


def _ascii(text: str) -> str:
    """An email-safe form of a name: "Schäfer" -> "schaefer", "Élise" -> "elise"."""
    import unicodedata
    text = text.replace("ä", "ae").replace("ö", "oe").replace("ü", "ue").replace("ß", "ss").replace(" ", "")
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


# --------------------------------------------------------------------------- returns


def _seed_returns(shop: Shop, orders: list[Order], reasons: dict[str, ReturnReason]) -> None:
    """Four returns made through the use cases, each left in another state: label ready (R-1001,
    the one to move on with `connector sandbox advance`), received and waiting for grading
    (R-1002), refunded (R-1003), and waiting for the merchant's approval (R-1004)."""
    now = datetime.now(timezone.utc)
    # Delivered recently, and not one of the three planned by hand.
    fresh = [o for o in orders[:-3] if o.delivered_at and now - o.delivered_at < timedelta(days=25)]
    used: set[int] = set()

    def pick(country: str) -> tuple[Order, int]:
        """A fresh order (of `country` if there is one) and a line to return one unit of."""
        for wanted in (country, None):
            for order in fresh:
                if order.id in used or (wanted and order.country != wanted):
                    continue
                line_id = _small_line(shop, order)
                if line_id is not None:
                    used.add(order.id)
                    return order, line_id
        raise RuntimeError("the demo orders have no returnable order left for the seeded returns")

    order, line_id = pick("DE")
    ret = _make_return(shop, order, "dropoff", reasons["too_small"], {line_id: 1})
    _run_shipment(ret)

    order, line_id = pick("FR")
    ret = _make_return(shop, order, "selfship", reasons["changed_mind"], {line_id: 1})
    services.set_selfship_tracking(ret, "6A12345678901", "La Poste Colissimo")
    services.mark_received(ret, "merchant:demo")

    order, line_id = pick("AT")
    ret = _make_return(shop, order, "pickup", reasons["too_big"], {line_id: 1})
    _run_shipment(ret)
    services.mark_received(ret, "merchant:demo")
    services.inspect(ret, "merchant:demo", {line.id: {"grade": "A", "disposition": "restock", "note": ""}
                                            for line in ret.lines})
    refund = services.request_refund(ret, "merchant:demo")
    services.execute_refund(refund.id)  # the job body; a queued copy later finds it done

    big = orders[-3]
    _make_return(shop, big, "carrier_label", reasons["wrong_item"],
                 {line.id: line.quantity for line in big.lines},
                 comment="Pedí la tienda en verde y me ha llegado en naranja.")


def _small_line(shop: Shop, order: Order) -> int | None:
    """A returnable line cheap enough to be approved automatically, or None."""
    for option in services.line_options(shop, order):
        if option.returnable_quantity > 0 and option.line.unit_price <= Decimal("250"):
            return option.line.id
    return None


def _make_return(shop: Shop, order: Order, method: str, reason: ReturnReason, quantities: dict[int, int],
                 comment: str = "") -> Return:
    """Draft, items, method, instructions, confirm: the portal's path."""
    locale = order.locale or shop.locale
    ret = services.start_draft(shop, order, email=order.email, locale=locale)
    services.set_items(ret, [services.ItemChoice(order_line_id=line_id, quantity=quantity, reason_id=reason.id,
                                                 comment=comment)
                             for line_id, quantity in quantities.items()])
    offered = [o.method for o in services.method_options(ret)]
    services.set_method(ret, method if method in offered else offered[0])
    services.set_instructions(ret, dict(order.shipping_address),
                              [code for code, _text in services.checklist_items(ret)])
    return services.confirm(ret)


def _run_shipment(ret: Return) -> None:
    """Run the label/pickup job body now: the demo's worker is not running yet while it seeds."""
    db.session.refresh(ret)
    shipment = ret.shipment
    if shipment is not None and ret.state == lc.APPROVED:
        services.fulfil_shipment(shipment.id)
        db.session.refresh(ret)
