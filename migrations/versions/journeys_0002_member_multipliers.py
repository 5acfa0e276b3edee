"""points: per-member earning multipliers (``points_member_multipliers``), for journeys' multiplier step

A points table (``points.models.MemberMultiplier``), on the journeys branch because journeys'
``points_multiplier`` action is what grants them; it needs only ``users``.

Revision ID: journeys_0002
Revises: journeys_0001
Create Date: 2026-12-01 16:45:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'journeys_0002'
down_revision = 'journeys_0001'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('points_member_multipliers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('multiplier', sa.Numeric(precision=6, scale=3), nullable=False),
    sa.Column('starts_at', sa.DateTime(), nullable=False),
    sa.Column('ends_at', sa.DateTime(), nullable=False),
    sa.Column('kinds', sa.JSON(), nullable=True),
    sa.Column('key', sa.String(length=190), nullable=False),
    sa.Column('source_type', sa.String(length=32), nullable=False),
    sa.Column('source_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.CheckConstraint('ends_at > starts_at', name=op.f('ck_points_member_multipliers_window')),
    sa.CheckConstraint('multiplier >= 1', name=op.f('ck_points_member_multipliers_multiplier_min')),
    sa.ForeignKeyConstraint(['member_id'], ['users.id'], name=op.f('fk_points_member_multipliers_member_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_points_member_multipliers')),
    sa.UniqueConstraint('key', name=op.f('uq_points_member_multipliers_key'))
    )
    with op.batch_alter_table('points_member_multipliers', schema=None) as batch_op:
        batch_op.create_index('ix_points_member_multipliers_member', ['member_id', 'ends_at'], unique=False)


def downgrade():
    with op.batch_alter_table('points_member_multipliers', schema=None) as batch_op:
        batch_op.drop_index('ix_points_member_multipliers_member')

    op.drop_table('points_member_multipliers')
