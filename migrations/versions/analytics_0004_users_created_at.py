"""analytics: an index on users.created_at (the KPI day build's new-member count)

Revision ID: analytics_0004
Revises: analytics_0003_i15
Create Date: 2026-12-02 01:30:00

``build_day`` counts the members who signed up that day; without an index on the sign-up time
that was a sequential scan of every member (twice: new members and the community figures), about
a fifth of a day's build at 100,000 members.
"""
from alembic import op


# revision identifiers, used by Alembic.
revision = 'analytics_0004'
down_revision = 'analytics_0003_i15'
branch_labels = None
depends_on = None


def upgrade():
    op.create_index('ix_users_created_at', 'users', ['created_at'], unique=False)


def downgrade():
    op.drop_index('ix_users_created_at', table_name='users')
