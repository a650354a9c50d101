"""(being built: see issue 4)"""
from flask import Blueprint

bp = Blueprint("woocommerce_plugin_api", __name__)
