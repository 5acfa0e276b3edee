"""tiers: points_earned metrics hold any legal sum of awards (BIGINT)

Revision ID: tiers_0004_i12
Revises: points_0002_i12
Create Date: 2026-12-01 09:30:00

``interactions.points`` became BIGINT (points_0002_i12); the tier metrics that sum it follow.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'tiers_0004_i12'
down_revision = 'points_0002_i12'
branch_labels = None
depends_on = None

TABLES = ('member_tier_states', 'tier_metric_stage')


def upgrade():
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.alter_column('points_earned', existing_type=sa.Integer(), type_=sa.BigInteger(),
                               existing_nullable=False)


def downgrade():
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.alter_column('points_earned', existing_type=sa.BigInteger(), type_=sa.Integer(),
                               existing_nullable=False)
