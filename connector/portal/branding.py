"""The shop's look on the portal: logo and primary colour, checked before they reach a page.

`Shop.branding` is merchant input; a colour goes into a `style` attribute and a logo URL into
`src`, so only a plain hex colour and an https (or same-site) URL are used. The text colour on
the brand colour is chosen for contrast (WCAG relative luminance).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_PRIMARY = "#1f4f8f"
_HEX = re.compile(r"#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})")


@dataclass(frozen=True)
class Theme:
    name: str
    primary: str  # brand colour for buttons and accents
    on_primary: str  # text on the brand colour
    ink: str  # the brand colour darkened enough to be text on white (links, headings)
    logo_url: str | None
    home_url: str


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    h = hex_colour.lstrip("#")
    if len(h) == 3:
        h = "".join(c * 2 for c in h)
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


def _luminance(rgb: tuple[int, int, int]) -> float:
    def channel(c: int) -> float:
        c = c / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (channel(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    la, lb = sorted((_luminance(_rgb(a)), _luminance(_rgb(b))), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def _darken_until_readable(colour: str, background: str = "#ffffff", ratio: float = 4.5) -> str:
    r, g, b = _rgb(colour)
    for _step in range(20):
        candidate = f"#{r:02x}{g:02x}{b:02x}"
        if contrast(candidate, background) >= ratio:
            return candidate
        r, g, b = int(r * 0.85), int(g * 0.85), int(b * 0.85)
    return "#1a1a1a"


def safe_colour(value: object) -> str:
    return value.lower() if isinstance(value, str) and _HEX.fullmatch(value.strip()) else DEFAULT_PRIMARY


def safe_logo_url(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip()
    if len(value) > 1024 or any(c in value for c in "\"'<> \\"):
        return None
    if value.startswith("https://") or (value.startswith("/") and not value.startswith("//")):
        return value
    return None


def theme_for(shop, home_url: str) -> Theme:
    branding = shop.branding or {}
    primary = safe_colour(branding.get("primary_color"))
    on_primary = "#ffffff" if contrast(primary, "#ffffff") >= contrast(primary, "#111111") else "#111111"
    return Theme(name=shop.name, primary=primary, on_primary=on_primary, ink=_darken_until_readable(primary),
                 logo_url=safe_logo_url(branding.get("logo_url")), home_url=home_url)
