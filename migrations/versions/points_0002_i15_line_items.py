"""points: purchase line items (cross-purchase analytics); campaigns may target a segment

Revision ID: points_0002_i15_line_items
Revises: surveys_0003_i15_audience
Create Date: 2026-12-01 09:40:00

``points_campaigns.segment_id`` names an analytics segment (no foreign key: the analytics
branch is migrated independently; the campaign engine asks ``analytics.segments``).
"""
from alembic import op
import sqlalchemy as sa


revision = 'points_0002_i15_line_items'
down_revision = 'surveys_0003_i15_audience'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('purchase_line_items',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('interaction_id', sa.Integer(), nullable=False),
    sa.Column('line_no', sa.Integer(), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('product_id', sa.String(length=100), nullable=False),
    sa.Column('category', sa.String(length=100), nullable=True),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('amount', sa.Numeric(precision=14, scale=2), nullable=True),
    sa.Column('occurred_at', sa.DateTime(), nullable=False),
    sa.CheckConstraint("kind IN ('purchase','refund')", name=op.f('ck_purchase_line_items_kind')),
    sa.CheckConstraint('quantity > 0', name=op.f('ck_purchase_line_items_quantity_positive')),
    sa.CheckConstraint('amount IS NULL OR amount >= 0', name=op.f('ck_purchase_line_items_amount_nonnegative')),
    sa.ForeignKeyConstraint(['interaction_id'], ['interactions.id'], name=op.f('fk_purchase_line_items_interaction_id_interactions'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['member_id'], ['users.id'], name=op.f('fk_purchase_line_items_member_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_purchase_line_items')),
    sa.UniqueConstraint('interaction_id', 'line_no', name='uq_purchase_line_items_interaction_line')
    )
    op.create_index('ix_purchase_line_items_member_occurred', 'purchase_line_items', ['member_id', 'occurred_at'], unique=False)
    with op.batch_alter_table('points_campaigns') as batch:
        batch.add_column(sa.Column('segment_id', sa.Integer(), nullable=True))


def downgrade():
    with op.batch_alter_table('points_campaigns') as batch:
        batch.drop_column('segment_id')
    op.drop_index('ix_purchase_line_items_member_occurred', table_name='purchase_line_items')
    op.drop_table('purchase_line_items')
