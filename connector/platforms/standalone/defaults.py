"""What a new standalone shop starts with: the seven default return reasons in four languages."""
from __future__ import annotations

from dataclasses import dataclass

from connector import db
from connector.returns.models import ReturnReason, Shop


@dataclass(frozen=True)
class ReasonSpec:
    code: str
    labels: dict[str, str]
    comment_required: bool = False
    photo_required: bool = False
    shop_fault: bool = False  # a free return
    parent: str | None = None  # code of the parent reason


def default_reasons() -> list[ReasonSpec]:
    """The default reasons, parents before their children."""
    return [
        ReasonSpec("size", {"en": "Size or fit", "de": "Größe oder Passform", "es": "Talla o ajuste",
                            "fr": "Taille ou coupe"}),
        ReasonSpec("too_small", {"en": "Too small", "de": "Zu klein", "es": "Demasiado pequeño",
                                 "fr": "Trop petit"}, parent="size"),
        ReasonSpec("too_big", {"en": "Too big", "de": "Zu groß", "es": "Demasiado grande",
                               "fr": "Trop grand"}, parent="size"),
        ReasonSpec("changed_mind", {"en": "Changed my mind", "de": "Meinung geändert",
                                    "es": "He cambiado de opinión", "fr": "J'ai changé d'avis"}),
        ReasonSpec("damaged", {"en": "Arrived damaged", "de": "Beschädigt angekommen", "es": "Llegó dañado",
                               "fr": "Arrivé endommagé"},
                   comment_required=True, photo_required=True, shop_fault=True),
        ReasonSpec("wrong_item", {"en": "Wrong item sent", "de": "Falscher Artikel geliefert",
                                  "es": "Artículo equivocado", "fr": "Mauvais article envoyé"},
                   comment_required=True, shop_fault=True),
        ReasonSpec("other", {"en": "Other", "de": "Anderer Grund", "es": "Otro motivo", "fr": "Autre raison"},
                   comment_required=True),
    ]


def add_default_reasons(shop: Shop) -> list[ReturnReason]:
    """Create the default reasons for `shop` in the current session (the caller commits)."""
    by_code: dict[str, ReturnReason] = {}
    for position, spec in enumerate(default_reasons()):
        reason = ReturnReason(shop_id=shop.id, code=spec.code, labels=dict(spec.labels),
                              comment_required=spec.comment_required, photo_required=spec.photo_required,
                              shop_fault=spec.shop_fault, position=position, active=True)
        if spec.parent:
            reason.parent_id = by_code[spec.parent].id
        db.session.add(reason)
        db.session.flush()  # the id is needed by the children
        by_code[spec.code] = reason
    return list(by_code.values())
