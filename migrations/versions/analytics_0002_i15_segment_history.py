"""analytics: segment membership history (KPI breakdowns as of the day); class changes without FKs

Revision ID: analytics_0002_i15
Revises: analytics_0001
Create Date: 2026-12-01 13:20:00

Every materialisation closes the stays of members who left (``left_at``) and opens one for each
member who joined.  The members present now are backfilled with ``joined_at`` NULL: they were in
the segment since before history was kept.

``rfm_class_changes`` loses its foreign keys (to users and runs): a first recompute appends a
million rows in one statement and the per-row constraint triggers dominated it.  The table is a
leaf, so SQLite's batch rebuild needs no foreign-key dance.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'analytics_0002_i15'
down_revision = 'analytics_0001'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('analytics_segment_history',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('segment_id', sa.Integer(), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('joined_at', sa.DateTime(), nullable=True),
    sa.Column('left_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_analytics_segment_history'))
    )
    with op.batch_alter_table('analytics_segment_history', schema=None) as batch_op:
        batch_op.create_index('ix_analytics_segment_history_segment', ['segment_id', 'left_at', 'member_id'],
                              unique=False)
        batch_op.create_index('ix_analytics_segment_history_member', ['member_id'], unique=False)
    op.execute("INSERT INTO analytics_segment_history (segment_id, member_id) "
               "SELECT segment_id, member_id FROM analytics_segment_members")
    with op.batch_alter_table('rfm_class_changes', schema=None) as batch_op:
        batch_op.drop_constraint('fk_rfm_class_changes_member_id_users', type_='foreignkey')
        batch_op.drop_constraint('fk_rfm_class_changes_run_id_analytics_runs', type_='foreignkey')


def downgrade():
    with op.batch_alter_table('rfm_class_changes', schema=None) as batch_op:
        batch_op.create_foreign_key('fk_rfm_class_changes_member_id_users', 'users', ['member_id'], ['id'],
                                    ondelete='CASCADE')
        batch_op.create_foreign_key('fk_rfm_class_changes_run_id_analytics_runs', 'analytics_runs', ['run_id'],
                                    ['id'], ondelete='SET NULL')
    with op.batch_alter_table('analytics_segment_history', schema=None) as batch_op:
        batch_op.drop_index('ix_analytics_segment_history_member')
        batch_op.drop_index('ix_analytics_segment_history_segment')
    op.drop_table('analytics_segment_history')
