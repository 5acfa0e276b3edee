"""rewards: an audience segment and the marketing flag (issue 15)

Revision ID: rewards_0004_i15
Revises: tiers_0004_i12
Create Date: 2026-12-01 13:00:00

``segment_id``: the reward is listed to and redeemable by the members of this analytics segment
only (no foreign key, like ``points_campaigns.segment_id``: the analytics branch is independent).
``marketing``: a promotional reward, withheld from the programme-wide holdout.  Existing rewards
are the standing catalogue: no segment, not marketing.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'rewards_0004_i15'
down_revision = 'tiers_0004_i12'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('rewards') as batch:
        batch.add_column(sa.Column('segment_id', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('marketing', sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade():
    with op.batch_alter_table('rewards') as batch:
        batch.drop_column('marketing')
        batch.drop_column('segment_id')
