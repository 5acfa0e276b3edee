"""merge the domain branches into one head

Revision ID: 0100_merge_heads
Revises: forums_0001, points_0001, rewards_0001, surveys_0001, tiers_0002
Create Date: 2026-11-23 15:40:00

Every domain's migrations branch off ``0001_foundation``; this joins them so a plain
``flask db upgrade`` has a single head.  ``upgrade heads`` keeps working when a domain adds a
revision after this one (on top of its own latest revision or of this merge).
"""

revision = "0100_merge_heads"
down_revision = ("forums_0001", "points_0001", "rewards_0001", "surveys_0001", "tiers_0002")
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
