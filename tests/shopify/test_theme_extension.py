"""The Shopify app configuration and its extensions (embedded_ui/shopify/).

The theme app extension's Liquid is rendered with python-liquid, standing in for Shopify's
renderer with the few Shopify objects the blocks use: `block.settings` (the schema's defaults plus
the test's choices), `routes.root_url`, `request.path`, and the `t` filter reading the extension's
storefront locale files. `{% schema %}` is a Shopify-only tag: it is registered here as a tag that
keeps its JSON and renders nothing, as on Shopify. Shopify's own linter (theme-check) runs in
.ci/run through scripts/theme_check.py.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import tomllib
from functools import cache
from html.parser import HTMLParser
from pathlib import Path

import pytest
from liquid import Environment, FileSystemLoader, StrictUndefined
from liquid.ast import Node
from liquid.exceptions import LiquidSyntaxError
from liquid.tag import Tag
from liquid.token import TOKEN_EOF, TOKEN_TAG

ROOT = Path(__file__).resolve().parents[2]
APP_DIR = ROOT / "embedded_ui" / "shopify"
APP_TOML = APP_DIR / "shopify.app.toml"
THEME_EXT = APP_DIR / "extensions" / "returns-link"
ADMIN_LINK_EXT = APP_DIR / "extensions" / "order-returns-link"
SCHEMA = ROOT / "tests" / "fixtures" / "shopify" / "admin-2026-04.schema.json.gz"
BLOCKS = ("returns_link", "returns_embed")
LOCALES = ("en.default", "de", "es", "fr")
COMPLIANCE_TOPICS = {"customers/data_request", "customers/redact", "shop/redact"}


# --- Shopify's Liquid, as far as the blocks need it -------------------------------------------

class SchemaNode(Node):
    """A `{% schema %}` block: Shopify reads its JSON and renders nothing in its place."""

    def __init__(self, token, text: str):
        super().__init__(token)
        self.text = text

    def render_to_output(self, context, buffer) -> int:
        return 0


class SchemaTag(Tag):
    """`{% schema %}...{% endschema %}`: keeps the raw JSON between the tags."""

    block = True
    name = "schema"
    end = "endschema"

    def parse(self, stream) -> SchemaNode:
        token = stream.eat(TOKEN_TAG)
        text: list[str] = []
        while not (stream.current.kind == TOKEN_TAG and stream.current.value == self.end):
            if stream.current.kind == TOKEN_EOF:
                raise LiquidSyntaxError("schema tag was never closed", token=token)
            text.append(stream.current.value)
            next(stream)
        return SchemaNode(token, "".join(text))


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def lookup(tree: dict, dotted: str):
    """`tree["a"]["b"]` for "a.b"; KeyError when any part is missing."""
    node = tree
    for part in dotted.split("."):
        node = node[part]
    return node


def translator(locale: str):
    """Shopify's `t` filter for the extension: the shopper's locale, then the default locale.

    A key missing from both raises, where Shopify would print "translation missing".
    """
    default = read_json(THEME_EXT / "locales" / "en.default.json")
    chosen = default if locale == "en" else read_json(THEME_EXT / "locales" / f"{locale}.json")

    def t(key: str) -> str:
        try:
            return lookup(chosen, key)
        except KeyError:
            return lookup(default, key)

    return t


def shopify_env(locale: str) -> Environment:
    env = Environment(loader=FileSystemLoader(THEME_EXT / "snippets", ext=".liquid"),
                      undefined=StrictUndefined)
    env.add_tag(SchemaTag)
    env.add_filter("t", translator(locale))
    return env


def block_source(block: str) -> str:
    return (THEME_EXT / "blocks" / f"{block}.liquid").read_text(encoding="utf-8")


@cache
def block_schema(block: str) -> dict:
    template = shopify_env("en").from_string(block_source(block))
    schemas = [node for node in template.nodes if isinstance(node, SchemaNode)]
    assert len(schemas) == 1, f"{block}: exactly one {{% schema %}} expected"
    return json.loads(schemas[0].text)


def render_block(block: str, *, locale: str = "en", root_url: str = "/", path: str = "/",
                 **settings) -> str:
    """Render a block as Shopify would, with the schema's defaults overridden by `settings`.

    Settings without a default (the colours) are blank, as on Shopify until the merchant sets them.
    """
    values = {s["id"]: s.get("default", "") for s in block_schema(block)["settings"] if "id" in s}
    unknown = set(settings) - set(values)
    assert not unknown, f"{block} has no settings {unknown}"
    values.update(settings)
    template = shopify_env(locale).from_string(block_source(block))
    return template.render(
        block={"settings": values},
        routes={"root_url": root_url},
        request={"path": path},
    )


class Anchors(HTMLParser):
    """The <a> elements of a fragment: their attributes and their text."""

    def __init__(self):
        super().__init__()
        self.found: list[dict] = []
        self._open: dict | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self._open = {"attrs": dict(attrs), "text": ""}
            self.found.append(self._open)

    def handle_endtag(self, tag):
        if tag == "a":
            self._open = None

    def handle_data(self, data):
        if self._open is not None:
            self._open["text"] += data


def the_link(html: str) -> dict:
    parser = Anchors()
    parser.feed(html)
    parser.close()
    assert len(parser.found) == 1, f"one link expected in:\n{html}"
    link = parser.found[0]
    link["text"] = " ".join(link["text"].split())
    link["classes"] = set(link["attrs"].get("class", "").split())
    return link


# --- Rendering the blocks ----------------------------------------------------------------------

@pytest.mark.parametrize("block, text", [("returns_link", "Returns"),
                                         ("returns_embed", "Start a return")])
def test_link_points_to_the_app_proxy_with_the_default_english_label(block, text):
    link = the_link(render_block(block))

    assert link["attrs"]["href"] == "/apps/returns"
    assert link["text"] == text


@pytest.mark.parametrize("block, text", [("returns_link", "Retouren"),
                                         ("returns_embed", "Retoure starten")])
def test_german_market_keeps_its_language_prefix_and_label(block, text):
    link = the_link(render_block(block, locale="de", root_url="/de"))

    assert link["attrs"]["href"] == "/de/apps/returns"
    assert link["text"] == text


@pytest.mark.parametrize("locale, text", [("es", "Devoluciones"), ("fr", "Retours")])
def test_other_storefront_languages(locale, text):
    link = the_link(render_block("returns_link", locale=locale, root_url=f"/{locale}"))

    assert link["text"] == text
    assert link["attrs"]["href"] == f"/{locale}/apps/returns"


def test_merchant_label_wins_over_the_translation_and_is_escaped():
    html = render_block("returns_link", locale="de", label="  <b>Umtausch & Rückgabe</b> ")

    assert the_link(html)["text"] == "<b>Umtausch & Rückgabe</b>"  # as text, not markup
    assert "&lt;b&gt;Umtausch &amp; Rückgabe&lt;/b&gt;</span>" in html


def test_blank_label_falls_back_to_the_translation():
    assert the_link(render_block("returns_link", locale="fr", label="   "))["text"] == "Retours"


def test_style_and_colours_reach_the_link():
    plain = the_link(render_block("returns_link"))
    styled = the_link(render_block("returns_link", style="button", alignment="center",
                                   text_color="#ffffff", background_color="#004225"))
    html = render_block("returns_link", alignment="center")

    assert {"returns-link", "returns-link--link"} <= plain["classes"]
    assert "style" not in plain["attrs"]  # blank colours: the theme's own colours apply
    assert "returns-link--button" in styled["classes"]
    assert styled["attrs"]["style"] == (
        "--returns-link-color: #ffffff;--returns-link-background: #004225;")
    assert 'class="returns-link-block returns-link-block--center"' in html


def test_icon_is_decorative():
    html = render_block("returns_link", show_icon=True)

    assert 'aria-hidden="true"' in html and 'focusable="false"' in html
    assert the_link(html)["text"] == "Returns"


def test_embed_floats_by_default_and_can_sit_at_the_end_of_the_page():
    floating = render_block("returns_embed")
    page_end = render_block("returns_embed", position="page_end", distance=40)

    assert "returns-link-embed--floating_right" in floating
    assert "--returns-link-offset: 16px;" in floating
    assert "returns-link--pill" in the_link(floating)["classes"]
    assert "returns-link-embed--page_end" in page_end and "--returns-link-offset: 40px;" in page_end


@pytest.mark.parametrize("path", ["/apps/returns", "/de/apps/returns/orders/1001"])
def test_embed_stays_off_the_returns_portal_itself(path):
    assert "<a" not in render_block("returns_embed", path=path)


# --- Schemas and locale files ------------------------------------------------------------------

def test_block_schemas_target_a_section_and_the_body():
    assert block_schema("returns_link")["target"] == "section"
    assert block_schema("returns_embed")["target"] == "body"
    for block in BLOCKS:
        assert (THEME_EXT / "assets" / block_schema(block)["stylesheet"]).is_file()


def translated_strings(schema: dict) -> list[str]:
    """Every merchant-facing string of a block schema: name, labels, infos, option labels."""
    found = [schema["name"]]
    for setting in schema["settings"]:
        found += [setting[k] for k in ("label", "info", "content") if k in setting]
        found += [option["label"] for option in setting.get("options", [])]
    return found


@pytest.mark.parametrize("block", BLOCKS)
def test_every_setting_has_a_label_from_the_schema_locale_files(block):
    schema = block_schema(block)
    strings = translated_strings(schema)

    assert all("label" in s or s["type"] == "header" for s in schema["settings"])
    assert all(text.startswith("t:") for text in strings), "untranslated schema text"
    for locale in LOCALES:
        translations = read_json(THEME_EXT / "locales" / f"{locale}.schema.json")
        for text in strings:
            value = lookup(translations, text.removeprefix("t:"))
            assert isinstance(value, str) and value.strip(), f"{locale}: {text}"
        assert len(lookup(translations, schema["name"].removeprefix("t:"))) <= 25  # editor limit


def keys(tree: dict, prefix: str = "") -> set[str]:
    found = set()
    for key, value in tree.items():
        path = f"{prefix}{key}"
        found |= keys(value, f"{path}.") if isinstance(value, dict) else {path}
    return found


@pytest.mark.parametrize("directory, suffix", [
    (THEME_EXT / "locales", ".json"),
    (THEME_EXT / "locales", ".schema.json"),
    (ADMIN_LINK_EXT / "locales", ".json"),
])
def test_every_locale_file_has_the_default_locales_keys(directory, suffix):
    files = {p.name.removesuffix(suffix): p for p in directory.glob(f"*{suffix}")
             if suffix == ".schema.json" or not p.name.endswith(".schema.json")}
    expected = keys(read_json(files.pop("en.default")))

    assert set(files) == {"de", "es", "fr"}
    for locale, path in files.items():
        assert keys(read_json(path)) == expected, f"{path.name} differs from en.default"


def test_theme_extension_holds_only_what_shopify_deploys():
    config = tomllib.loads((THEME_EXT / "shopify.extension.toml").read_text(encoding="utf-8"))
    allowed = {"assets": {".css"}, "blocks": {".liquid"}, "snippets": {".liquid"},
               "locales": {".json"}}

    assert config["type"] == "theme" and config["name"]
    for path in THEME_EXT.rglob("*"):
        if path.is_file() and path.name != "shopify.extension.toml":
            folder = path.relative_to(THEME_EXT).parts[0]
            assert path.suffix in allowed.get(folder, set()), f"Shopify rejects {path}"


def test_admin_link_opens_the_orders_returns_in_the_app():
    config = tomllib.loads((ADMIN_LINK_EXT / "shopify.extension.toml").read_text(encoding="utf-8"))
    [extension] = config["extensions"]
    [targeting] = extension["targeting"]
    names = read_json(ADMIN_LINK_EXT / "locales" / "en.default.json")

    assert extension["type"] == "admin_link"
    assert targeting == {"target": "admin.order-details.action.link", "url": "app://order-returns"}
    assert names[extension["name"].removeprefix("t:")] == "View returns"


# --- shopify.app.toml --------------------------------------------------------------------------

@cache
def app_config() -> dict:
    return tomllib.loads(APP_TOML.read_text(encoding="utf-8"))


@cache
def webhook_topics_in_schema() -> set[str]:
    """The WebhookSubscriptionTopic enum values of the Admin 2026-04 schema (ORDERS_CREATE...)."""
    data = json.loads(gzip.decompress(SCHEMA.read_bytes()))
    types = data.get("data", data)["__schema"]["types"]
    [enum] = [t for t in types if t["name"] == "WebhookSubscriptionTopic"]
    return {v["name"] for v in enum["enumValues"]}


def as_enum(topic: str) -> str:
    """The TOML's lower-case slash form in the enum's spelling: orders/create -> ORDERS_CREATE."""
    return topic.replace("/", "_").upper()


def test_app_is_embedded_with_shopify_managed_install():
    config = app_config()

    assert config["embedded"] is True
    assert config["application_url"] == "https://returns.example.com/shopify/"
    assert config["access_scopes"]["use_legacy_install_flow"] is False
    assert config["auth"]["redirect_urls"] == ["https://returns.example.com/shopify/auth/callback"]
    assert config["pos"] == {"embedded": False}
    assert config["build"]["include_config_on_deploy"] is True


def test_scopes_are_the_small_set_the_app_needs():
    scopes = set(app_config()["access_scopes"]["scopes"].split(","))

    assert scopes == {"write_orders", "read_all_orders", "write_returns", "read_customers",
                      "read_locations", "read_fulfillments"}
    # A write scope includes read access to the same resource: no read_ twin alongside.
    implied = {"read_" + s.removeprefix("write_") for s in scopes if s.startswith("write_")}
    assert not implied & scopes


def test_every_webhook_topic_exists_in_the_2026_04_schema():
    webhooks = app_config()["webhooks"]
    topics = [t for sub in webhooks["subscriptions"] for t in sub.get("topics", [])]
    known = webhook_topics_in_schema()

    assert webhooks["api_version"] == "2026-04"
    assert len(topics) == len(set(topics))
    assert all(topic == topic.lower() for topic in topics)
    assert [t for t in topics if as_enum(t) not in known] == []
    assert {"orders/create", "orders/updated", "orders/cancelled", "refunds/create",
            "fulfillment_events/create", "app/uninstalled", "returns/request", "returns/approve",
            "returns/decline", "returns/cancel", "returns/close", "returns/reopen",
            "returns/process"} <= set(topics)


def test_compliance_topics_and_every_subscription_reach_the_webhook_endpoint():
    subscriptions = app_config()["webhooks"]["subscriptions"]
    compliance = {t for sub in subscriptions for t in sub.get("compliance_topics", [])}

    assert compliance == COMPLIANCE_TOPICS
    assert {sub["uri"] for sub in subscriptions} == {"https://returns.example.com/shopify/webhooks"}


def test_app_proxy_serves_the_portal_under_apps_returns():
    assert app_config()["app_proxy"] == {
        "url": "https://returns.example.com/shopify/proxy", "prefix": "apps", "subpath": "returns"}


def test_every_url_uses_the_one_placeholder_host():
    """Operators replace one host (docs/shopify.md); no second host may hide in the file."""
    def strings(node):
        if isinstance(node, dict):
            return [s for value in node.values() for s in strings(value)]
        if isinstance(node, list):
            return [s for value in node for s in strings(value)]
        return [node] if isinstance(node, str) else []

    urls = [s for s in strings(app_config()) if "://" in s]

    assert len(urls) == 8  # app home, OAuth callback, five webhook subscriptions, app proxy
    assert all(url.startswith("https://returns.example.com/shopify/") for url in urls)


# --- scripts/theme_check.py (CI's reading of theme-check's output) -------------------------------

def load_theme_check_script():
    script = ROOT / "scripts" / "theme_check.py"
    spec = importlib.util.spec_from_file_location("theme_check", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ci_reads_theme_checks_output_and_fails_only_on_errors(monkeypatch, capsys):
    """cli.js always exits 0: errors are read from the first of the JSON documents it prints."""
    theme_check = load_theme_check_script()
    uri = (THEME_EXT / "blocks" / "returns_link.liquid").as_uri()
    offense = {"check": "TranslationKeyExists", "severity": 0, "uri": uri,
               "message": "'x' is missing", "start": {"line": 7, "character": 19}}
    warning = {**offense, "check": "UnusedAssign", "severity": 1}
    stdout = "\n".join(json.dumps(doc) for doc in ([offense, warning], {"context": "app"}, [uri]))

    offenses, files = theme_check.parse_output(stdout)
    monkeypatch.setattr(theme_check, "installed_version", lambda: theme_check.VERSION)
    monkeypatch.setattr(theme_check, "run", lambda extension: ([warning], files))
    passes_with_a_warning = theme_check.main([str(THEME_EXT)])
    monkeypatch.setattr(theme_check, "run", lambda extension: (offenses, files))
    fails_with_an_error = theme_check.main([str(THEME_EXT)])

    assert files == [uri]
    assert theme_check.describe(offense, THEME_EXT) == (
        "ERROR   blocks/returns_link.liquid:8:20 [TranslationKeyExists] 'x' is missing")
    assert (passes_with_a_warning, fails_with_an_error) == (0, 1)
    assert "FAILED, 1 offense(s)" in capsys.readouterr().err
    with pytest.raises(theme_check.ThemeCheckFailed):
        theme_check.parse_output("Error: something broke")
