"""rewards: refunds (state ``refunded``, ``redemptions.refund_reason``)

Revision ID: rewards_0002
Revises: tiers_0003
Create Date: 2026-11-23 17:30:00

Widens the CHECK constraint on ``redemptions.state`` and adds the staff's refund reason.

On SQLite, batch mode rebuilds ``redemptions`` (create a copy, copy the rows, drop the old
table, rename the copy).  The app turns foreign keys on for every connection, and with them on
the drop would first delete every row: cascading to ``redemption_transitions`` and
``redemption_jobs`` and failing on ``reward_codes``.  SQLite only accepts ``PRAGMA foreign_keys``
outside a transaction, so the rebuild runs in a transaction of its own with foreign keys off (its
own commit, after ``PRAGMA foreign_key_check`` finds every reference intact), as SQLite's
documented procedure for schema changes prescribes.  PostgreSQL just swaps the constraint.

The downgrade refuses while refunded redemptions exist: the old constraint cannot hold them, and
turning them into another state would misstate what happened to the member's points.
"""
from contextlib import contextmanager

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'rewards_0002'
down_revision = 'tiers_0003'
branch_labels = None
depends_on = None

OLD_STATES = ('pending', 'awaiting_fulfilment', 'approved', 'shipped', 'completed', 'fulfilled', 'cancelled',
              'rejected')
NEW_STATES = OLD_STATES + ('refunded',)


def _in(states) -> str:
    return "state IN (" + ",".join(f"'{s}'" for s in states) + ")"


@contextmanager
def _sqlite_rebuild():
    """SQLite: run the block in its own transaction with foreign keys off (see the module docstring)."""
    bind = op.get_bind()
    if bind.dialect.name != 'sqlite':
        yield
        return
    raw = bind.connection.driver_connection
    raw.commit()  # the revisions before this one (SQLite migrations are not atomic as a whole anyway)
    raw.execute('PRAGMA foreign_keys = OFF')
    raw.execute('BEGIN IMMEDIATE')
    try:
        yield
        broken = raw.execute('PRAGMA foreign_key_check').fetchall()
        if broken:
            raise RuntimeError(f'rebuilding redemptions broke foreign keys: {broken[:10]}')
        raw.commit()
    except BaseException:
        raw.rollback()
        raise
    finally:
        raw.execute('PRAGMA foreign_keys = ON')
        raw.execute('BEGIN IMMEDIATE')  # Alembic records the new version in this transaction


def upgrade():
    with _sqlite_rebuild(), op.batch_alter_table('redemptions') as batch:
        batch.drop_constraint(op.f('ck_redemptions_state'), type_='check')
        batch.create_check_constraint(op.f('ck_redemptions_state'), _in(NEW_STATES))
        batch.add_column(sa.Column('refund_reason', sa.Text(), nullable=True))


def downgrade():
    refunded = op.get_bind().execute(sa.text("SELECT count(*) FROM redemptions WHERE state = 'refunded'")).scalar()
    if refunded:
        raise RuntimeError(
            f'{refunded} redemption(s) are refunded, a state this schema version cannot hold; '
            'downgrading would misstate them'
        )
    with _sqlite_rebuild(), op.batch_alter_table('redemptions') as batch:
        batch.drop_column('refund_reason')
        batch.drop_constraint(op.f('ck_redemptions_state'), type_='check')
        batch.create_check_constraint(op.f('ck_redemptions_state'), _in(OLD_STATES))
