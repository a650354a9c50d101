"""Our return reasons <-> Shopify's return reason definitions (`returnReasonDefinitionId`, 2026-01+).

A shop's reasons are its own codes (the defaults: connector/platforms/standalone/defaults.py).
Shopify keeps one library of reason definitions, each with a stable `handle` that stays the same
across API versions and languages. `HANDLES` lists, per default code, the handles that say the same
thing, best first; a code maps to the first one the shop's library holds, else to "other", else to
no definition at all (the field is optional; the line's note still carries the shopper's words).

The library is read once per shop, only for the handles named here, and cached as {handle: id} in
`shop.platform_data["return_reason_ids"]` (the caller commits); `refresh=True` reads it again.
"""
from __future__ import annotations

from typing import Any

FALLBACK = "other"

HANDLES: dict[str, tuple[str, ...]] = {
    "too_small": ("too-small", "size-too-small", "too-tight"),
    "too_big": ("too-large", "size-too-large", "too-big", "too-loose"),
    "size": ("wrong-size", "size", "fit"),
    "changed_mind": ("changed-mind", "no-longer-needed", "unwanted"),
    "damaged": ("damaged", "defective", "damaged-or-defective", "arrived-damaged"),
    "wrong_item": ("wrong-item", "received-wrong-item"),
    "other": ("other",),
}

CACHE_KEY = "return_reason_ids"


def _all_handles() -> list[str]:
    return sorted({handle for handles in HANDLES.values() for handle in handles})


def definition_ids(shop, client, *, refresh: bool = False) -> dict[str, str]:
    """{handle: ReturnReasonDefinition GID} for the handles in `HANDLES` that Shopify has (deleted
    definitions left out: Shopify advises against them for new returns)."""
    cached = (shop.platform_data or {}).get(CACHE_KEY)
    if cached is not None and not refresh:
        return dict(cached)
    ids: dict[str, str] = {}
    after = None
    while True:
        data = client.execute("ReturnReasonDefinitions", {"handles": _all_handles(), "after": after})
        page = data["returnReasonDefinitions"]
        for node in page.get("nodes") or []:
            if not node.get("deleted"):
                ids[node["handle"]] = node["id"]
        info = page.get("pageInfo") or {}
        if not info.get("hasNextPage"):
            break
        after = info.get("endCursor")
    shop.platform_data = {**(shop.platform_data or {}), CACHE_KEY: ids}  # a new dict: JSON columns track reassignment
    return ids


def handle_for(code: str | None, ids: dict[str, str]) -> str | None:
    """The handle `code` maps to among the known `ids`: its own candidates, then "other"."""
    for handle in (*HANDLES.get(code or "", ()), *HANDLES[FALLBACK]):
        if handle in ids:
            return handle
    return None


def definition_id(shop, client, code: str | None) -> str | None:
    """The ReturnReasonDefinition GID for our reason `code` (None: no reason given)."""
    ids = definition_ids(shop, client)
    handle = handle_for(code, ids)
    return ids.get(handle) if handle else None


def code_for_handle(handle: str | None, shop_codes: Any) -> str | None:
    """Our reason code for a Shopify handle (returns created in Shopify's admin), among the codes the
    shop has: the code whose candidates name the handle, else "other", else None."""
    codes = set(shop_codes)
    for code, handles in HANDLES.items():
        if handle and handle in handles and code in codes:
            return code
    if handle and handle in codes:  # a shop that named its own reason after Shopify's handle
        return handle
    return FALLBACK if FALLBACK in codes else None
