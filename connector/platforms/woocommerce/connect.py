"""(being built: see issue 4)"""
from flask import Blueprint

bp = Blueprint("woocommerce_connect", __name__)
