"""A carrier's refusal, told to the shopper in words they can act on.

Backends raise CarrierRejected with the carrier's own words (for the merchant) and, where the
shopper can fix it, a `field` (ports.SHOPPER_FIELDS). The shopper sees the message that field maps
to here, translated when the page is shown (the N_()-marked msgid is what the event stores), never
the carrier's wording, which is in the carrier's language and names its internal codes.
"""
from __future__ import annotations

from connector.returns.context import N_
from connector.returns.ports import CarrierError, CarrierRejected

FIELD_MESSAGES = {
    "address": N_("The carrier could not use your address. Please check the street and house number and "
                  "correct them below."),
    "postcode": N_("The carrier does not accept this postcode for the city. Please check it and correct it "
                   "below."),
    "phone": N_("The carrier needs a phone number it can reach you on. Please add one below."),
    "email": N_("The carrier could not use your email address. Please contact the shop to correct it."),
    "weight": N_("The parcel is too heavy for this carrier. Please cancel this return and start smaller ones, "
                 "or one with another return method."),
    "size": N_("The parcel is too large for this carrier. Please cancel this return and start a new one with "
               "another return method."),
    "country": N_("The carrier does not collect parcels from your country. Please cancel this return and start "
                  "a new one with another return method."),
}
# Refusals the shopper fixes by correcting the sender address on the return's status page.
ADDRESS_FIELDS = frozenset({"address", "postcode", "phone"})


def shopper_message(exc: CarrierError) -> str | None:
    """The msgid to show the shopper for `exc` (translate it with _() at display), or None when
    the shopper can do nothing about it (the shop is told instead)."""
    if not isinstance(exc, CarrierRejected):
        return None
    return exc.shopper_message or FIELD_MESSAGES.get(exc.field or "")


def refused_field(exc: CarrierError) -> str | None:
    """The shopper-fixable field of a refusal (ports.SHOPPER_FIELDS), None for anything else."""
    return exc.field if isinstance(exc, CarrierRejected) and exc.field in FIELD_MESSAGES else None
