"""messaging: preferences, deliveries, unsubscribes, account tokens

Revision ID: messaging_0001
Revises: 0001_foundation
Create Date: 2026-12-01 09:26:07.489612

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'messaging_0001'
down_revision = '0001_foundation'
branch_labels = ('messaging',)
depends_on = None


def upgrade():
    op.create_table('account_tokens',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('purpose', sa.String(length=16), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.Column('used_at', sa.DateTime(), nullable=True),
    sa.CheckConstraint("purpose IN ('verify_email','change_email','reset_password')", name=op.f('ck_account_tokens_purpose')),
    sa.ForeignKeyConstraint(['member_id'], ['users.id'], name=op.f('fk_account_tokens_member_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_account_tokens')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_account_tokens_token_hash'))
    )
    with op.batch_alter_table('account_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_account_tokens_member_id'), ['member_id'], unique=False)

    op.create_table('member_preferences',
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('locale', sa.String(length=8), nullable=False),
    sa.Column('time_zone', sa.String(length=64), nullable=False),
    sa.Column('email_verified', sa.Boolean(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.CheckConstraint("locale IN ('en','zh-CN')", name=op.f('ck_member_preferences_locale')),
    sa.ForeignKeyConstraint(['member_id'], ['users.id'], name=op.f('fk_member_preferences_member_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('member_id', name=op.f('pk_member_preferences'))
    )
    op.create_table('notification_preferences',
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('category', sa.String(length=32), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.CheckConstraint("channel IN ('email','in_app')", name=op.f('ck_notification_preferences_channel')),
    sa.ForeignKeyConstraint(['member_id'], ['users.id'], name=op.f('fk_notification_preferences_member_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('member_id', 'category', 'channel', name=op.f('pk_notification_preferences'))
    )
    op.create_table('unsubscribes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('category', sa.String(length=32), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('delivery_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['users.id'], name=op.f('fk_unsubscribes_member_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_unsubscribes'))
    )
    with op.batch_alter_table('unsubscribes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_unsubscribes_member_id'), ['member_id'], unique=False)

    op.create_table('email_deliveries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('notification_id', sa.Integer(), nullable=True),
    sa.Column('kind', sa.String(length=64), nullable=False),
    sa.Column('category', sa.String(length=32), nullable=True),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('to_address', sa.String(length=254), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('message_id', sa.String(length=255), nullable=True),
    sa.Column('not_before', sa.DateTime(), nullable=False),
    sa.Column('reason', sa.String(length=32), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('locale', sa.String(length=8), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('claimed_at', sa.DateTime(), nullable=True),
    sa.Column('enqueued_at', sa.DateTime(), nullable=True),
    sa.Column('sent_at', sa.DateTime(), nullable=True),
    sa.CheckConstraint("state IN ('pending','sending','sent','failed','suppressed')", name=op.f('ck_email_deliveries_state')),
    sa.ForeignKeyConstraint(['member_id'], ['users.id'], name=op.f('fk_email_deliveries_member_id_users'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['notification_id'], ['notifications.id'], name=op.f('fk_email_deliveries_notification_id_notifications'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_email_deliveries')),
    sa.UniqueConstraint('message_id', name=op.f('uq_email_deliveries_message_id')),
    sa.UniqueConstraint('notification_id', name=op.f('uq_email_deliveries_notification_id'))
    )
    with op.batch_alter_table('email_deliveries', schema=None) as batch_op:
        batch_op.create_index('ix_email_deliveries_member_claimed', ['member_id', 'claimed_at'], unique=False)
        batch_op.create_index('ix_email_deliveries_state_not_before', ['state', 'not_before'], unique=False)



def downgrade():
    with op.batch_alter_table('email_deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_email_deliveries_state_not_before')
        batch_op.drop_index('ix_email_deliveries_member_claimed')

    op.drop_table('email_deliveries')
    with op.batch_alter_table('unsubscribes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_unsubscribes_member_id'))

    op.drop_table('unsubscribes')
    op.drop_table('notification_preferences')
    op.drop_table('member_preferences')
    with op.batch_alter_table('account_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_account_tokens_member_id'))

    op.drop_table('account_tokens')
