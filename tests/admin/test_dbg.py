from flask import g
import flask_babel
from tests.admin.conftest import make_return
def test_dbg(admin, shop, app):
    @app.after_request
    def x(resp):
        print("tz", getattr(g, "shop_timezone", None), flask_babel.get_timezone(), g._flask_babel.__dict__ if hasattr(g, "_flask_babel") else None)
        return resp
    ret = make_return(shop, approve=False)
    html = admin.get(f"returns/{ret.id}").get_data(as_text=True)
