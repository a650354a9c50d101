"""The EU withdrawal function (Art. 11a, Directive 2011/83/EU) as a return marked as such."""
from __future__ import annotations

from datetime import timedelta

from connector.db import session
from connector.returns import lifecycle as lc
from connector.returns.context import N_, _, runtime
from connector.returns.models import Order, Return, ReturnLine, Shop
from connector.returns.services.base import ServiceError, ValidationError, _enqueue_all, now_utc, policy_of
from connector.returns.services.drafts import _next_number
from connector.returns.services.orders import line_options
from connector.returns.services.platform import platform_jobs


WITHDRAWAL_STATEMENT = N_("I hereby withdraw from the contract concluded by me for the purchase of the "
                           "goods listed below.")


def create_withdrawal(shop: Shop, order: Order, *, name: str, email: str,
                      line_quantities: dict[int, int] | None, locale: str) -> Return:
    """Record an EU withdrawal (Art. 11a, Directive 2011/83/EU) as a return marked as such.

    No reason is asked. All returnable units are withdrawn unless `line_quantities` names a part.
    The acknowledgment mail is queued at once with the statement, date and time.
    """
    if order.shop_id != shop.id:
        raise ServiceError(_("We could not match this order number and email."))
    name = (name or "").strip()
    if not name or len(name) > 255:
        raise ValidationError({"name": _("Enter your name.")})
    options = {o.line.id: o for o in line_options(shop, order, withdrawal=True)}
    wanted = line_quantities or {lid: o.returnable_quantity for lid, o in options.items()}
    lines = []
    for line_id, qty in wanted.items():
        option = options.get(line_id)
        if not qty:
            continue
        if option is None or qty < 0 or qty > option.returnable_quantity:
            raise ValidationError({f"line-{line_id}-quantity": _("You can withdraw at most %(n)s of this item.",
                                                                  n=option.returnable_quantity if option else 0)})
        lines.append(ReturnLine(shop_id=shop.id, order_line_id=line_id, quantity=qty))
    if not lines:
        raise ValidationError({"items": _("There is nothing left in this order to withdraw from.")})
    stamp = now_utc()
    ret = Return(shop_id=shop.id, order_id=order.id, email=email.strip().lower(), state=lc.DRAFT,
                 currency=order.currency, locale=locale, address=dict(order.shipping_address or {}),
                 is_withdrawal=True, withdrawal_name=name, method="selfship",
                 carrier=policy_of(shop).carriers.get("selfship", "selfship"), confirmed_at=stamp)
    ret.lines.extend(lines)
    session.add(ret)
    session.flush()
    ret.number = _next_number(shop.id)
    ret.deadline = stamp + timedelta(days=14)  # goods back within 14 days of withdrawal (Art. 14)
    lc.record(ret, "withdrawal", actor="shopper", public=True, data={
        "statement": WITHDRAWAL_STATEMENT, "name": name, "email": ret.email, "order": order.number,
        "received_at": stamp.isoformat(), "partial": line_quantities is not None,
        "lines": [{"title": line.order_line.title if line.order_line else "", "quantity": line.quantity}
                  for line in lines]})
    lc.transition(ret, lc.REQUESTED, actor="shopper", data={"withdrawal": True})
    session.commit()
    runtime.enqueue("notify", return_id=ret.id, kind="withdrawal")
    _enqueue_all(platform_jobs(ret))  # the platform's native return (Shopify), as for any return
    return ret
