"""outbound queue: per-recipient state, due-row index, domain auth policy

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 10:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

import storage.models

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbound_recipient",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(length=256), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_reply", sa.Text(), nullable=True),
        sa.Column("remote_mta", sa.String(length=255), nullable=True),
        sa.Column("updated_at", storage.models.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["message_id"], ["outbound_message.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("message_id", "address"),
    )
    op.create_index("ix_outbound_recipient_message_id", "outbound_recipient", ["message_id"])
    op.create_index(
        "ix_outbound_message_state_due", "outbound_message", ["state", "next_attempt_at"]
    )
    op.create_table(
        "domain_auth_policy",
        sa.Column("domain_id", sa.Integer(), nullable=False),
        sa.Column("dmarc_reject", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["domain_id"], ["domain.id"]),
        sa.PrimaryKeyConstraint("domain_id"),
    )


def downgrade() -> None:
    op.drop_table("domain_auth_policy")
    op.drop_index("ix_outbound_message_state_due", table_name="outbound_message")
    op.drop_index("ix_outbound_recipient_message_id", table_name="outbound_recipient")
    op.drop_table("outbound_recipient")
