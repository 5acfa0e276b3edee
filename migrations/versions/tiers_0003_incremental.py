"""tiers: incremental daily runs (run mode, changed-members scratch table, history indexes)

Revision ID: tiers_0003
Revises: 0100_merge_heads
Create Date: 2026-11-23 16:10:00

The indexes on ``journal_entries.created_at``, ``interactions.occurred_at`` and
``interactions.created_at`` let the daily tier run find the members whose history changed or
crossed the window's edges without reading the whole history.  On a large PostgreSQL
installation, build them beforehand with ``CREATE INDEX CONCURRENTLY`` under the same names
(this revision then skips them) to avoid blocking writes while they build.  The same goes for
the two member indexes this revision rebuilds with INCLUDE columns (index-only scans for the
members a daily run re-aggregates) and the partial index on reversals.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'tiers_0003'
down_revision = '0100_merge_heads'
branch_labels = None
depends_on = None

INDEXES = (
    ('ix_journal_entries_created_at', 'journal_entries', ['created_at']),
    ('ix_interactions_occurred_at', 'interactions', ['occurred_at']),
    ('ix_interactions_created_at', 'interactions', ['created_at']),
)


# PostgreSQL: the member indexes also carry the columns the tier run reads (index-only scans).
COVERING = (
    ('ix_journal_entries_member_id_id', 'journal_entries', ['member_id', 'id'], ['kind', 'amount', 'created_at']),
    ('ix_interactions_member_kind_occurred', 'interactions', ['member_id', 'kind', 'occurred_at'],
     ['value', 'entry_id']),
)


def upgrade():
    indexes = {ix['name']: ix for table in ('journal_entries', 'interactions')
               for ix in sa.inspect(op.get_bind()).get_indexes(table)}
    existing = set(indexes)
    for name, table, columns in INDEXES:
        if name not in existing:
            op.create_index(name, table, columns, unique=False)
    if 'ix_journal_entries_reversal' not in existing:
        op.create_index('ix_journal_entries_reversal', 'journal_entries', ['related_id'], unique=False,
                        postgresql_where=sa.text("kind = 'reversal'"), sqlite_where=sa.text("kind = 'reversal'"))
    if op.get_bind().dialect.name == 'postgresql':
        for name, table, columns, include in COVERING:
            if indexes.get(name, {}).get('dialect_options', {}).get('postgresql_include'):
                continue  # already rebuilt with its INCLUDE columns
            op.drop_index(name, table_name=table)
            op.create_index(name, table, columns, unique=False, postgresql_include=include)
    op.create_table('tier_dirty_members',
    sa.Column('member_id', sa.Integer(), autoincrement=False, nullable=False),
    sa.PrimaryKeyConstraint('member_id', name=op.f('pk_tier_dirty_members'))
    )
    if op.get_bind().dialect.name == 'postgresql':
        # Scratch data rebuilt by every incremental run: no need to write it to the WAL.
        op.execute('ALTER TABLE tier_dirty_members SET UNLOGGED')
    with op.batch_alter_table('tier_runs') as batch:
        batch.add_column(sa.Column('mode', sa.String(length=16), nullable=False, server_default='full'))
        batch.create_check_constraint(op.f('ck_tier_runs_mode'), "mode IN ('full','incremental')")
    with op.batch_alter_table('tier_runs') as batch:
        batch.alter_column('mode', server_default=None)


def downgrade():
    with op.batch_alter_table('tier_runs') as batch:
        batch.drop_constraint(op.f('ck_tier_runs_mode'), type_='check')
        batch.drop_column('mode')
    op.drop_table('tier_dirty_members')
    if op.get_bind().dialect.name == 'postgresql':
        for name, table, columns, _ in COVERING:
            op.drop_index(name, table_name=table)
            op.create_index(name, table, columns, unique=False)
    op.drop_index('ix_journal_entries_reversal', table_name='journal_entries')
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
