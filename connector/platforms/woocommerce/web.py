"""Registers the WooCommerce blueprints on the app. Each module owns one blueprint."""
from __future__ import annotations


def register(app, csrf) -> None:
    from connector.platforms.woocommerce import connect, plugin_api, webhooks

    for module in (connect, webhooks, plugin_api):
        app.register_blueprint(module.bp)
        csrf.exempt(module.bp)  # server-to-server posts verified by signature or key, no cookies
