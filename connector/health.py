"""GET /healthz: the process answers and the database is reachable."""
from flask import Blueprint, jsonify
from sqlalchemy import text

from connector import db

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    try:
        db.session.execute(text("SELECT 1"))
    except Exception as exc:  # the check must report, never raise
        return jsonify(status="error", database=type(exc).__name__), 503
    return jsonify(status="ok")
