"""URLs the portal builds while it answers through the app proxy.

`StorefrontUrls` wraps a request's URL adapter (werkzeug MapAdapter; Flask's `url_for` goes through
it), so that the portal's templates and views stay as they are and still link correctly:

- a portal page (`portal.*` but `portal.static`), built as `/portal/<handle>/<rest>?<query>`, becomes
  `<path_prefix>/<rest>?<query>&ps=<marker>`: the storefront path (e.g. /apps/returns/orders/5/items)
  that Shopify proxies back to us, with the placeholder that the session interface replaces by the
  session token when the response is complete (proxy_session);
- everything else (the portal's CSS and JS, the scoped stylesheet, any other blueprint) becomes an
  absolute BASE_URL URL: the storefront's domain does not serve our files.

Links never carry Shopify's own parameters or its signature: Shopify signs each request again.
"""
from __future__ import annotations

from urllib.parse import quote

from connector.platforms.shopify.proxy_gate import ProxyRequest
from connector.platforms.shopify.proxy_session import PARAM


def is_portal_page(endpoint: str) -> bool:
    return endpoint.startswith("portal.") and endpoint != "portal.static"


class StorefrontUrls:
    """A MapAdapter stand-in: `build` as described above, everything else from the wrapped one."""

    def __init__(self, inner, proxy: ProxyRequest, base_url: str):
        self._inner = inner
        self._proxy = proxy
        self._base_url = base_url.rstrip("/")
        self._internal = f"{(inner.script_name or '').rstrip('/')}/portal/{quote(proxy.handle, safe='')}"

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def build(self, endpoint, values=None, method=None, force_external=False, append_unknown=True,
              url_scheme=None) -> str:
        path = self._inner.build(endpoint, values, method=method, force_external=False,
                                 append_unknown=append_unknown)
        if is_portal_page(endpoint) and (path == self._internal or path.startswith(self._internal + "/")
                                         or path.startswith(self._internal + "?")):
            rest = path[len(self._internal):] or "/"
            if rest.startswith("?"):
                rest = "/" + rest
            url = f"{self._proxy.path_prefix}{rest}{'&' if '?' in rest else '?'}{PARAM}={self._proxy.marker}"
            return f"https://{self._proxy.domain}{url}" if force_external else url
        return f"{self._base_url}{path}"
