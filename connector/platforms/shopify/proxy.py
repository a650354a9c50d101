"""(being built: see issue 3)"""
from flask import Blueprint

bp = Blueprint("shopify_proxy", __name__)
