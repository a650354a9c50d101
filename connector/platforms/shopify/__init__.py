"""The Shopify platform connector: a public, embedded app on the Admin GraphQL API.

Modules, one job each:
    credentials   the shop's tokens, encrypted at rest (Shop.credentials)
    errors        what goes wrong, in words a merchant can act on
    verify        request verification: OAuth query HMAC, app proxy signature, webhook HMAC,
                  session tokens (JWT), shop-domain checks; all constant-time
    documents     the .graphql documents in graphql/, loaded by name
    client        the Admin GraphQL client (cost-aware throttling, retries, token refresh)
    auth          token exchange, expiring offline tokens and their refresh, the OAuth fallback
    embedded      the app home and the embedded admin (App Bridge, session tokens, bounce page)
    mapping       Admin GraphQL order nodes -> OrderData
    rest_mapping  webhook (REST-shaped) payloads -> OrderData
    backfill      the install backfill through bulkOperationRunQuery (JSONL, streamed)
    sync          the periodic catch-up on updated_at
    webhooks      POST /shopify/webhooks: verify, dedupe, store, enqueue
    handlers      what each webhook topic does (orders, refunds, returns, compliance, uninstall)
    proxy         the storefront app proxy (/apps/returns -> the portal, inside the theme)
    adapter       the PlatformAdapter: native returns, reverse deliveries, dispositions, refunds
    web           registers the blueprints on the app

The API version is pinned here and nowhere else.
"""
API_VERSION = "2026-04"
