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
    op.add_column('rewards', sa.Column('segment_id', sa.Integer(), nullable=True))
    op.add_column('rewards', sa.Column('marketing', sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade():
    # Plain ALTER TABLE … DROP COLUMN (SQLite ≥ 3.35 too): a batch rebuild of ``rewards`` would drop
    # a table that redemptions and codes reference.
    op.execute('ALTER TABLE rewards DROP COLUMN marketing')
    op.execute('ALTER TABLE rewards DROP COLUMN segment_id')
