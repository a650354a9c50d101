"""carrier connections: a merchant's carrier accounts; the connection a return and a shipment use

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22 05:30:00
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    op.create_table(
        'carrier_connections',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('shop_id', sa.Integer(), nullable=False),
        sa.Column('backend', sa.String(length=64), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('credentials', sa.LargeBinary(), nullable=True),
        sa.Column('settings', JSON, nullable=False),
        sa.Column('test_mode', sa.Boolean(), nullable=False),
        sa.Column('methods', JSON, nullable=False),
        sa.Column('return_addresses', JSON, nullable=False),
        sa.Column('position', sa.Integer(), nullable=False),
        sa.Column('active', sa.Boolean(), nullable=False),
        sa.Column('webhook_token', sa.String(length=64), nullable=False),
        sa.Column('checked_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('check_error', sa.Text(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('webhook_token'),
    )
    with op.batch_alter_table('carrier_connections') as batch:
        batch.create_index(batch.f('ix_carrier_connections_shop_id'), ['shop_id'], unique=False)
    with op.batch_alter_table('returns') as batch:
        batch.add_column(sa.Column('carrier_connection_id', sa.Integer(), nullable=True))
        batch.create_foreign_key('fk_returns_carrier_connection_id', 'carrier_connections',
                                 ['carrier_connection_id'], ['id'], ondelete='SET NULL')
    with op.batch_alter_table('shipments') as batch:
        batch.add_column(sa.Column('connection_id', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('next_poll_at', sa.DateTime(timezone=True), nullable=True))
        batch.create_foreign_key('fk_shipments_connection_id', 'carrier_connections',
                                 ['connection_id'], ['id'], ondelete='SET NULL')
        batch.create_index(batch.f('ix_shipments_connection_id'), ['connection_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('shipments') as batch:
        batch.drop_index(batch.f('ix_shipments_connection_id'))
        batch.drop_constraint('fk_shipments_connection_id', type_='foreignkey')
        batch.drop_column('next_poll_at')
        batch.drop_column('connection_id')
    with op.batch_alter_table('returns') as batch:
        batch.drop_constraint('fk_returns_carrier_connection_id', type_='foreignkey')
        batch.drop_column('carrier_connection_id')
    with op.batch_alter_table('carrier_connections') as batch:
        batch.drop_index(batch.f('ix_carrier_connections_shop_id'))
    op.drop_table('carrier_connections')
