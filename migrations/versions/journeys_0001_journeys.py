"""journeys: journeys, versions, enrolments, step executions, tasks, templates; member-date indexes

Revision ID: journeys_0001
Revises: 0001_foundation
Create Date: 2026-12-01 12:40:57.358468

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'journeys_0001'
down_revision = '0001_foundation'
branch_labels = ('journeys',)
# member_scores (an index on last_activity_at) is analytics'.
depends_on = ('analytics_0001',)


def upgrade():
    op.create_table('journey_templates',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('category', sa.String(length=32), nullable=False),
    sa.Column('subject', sa.JSON(), nullable=False),
    sa.Column('body', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.CheckConstraint("category IN ('points_redemptions','tiers','community','research','marketing')", name=op.f('ck_journey_templates_category')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_journey_templates')),
    sa.UniqueConstraint('key', name=op.f('uq_journey_templates_key'))
    )
    op.create_table('journeys',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('current_version_id', sa.Integer(), nullable=True),
    sa.Column('holdout_share_bp', sa.Integer(), nullable=False),
    sa.Column('experiment_id', sa.Integer(), nullable=True),
    sa.Column('scanned_on', sa.Date(), nullable=True),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.CheckConstraint("status IN ('draft','active','paused','archived')", name=op.f('ck_journeys_status')),
    sa.CheckConstraint('holdout_share_bp BETWEEN 0 AND 5000', name=op.f('ck_journeys_holdout_share')),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_journeys_created_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_journeys')),
    sa.UniqueConstraint('name', name=op.f('uq_journeys_name'))
    )
    op.create_table('journey_versions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('journey_id', sa.Integer(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('trigger', sa.JSON(), nullable=False),
    sa.Column('audience', sa.JSON(), nullable=False),
    sa.Column('entry', sa.JSON(), nullable=False),
    sa.Column('goal', sa.JSON(), nullable=True),
    sa.Column('steps', sa.JSON(), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_journey_versions_created_by_id_users')),
    sa.ForeignKeyConstraint(['journey_id'], ['journeys.id'], name=op.f('fk_journey_versions_journey_id_journeys'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_journey_versions')),
    sa.UniqueConstraint('journey_id', 'number', name=op.f('uq_journey_versions_journey_id_number'))
    )
    op.create_table('journey_enrolments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('journey_id', sa.Integer(), nullable=False),
    sa.Column('version_id', sa.Integer(), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('occurrence', sa.String(length=64), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('arm', sa.String(length=8), nullable=True),
    sa.Column('current_step', sa.String(length=40), nullable=True),
    sa.Column('wait_until', sa.DateTime(), nullable=True),
    sa.Column('next_run_at', sa.DateTime(), nullable=True),
    sa.Column('enqueued_at', sa.DateTime(), nullable=True),
    sa.Column('entered_at', sa.DateTime(), nullable=False),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.Column('converted_at', sa.DateTime(), nullable=True),
    sa.CheckConstraint("arm IS NULL OR arm IN ('test','holdout')", name=op.f('ck_journey_enrolments_arm')),
    sa.CheckConstraint("state IN ('active','done','exited')", name=op.f('ck_journey_enrolments_state')),
    sa.ForeignKeyConstraint(['journey_id'], ['journeys.id'], name=op.f('fk_journey_enrolments_journey_id_journeys'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['member_id'], ['users.id'], name=op.f('fk_journey_enrolments_member_id_users'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['version_id'], ['journey_versions.id'], name=op.f('fk_journey_enrolments_version_id_journey_versions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_journey_enrolments')),
    sa.UniqueConstraint('journey_id', 'member_id', 'occurrence', name=op.f('uq_journey_enrolments_journey_id_member_id_occurrence'))
    )
    with op.batch_alter_table('journey_enrolments', schema=None) as batch_op:
        batch_op.create_index('ix_journey_enrolments_due', ['next_run_at'], unique=False, postgresql_where=sa.text("state = 'active'"), sqlite_where=sa.text("state = 'active'"))
        batch_op.create_index('ix_journey_enrolments_journey_state', ['journey_id', 'state'], unique=False)
        batch_op.create_index('ix_journey_enrolments_member', ['member_id', 'journey_id'], unique=False)

    op.create_table('journey_step_executions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('journey_id', sa.Integer(), nullable=False),
    sa.Column('version_id', sa.Integer(), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('occurrence', sa.String(length=64), nullable=False),
    sa.Column('step_id', sa.String(length=40), nullable=False),
    sa.Column('enrolment_id', sa.Integer(), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.String(length=32), nullable=True),
    sa.Column('notification_id', sa.Integer(), nullable=True),
    sa.Column('entry_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.CheckConstraint("outcome IN ('done','sent','skipped','failed')", name=op.f('ck_journey_step_executions_outcome')),
    sa.ForeignKeyConstraint(['enrolment_id'], ['journey_enrolments.id'], name=op.f('fk_journey_step_executions_enrolment_id_journey_enrolments'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['journey_id'], ['journeys.id'], name=op.f('fk_journey_step_executions_journey_id_journeys'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['member_id'], ['users.id'], name=op.f('fk_journey_step_executions_member_id_users'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['version_id'], ['journey_versions.id'], name=op.f('fk_journey_step_executions_version_id_journey_versions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_journey_step_executions')),
    sa.UniqueConstraint('version_id', 'member_id', 'occurrence', 'step_id', name='uq_journey_step_once')
    )
    with op.batch_alter_table('journey_step_executions', schema=None) as batch_op:
        batch_op.create_index('ix_journey_step_executions_stats', ['journey_id', 'step_id', 'outcome'], unique=False)

    op.create_table('journey_tasks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('journey_id', sa.Integer(), nullable=False),
    sa.Column('enrolment_id', sa.Integer(), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('done_at', sa.DateTime(), nullable=True),
    sa.Column('done_by_id', sa.Integer(), nullable=True),
    sa.CheckConstraint("status IN ('open','done')", name=op.f('ck_journey_tasks_status')),
    sa.ForeignKeyConstraint(['done_by_id'], ['users.id'], name=op.f('fk_journey_tasks_done_by_id_users')),
    sa.ForeignKeyConstraint(['enrolment_id'], ['journey_enrolments.id'], name=op.f('fk_journey_tasks_enrolment_id_journey_enrolments'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['journey_id'], ['journeys.id'], name=op.f('fk_journey_tasks_journey_id_journeys'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['member_id'], ['users.id'], name=op.f('fk_journey_tasks_member_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_journey_tasks'))
    )
    with op.batch_alter_table('journey_tasks', schema=None) as batch_op:
        batch_op.create_index('ix_journey_tasks_status', ['status', 'id'], unique=False)

    with op.batch_alter_table('member_scores', schema=None) as batch_op:
        batch_op.create_index('ix_member_scores_last_activity', ['last_activity_at'], unique=False)

    op.add_column('users', sa.Column('renewal_on', sa.Date(), nullable=True))
    op.create_index('ix_users_renewal_on', 'users', ['renewal_on'], unique=False)
    # Expression indexes (compiled per dialect exactly as the schedule queries write them).
    birthday, created_at = sa.column('birthday', sa.Date()), sa.column('created_at', sa.DateTime())
    op.create_index('ix_users_birthday_md', 'users', [sa.extract('month', birthday), sa.extract('day', birthday)])
    op.create_index('ix_users_signup_md', 'users', [sa.extract('month', created_at), sa.extract('day', created_at)])



def downgrade():
    op.drop_index('ix_users_signup_md', table_name='users')
    op.drop_index('ix_users_birthday_md', table_name='users')
    op.drop_index('ix_users_renewal_on', table_name='users')
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('renewal_on')

    with op.batch_alter_table('member_scores', schema=None) as batch_op:
        batch_op.drop_index('ix_member_scores_last_activity')

    with op.batch_alter_table('journey_tasks', schema=None) as batch_op:
        batch_op.drop_index('ix_journey_tasks_status')

    op.drop_table('journey_tasks')
    with op.batch_alter_table('journey_step_executions', schema=None) as batch_op:
        batch_op.drop_index('ix_journey_step_executions_stats')

    op.drop_table('journey_step_executions')
    with op.batch_alter_table('journey_enrolments', schema=None) as batch_op:
        batch_op.drop_index('ix_journey_enrolments_member')
        batch_op.drop_index('ix_journey_enrolments_journey_state')
        batch_op.drop_index('ix_journey_enrolments_due', postgresql_where=sa.text("state = 'active'"), sqlite_where=sa.text("state = 'active'"))

    op.drop_table('journey_enrolments')
    op.drop_table('journey_versions')
    op.drop_table('journeys')
    op.drop_table('journey_templates')
