"""The message catalogs: complete, consistent with the source, compiled, and used by the pages.

connector/translations holds messages.pot (extracted from the source by scripts/translations.sh)
and de/es/fr messages.po with their compiled messages.mo (committed, so the app needs no build).
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.frontend import CommandLineInterface
from babel.messages.mofile import read_mo, write_mo
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parent.parent
CATALOGS = ROOT / "connector" / "translations"
POT = CATALOGS / "messages.pot"
LANGUAGES = ("de", "es", "fr")
RUN_SCRIPT = "run scripts/translations.sh, translate the new entries in the .po files and run it again"

PLACEHOLDER = re.compile(r"%\(\w+\)[sd]")

# The EU withdrawal function's labels must carry the unambiguous legal wording.
LEGAL_LABELS = {
    "Withdraw from contract here": {"de": "Vertrag hier widerrufen", "es": "Desistir del contrato aquí",
                                    "fr": "Se rétracter du contrat ici"},
    "Confirm withdrawal": {"de": "Widerruf bestätigen", "es": "Confirmar desistimiento",
                           "fr": "Confirmer la rétractation"},
}


def po_path(lang: str) -> Path:
    return CATALOGS / lang / "LC_MESSAGES" / "messages.po"


def load_po(lang: str):
    with po_path(lang).open("rb") as f:
        return read_po(f, locale=lang)


def messages(catalog) -> dict:
    """msgid -> msgstr (tuples for plural entries; read_mo gives lists), without the header."""
    def frozen(value):
        return tuple(value) if isinstance(value, (list, tuple)) else value
    return {frozen(m.id): frozen(m.string) for m in catalog if m.id}


def ids_of(path: Path) -> set:
    with path.open("rb") as f:
        return {m.id for m in read_po(f) if m.id}


def forms(message) -> tuple[str, ...]:
    return message.string if isinstance(message.string, tuple) else (message.string,)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_message_is_translated_and_none_is_fuzzy(lang):
    catalog = load_po(lang)
    assert not catalog.fuzzy, f"{lang}: the catalog header is marked fuzzy"
    untranslated = [m.id for m in catalog if m.id and not all(s.strip() for s in forms(m))]
    fuzzy = [m.id for m in catalog if m.id and m.fuzzy]
    assert not untranslated, f"{lang}: untranslated messages: {untranslated}"
    assert not fuzzy, f"{lang}: fuzzy messages (check and clear the flag): {fuzzy}"
    for m in catalog:
        if isinstance(m.id, tuple):
            assert len(m.string) == catalog.num_plurals, f"{lang}: {m.id!r} needs {catalog.num_plurals} plural forms"


@pytest.mark.parametrize("lang", LANGUAGES)
def test_placeholders_are_kept(lang):
    """Each translation has exactly the %(name)s placeholders of its msgid (plural forms: of the
    plural msgid), and no stray % that newstyle gettext in the templates would trip over."""
    wrong = []
    for m in load_po(lang):
        if not m.id:
            continue
        source = m.id[1] if isinstance(m.id, tuple) else m.id
        expected = set(PLACEHOLDER.findall(source))
        for text in forms(m):
            if set(PLACEHOLDER.findall(text)) != expected:
                wrong.append((m.id, text))
            elif PLACEHOLDER.sub("", text).count("%") != PLACEHOLDER.sub("", source).count("%"):
                wrong.append((m.id, text))
    assert not wrong, f"{lang}: placeholders differ from the msgid: {wrong}"


@pytest.mark.parametrize("lang", LANGUAGES)
def test_compiled_catalog_matches_the_po_file(lang, tmp_path):
    """The committed .mo holds exactly what compiling the .po gives (no stale build)."""
    fresh = tmp_path / "messages.mo"
    with fresh.open("wb") as f:
        write_mo(f, load_po(lang))
    committed = po_path(lang).with_suffix(".mo")
    assert committed.exists(), f"{committed} is missing: {RUN_SCRIPT}"
    with committed.open("rb") as f:
        committed_messages = messages(read_mo(f))
    with fresh.open("rb") as f:
        fresh_messages = messages(read_mo(f))
    assert committed_messages == fresh_messages, f"{committed} is out of date: {RUN_SCRIPT}"


def test_catalogs_hold_every_string_of_the_source(tmp_path):
    """Extracting from the source now gives the msgids of messages.pot and of each .po file."""
    extracted = tmp_path / "messages.pot"
    CommandLineInterface().run([
        "pybabel", "--quiet", "extract", "-F", str(ROOT / "babel.cfg"), "-k", "_l", "-k", "lazy_gettext",
        "-o", str(extracted), str(ROOT / "connector")])
    now, pot = ids_of(extracted), ids_of(POT)
    assert now == pot, (f"messages.pot is out of date ({RUN_SCRIPT}). "
                        f"New in the source: {sorted(map(str, now - pot))}; "
                        f"gone from the source: {sorted(map(str, pot - now))}")
    for lang in LANGUAGES:
        assert ids_of(po_path(lang)) == pot, f"{lang}/messages.po does not match messages.pot: {RUN_SCRIPT}"


@pytest.mark.parametrize("lang", LANGUAGES)
def test_withdrawal_labels_use_the_legal_wording(app, lang):
    from flask_babel import force_locale, gettext

    for english, translations in LEGAL_LABELS.items():
        with force_locale(lang):
            assert gettext(english) == translations[lang]


@pytest.mark.parametrize("lang", LANGUAGES)
def test_portal_start_page_is_translated(app, client, shop, lang):
    from flask import g

    for name in list(vars(g)):  # the app context outlives the request: drop the cached locale
        g.pop(name, None)
    resp = client.get(f"/portal/{shop.handle}/?lang={lang}")
    assert resp.status_code == 200
    page = resp.get_data(as_text=True)
    assert f'<html lang="{lang}">' in page
    assert LEGAL_LABELS["Withdraw from contract here"][lang] in page
    assert "Withdraw from contract here" not in page
