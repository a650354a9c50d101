"""Returns Connector: `create_app()` builds the WSGI application; nothing else lives here."""
from __future__ import annotations


def create_app(config=None):
    """Build the app from `config` (a `connector.config.Config`) or from the environment."""
    from connector.app import build_app

    return build_app(config)
