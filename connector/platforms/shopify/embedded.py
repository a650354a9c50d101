"""(being built: see issue 3)"""
from flask import Blueprint

bp = Blueprint("shopify_embedded", __name__)
