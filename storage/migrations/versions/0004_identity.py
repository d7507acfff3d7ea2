"""identity lifecycle: invites, recovery codes and endpoints, resets, sessions, offboarding

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 14:39:47.195268

Only new tables (``storage.models_identity``); existing tables are unchanged.
"""

import sqlalchemy as sa
from alembic import op

import storage.models

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mailbox_deletion",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mailbox_id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(length=255), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("requested_by", sa.String(length=64), nullable=False),
        sa.Column("requested_at", storage.models.UTCDateTime(), nullable=False),
        sa.Column("purge_after", storage.models.UTCDateTime(), nullable=False),
        sa.Column("cancelled_by", sa.String(length=64), nullable=True),
        sa.Column("cancelled_at", storage.models.UTCDateTime(), nullable=True),
        sa.Column("purged_at", storage.models.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("mailbox_deletion", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_mailbox_deletion_mailbox_id"), ["mailbox_id"], unique=False
        )

    op.create_table(
        "mailbox_export",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mailbox_id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(length=255), nullable=False),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", storage.models.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "identity_policy",
        sa.Column("organization_id", sa.Integer(), nullable=False),
        sa.Column("invite_link_to_creator", sa.Boolean(), nullable=False),
        sa.Column("operator_totp_required", sa.Boolean(), nullable=False),
        sa.Column("updated_at", storage.models.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organization.id"],
        ),
        sa.PrimaryKeyConstraint("organization_id"),
    )
    op.create_table(
        "operator_session",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("operator_id", sa.Integer(), nullable=False),
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", storage.models.UTCDateTime(), nullable=False),
        sa.Column("expires_at", storage.models.UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", storage.models.UTCDateTime(), nullable=True),
        sa.Column("revoked_at", storage.models.UTCDateTime(), nullable=True),
        sa.Column("client", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["operator_id"],
            ["operator.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_sha256"),
    )
    with op.batch_alter_table("operator_session", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_operator_session_operator_id"), ["operator_id"], unique=False
        )

    op.create_table(
        "operator_setup_link",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("operator_id", sa.Integer(), nullable=False),
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", storage.models.UTCDateTime(), nullable=False),
        sa.Column("expires_at", storage.models.UTCDateTime(), nullable=False),
        sa.Column("used_at", storage.models.UTCDateTime(), nullable=True),
        sa.Column("revoked_at", storage.models.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["operator_id"],
            ["operator.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_sha256"),
    )
    with op.batch_alter_table("operator_setup_link", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_operator_setup_link_operator_id"), ["operator_id"], unique=False
        )

    op.create_table(
        "operator_totp",
        sa.Column("operator_id", sa.Integer(), nullable=False),
        sa.Column("secret_encrypted", sa.Text(), nullable=False),
        sa.Column("created_at", storage.models.UTCDateTime(), nullable=False),
        sa.Column("last_step", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["operator_id"],
            ["operator.id"],
        ),
        sa.PrimaryKeyConstraint("operator_id"),
    )
    op.create_table(
        "invite",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("domain_id", sa.Integer(), nullable=False),
        sa.Column("owner_person_id", sa.Integer(), nullable=False),
        sa.Column("suggested_local_part", sa.String(length=64), nullable=True),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", storage.models.UTCDateTime(), nullable=False),
        sa.Column("expires_at", storage.models.UTCDateTime(), nullable=False),
        sa.Column("used_at", storage.models.UTCDateTime(), nullable=True),
        sa.Column("revoked_at", storage.models.UTCDateTime(), nullable=True),
        sa.Column("mailbox_id", sa.Integer(), nullable=True),
        sa.Column("sent_to", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(
            ["domain_id"],
            ["domain.id"],
        ),
        sa.ForeignKeyConstraint(
            ["mailbox_id"],
            ["mailbox.id"],
        ),
        sa.ForeignKeyConstraint(
            ["owner_person_id"],
            ["person.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_sha256"),
    )
    with op.batch_alter_table("invite", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_invite_domain_id"), ["domain_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_invite_owner_person_id"), ["owner_person_id"], unique=False
        )

    op.create_table(
        "mailbox_credential",
        sa.Column("mailbox_id", sa.Integer(), nullable=False),
        sa.Column("password_changed_at", storage.models.UTCDateTime(), nullable=True),
        sa.Column("sessions_revoked_at", storage.models.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["mailbox_id"],
            ["mailbox.id"],
        ),
        sa.PrimaryKeyConstraint("mailbox_id"),
    )
    op.create_table(
        "mailbox_session",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mailbox_id", sa.Integer(), nullable=False),
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", storage.models.UTCDateTime(), nullable=False),
        sa.Column("expires_at", storage.models.UTCDateTime(), nullable=False),
        sa.Column("revoked_at", storage.models.UTCDateTime(), nullable=True),
        sa.Column("client", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["mailbox_id"],
            ["mailbox.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_sha256"),
    )
    with op.batch_alter_table("mailbox_session", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_mailbox_session_mailbox_id"), ["mailbox_id"], unique=False
        )

    op.create_table(
        "recovery_code",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mailbox_id", sa.Integer(), nullable=False),
        sa.Column("code_hash", sa.String(length=255), nullable=False),
        sa.Column("created_at", storage.models.UTCDateTime(), nullable=False),
        sa.Column("used_at", storage.models.UTCDateTime(), nullable=True),
        sa.Column("revoked_at", storage.models.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["mailbox_id"],
            ["mailbox.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("recovery_code", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_recovery_code_mailbox_id"), ["mailbox_id"], unique=False
        )

    op.create_table(
        "recovery_endpoint",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mailbox_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("value", sa.String(length=255), nullable=False),
        sa.Column("created_at", storage.models.UTCDateTime(), nullable=False),
        sa.Column("verification_hash", sa.String(length=255), nullable=True),
        sa.Column("verification_expires_at", storage.models.UTCDateTime(), nullable=True),
        sa.Column("verification_attempts", sa.Integer(), nullable=False),
        sa.Column("verified_at", storage.models.UTCDateTime(), nullable=True),
        sa.Column("reviewed_at", storage.models.UTCDateTime(), nullable=True),
        sa.Column("removed_at", storage.models.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["mailbox_id"],
            ["mailbox.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("recovery_endpoint", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_recovery_endpoint_mailbox_id"), ["mailbox_id"], unique=False
        )

    op.create_table(
        "reset_request",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mailbox_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("requested_by", sa.String(length=64), nullable=False),
        sa.Column("requested_at", storage.models.UTCDateTime(), nullable=False),
        sa.Column("approved_by", sa.String(length=64), nullable=True),
        sa.Column("approved_at", storage.models.UTCDateTime(), nullable=True),
        sa.Column("executed_by", sa.String(length=64), nullable=True),
        sa.Column("executed_at", storage.models.UTCDateTime(), nullable=True),
        sa.Column("temp_credential_sha256", sa.String(length=64), nullable=True),
        sa.Column("expires_at", storage.models.UTCDateTime(), nullable=True),
        sa.Column("completed_at", storage.models.UTCDateTime(), nullable=True),
        sa.Column("cancelled_by", sa.String(length=64), nullable=True),
        sa.Column("cancelled_at", storage.models.UTCDateTime(), nullable=True),
        sa.Column("sent_to", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(
            ["mailbox_id"],
            ["mailbox.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("temp_credential_sha256"),
    )
    with op.batch_alter_table("reset_request", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_reset_request_mailbox_id"), ["mailbox_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("reset_request", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reset_request_mailbox_id"))

    op.drop_table("reset_request")
    with op.batch_alter_table("recovery_endpoint", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_recovery_endpoint_mailbox_id"))

    op.drop_table("recovery_endpoint")
    with op.batch_alter_table("recovery_code", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_recovery_code_mailbox_id"))

    op.drop_table("recovery_code")
    with op.batch_alter_table("mailbox_session", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_mailbox_session_mailbox_id"))

    op.drop_table("mailbox_session")
    op.drop_table("mailbox_credential")
    with op.batch_alter_table("invite", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_invite_owner_person_id"))
        batch_op.drop_index(batch_op.f("ix_invite_domain_id"))

    op.drop_table("invite")
    op.drop_table("operator_totp")
    with op.batch_alter_table("operator_setup_link", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_operator_setup_link_operator_id"))

    op.drop_table("operator_setup_link")
    with op.batch_alter_table("operator_session", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_operator_session_operator_id"))

    op.drop_table("operator_session")
    op.drop_table("identity_policy")
    op.drop_table("mailbox_export")
    with op.batch_alter_table("mailbox_deletion", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_mailbox_deletion_mailbox_id"))

    op.drop_table("mailbox_deletion")
