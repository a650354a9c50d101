"""Shopify's returns and refunds, played on the ShopifyStub: state kept, answers in the documented shape.

    fake = ShopifyReturnsFake(shopify, shop)     # registers every returns / refunds operation
    fake.refunds                                 # the refunds Shopify holds (applied once per key)
    fake.returns[gid]                            # the returns it holds, with lines, RFOs, deliveries

Shopify's rules the fake keeps, because the connector relies on them:
- a return names FulfillmentLineItem ids, and only units fulfilled and not yet in a live return;
- returnCreate opens a reverse fulfillment order at once, returnRequest only once approved;
- cancel is refused once work was done (a disposition or a refund), decline only for REQUESTED;
- a disposition cannot exceed what the reverse fulfillment order line still holds, RESTOCKED needs a
  location;
- refundCreate applies an `@idempotent` key once and answers a repeat with the first result
  (https://shopify.dev/docs/api/usage/idempotent-requests); without a key it is refused, as 2026-04 does.

`state_file`: keep the refunds in a JSON file under a lock instead, so that several processes
(the PostgreSQL race test) share one Shopify.
"""
from __future__ import annotations

import fcntl
import json
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

from connector.returns.models import Order

COST = {"requestedQueryCost": 10, "actualQueryCost": 10,
        "throttleStatus": {"maximumAvailable": 2000.0, "currentlyAvailable": 1990, "restoreRate": 100.0}}

REASON_LIBRARY = [
    ("too-small", "Too small"), ("too-large", "Too large"), ("changed-mind", "Changed mind"),
    ("damaged", "Damaged"), ("wrong-item", "Wrong item"), ("other", "Other"), ("color", "Color"),
]


def answer(data: dict[str, Any]) -> dict[str, Any]:
    return {"data": data, "extensions": {"cost": COST}}


def user_error(field: str, message: str, code: str | None = "INVALID") -> dict[str, Any]:
    error: dict[str, Any] = {"field": [field], "message": message}
    if code is not None:
        error["code"] = code
    return error


