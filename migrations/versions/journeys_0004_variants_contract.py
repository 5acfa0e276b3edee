"""journeys: the A/B variant a send step chose (``journey_step_executions.variant``); the member's contract date

* ``journey_step_executions.variant`` (nullable): the id of the variant a ``send`` step with
  ``variants`` sent (or skipped) for the member; NULL for plain sends, other steps and the
  journey's holdout arm.
* ``users.contract_on`` (nullable date): the start of the member's contract, separate from
  ``renewal_on``; the ``contract_on`` date trigger fires on its yearly anniversary, found through
  the month/day expression index ``ix_users_contract_md`` (as birthdays are).

Revision ID: journeys_0004
Revises: journeys_0003
Create Date: 2026-12-02 00:50:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'journeys_0004'
down_revision = 'journeys_0003'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('journey_step_executions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('variant', sa.String(length=40), nullable=True))
    op.add_column('users', sa.Column('contract_on', sa.Date(), nullable=True))
    # Compiled per dialect exactly as the schedule query writes it (see journeys_0001).
    contract_on = sa.column('contract_on', sa.Date())
    op.create_index('ix_users_contract_md', 'users',
                    [sa.extract('month', contract_on), sa.extract('day', contract_on)])


def downgrade():
    op.drop_index('ix_users_contract_md', table_name='users')
    if op.get_bind().dialect.name == 'sqlite':
        # Not a batch (table copy): it would lose the expression indexes journeys_0001 made on
        # users (reflection skips them).  SQLite drops a column in place since 3.35.
        op.execute('ALTER TABLE users DROP COLUMN contract_on')
    else:
        op.drop_column('users', 'contract_on')
    with op.batch_alter_table('journey_step_executions', schema=None) as batch_op:
        batch_op.drop_column('variant')
