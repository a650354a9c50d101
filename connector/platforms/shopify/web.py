"""Registers the Shopify blueprints on the app. Each module owns one blueprint."""
from __future__ import annotations


def register(app, csrf) -> None:
    from connector.platforms.shopify import embedded, proxy, webhooks

    app.register_blueprint(webhooks.bp)
    csrf.exempt(webhooks.bp)  # HMAC-verified server-to-server posts, no cookies
    app.register_blueprint(embedded.bp)
    # A POST carrying a verified App Bridge session token is not forged (see embedded_mode).
    from connector.platforms.shopify.embedded_mode import forgery_proof
    csrf.accept_proof(forgery_proof)
    app.register_blueprint(proxy.bp)
