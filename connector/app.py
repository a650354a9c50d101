"""The application factory's body: configuration, extensions, blueprints, headers, errors."""
from __future__ import annotations

import logging

from flask import Flask, current_app, g, jsonify, render_template, request
from flask_wtf.csrf import CSRFError, CSRFProtect

from connector import db, jobs
from connector.config import Config
from connector.crypto import SecretBox
from connector.i18n import init_babel
from connector.mail import make_mailer
from connector.storage import DatabaseStorage, LocalStorage


class CSRF(CSRFProtect):
    """Flask-WTF's CSRF check that also accepts other proofs that a request is not forged.

    A proof is a function registered with `accept_proof(fn)`; fn() is true when the request
    carries one, e.g. the Shopify embedded admin's verified session token (only App Bridge inside
    the merchant's admin can obtain it, and no cookie carries it; the cookie-bound CSRF token
    cannot work in that third-party iframe). A request without such a proof is checked as usual.
    """

    def __init__(self, app=None):
        self._proofs: list = []
        super().__init__(app)

    def accept_proof(self, proof) -> None:
        if proof not in self._proofs:
            self._proofs.append(proof)

    def protect(self, *args, **kwargs):
        if request.method in current_app.config["WTF_CSRF_METHODS"] and any(proof() for proof in self._proofs):
            g.csrf_valid = True  # FlaskForm.validate_on_submit then skips its own token check too
            return None
        return super().protect(*args, **kwargs)


csrf = CSRF()
log = logging.getLogger("connector")


def build_app(config: Config | None = None) -> Flask:
    config = config or Config.from_env()
    config.check()
    config.data_dir.mkdir(parents=True, exist_ok=True)

    app = Flask("connector", template_folder="templates", static_folder=None)
    app.config.update(
        SECRET_KEY=config.secret_key,
        MAX_CONTENT_LENGTH=config.max_content_length,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=config.base_url.startswith("https://"),
        WTF_CSRF_TIME_LIMIT=None,  # bound to the session; a slow shopper must not lose their form
        CONNECTOR=config,
    )
    app.extensions["connector.storage"] = (LocalStorage(config.files_dir) if config.file_storage == "local"
                                           else DatabaseStorage(db.engine))
    app.extensions["connector.mailer"] = make_mailer(config.mail_url, config.outbox_dir)
    app.extensions["connector.secrets"] = SecretBox(config.encryption_key)

    db.init_db(config.database_url)
    db.init_app(app)
    if config.jobs_immediate:
        jobs.configure(immediate=True)
    csrf.init_app(app)
    init_babel(app)

    from connector.portal.views import bp as portal_bp
    from connector.admin.views import bp as admin_bp
    from connector.api.views import bp as api_bp
    from connector.health import bp as health_bp

    app.register_blueprint(health_bp)
    app.register_blueprint(portal_bp)
    app.register_blueprint(admin_bp)
    app.register_blueprint(api_bp)
    csrf.exempt(api_bp)  # API-key authenticated JSON, no cookies
    from connector.carriers.webhooks import bp as carrier_webhooks_bp
    app.register_blueprint(carrier_webhooks_bp)
    csrf.exempt(carrier_webhooks_bp)  # signed by the carrier, no cookies
    from connector.platforms.shopify.web import register as register_shopify
    register_shopify(app, csrf)
    from connector.platforms.woocommerce.web import register as register_woocommerce
    register_woocommerce(app, csrf)

    _wire_domain(app, config)

    if config.proxy_hops:
        from werkzeug.middleware.proxy_fix import ProxyFix
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=config.proxy_hops, x_proto=config.proxy_hops,
                                x_host=config.proxy_hops)
    _security_headers(app)
    _error_pages(app)
    return app


def _wire_domain(app: Flask, config: Config) -> None:
    """Give the domain its outside parts: queue, storage, carriers, platforms, translations."""
    from flask_babel import gettext

    from connector import tasks
    from connector.carriers import connections
    from connector.carriers.registry import available
    from connector.platforms.registry import adapter_for
    from connector.returns.context import runtime

    runtime.enqueue = tasks.enqueue
    runtime.storage = app.extensions["connector.storage"]
    runtime.carrier = lambda key, shop=None, connection_id=None: _carrier(key, shop, connection_id, config)
    runtime.carrier_class = lambda key: available()[key]
    runtime.carriers = connections
    runtime.adapter = adapter_for
    runtime.gettext = gettext


def _carrier(key: str, shop, connection_id: int | None, config: Config):
    """The backend for a shipment: its shop's carrier connection when it has one (that shop's
    only), else the built-in backend `key` (sandbox, selfship)."""
    from connector.carriers import connections
    from connector.carriers.registry import get_backend

    if connection_id is not None and shop is not None:
        conn = connections.get(shop, connection_id)
        if conn is None:
            raise KeyError(f"carrier connection {connection_id} of shop {shop.id} is gone")
        return connections.backend_of(conn)
    return get_backend(key, settings={"data_dir": str(config.data_dir)})


def _security_headers(app: Flask) -> None:
    @app.after_request
    def _headers(resp):
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Referrer-Policy", "same-origin")
        resp.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data: https:; style-src 'self' 'unsafe-inline'; "
            "script-src 'self'; frame-ancestors 'self'; form-action 'self'")
        return resp


def _wants_json() -> bool:
    return request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json"


def _error_pages(app: Flask) -> None:
    def render(code: int, message: str):
        if _wants_json():
            return jsonify(error=message), code
        return render_template("error.html", code=code, message=message), code

    @app.errorhandler(CSRFError)
    def _csrf(e):
        from flask_babel import gettext as _
        return render(400, _("This form has expired or was sent from elsewhere. Please go back, reload and try again."))

    @app.errorhandler(404)
    def _not_found(e):
        from flask_babel import gettext as _
        return render(404, _("This page does not exist."))

    @app.errorhandler(405)
    def _method(e):
        from flask_babel import gettext as _
        return render(405, _("This action is not allowed here."))

    @app.errorhandler(413)
    def _too_large(e):
        from flask_babel import gettext as _
        return render(413, _("What you sent is too large. Photos may be at most 8 MB each."))

    @app.errorhandler(429)
    def _too_many(e):
        from flask_babel import gettext as _
        return render(429, _("Too many attempts. Please wait a few minutes and try again."))

    @app.errorhandler(400)
    def _bad(e):
        from flask_babel import gettext as _
        from werkzeug.exceptions import BadRequest
        custom = getattr(e, "description", None)
        # Werkzeug's own description is English prose for developers; shoppers get ours.
        if not custom or custom == BadRequest.description:
            custom = _("The request could not be understood.")
        return render(400, custom)

    @app.errorhandler(500)
    def _error(e):
        from flask_babel import gettext as _
        log.exception("unhandled error on %s", request.path)
        db.session.rollback()
        return render(500, _("Something went wrong on our side. Nothing you entered was lost; please try again."))
