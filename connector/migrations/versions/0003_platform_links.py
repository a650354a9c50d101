"""platform links: the platform's own ids for returns, return lines and shipments; shop platform data

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 01:30:00
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    # Existing rows get empty objects / 'portal'; the server defaults only serve that backfill.
    with op.batch_alter_table('shops') as batch:
        batch.add_column(sa.Column('platform_data', JSON, nullable=False, server_default='{}'))
    with op.batch_alter_table('returns') as batch:
        batch.add_column(sa.Column('platform_id', sa.String(length=128), nullable=True))
        batch.add_column(sa.Column('origin', sa.String(length=16), nullable=False, server_default='portal'))
        batch.add_column(sa.Column('platform_status', sa.String(length=24), nullable=True))
        batch.create_unique_constraint('uq_returns_shop_platform_id', ['shop_id', 'platform_id'])
    with op.batch_alter_table('return_lines') as batch:
        batch.add_column(sa.Column('platform_id', sa.String(length=128), nullable=True))
        batch.add_column(sa.Column('platform_data', JSON, nullable=False, server_default='{}'))
    with op.batch_alter_table('shipments') as batch:
        batch.add_column(sa.Column('platform_id', sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('shipments') as batch:
        batch.drop_column('platform_id')
    with op.batch_alter_table('return_lines') as batch:
        batch.drop_column('platform_data')
        batch.drop_column('platform_id')
    with op.batch_alter_table('returns') as batch:
        batch.drop_constraint('uq_returns_shop_platform_id', type_='unique')
        batch.drop_column('platform_status')
        batch.drop_column('origin')
        batch.drop_column('platform_id')
    with op.batch_alter_table('shops') as batch:
        batch.drop_column('platform_data')
