"""The Shopify platform connector: a public, embedded app on the Admin GraphQL API.

Modules, one job each:
    credentials   the shop's tokens, encrypted at rest (Shop.credentials)
    errors        what goes wrong, in words a merchant can act on
    verify        request verification: OAuth query HMAC, app proxy signature, webhook HMAC,
                  session tokens (JWT), shop-domain checks; all constant-time
    documents     the .graphql documents in graphql/, loaded by name
    client        the Admin GraphQL client (cost-aware throttling, retries, token refresh)
    tokens        expiring offline tokens: refreshed one shop at a time, rotated refresh token stored first
    auth          token exchange and the OAuth fallback (expiring offline tokens), install
    embedded      the app's pages: app home (install by token exchange), bounce page, the order
                  page's admin link, the authorization-code grant
    embedded_mode the admin served inside the Shopify admin: session tokens instead of cookies,
                  bounce/401, frame policy, CSRF proof, links that keep shop and host
    mapping       Admin GraphQL order nodes -> OrderData
    rest_mapping  webhook (REST-shaped) payloads -> OrderData
    backfill      the install backfill through bulkOperationRunQuery (JSONL, streamed)
    sync          the periodic catch-up on updated_at
    webhooks      POST /shopify/webhooks: verify, dedupe, store, enqueue
    handlers      what each webhook topic does (orders, refunds, returns, compliance, uninstall)
    compliance    the privacy topics on our data: customer export, redaction, shop deletion
    proxy         the storefront app proxy (/apps/returns -> the portal, inside the theme), with
                  proxy_gate (WSGI: verify, rewrite to the portal), proxy_session (cookieless
                  session), proxy_urls, proxy_page (Liquid-safe body), proxy_assets (scoped CSS)
    adapter       the PlatformAdapter: native returns, reverse deliveries, dispositions, refunds
    returns_mapping  returns, refunds and payments as plain data (pure functions)
    reasons       our reason codes <-> Shopify's return reason definitions
    returns_mirror   returns made or changed in Shopify's own interface, mirrored here
    commands      `connector shopify status|backfill`
    web           registers the blueprints on the app

The API version is pinned here and nowhere else.
"""
API_VERSION = "2026-04"
