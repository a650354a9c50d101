"""The WooCommerce platform connector: the store's REST API (wc/v3), its webhooks, and the
WordPress plugin (embedded_ui/woocommerce/returns-connector/).

Modules, one job each:
    credentials   the store's REST keys, webhook secret and plugin secret, sealed (Shop.credentials)
    errors        what goes wrong, in words a merchant can act on
    signing       plugin <-> connector signing (customer tokens, signed requests); PHP twin in the plugin
    client        the REST client (params=, timeouts, retries with backoff, auth over https/http)
    connect       wc-auth key provisioning (authorize URL, callback), the CLI connect, webhook setup
    mapping       WooCommerce order JSON -> OrderData
    sync          the backfill (page=N from X-WP-TotalPages) and the modified_after poll
    webhooks      POST /woocommerce/webhooks/<shop>: verify, dedupe, store, enqueue; the ping
    handlers      what each webhook topic does
    adapter       the PlatformAdapter: refunds through orders/<id>/refunds, order notes
    plugin_api    the endpoints the plugin calls (portal entry with a customer token, signed requests)
    web           registers the blueprints on the app

Store URLs are kept in Shop.platform_data["store_url"]; Shop.domain is the store's host.
"""
API_NAMESPACE = "wc/v3"
