"""surveys: result tallies kept as answers arrive (``survey_result_counts``)

Revision ID: surveys_0003_i11_result_counts
Revises: rewards_0003_i11_job_skipped
Create Date: 2026-12-01 09:40:00

Results read these aggregates instead of scanning ``survey_answers`` (see
``surveys/results.py``).  The table is filled from the existing answers and responses here, with
the same statements as ``surveys.results.rebuild``.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'surveys_0003_i11_result_counts'
down_revision = 'rewards_0003_i11_job_skipped'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('survey_result_counts',
    sa.Column('survey_id', sa.Integer(), nullable=False),
    sa.Column('tier', sa.String(length=20), nullable=False),
    sa.Column('question_id', sa.String(length=64), nullable=False),
    sa.Column('row_key', sa.String(length=201), nullable=False),
    sa.Column('choice', sa.String(length=201), nullable=False),
    sa.Column('answers', sa.Integer(), nullable=False),
    sa.Column('number_count', sa.Integer(), nullable=False),
    sa.Column('number_sum', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['survey_id'], ['surveys.id'], name=op.f('fk_survey_result_counts_survey_id_surveys'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('survey_id', 'tier', 'question_id', 'row_key', 'choice', name=op.f('pk_survey_result_counts')),
    )
    op.execute(
        "INSERT INTO survey_result_counts "
        "(survey_id, tier, question_id, row_key, choice, answers, number_count, number_sum) "
        "SELECT survey_id, tier, question_id, COALESCE('=' || row_key, ''), COALESCE('=' || choice, ''), "
        "count(*), count(number), COALESCE(sum(number), 0.0) "
        "FROM survey_answers GROUP BY survey_id, tier, question_id, row_key, choice"
    )
    op.execute(
        "INSERT INTO survey_result_counts "
        "(survey_id, tier, question_id, row_key, choice, answers, number_count, number_sum) "
        "SELECT survey_id, member_tier, '', '', '', count(*), 0, 0.0 FROM survey_responses "
        "WHERE status = 'complete' AND member_tier IS NOT NULL GROUP BY survey_id, member_tier"
    )


def downgrade():
    op.drop_table('survey_result_counts')
