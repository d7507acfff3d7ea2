"""mail summaries: what FETCH and SEARCH need of a message, kept across restarts

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 18:00:00.000000

A new table only; existing index rows get their summaries lazily, the first
time a client asks for them (``imap.message_cache``).
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mail_summary",
        sa.Column("folder_id", sa.Integer(), nullable=False),
        sa.Column("uid", sa.BigInteger(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["folder_id", "uid"],
            ["mail_message.folder_id", "mail_message.uid"],
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("folder_id", "uid"),
    )


def downgrade() -> None:
    op.drop_table("mail_summary")
