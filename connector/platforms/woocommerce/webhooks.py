"""(being built: see issue 4)"""
from flask import Blueprint

bp = Blueprint("woocommerce_webhooks", __name__)
