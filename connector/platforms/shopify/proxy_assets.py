"""The portal's stylesheet for pages shown inside a shop's theme (app proxy), scoped to the portal.

The direct portal's `portal.css` styles whole pages (`:root`, `body`, `h1`, `a`, `.button` ...).
Inside a theme those rules would restyle the shop, and the theme's rules would reach into the
portal. `scoped_stylesheet()` derives, from that same file (one source of truth), a stylesheet
where:

- every selector is placed under `.returns-portal` (the wrapper of portal/bare.html); `:root`,
  `html` and `body` become the wrapper itself, and `.js` (set on <html> by portal.js) stays in
  front of it;
- `rem` lengths become `px` (1rem = 16px, as on the direct portal): themes often shrink the root
  font size (Dawn: 62.5%), which would shrink every rem-sized part of the portal with it;
- first, the theme's rules are neutralised inside the wrapper (`all: revert`, zero specificity,
  SVG left alone since its look comes from presentation attributes), so that themes styling the
  same common class names (`.button`, `.field`, `.card`) change nothing; last, the wrapper takes
  the theme's font and sits in the page's flow, one centred column, instead of filling the viewport.

A small hand-written scanner does the rewriting: it understands strings, comments, nested blocks
(@media, @supports) and selector lists, which is all portal.css uses; the tests check that no rule
escapes the scope.
"""
from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from pathlib import Path

SCOPE = ".returns-portal"
PORTAL_CSS = Path(__file__).resolve().parents[2] / "portal" / "static" / "portal.css"
ROOT_PX = 16

# Before the portal's rules: the theme's rules stop at the wrapper. :where() keeps the specificity
# at the scope's own (0,1,0), so every portal rule below wins over this reset.
RESET = (f"{SCOPE} :where(*:not(svg, svg *)), {SCOPE} :where(*:not(svg, svg *))::before, "
         f"{SCOPE} :where(*:not(svg, svg *))::after {{ all: revert; }}")
# After the portal's rules: what `body` does on the direct portal that a block inside a theme must not.
AFTER = (f"{SCOPE} {{ display: block; min-height: 0; background: transparent; font-family: inherit; "
         f"text-align: start; margin: 0 auto; max-width: 672px; }}")

_NESTED = ("@media", "@supports", "@container", "@layer", "@document")
_REM = re.compile(r"(?<![\w.-])(-?(?:\d+\.?\d*|\.\d+))rem\b")


def scope_css(css: str, scope: str = SCOPE) -> str:
    """`css` with every style rule scoped under `scope` and rem lengths in px."""
    return "\n".join(_scope_rules(_strip_comments(css), scope))


def _strip_comments(css: str) -> str:
    out, i, quote = [], 0, None
    while i < len(css):
        c = css[i]
        if quote:
            out.append(c)
            if c == "\\" and i + 1 < len(css):
                out.append(css[i + 1])
                i += 1
            elif c == quote:
                quote = None
        elif c in "\"'":
            quote = c
            out.append(c)
        elif css.startswith("/*", i):
            end = css.find("*/", i + 2)
            i = len(css) if end < 0 else end + 2
            continue
        else:
            out.append(c)
        i += 1
    return "".join(out)


def _rules(css: str):
    """Top-level (prelude, block body or None for a statement like @import) pairs."""
    i, start, quote = 0, 0, None
    while i < len(css):
        c = css[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = None
        elif c in "\"'":
            quote = c
        elif c == ";":
            prelude = css[start:i].strip()
            if prelude:
                yield prelude, None
            start = i + 1
        elif c == "{":
            depth, j, q = 1, i + 1, None
            while j < len(css) and depth:
                d = css[j]
                if q:
                    if d == "\\":
                        j += 1
                    elif d == q:
                        q = None
                elif d in "\"'":
                    q = d
                elif d == "{":
                    depth += 1
                elif d == "}":
                    depth -= 1
                j += 1
            yield css[start:i].strip(), css[i + 1:j - 1]
            i = start = j
            continue
        i += 1
    if css[start:].strip():
        raise ValueError("unterminated CSS rule")


def _split_selectors(prelude: str) -> list[str]:
    parts, depth, current, quote = [], 0, [], None
    for c in prelude:
        if quote:
            quote = None if c == quote else quote
        elif c in "\"'":
            quote = c
        elif c in "([":
            depth += 1
        elif c in ")]":
            depth -= 1
        elif c == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(c)
    parts.append("".join(current).strip())
    return [p for p in parts if p]


def scope_selector(selector: str, scope: str = SCOPE) -> str:
    selector = " ".join(selector.split())
    head, _, rest = selector.partition(" ")
    if head in (":root", "html", "body"):
        return f"{scope} {rest}" if rest else scope
    if head == ".js":  # portal.js marks <html>, which is outside the wrapper
        return f".js {scope} {rest}" if rest else f".js {scope}"
    return f"{scope} {selector}"


def _px(declarations: str) -> str:
    def convert(match: re.Match) -> str:
        value = float(match.group(1)) * ROOT_PX
        return f"{value:.2f}".rstrip("0").rstrip(".") + "px"
    return _REM.sub(convert, declarations)


def _scope_rules(css: str, scope: str):
    for prelude, body in _rules(css):
        if body is None:
            yield f"{prelude};"
        elif prelude.startswith(_NESTED):
            yield f"{prelude} {{\n" + "\n".join(_scope_rules(body, scope)) + "\n}"
        elif prelude.startswith("@"):  # @keyframes, @font-face, @property: not selectors
            yield f"{prelude} {{{body}}}"
        else:
            selectors = ", ".join(scope_selector(s, scope) for s in _split_selectors(prelude))
            yield f"{selectors} {{{_px(body)}}}"


@lru_cache(maxsize=4)
def _build(source_mtime: float) -> tuple[str, str]:
    del source_mtime  # the cache key: a changed portal.css is read again
    text = "\n".join(["/* The returns portal inside a shop's theme: derived from portal.css, every rule under "
                      f"{SCOPE}. */", RESET, scope_css(PORTAL_CSS.read_text(encoding="utf-8")), AFTER, ""])
    return text, hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def scoped_stylesheet() -> tuple[str, str]:
    """(the scoped stylesheet, a short version hash for cache busting)."""
    return _build(PORTAL_CSS.stat().st_mtime)
