"""What a portal HTML page becomes before it leaves through the app proxy.

Shopify renders a response with `Content-Type: application/liquid` as Liquid inside the theme's
layout. Two things are done to the page's HTML on the way out:

- `add_session_fields`: every POST form gets a hidden `ps` field with the session placeholder, so
  a form that posts back to its own address (no `action`) carries the session even when the page
  was opened without one (proxy_session replaces the placeholder by the token).
- `neutralise_liquid`: nothing in the body may be evaluated as Liquid. Shopper-controlled text (a
  comment, a name, an address) is HTML-escaped by Jinja but `{{` and `{%` survive escaping, and
  Liquid would run them with the shop's objects (`{{ customer.email }}`). The second character of
  every `{{` and `{%` becomes its HTML character reference: Liquid no longer sees a delimiter, the
  browser shows (and submits, in form values) the very same characters.
"""
from __future__ import annotations

import re

_DELIMITER = re.compile(r"\{([{%])")
_ENTITY = {"{": "&#123;", "%": "&#37;"}
_POST_FORM = re.compile(r"<form\b[^>]*\bmethod=\"post\"[^>]*>", re.IGNORECASE)


def neutralise_liquid(html: str) -> str:
    return _DELIMITER.sub(lambda m: "{" + _ENTITY[m.group(1)], html)


def add_session_fields(html: str, name: str, value: str) -> str:
    """Put `<input type="hidden" name=name value=value>` first in every POST form of our own HTML
    (`name` and `value` are ours: plain ASCII without quotes)."""
    field = f'<input type="hidden" name="{name}" value="{value}">'
    return _POST_FORM.sub(lambda m: m.group(0) + field, html)
