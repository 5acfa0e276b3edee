"""tiers: rule sets, member tier states, tier history, recompute runs

Revision ID: tiers_0001
Revises: 0001_foundation
Create Date: 2026-11-23 14:30:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'tiers_0001'
down_revision = '0001_foundation'
branch_labels = ('tiers',)
depends_on = None


def upgrade():
    op.create_table('tier_metric_stage',
    sa.Column('member_id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('points_earned', sa.Integer(), nullable=False),
    sa.Column('active_weeks', sa.Integer(), nullable=False),
    sa.Column('surveys_completed', sa.Integer(), nullable=False),
    sa.Column('nps_promoter', sa.Integer(), nullable=False),
    sa.Column('focus_groups_attended', sa.Integer(), nullable=False),
    sa.Column('referrals_converted', sa.Integer(), nullable=False),
    sa.Column('accepted_posts', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('member_id', name=op.f('pk_tier_metric_stage'))
    )
    if op.get_bind().dialect.name == 'postgresql':
        # Scratch data rebuilt by every full run: no need to write it to the WAL.
        op.execute('ALTER TABLE tier_metric_stage SET UNLOGGED')
    op.create_table('tier_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('rule_version', sa.Integer(), nullable=False),
    sa.Column('total', sa.Integer(), nullable=False),
    sa.Column('processed', sa.Integer(), nullable=False),
    sa.Column('promoted', sa.Integer(), nullable=False),
    sa.Column('demoted', sa.Integer(), nullable=False),
    sa.Column('distribution', sa.JSON(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('started_at', sa.DateTime(), nullable=False),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.CheckConstraint("status IN ('running','done','failed','abandoned')", name=op.f('ck_tier_runs_status')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tier_runs'))
    )
    op.create_index(op.f('ix_tier_runs_started_at'), 'tier_runs', ['started_at'], unique=False)
    op.create_table('member_tier_states',
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('points_earned', sa.Integer(), nullable=False),
    sa.Column('active_weeks', sa.Integer(), nullable=False),
    sa.Column('surveys_completed', sa.Integer(), nullable=False),
    sa.Column('nps_promoter', sa.Integer(), nullable=False),
    sa.Column('focus_groups_attended', sa.Integer(), nullable=False),
    sa.Column('referrals_converted', sa.Integer(), nullable=False),
    sa.Column('accepted_posts', sa.Integer(), nullable=False),
    sa.Column('no_suspension', sa.Integer(), nullable=False),
    sa.Column('qualified_tier', sa.String(length=20), nullable=False),
    sa.Column('target_tier', sa.String(length=20), nullable=False),
    sa.Column('below_since', sa.DateTime(), nullable=True),
    sa.Column('pinned_tier', sa.String(length=20), nullable=True),
    sa.Column('pin_reason', sa.Text(), nullable=True),
    sa.Column('pinned_by_id', sa.Integer(), nullable=True),
    sa.Column('pinned_at', sa.DateTime(), nullable=True),
    sa.Column('rule_version', sa.Integer(), nullable=False),
    sa.Column('changed_at', sa.DateTime(), nullable=True),
    sa.CheckConstraint("pinned_tier IS NULL OR pinned_tier IN ('aware','engaged','satisfied','loyal','advocate')", name=op.f('ck_member_tier_states_pinned_tier')),
    sa.CheckConstraint("qualified_tier IN ('aware','engaged','satisfied','loyal','advocate')", name=op.f('ck_member_tier_states_qualified_tier')),
    sa.CheckConstraint("target_tier IN ('aware','engaged','satisfied','loyal','advocate')", name=op.f('ck_member_tier_states_target_tier')),
    sa.ForeignKeyConstraint(['member_id'], ['users.id'], name=op.f('fk_member_tier_states_member_id_users'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['pinned_by_id'], ['users.id'], name=op.f('fk_member_tier_states_pinned_by_id_users')),
    sa.PrimaryKeyConstraint('member_id', name=op.f('pk_member_tier_states'))
    )
    op.create_table('tier_changes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('from_tier', sa.String(length=20), nullable=False),
    sa.Column('to_tier', sa.String(length=20), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('actor_id', sa.Integer(), nullable=True),
    sa.Column('run_id', sa.Integer(), nullable=True),
    sa.Column('rule_version', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.CheckConstraint("kind IN ('promotion','demotion','pin')", name=op.f('ck_tier_changes_kind')),
    sa.ForeignKeyConstraint(['actor_id'], ['users.id'], name=op.f('fk_tier_changes_actor_id_users')),
    sa.ForeignKeyConstraint(['member_id'], ['users.id'], name=op.f('fk_tier_changes_member_id_users'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['run_id'], ['tier_runs.id'], name=op.f('fk_tier_changes_run_id_tier_runs'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tier_changes'))
    )
    op.create_index(op.f('ix_tier_changes_created_at'), 'tier_changes', ['created_at'], unique=False)
    op.create_index('ix_tier_changes_member_created', 'tier_changes', ['member_id', 'created_at'], unique=False)
    op.create_table('tier_rule_sets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('requirements', sa.JSON(), nullable=False),
    sa.Column('window_days', sa.Integer(), nullable=False),
    sa.Column('grace_days', sa.Integer(), nullable=False),
    sa.Column('keep_percent', sa.Integer(), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.CheckConstraint('grace_days >= 0', name=op.f('ck_tier_rule_sets_grace_days')),
    sa.CheckConstraint('keep_percent BETWEEN 1 AND 100', name=op.f('ck_tier_rule_sets_keep_percent')),
    sa.CheckConstraint('window_days >= 1', name=op.f('ck_tier_rule_sets_window_days')),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_tier_rule_sets_created_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tier_rule_sets')),
    sa.UniqueConstraint('version', name=op.f('uq_tier_rule_sets_version'))
    )


def downgrade():
    op.drop_table('tier_rule_sets')
    op.drop_index('ix_tier_changes_member_created', table_name='tier_changes')
    op.drop_index(op.f('ix_tier_changes_created_at'), table_name='tier_changes')
    op.drop_table('tier_changes')
    op.drop_table('member_tier_states')
    op.drop_index(op.f('ix_tier_runs_started_at'), table_name='tier_runs')
    op.drop_table('tier_runs')
    op.drop_table('tier_metric_stage')
