"""order customer: the platform's customer account id on orders (signed-in shoppers on the storefront)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 10:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: guest orders have no account, and orders synced before this revision get theirs
    # with their next update from the platform.
    with op.batch_alter_table('orders') as batch:
        batch.add_column(sa.Column('customer_platform_id', sa.String(length=64), nullable=True))
        batch.create_index('ix_orders_shop_customer', ['shop_id', 'customer_platform_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('orders') as batch:
        batch.drop_index('ix_orders_shop_customer')
        batch.drop_column('customer_platform_id')
