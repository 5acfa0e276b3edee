"""points: interactions.points holds any legal award (BIGINT)

Revision ID: points_0002_i12
Revises: points_0002_i15_line_items
Create Date: 2026-12-01 09:30:00

A purchase within the documented amount range (up to 10^9) times the largest legal rule
(10^4 points per unit), tier multiplier (10) and campaign multiplier (10) earns up to 10^15
points: more than a 32-bit INTEGER holds on PostgreSQL.  The journal already uses BIGINT.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'points_0002_i12'
down_revision = 'points_0002_i15_line_items'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('interactions') as batch:
        batch.alter_column('points', existing_type=sa.Integer(), type_=sa.BigInteger(), existing_nullable=False)


def downgrade():
    with op.batch_alter_table('interactions') as batch:
        batch.alter_column('points', existing_type=sa.BigInteger(), type_=sa.Integer(), existing_nullable=False)
