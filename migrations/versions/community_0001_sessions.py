"""community: cookie sessions in the database (``user_sessions``), looked up with the member

Until now a session id lived in Redis: a cookie request cost a Redis GET and then the member's
query.  The row is now read in the member's query itself (one indexed lookup, as for API
tokens), and sessions survive a Redis restart.  Sessions that lived in Redis are not carried
over: members log in again once after the upgrade.

Revision ID: community_0001
Revises: 0001_foundation
Create Date: 2026-12-01 21:10:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'community_0001'
down_revision = '0001_foundation'
branch_labels = ('community',)
depends_on = None


def upgrade():
    op.create_table('user_sessions',
    sa.Column('sid_hash', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_user_sessions_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('sid_hash', name=op.f('pk_user_sessions'))
    )
    with op.batch_alter_table('user_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_user_sessions_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_user_sessions_user_id'), ['user_id'], unique=False)


def downgrade():
    with op.batch_alter_table('user_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_user_sessions_user_id'))
        batch_op.drop_index(batch_op.f('ix_user_sessions_expires_at'))

    op.drop_table('user_sessions')
