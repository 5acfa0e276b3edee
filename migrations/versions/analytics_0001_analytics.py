"""analytics: scores, class history, tags, segments, KPIs, reviews, experiments

Revision ID: analytics_0001
Revises: 0001_foundation
Create Date: 2026-12-01 09:28:01.833245

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'analytics_0001'
down_revision = '0001_foundation'
branch_labels = ('analytics',)
depends_on = None


def upgrade():
    op.create_table('analytics_score_scratch',
    sa.Column('member_id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('recency_days', sa.Float(), nullable=True),
    sa.Column('frequency', sa.Integer(), nullable=False),
    sa.Column('monetary', sa.Float(), nullable=False),
    sa.Column('r_score', sa.Integer(), nullable=False),
    sa.Column('f_score', sa.Integer(), nullable=False),
    sa.Column('m_score', sa.Integer(), nullable=False),
    sa.Column('rfm_class', sa.String(length=16), nullable=False),
    sa.Column('points_earned', sa.BigInteger(), nullable=False),
    sa.Column('referrals_converted', sa.Integer(), nullable=False),
    sa.Column('historical', sa.Float(), nullable=False),
    sa.Column('potential', sa.Float(), nullable=False),
    sa.Column('strategic', sa.Float(), nullable=False),
    sa.Column('value_score', sa.Float(), nullable=False),
    sa.Column('health', sa.Float(), nullable=False),
    sa.Column('health_recency', sa.Float(), nullable=False),
    sa.Column('health_frequency_trend', sa.Float(), nullable=False),
    sa.Column('health_community', sa.Float(), nullable=False),
    sa.Column('health_survey', sa.Float(), nullable=False),
    sa.Column('health_nps', sa.Float(), nullable=False),
    sa.Column('health_flags', sa.Float(), nullable=False),
    sa.Column('last_activity_at', sa.DateTime(), nullable=True),
    sa.Column('latest_nps', sa.Integer(), nullable=True),
    sa.Column('open_flags', sa.Integer(), nullable=False),
    sa.Column('computed_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('member_id', name=op.f('pk_analytics_score_scratch'))
    )
    if op.get_bind().dialect.name == 'postgresql':
        # Scratch rows rebuilt by every recompute: no need to write them to the WAL.
        op.execute('ALTER TABLE analytics_score_scratch SET UNLOGGED')
    op.create_table('kpi_daily',
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('metric', sa.String(length=48), nullable=False),
    sa.Column('dim', sa.String(length=16), nullable=False),
    sa.Column('dim_value', sa.String(length=64), nullable=False),
    sa.Column('value', sa.Float(), nullable=True),
    sa.Column('numerator', sa.Float(), nullable=True),
    sa.Column('denominator', sa.Float(), nullable=True),
    sa.PrimaryKeyConstraint('day', 'metric', 'dim', 'dim_value', name=op.f('pk_kpi_daily'))
    )
    with op.batch_alter_table('kpi_daily', schema=None) as batch_op:
        batch_op.create_index('ix_kpi_daily_metric_dim_day', ['metric', 'dim', 'dim_value', 'day'], unique=False)

    op.create_table('kpi_days',
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('built_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('day', name=op.f('pk_kpi_days'))
    )
    op.create_table('member_scores',
    sa.Column('member_id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('recency_days', sa.Float(), nullable=True),
    sa.Column('frequency', sa.Integer(), nullable=False),
    sa.Column('monetary', sa.Float(), nullable=False),
    sa.Column('r_score', sa.Integer(), nullable=False),
    sa.Column('f_score', sa.Integer(), nullable=False),
    sa.Column('m_score', sa.Integer(), nullable=False),
    sa.Column('rfm_class', sa.String(length=16), nullable=False),
    sa.Column('points_earned', sa.BigInteger(), nullable=False),
    sa.Column('referrals_converted', sa.Integer(), nullable=False),
    sa.Column('historical', sa.Float(), nullable=False),
    sa.Column('potential', sa.Float(), nullable=False),
    sa.Column('strategic', sa.Float(), nullable=False),
    sa.Column('value_score', sa.Float(), nullable=False),
    sa.Column('health', sa.Float(), nullable=False),
    sa.Column('health_recency', sa.Float(), nullable=False),
    sa.Column('health_frequency_trend', sa.Float(), nullable=False),
    sa.Column('health_community', sa.Float(), nullable=False),
    sa.Column('health_survey', sa.Float(), nullable=False),
    sa.Column('health_nps', sa.Float(), nullable=False),
    sa.Column('health_flags', sa.Float(), nullable=False),
    sa.Column('last_activity_at', sa.DateTime(), nullable=True),
    sa.Column('latest_nps', sa.Integer(), nullable=True),
    sa.Column('open_flags', sa.Integer(), nullable=False),
    sa.Column('computed_at', sa.DateTime(), nullable=False),
    sa.CheckConstraint("rfm_class IN ('high_value','potential','at_risk','low_value')", name=op.f('ck_member_scores_rfm_class')),
    sa.PrimaryKeyConstraint('member_id', name=op.f('pk_member_scores'))
    )
    with op.batch_alter_table('member_scores', schema=None) as batch_op:
        batch_op.create_index('ix_member_scores_health', ['health'], unique=False)
        batch_op.create_index('ix_member_scores_rfm_class', ['rfm_class'], unique=False)

    op.create_table('analytics_member_flags',
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('strategic', sa.Boolean(), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('set_by_id', sa.Integer(), nullable=True),
    sa.Column('set_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['users.id'], name=op.f('fk_analytics_member_flags_member_id_users'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['set_by_id'], ['users.id'], name=op.f('fk_analytics_member_flags_set_by_id_users')),
    sa.PrimaryKeyConstraint('member_id', name=op.f('pk_analytics_member_flags'))
    )
    op.create_table('analytics_member_tags',
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('tag', sa.String(length=64), nullable=False),
    sa.Column('tagged_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['users.id'], name=op.f('fk_analytics_member_tags_member_id_users'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tagged_by_id'], ['users.id'], name=op.f('fk_analytics_member_tags_tagged_by_id_users')),
    sa.PrimaryKeyConstraint('member_id', 'tag', name=op.f('pk_analytics_member_tags'))
    )
    with op.batch_alter_table('analytics_member_tags', schema=None) as batch_op:
        batch_op.create_index('ix_analytics_member_tags_tag', ['tag'], unique=False)

    op.create_table('analytics_reviews',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('period', sa.String(length=16), nullable=False),
    sa.Column('period_start', sa.Date(), nullable=False),
    sa.Column('period_end', sa.Date(), nullable=False),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.CheckConstraint("period IN ('month','quarter','half_year')", name=op.f('ck_analytics_reviews_period')),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_analytics_reviews_created_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_analytics_reviews')),
    sa.UniqueConstraint('period', 'period_start', name='uq_analytics_reviews_period_start')
    )
    op.create_table('analytics_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('stats', sa.JSON(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('requested_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('started_at', sa.DateTime(), nullable=True),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.CheckConstraint("kind IN ('scores','segments','kpis','assign')", name=op.f('ck_analytics_runs_kind')),
    sa.CheckConstraint("status IN ('queued','running','done','failed')", name=op.f('ck_analytics_runs_status')),
    sa.ForeignKeyConstraint(['requested_by_id'], ['users.id'], name=op.f('fk_analytics_runs_requested_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_analytics_runs'))
    )
    op.create_table('analytics_segments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('definition', sa.JSON(), nullable=False),
    sa.Column('member_count', sa.Integer(), nullable=False),
    sa.Column('materialised_at', sa.DateTime(), nullable=True),
    sa.Column('archived', sa.Boolean(), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_analytics_segments_created_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_analytics_segments')),
    sa.UniqueConstraint('name', name=op.f('uq_analytics_segments_name'))
    )
    op.create_table('analytics_settings',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('settings', sa.JSON(), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_analytics_settings_created_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_analytics_settings')),
    sa.UniqueConstraint('version', name=op.f('uq_analytics_settings_version'))
    )
    op.create_table('analytics_experiments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('salt', sa.String(length=64), nullable=False),
    sa.Column('test_share_bp', sa.Integer(), nullable=False),
    sa.Column('stratify_by', sa.String(length=16), nullable=True),
    sa.Column('campaign_id', sa.Integer(), nullable=True),
    sa.Column('reward_id', sa.Integer(), nullable=True),
    sa.Column('segment_id', sa.Integer(), nullable=True),
    sa.Column('starts_at', sa.DateTime(), nullable=False),
    sa.Column('ends_at', sa.DateTime(), nullable=True),
    sa.Column('pre_days', sa.Integer(), nullable=False),
    sa.Column('started_at', sa.DateTime(), nullable=True),
    sa.Column('stopped_at', sa.DateTime(), nullable=True),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.CheckConstraint("kind IN ('holdout','campaign','reward','touch')", name=op.f('ck_analytics_experiments_kind')),
    sa.CheckConstraint("status IN ('draft','running','stopped')", name=op.f('ck_analytics_experiments_status')),
    sa.CheckConstraint("stratify_by IS NULL OR stratify_by IN ('tier','rfm_class')", name=op.f('ck_analytics_experiments_stratify_by')),
    sa.CheckConstraint('pre_days BETWEEN 1 AND 730', name=op.f('ck_analytics_experiments_pre_days')),
    sa.CheckConstraint('test_share_bp BETWEEN 1 AND 9999', name=op.f('ck_analytics_experiments_share')),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_analytics_experiments_created_by_id_users')),
    sa.ForeignKeyConstraint(['segment_id'], ['analytics_segments.id'], name=op.f('fk_analytics_experiments_segment_id_analytics_segments'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_analytics_experiments')),
    sa.UniqueConstraint('name', name=op.f('uq_analytics_experiments_name'))
    )
    op.create_table('analytics_segment_members',
    sa.Column('segment_id', sa.Integer(), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['users.id'], name=op.f('fk_analytics_segment_members_member_id_users'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['segment_id'], ['analytics_segments.id'], name=op.f('fk_analytics_segment_members_segment_id_analytics_segments'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('segment_id', 'member_id', name=op.f('pk_analytics_segment_members'))
    )
    with op.batch_alter_table('analytics_segment_members', schema=None) as batch_op:
        batch_op.create_index('ix_analytics_segment_members_member', ['member_id'], unique=False)

    op.create_table('rfm_class_changes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('from_class', sa.String(length=16), nullable=True),
    sa.Column('to_class', sa.String(length=16), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=True),
    sa.Column('changed_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['users.id'], name=op.f('fk_rfm_class_changes_member_id_users'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['run_id'], ['analytics_runs.id'], name=op.f('fk_rfm_class_changes_run_id_analytics_runs'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rfm_class_changes'))
    )
    with op.batch_alter_table('rfm_class_changes', schema=None) as batch_op:
        batch_op.create_index('ix_rfm_class_changes_changed_at', ['changed_at'], unique=False)
        batch_op.create_index('ix_rfm_class_changes_member_changed', ['member_id', 'changed_at'], unique=False)

    op.create_table('analytics_experiment_assignments',
    sa.Column('experiment_id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('member_id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('arm', sa.String(length=8), nullable=False),
    sa.Column('stratum', sa.String(length=32), nullable=True),
    sa.Column('bucket', sa.BigInteger(), nullable=False),
    sa.Column('assigned_at', sa.DateTime(), nullable=False),
    sa.CheckConstraint("arm IN ('test','control')", name=op.f('ck_analytics_experiment_assignments_arm')),
    sa.PrimaryKeyConstraint('experiment_id', 'member_id', name=op.f('pk_analytics_experiment_assignments'))
    )
    with op.batch_alter_table('analytics_experiment_assignments', schema=None) as batch_op:
        batch_op.create_index('ix_analytics_experiment_assignments_member', ['member_id', 'experiment_id'], unique=False)



def downgrade():
    with op.batch_alter_table('analytics_experiment_assignments', schema=None) as batch_op:
        batch_op.drop_index('ix_analytics_experiment_assignments_member')

    op.drop_table('analytics_experiment_assignments')
    with op.batch_alter_table('rfm_class_changes', schema=None) as batch_op:
        batch_op.drop_index('ix_rfm_class_changes_member_changed')
        batch_op.drop_index('ix_rfm_class_changes_changed_at')

    op.drop_table('rfm_class_changes')
    with op.batch_alter_table('analytics_segment_members', schema=None) as batch_op:
        batch_op.drop_index('ix_analytics_segment_members_member')

    op.drop_table('analytics_segment_members')
    op.drop_table('analytics_experiments')
    op.drop_table('analytics_settings')
    op.drop_table('analytics_segments')
    op.drop_table('analytics_runs')
    op.drop_table('analytics_reviews')
    with op.batch_alter_table('analytics_member_tags', schema=None) as batch_op:
        batch_op.drop_index('ix_analytics_member_tags_tag')

    op.drop_table('analytics_member_tags')
    op.drop_table('analytics_member_flags')
    with op.batch_alter_table('member_scores', schema=None) as batch_op:
        batch_op.drop_index('ix_member_scores_rfm_class')
        batch_op.drop_index('ix_member_scores_health')

    op.drop_table('member_scores')
    op.drop_table('kpi_days')
    with op.batch_alter_table('kpi_daily', schema=None) as batch_op:
        batch_op.drop_index('ix_kpi_daily_metric_dim_day')

    op.drop_table('kpi_daily')
    op.drop_table('analytics_score_scratch')
