#!/usr/bin/env bash
# Refresh the message catalogs: extract every _()/gettext/ngettext/_l/lazy_gettext string from
# connector/ into messages.pot, merge it into de/es/fr (init a language that has no catalog yet),
# and compile the .mo files (committed, so the app needs no build step).
# Run from anywhere; translate new or fuzzy entries in the .po files, then run it again to compile.
set -euo pipefail

cd "$(dirname "$0")/.."
PYBABEL=".venv/bin/pybabel"
CATALOGS="connector/translations"
POT="$CATALOGS/messages.pot"

mkdir -p "$CATALOGS"
"$PYBABEL" extract -F babel.cfg -k _l -k lazy_gettext --sort-by-file \
    --project "Returns Connector" --copyright-holder "Returns Connector" \
    -o "$POT" connector

for lang in de es fr; do
    if [[ -f "$CATALOGS/$lang/LC_MESSAGES/messages.po" ]]; then
        "$PYBABEL" update -i "$POT" -d "$CATALOGS" -l "$lang" --previous --ignore-obsolete
    else
        "$PYBABEL" init -i "$POT" -d "$CATALOGS" -l "$lang"
    fi
done

"$PYBABEL" compile -d "$CATALOGS" --statistics
