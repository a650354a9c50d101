"""The warehouse: receiving a parcel and grading its lines A/B/C."""
from __future__ import annotations

from connector.db import session
from connector.returns import lifecycle as lc
from connector.returns.context import _, runtime
from connector.returns.models import Return
from connector.returns.services.base import (MAX_COMMENT, ServiceError, ValidationError, _enqueue_all,
                                             _set_pending, _shop, policy_of)
from connector.returns.services.platform import note_jobs, platform_jobs
from connector.returns.services.refunds import request_refund


GRADES = ("A", "B", "C")


DISPOSITIONS = ("restock", "refurbish", "dispose", "missing")


def mark_received(ret: Return, actor: str, quantities: dict[int, int] | None = None) -> None:
    """The parcel arrived. `quantities` (by return line id) default to what was announced."""
    quantities = quantities or {}
    for line in ret.lines:
        qty = quantities.get(line.id, line.quantity)
        if qty < 0 or qty > line.quantity:
            raise ValidationError({f"line-{line.id}-received": _("Between 0 and %(n)s.", n=line.quantity)})
        line.received_quantity = qty
    shipment = ret.shipment
    if shipment is not None and shipment.status not in ("voided",):
        shipment.status = "delivered"
    lc.transition(ret, lc.RECEIVED, actor=actor,
                  data={"received": {str(line.id): line.received_quantity for line in ret.lines}})
    _set_pending(ret, None)
    session.commit()
    runtime.enqueue("notify", return_id=ret.id, kind=lc.RECEIVED)
    _enqueue_all(note_jobs(ret))  # the "received" order note, on platforms that take notes
    if policy_of(_shop(ret)).refund_trigger == "received":
        request_refund(ret, "system")


def inspect(ret: Return, actor: str, results: dict[int, dict[str, str]]) -> None:
    """Grade lines A/B/C with a disposition; once every line is graded the return is inspected."""
    if ret.state not in (lc.RECEIVED, lc.INSPECTED, lc.REFUNDED):
        raise ServiceError(_("Only a received return can be graded."))
    lines = {line.id: line for line in ret.lines}
    errors = {}
    for line_id, result in results.items():
        if line_id not in lines:
            errors["lines"] = _("Unknown line.")
            continue
        if result.get("grade") not in GRADES:
            errors[f"line-{line_id}-grade"] = _("Choose grade A, B or C.")
        if result.get("disposition") not in DISPOSITIONS:
            errors[f"line-{line_id}-disposition"] = _("Choose what happens to the item.")
        if len(result.get("note") or "") > MAX_COMMENT:
            errors[f"line-{line_id}-note"] = _("Please keep the note under %(n)s characters.", n=MAX_COMMENT)
    if errors:
        raise ValidationError(errors)
    for line_id, result in results.items():
        line = lines[line_id]
        line.grade, line.disposition = result["grade"], result["disposition"]
        line.inspection_note = (result.get("note") or "").strip()
    lc.record(ret, "inspection", actor=actor, data={str(i): {"grade": r["grade"], "disposition": r["disposition"]}
                                                     for i, r in results.items()})
    complete = all(line.grade for line in ret.lines)
    if complete and ret.state == lc.RECEIVED:
        lc.transition(ret, lc.INSPECTED, actor=actor)
    session.commit()
    _enqueue_all(platform_jobs(ret))
    if complete and ret.state == lc.INSPECTED:
        runtime.enqueue("notify", return_id=ret.id, kind=lc.INSPECTED)
        if policy_of(_shop(ret)).refund_trigger == "inspected":
            request_refund(ret, "system")
