"""rewards: job status ``skipped`` (the redemption left ``pending`` before any attempt ran)

Revision ID: rewards_0003_i11_job_skipped
Revises: surveys_0002
Create Date: 2026-12-01 09:45:00

A redemption accepted while Redis was down has no job until the sweeper's next run; cancelled
(or rejected) before that, its ``redemption_jobs`` row said ``queued`` with 0 attempts forever.
The sweeper now settles such rows as ``skipped``; this widens the CHECK constraint for it.

``redemption_jobs`` is a leaf table (nothing references it), so SQLite's batch rebuild (copy,
drop, rename) needs no foreign-key dance.  The downgrade turns ``skipped`` back into ``queued``.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'rewards_0003_i11_job_skipped'
down_revision = 'surveys_0002'
branch_labels = None
depends_on = None

OLD_STATUSES = ('queued', 'running', 'succeeded', 'error')
NEW_STATUSES = OLD_STATUSES + ('skipped',)


def _in(statuses) -> str:
    return "status IN (" + ",".join(f"'{s}'" for s in statuses) + ")"


def upgrade():
    with op.batch_alter_table('redemption_jobs') as batch:
        batch.drop_constraint(op.f('ck_redemption_jobs_status'), type_='check')
        batch.create_check_constraint(op.f('ck_redemption_jobs_status'), _in(NEW_STATUSES))


def downgrade():
    op.get_bind().execute(sa.text("UPDATE redemption_jobs SET status = 'queued' WHERE status = 'skipped'"))
    with op.batch_alter_table('redemption_jobs') as batch:
        batch.drop_constraint(op.f('ck_redemption_jobs_status'), type_='check')
        batch.create_check_constraint(op.f('ck_redemption_jobs_status'), _in(OLD_STATUSES))
