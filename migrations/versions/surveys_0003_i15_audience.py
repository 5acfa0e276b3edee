"""surveys: an analytics segment as a survey's audience (``surveys.audience_segment_id``)

Revision ID: surveys_0003_i15_audience
Revises: points_0002_i13_abuse
Create Date: 2026-12-01 10:35:00

No foreign key: the analytics branch is migrated independently; the surveys service asks
``analytics.segments``.
"""
from alembic import op
import sqlalchemy as sa


revision = 'surveys_0003_i15_audience'
down_revision = 'points_0002_i13_abuse'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('surveys') as batch:
        batch.add_column(sa.Column('audience_segment_id', sa.Integer(), nullable=True))


def downgrade():
    with op.batch_alter_table('surveys') as batch:
        batch.drop_column('audience_segment_id')
