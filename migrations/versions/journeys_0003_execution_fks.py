"""journeys: a step execution references its enrolment only (the three redundant FKs dropped)

Every ``journey_step_executions`` row belongs to an enrolment (``enrolment_id``, NOT NULL, FK
with ``ON DELETE CASCADE``), and that enrolment references the same journey, version and member
with ``ON DELETE CASCADE``.  The execution's own FKs to ``journeys``, ``journey_versions`` and
``users`` add nothing to integrity or to deletion (a deleted member, journey or version removes
the enrolments, which remove their executions) but cost three key-share look-ups per row
written, two rows per member a wave advances.  The columns stay (the UNIQUE exactly-once key
and the stats index use them).

Revision ID: journeys_0003
Revises: journeys_0002
Create Date: 2026-12-01 21:00:00

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = 'journeys_0003'
down_revision = 'journeys_0002'
branch_labels = None
depends_on = None

_FKS = (
    ('fk_journey_step_executions_journey_id_journeys', 'journeys', 'journey_id'),
    ('fk_journey_step_executions_member_id_users', 'users', 'member_id'),
    ('fk_journey_step_executions_version_id_journey_versions', 'journey_versions', 'version_id'),
)


def upgrade():
    with op.batch_alter_table('journey_step_executions', schema=None) as batch_op:
        for name, _table, _column in _FKS:
            batch_op.drop_constraint(name, type_='foreignkey')


def downgrade():
    with op.batch_alter_table('journey_step_executions', schema=None) as batch_op:
        for name, table, column in _FKS:
            batch_op.create_foreign_key(name, table, [column], ['id'], ondelete='CASCADE')
