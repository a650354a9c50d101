"""webhook pending: a partial index on the deliveries not processed yet (the reconciler's re-drive)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 12:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Only the unprocessed rows are indexed: the reconciler looks for them every minute, and a scan
    # of the whole table would read every stored body.
    op.create_index('ix_webhooks_pending', 'webhook_deliveries', ['received_at'], unique=False,
                    sqlite_where=sa.text('processed_at IS NULL'), postgresql_where=sa.text('processed_at IS NULL'))


def downgrade() -> None:
    op.drop_index('ix_webhooks_pending', table_name='webhook_deliveries')
