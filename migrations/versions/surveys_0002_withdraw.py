"""surveys: members withdraw a completed response (``survey_withdrawals``)

Revision ID: surveys_0002
Revises: rewards_0002
Create Date: 2026-11-24 10:00:00

A withdrawal deletes the response and its answers (so results, the quota counter and the
one-response-per-member constraint need no change) and records one ``survey_withdrawals`` row:
at most one per member and survey.  Only a new table, so plain DDL on SQLite and PostgreSQL.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'surveys_0002'
down_revision = 'rewards_0002'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('survey_withdrawals',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('survey_id', sa.Integer(), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('response_id', sa.Integer(), nullable=False),
    sa.Column('completed_at', sa.DateTime(), nullable=True),
    sa.Column('withdrawn_at', sa.DateTime(), nullable=False),
    sa.Column('points_reversed', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['users.id'], name=op.f('fk_survey_withdrawals_member_id_users'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['survey_id'], ['surveys.id'], name=op.f('fk_survey_withdrawals_survey_id_surveys'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_survey_withdrawals')),
    sa.UniqueConstraint('response_id', name=op.f('uq_survey_withdrawals_response_id')),
    sa.UniqueConstraint('survey_id', 'member_id', name=op.f('uq_survey_withdrawals_survey_id_member_id')),
    )
    op.create_index(op.f('ix_survey_withdrawals_member_id'), 'survey_withdrawals', ['member_id'], unique=False)


def downgrade():
    op.drop_index(op.f('ix_survey_withdrawals_member_id'), table_name='survey_withdrawals')
    op.drop_table('survey_withdrawals')
