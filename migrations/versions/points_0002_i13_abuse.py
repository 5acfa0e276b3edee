"""abuse-proofing (#13): look-alike emails, birthday age, clawback debt, referral conversions,
four-eyes pending awards

Revision ID: points_0002_i13_abuse
Revises: surveys_0003_i11_result_counts
Create Date: 2026-12-01 09:30:00

* ``users.email_skeleton`` (unique): what an address looks like, so ``аlice@`` (Cyrillic) cannot
  register next to ``alice@``; existing rows are backfilled.  ``users.birthday_set_at``: birthday
  campaigns ignore a birthday set only just now.
* ``member_balances.owed``: points a reversal could not take back because they were spent.
* ``referrals.conversion_interaction_id``: the purchase that converted the referral.
* ``points_pending_awards``: awards waiting for a second staff member.

Only new columns (nullable or with a server default), a new index and a new table: plain DDL
on SQLite and PostgreSQL.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'points_0002_i13_abuse'
down_revision = 'surveys_0003_i11_result_counts'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('users', sa.Column('email_skeleton', sa.String(length=254), nullable=True))
    op.add_column('users', sa.Column('birthday_set_at', sa.DateTime(), nullable=True))
    from security.text import skeleton

    conn = op.get_bind()
    users = sa.table('users', sa.column('id', sa.Integer), sa.column('email', sa.String),
                     sa.column('email_skeleton', sa.String))
    seen = set()
    for user_id, email in conn.execute(sa.select(users.c.id, users.c.email).order_by(users.c.id)).all():
        look = skeleton(email)
        # Existing look-alike pairs stay (the later one without a skeleton); new ones are refused.
        if look not in seen:
            seen.add(look)
            conn.execute(users.update().where(users.c.id == user_id).values(email_skeleton=look))
    op.create_index('ix_users_email_skeleton', 'users', ['email_skeleton'], unique=True)
    op.add_column('member_balances', sa.Column('owed', sa.BigInteger(), server_default='0', nullable=False))
    op.add_column('referrals', sa.Column('conversion_interaction_id', sa.BigInteger(), nullable=True))
    op.create_table('points_pending_awards',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('points', sa.BigInteger(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('request', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('requested_by_id', sa.Integer(), nullable=True),
    sa.Column('decided_by_id', sa.Integer(), nullable=True),
    sa.Column('decided_at', sa.DateTime(), nullable=True),
    sa.Column('decision_reason', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.CheckConstraint("kind IN ('interaction','adjustment')", name=op.f('ck_points_pending_awards_kind')),
    sa.CheckConstraint("status IN ('pending','approved','rejected')", name=op.f('ck_points_pending_awards_status')),
    sa.ForeignKeyConstraint(['decided_by_id'], ['users.id'], name=op.f('fk_points_pending_awards_decided_by_id_users')),
    sa.ForeignKeyConstraint(['member_id'], ['users.id'], name=op.f('fk_points_pending_awards_member_id_users'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['requested_by_id'], ['users.id'], name=op.f('fk_points_pending_awards_requested_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_points_pending_awards')),
    sa.UniqueConstraint('key', name=op.f('uq_points_pending_awards_key')),
    )
    op.create_index(op.f('ix_points_pending_awards_member_id'), 'points_pending_awards', ['member_id'], unique=False)
    op.create_index('ix_points_pending_awards_status', 'points_pending_awards', ['status', 'id'], unique=False)


def downgrade():
    op.drop_index('ix_points_pending_awards_status', table_name='points_pending_awards')
    op.drop_index(op.f('ix_points_pending_awards_member_id'), table_name='points_pending_awards')
    op.drop_table('points_pending_awards')
    with op.batch_alter_table('referrals') as batch_op:
        batch_op.drop_column('conversion_interaction_id')
    with op.batch_alter_table('member_balances') as batch_op:
        batch_op.drop_column('owed')
    op.drop_index('ix_users_email_skeleton', table_name='users')
    with op.batch_alter_table('users') as batch_op:
        batch_op.drop_column('birthday_set_at')
        batch_op.drop_column('email_skeleton')
