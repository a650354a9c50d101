"""Languages: en, de, es, fr. The locale comes from ?lang= (remembered in the session), then the
browser's Accept-Language, then the shop's default (set by the blueprint on `g.shop_locale`).
Outside a request (jobs, CLI) it is the shop's default or English; mails force the shopper's."""
from __future__ import annotations

from pathlib import Path

from flask import g, has_request_context, request, session
from flask_babel import Babel

LANGUAGES = ("en", "de", "es", "fr")
LANGUAGE_NAMES = {"en": "English", "de": "Deutsch", "es": "Español", "fr": "Français"}


def select_locale() -> str:
    if not has_request_context():  # a job, the CLI or the seed: the shop's language, else English
        shop_locale = getattr(g, "shop_locale", None)
        return shop_locale if shop_locale in LANGUAGES else "en"
    asked = request.args.get("lang")
    if asked in LANGUAGES:
        session["lang"] = asked
        return asked
    if session.get("lang") in LANGUAGES:
        return session["lang"]
    shop_locale = getattr(g, "shop_locale", None)
    browser = request.accept_languages.best_match(LANGUAGES)
    if browser:
        return browser
    return shop_locale if shop_locale in LANGUAGES else "en"


def select_timezone() -> str | None:
    return getattr(g, "shop_timezone", None)


def init_babel(app) -> None:
    Babel(app, locale_selector=select_locale, timezone_selector=select_timezone,
          default_translation_directories=str(Path(__file__).parent / "translations"))
