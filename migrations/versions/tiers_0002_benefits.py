"""tiers: admin overrides of tier benefits

Revision ID: tiers_0002
Revises: tiers_0001
Create Date: 2026-11-23 14:45:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'tiers_0002'
down_revision = 'tiers_0001'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('tier_benefits',
    sa.Column('tier', sa.String(length=20), nullable=False),
    sa.Column('earning_multiplier', sa.Numeric(precision=4, scale=2), nullable=False),
    sa.Column('posting_limits', sa.JSON(), nullable=False),
    sa.Column('focus_group_priority', sa.Integer(), nullable=False),
    sa.Column('updated_by_id', sa.Integer(), nullable=True),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.CheckConstraint("tier IN ('aware','engaged','satisfied','loyal','advocate')", name=op.f('ck_tier_benefits_tier')),
    sa.CheckConstraint('earning_multiplier >= 0 AND earning_multiplier <= 10', name=op.f('ck_tier_benefits_earning_multiplier')),
    sa.CheckConstraint('focus_group_priority >= 0', name=op.f('ck_tier_benefits_focus_group_priority')),
    sa.ForeignKeyConstraint(['updated_by_id'], ['users.id'], name=op.f('fk_tier_benefits_updated_by_id_users')),
    sa.PrimaryKeyConstraint('tier', name=op.f('pk_tier_benefits'))
    )


def downgrade():
    op.drop_table('tier_benefits')
