"""Use cases of the returns domain: what the portal, the admin, the API and the jobs call.

Each use case is one unit of work: it reads and writes through `connector.db.session`, scoped to
one shop, commits, and only then hands outside work (carrier, platform, mail) to the queue through
`context.runtime.enqueue` (DESIGN principle 1: the database is the truth, the queue only wakes
workers). The job bodies (`fulfil_shipment`, `execute_refund`, `void_shipment`) make the outside
calls through the ports and record the outcome.

One module per part of the return's life; this package re-exports the public names, so callers
write `services.confirm(ret)`.
"""
from connector.returns.services.base import (ServiceError, ValidationError, get_order, get_return,
                                             get_return_by_number, get_shop, now_utc, policy_of)
from connector.returns.services.decisions import approve, cancel, confirm, reject, set_selfship_tracking
from connector.returns.services.drafts import (ItemChoice, MethodOption, checklist_items, discard_draft,
                                               method_options, pickup_day, set_instructions, set_items,
                                               set_method, start_draft, validate_address)
from connector.returns.services.orders import (LineOption, find_order_for_login, line_options,
                                               normalise_postcode, orders_for_customer, orders_for_email,
                                               reasons_tree, upsert_order)
from connector.returns.services.platform import retry_platform_sync, sync_return, write_order_notes
from connector.returns.services.reconcile import reconcile
from connector.returns.services.refunds import (REFUNDABLE_STATES, execute_refund, manual_refund_offered,
                                                mark_refund_succeeded, plan_of, refund_preview, request_refund)
from connector.returns.services.shipments import (address_to_correct, apply_update, correct_address,
                                                  fetch_late_label, fulfil_shipment, label_bytes, qr_bytes,
                                                  refresh_tracking, retry_shipment, timeline, void_shipment)
from connector.returns.services.warehouse import inspect, mark_received
from connector.returns.services.withdrawal import WITHDRAWAL_STATEMENT, create_withdrawal

__all__ = [
    "REFUNDABLE_STATES", "WITHDRAWAL_STATEMENT", "ItemChoice", "LineOption", "MethodOption", "ServiceError",
    "ValidationError", "approve", "cancel", "checklist_items", "confirm", "create_withdrawal", "discard_draft",
    "address_to_correct", "apply_update", "correct_address", "execute_refund", "fetch_late_label", "find_order_for_login", "fulfil_shipment", "get_order", "get_return", "get_return_by_number",
    "get_shop", "inspect", "label_bytes", "line_options", "manual_refund_offered", "mark_received", "mark_refund_succeeded", "method_options", "normalise_postcode",
    "now_utc", "orders_for_customer", "orders_for_email", "pickup_day", "plan_of", "policy_of", "qr_bytes",
    "reasons_tree", "reconcile", "refresh_tracking", "refund_preview", "reject", "request_refund", "retry_platform_sync", "retry_shipment", "set_instructions",
    "set_items", "set_method", "set_selfship_tracking", "start_draft", "sync_return", "timeline", "upsert_order",
    "validate_address", "void_shipment", "write_order_notes",
]