class ShopifyReturnsFake:
    def __init__(self, stub, shop, *, state_file: Path | None = None):
        self.stub = stub
        self.shop_id = shop.id
        self.state_file = state_file
        self.seq = 900
        self.returns: dict[str, dict[str, Any]] = {}
        self._refunds: list[dict[str, Any]] = []
        self.reasons = {handle: f"gid://shopify/ReturnReasonDefinition/{i + 1}" for i, (handle, _n) in
                        enumerate(REASON_LIBRARY)}
        self.refund_faults: list[Any] = []  # per RefundCreate call: None, "timeout_after_apply", "5xx", ...
        for name in ("ReturnableFulfillments", "ReturnRequest", "ReturnCreate", "ReturnApproveRequest",
                     "ReturnDeclineRequest", "ReturnCancel", "ReturnClose", "ReturnGet", "OrderReturns",
                     "ReverseDeliveryCreateWithShipping", "ReverseFulfillmentOrderDispose", "RefundCreate",
                     "OrderRefunds", "OrderTransactions", "ReturnReasonDefinitions"):
            stub.on(name, getattr(self, "_" + name))

    # ------------------------------------------------------------------ ids and orders

    def gid(self, kind: str) -> str:
        self.seq += 1
        return f"gid://shopify/{kind}/{self.seq}"

    @staticmethod
    def fli(line_item_gid: str) -> str:
        """The FulfillmentLineItem that fulfilled all units of a LineItem (one fulfillment per order)."""
        return line_item_gid.replace("LineItem/", "FulfillmentLineItem/")

    def _order(self, order_gid: str) -> Order:
        from connector import db
        order = db.session.query(Order).filter_by(shop_id=self.shop_id, platform_id=order_gid).one_or_none()
        assert order is not None, f"the fake knows no order {order_gid}"
        return order

    def _held(self, fli: str) -> int:
        return sum(rli["quantity"] for r in self.returns.values() if r["status"] not in ("CANCELED", "DECLINED")
                   for rli in r["lines"] if rli["fli"] == fli)

    # ------------------------------------------------------------------ returns

    def add_return(self, order_gid: str, items: list[tuple[str, int, str | None, str]], status: str = "OPEN",
                   created_at: str = "2026-05-04T10:00:00Z") -> str:
        """A return as staff or a shopper creates it in Shopify's own interface: items are
        (LineItem GID, quantity, reason handle, note)."""
        gid = self.gid("Return")
        ret = {"id": gid, "name": f"#R{self.seq}", "status": status, "order": order_gid, "createdAt": created_at,
               "lines": [], "rfos": [], "decline": None, "work_done": False}
        for line_item, quantity, handle, note in items:
            ret["lines"].append({"id": self.gid("ReturnLineItem"), "fli": self.fli(line_item), "line_item": line_item,
                                 "quantity": quantity, "reason": handle, "note": note})
        self.returns[gid] = ret
        if status in ("OPEN", "CLOSED"):
            self.open_rfo(ret)
        return gid

    def open_rfo(self, ret: dict[str, Any]) -> None:
        rfo = {"id": self.gid("ReverseFulfillmentOrder"), "status": "OPEN", "lines": [], "deliveries": []}
        for rli in ret["lines"]:
            rfo["lines"].append({"id": self.gid("ReverseFulfillmentOrderLineItem"), "fli": rli["fli"],
                                 "total": rli["quantity"], "dispositions": []})
        ret["rfos"].append(rfo)

    def _create(self, order_gid: str, items: list[dict[str, Any]], status: str, note_field: str):
        order = self._order(order_gid)
        by_fli = {self.fli(line.platform_id): line for line in order.lines}
        errors = []
        for index, item in enumerate(items):
            line = by_fli.get(item["fulfillmentLineItemId"])
            if line is None:
                errors.append(user_error(f"returnLineItems.{index}.fulfillmentLineItemId",
                                         "Fulfillment line item does not exist.", "NOT_FOUND"))
            elif item["quantity"] > line.quantity - self._held(item["fulfillmentLineItemId"]):
                errors.append(user_error(f"returnLineItems.{index}.quantity",
                                         "Quantity is not available for return.", "INVALID"))
            reason = item.get("returnReasonDefinitionId")
            if reason is not None and reason not in self.reasons.values():
                errors.append(user_error(f"returnLineItems.{index}.returnReasonDefinitionId",
                                         "Return reason definition does not exist.", "NOT_FOUND"))
        if errors:
            return None, errors
        handles = {gid: handle for handle, gid in self.reasons.items()}
        gid = self.add_return(order_gid, [(by_fli[i["fulfillmentLineItemId"]].platform_id, i["quantity"],
                                           handles.get(i.get("returnReasonDefinitionId")), i.get(note_field) or "")
                                          for i in items], status=status)
        return self.returns[gid], []

    def _ReturnRequest(self, variables, request):
        data = variables["input"]
        ret, errors = self._create(data["orderId"], data["returnLineItems"], "REQUESTED", "customerNote")
        return answer({"returnRequest": {"return": _brief(ret), "userErrors": errors}})

    def _ReturnCreate(self, variables, request):
        data = variables["returnInput"]
        ret, errors = self._create(data["orderId"], data["returnLineItems"], "OPEN", "returnReasonNote")
        return answer({"returnCreate": {"return": _brief(ret), "userErrors": errors}})

    def _change(self, field: str, gid: str, allowed: tuple[str, ...], target: str, message: str, **extra):
        ret = self.returns.get(gid)
        if ret is None:
            return answer({field: {"return": None, "userErrors": [user_error("id", "Return does not exist.",
                                                                              "NOT_FOUND")]}})
        if ret["status"] not in allowed or (target == "CANCELED" and ret["work_done"]):
            return answer({field: {"return": None, "userErrors": [user_error("id", message, "INVALID_STATE")]}})
        ret["status"] = target
        ret.update(extra)
        if target == "OPEN" and not ret["rfos"]:
            self.open_rfo(ret)
        return answer({field: {"return": _brief(ret), "userErrors": []}})

    def _ReturnApproveRequest(self, variables, request):
        return self._change("returnApproveRequest", variables["input"]["id"], ("REQUESTED",), "OPEN",
                            "Return is not approvable. Only returns with status REQUESTED can be approved.")

    def _ReturnDeclineRequest(self, variables, request):
        data = variables["input"]
        return self._change("returnDeclineRequest", data["id"], ("REQUESTED",), "DECLINED",
                            "Return is not declinable. Only non-refunded returns with status REQUESTED can be "
                            "declined.",
                            decline={"reason": data["declineReason"], "note": data.get("declineNote")})

    def _ReturnCancel(self, variables, request):
        return self._change("returnCancel", variables["id"], ("REQUESTED", "OPEN"), "CANCELED",
                            "Return is not cancelable.")

    def _ReturnClose(self, variables, request):
        return self._change("returnClose", variables["id"], ("OPEN",), "CLOSED", "Return is not closable.")

    def node(self, ret: dict[str, Any]) -> dict[str, Any]:
        """A Return node in the shape of the ReturnGet document."""
        definitions = {handle: gid for handle, gid in self.reasons.items()}
        return {
            "id": ret["id"], "name": ret["name"], "status": ret["status"], "createdAt": ret["createdAt"],
            "closedAt": None, "decline": ret["decline"], "order": {"id": ret["order"]},
            "returnLineItems": {"nodes": [{
                "id": rli["id"], "quantity": rli["quantity"], "customerNote": rli["note"] or None,
                "returnReasonNote": rli["note"],
                "returnReasonDefinition": ({"id": definitions[rli["reason"]], "handle": rli["reason"],
                                            "name": rli["reason"]} if rli["reason"] else None),
                "fulfillmentLineItem": {"id": rli["fli"], "lineItem": {"id": rli["line_item"]}},
            } for rli in ret["lines"]]},
            "reverseFulfillmentOrders": {"nodes": [{
                "id": rfo["id"], "status": rfo["status"],
                "lineItems": {"nodes": [{"id": line["id"], "totalQuantity": line["total"],
                                         "fulfillmentLineItem": {"id": line["fli"]},
                                         "dispositions": [{"quantity": d["quantity"], "type": d["type"]}
                                                          for d in line["dispositions"]]}
                                        for line in rfo["lines"]]},
                "reverseDeliveries": {"nodes": [{"id": d["id"], "deliverable": {
                    "tracking": {"number": d["number"], "url": d.get("url")}}} for d in rfo["deliveries"]]},
            } for rfo in ret["rfos"]]},
        }

    def _ReturnGet(self, variables, request):
        ret = self.returns.get(variables["id"])
        return answer({"return": self.node(ret) if ret else None})

    def _OrderReturns(self, variables, request):
        nodes = [self.node(r) for r in self.returns.values() if r["order"] == variables["orderId"]]
        for node in nodes:  # OrderReturns selects less; the extra fields would not be sent
            node.pop("reverseFulfillmentOrders"), node.pop("decline"), node.pop("order"), node.pop("name")
            node.pop("closedAt")
            for rli in node["returnLineItems"]["nodes"]:
                for key in ("customerNote", "returnReasonNote", "returnReasonDefinition"):
                    rli.pop(key)
        return answer({"order": {"id": variables["orderId"], "returns": {"nodes": list(reversed(nodes))}}})

    def _ReturnableFulfillments(self, variables, request):
        order = self._order(variables["orderId"])
        items = [{"quantity": line.quantity - self._held(self.fli(line.platform_id)),
                  "fulfillmentLineItem": {"id": self.fli(line.platform_id), "lineItem": {"id": line.platform_id}}}
                 for line in order.lines]
        return answer({"returnableFulfillments": {
            "nodes": [{"id": "gid://shopify/ReturnableFulfillment/1",
                       "returnableFulfillmentLineItems": {"nodes": [i for i in items if i["quantity"] > 0]}}],
            "pageInfo": {"hasNextPage": False, "endCursor": None}}})

    def _rfo(self, rfo_gid: str):
        for ret in self.returns.values():
            for rfo in ret["rfos"]:
                if rfo["id"] == rfo_gid:
                    return ret, rfo
        return None, None

    def _ReverseDeliveryCreateWithShipping(self, variables, request):
        ret, rfo = self._rfo(variables["reverseFulfillmentOrderId"])
        if rfo is None:
            return answer({"reverseDeliveryCreateWithShipping": {"reverseDelivery": None, "userErrors": [
                user_error("reverseFulfillmentOrderId", "Reverse fulfillment order does not exist.", "NOT_FOUND")]}})
        lines = {line["id"] for line in rfo["lines"]}
        assert all(i["reverseFulfillmentOrderLineItemId"] in lines for i in variables["reverseDeliveryLineItems"])
        tracking = variables.get("trackingInput") or {}
        delivery = {"id": self.gid("ReverseDelivery"), "number": tracking.get("number"), "url": tracking.get("url"),
                    "label": (variables.get("labelInput") or {}).get("fileUrl"),
                    "items": variables["reverseDeliveryLineItems"], "notify": variables.get("notifyCustomer")}
        rfo["deliveries"].append(delivery)
        return answer({"reverseDeliveryCreateWithShipping": {"reverseDelivery": {"id": delivery["id"]},
                                                             "userErrors": []}})

    def _ReverseFulfillmentOrderDispose(self, variables, request):
        by_id = {line["id"]: (ret, line) for ret in self.returns.values() for rfo in ret["rfos"]
                 for line in rfo["lines"]}
        errors = []
        for index, item in enumerate(variables["dispositionInputs"]):
            found = by_id.get(item["reverseFulfillmentOrderLineItemId"])
            if found is None:
                errors.append(user_error(f"dispositionInputs.{index}", "Line item does not exist.", "NOT_FOUND"))
                continue
            _ret, line = found
            left = line["total"] - sum(d["quantity"] for d in line["dispositions"])
            if item["quantity"] > left:
                errors.append(user_error(f"dispositionInputs.{index}.quantity",
                                         "Quantity exceeds the quantity that can be disposed.", "INVALID"))
            if item["dispositionType"] == "RESTOCKED" and not item.get("locationId"):
                errors.append(user_error(f"dispositionInputs.{index}.locationId",
                                         "Location is required when restocking.", "BLANK"))
        if errors:
            return answer({"reverseFulfillmentOrderDispose": {"reverseFulfillmentOrderLineItems": None,
                                                              "userErrors": errors}})
        touched = []
        for item in variables["dispositionInputs"]:
            ret, line = by_id[item["reverseFulfillmentOrderLineItemId"]]
            line["dispositions"].append({"quantity": item["quantity"], "type": item["dispositionType"],
                                         "location": item.get("locationId")})
            ret["work_done"] = True
            touched.append(line)
        return answer({"reverseFulfillmentOrderDispose": {"reverseFulfillmentOrderLineItems": [
            {"id": line["id"], "dispositions": [{"quantity": d["quantity"], "type": d["type"]}
                                                for d in line["dispositions"]]} for line in touched],
            "userErrors": []}})

    def _ReturnReasonDefinitions(self, variables, request):
        wanted = variables.get("handles")
        nodes = [{"id": gid, "handle": handle, "name": handle, "deleted": False}
                 for handle, gid in self.reasons.items() if wanted is None or handle in wanted]
        return answer({"returnReasonDefinitions": {"nodes": nodes,
                                                   "pageInfo": {"hasNextPage": False, "endCursor": None}}})

    # ------------------------------------------------------------------ money

    @contextmanager
    def _state(self):
        """The refunds, read and written under a lock when shared through `state_file`."""
        if self.state_file is None:
            yield self._refunds
            return
        with open(self.state_file.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            refunds = json.loads(self.state_file.read_text()) if self.state_file.exists() else []
            yield refunds
            self.state_file.write_text(json.dumps(refunds))

    @property
    def refunds(self) -> list[dict[str, Any]]:
        with self._state() as refunds:
            return list(refunds)

    def apply_refund(self, variables) -> dict[str, Any]:
        """Apply once per idempotency key; a repeated key gets the first refund back."""
        key = variables["idempotencyKey"]
        data = variables["input"]
        with self._state() as refunds:
            for refund in refunds:
                if refund["key"] == key:
                    return refund
            money = sum((Decimal(t["amount"]) for t in data.get("transactions") or []), Decimal("0"))
            money += sum((Decimal(m["storeCreditRefund"]["amount"]["amount"]) for m in data.get("refundMethods") or []),
                         Decimal("0"))
            refund = {"id": f"gid://shopify/Refund/{7000 + len(refunds) + 1}", "key": key, "note": data.get("note"),
                      "order": data["orderId"], "amount": str(money), "currency": data.get("currency") or "EUR",
                      "input": data, "createdAt": "2026-05-04T12:00:00Z"}
            refunds.append(refund)
            return refund

    def _RefundCreate(self, variables, request):
        import requests

        assert b"@idempotent(key: $idempotencyKey)" in request.body, "2026-04 refuses refundCreate without a key"
        fault = self.refund_faults.pop(0) if self.refund_faults else None
        if fault == "5xx":
            return (502, {"errors": "Bad Gateway"})
        if fault == "connect_timeout":
            raise requests.ConnectTimeout("connect timed out")
        refund = self.apply_refund(variables)
        if fault == "timeout_after_apply":
            raise requests.ReadTimeout("read timed out after Shopify applied the refund")
        if isinstance(fault, BaseException):
            raise fault
        for ret in self.returns.values():
            if ret["order"] == refund["order"]:
                ret["work_done"] = True
        return answer({"refundCreate": {"refund": _refund_node(refund), "userErrors": []}})

    def _OrderRefunds(self, variables, request):
        refunds = [_refund_node(r) for r in self.refunds if r["order"] == variables["orderId"]]
        return answer({"order": {"id": variables["orderId"], "refunds": refunds}})

    def _OrderTransactions(self, variables, request):
        order = self._order(variables["orderId"])
        refunded = sum((Decimal(r["amount"]) for r in self.refunds if r["order"] == order.platform_id
                        and r["input"].get("transactions")), Decimal("0"))
        total = str(order.total)
        return answer({"order": {"id": order.platform_id, "transactions": [
            {"id": "gid://shopify/OrderTransaction/41", "kind": "AUTHORIZATION", "status": "SUCCESS",
             "gateway": "shopify_payments", "createdAt": "2026-05-01T09:00:00Z",
             "amountSet": {"shopMoney": {"amount": total, "currencyCode": order.currency},
                           "presentmentMoney": {"amount": total, "currencyCode": order.currency}},
             "maximumRefundableV2": None},
            {"id": "gid://shopify/OrderTransaction/42", "kind": "CAPTURE", "status": "SUCCESS",
             "gateway": "shopify_payments", "createdAt": "2026-05-01T09:00:05Z",
             "amountSet": {"shopMoney": {"amount": total, "currencyCode": order.currency},
                           "presentmentMoney": {"amount": total, "currencyCode": order.currency}},
             "maximumRefundableV2": {"amount": str(order.total - refunded), "currencyCode": order.currency}},
        ]}})


def _brief(ret: dict[str, Any] | None) -> dict[str, Any] | None:
    return {"id": ret["id"], "status": ret["status"]} if ret else None


def _refund_node(refund: dict[str, Any]) -> dict[str, Any]:
    return {"id": refund["id"], "note": refund["note"], "createdAt": refund["createdAt"],
            "totalRefundedSet": {"presentmentMoney": {"amount": refund["amount"], "currencyCode": refund["currency"]}}}


# ---------------------------------------------------------------------------- connector side


def portal_return(shop, quantities: dict[int, int] | None = None, *, reason: str = "changed_mind",
                  comment: str = "", method: str = "dropoff", confirm: bool = True, number: str = "1001"):
    """A shopper's return on order `number` through the real services (quantities by line position,
    0-based; default: one jacket). Confirming runs the jobs inline, the platform sync included."""
    from connector import db
    from connector.returns import services
    from connector.returns.models import ReturnReason

    order = db.session.query(Order).filter_by(shop_id=shop.id, number=number).one()
    reason_row = db.session.query(ReturnReason).filter_by(shop_id=shop.id, code=reason).one()
    ret = services.start_draft(shop, order, email=order.email, locale="en")
    quantities = quantities or {0: 1}
    photos = ["shop-1/photos/x.jpg"] if reason_row.photo_required else []
    comment = comment or ("Seam split" if reason_row.comment_required else "")
    services.set_items(ret, [services.ItemChoice(order.lines[i].id, q, reason_row.id, comment=comment, photos=photos)
                             for i, q in quantities.items()])
    services.set_method(ret, method)
    services.set_instructions(ret, dict(order.shipping_address),
                              [code for code, _t in services.checklist_items(ret)])
    if confirm:
        services.confirm(ret)
    return ret
