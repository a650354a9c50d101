"""The reconciler's housekeeping."""
def test_old_processed_webhook_deliveries_are_purged_and_the_rest_kept(app, shop):
    from datetime import datetime, timedelta, timezone

    from sqlalchemy import select

    from connector import db
    from connector.returns.models import WebhookDelivery
    from connector.returns.services.reconcile import purge_deliveries

    now = datetime.now(timezone.utc)
    old = now - timedelta(days=31)
    rows = [("old-done", old, old), ("old-open", old, None), ("new-done", now, now)]
    for key, received, processed in rows:
        db.session.add(WebhookDelivery(shop_id=shop.id, platform="shopify", topic="orders/create", dedupe_key=key,
                                       payload="{}", received_at=received, processed_at=processed))
    db.session.commit()
    assert purge_deliveries(now) == 1
    assert sorted(db.session.scalars(select(WebhookDelivery.dedupe_key))) == ["new-done", "old-open"]
