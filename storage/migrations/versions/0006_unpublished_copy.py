"""unpublished copies: deliveries on record whose rename may not be durable yet

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 21:00:00.000000

A new, normally near-empty table (``storage.publish``).
"""

import sqlalchemy as sa
from alembic import op

import storage.models

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "unpublished_copy",
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("node", sa.String(length=64), nullable=False),
        sa.Column("maildir", sa.String(length=1024), nullable=False),
        sa.Column("at", storage.models.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_index("ix_unpublished_copy_node", "unpublished_copy", ["node"])


def downgrade() -> None:
    op.drop_index("ix_unpublished_copy_node", table_name="unpublished_copy")
    op.drop_table("unpublished_copy")
