"""analytics: stored per-member experiment values (results read one narrow table)

Revision ID: analytics_0003_i15
Revises: analytics_0002_i15
Create Date: 2026-12-01 20:40:00

``analytics_experiment_values`` holds each assigned member's pre- and post-period value of every
result metric, rebuilt by the experiment-values job; ``analytics_experiments.values_through``
is the post-period end they were computed for (NULL: not yet, results are computed live).

PostgreSQL: ``ix_interactions_occurred_at`` gains ``INCLUDE (member_id, kind, value)`` so the KPI
day build reads a day's and the last 30 days' interactions from the index alone (at 1 M members
the 30-day count fetched ~850,000 heap rows at random: 10 s).  Same key, so the tier run's uses
are unchanged; SQLite has no INCLUDE and keeps its index.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'analytics_0003_i15'
down_revision = 'analytics_0002_i15'
branch_labels = None
depends_on = None

METRICS = ("net_amount", "purchases", "distinct_products", "distinct_categories", "retention",
           "points_earned", "points_redeemed")


def upgrade():
    op.create_table(
        'analytics_experiment_values',
        sa.Column('experiment_id', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('member_id', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('arm', sa.String(length=8), nullable=False),
        *[sa.Column(f"{m}_{p}", sa.Float(), nullable=False) for m in METRICS for p in ("pre", "post")],
        sa.PrimaryKeyConstraint('experiment_id', 'member_id', name=op.f('pk_analytics_experiment_values')),
    )
    with op.batch_alter_table('analytics_experiments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('values_through', sa.DateTime(), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index('ix_interactions_occurred_at', table_name='interactions')
        op.create_index('ix_interactions_occurred_at', 'interactions', ['occurred_at'], unique=False,
                        postgresql_include=['member_id', 'kind', 'value'])


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index('ix_interactions_occurred_at', table_name='interactions')
        op.create_index('ix_interactions_occurred_at', 'interactions', ['occurred_at'], unique=False)
    with op.batch_alter_table('analytics_experiments', schema=None) as batch_op:
        batch_op.drop_column('values_through')
    op.drop_table('analytics_experiment_values')
