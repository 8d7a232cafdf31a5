"""Users, their API tokens (hashed), roles (object-store grants), the audit log, and each job's owner and role.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("training_jobs") as batch:
        batch.add_column(sa.Column("created_by", sa.String(64), nullable=True))
        batch.add_column(sa.Column("role_json", sa.Text, nullable=True))
        batch.create_index("ix_training_jobs_created_by", ["created_by"])
    op.create_table(
        "users",
        sa.Column("id", _Id, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("admin", sa.Integer, nullable=False),
        sa.Column("disabled", sa.Integer, nullable=False),
        sa.Column("default_role", sa.String(64), nullable=True),
        sa.Column("created_time", sa.Float, nullable=False),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", _Id, primary_key=True, autoincrement=True),
        sa.Column("token_id", sa.String(32), nullable=False, unique=True),
        sa.Column("user_id", _Id, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("secret_hash", sa.String(128), nullable=False),
        sa.Column("description", sa.String(255), nullable=True),
        sa.Column("created_time", sa.Float, nullable=False),
        sa.Column("expires_time", sa.Float, nullable=True),
        sa.Column("revoked_time", sa.Float, nullable=True),
        sa.Column("last_used_time", sa.Float, nullable=True),
    )
    op.create_index("ix_api_tokens_user", "api_tokens", ["user_id"])
    op.create_table(
        "roles",
        sa.Column("id", _Id, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("read_prefixes", sa.Text, nullable=False),
        sa.Column("write_prefixes", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=True),
        sa.Column("created_time", sa.Float, nullable=False),
    )
    op.create_table(
        "role_grants",
        sa.Column("role_id", _Id, sa.ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("user_id", _Id, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("created_time", sa.Float, nullable=False),
    )
    op.create_table(
        "audit_events",
        sa.Column("id", _Id, primary_key=True, autoincrement=True),
        sa.Column("time", sa.Float, nullable=False),
        sa.Column("user_name", sa.String(64), nullable=True),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(255), nullable=True),
        sa.Column("source", sa.String(255), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text, nullable=True),
    )
    op.create_index("ix_audit_events_time", "audit_events", ["time"])


def downgrade() -> None:
    op.drop_table("audit_events")
    op.drop_table("role_grants")
    op.drop_table("roles")
    op.drop_table("api_tokens")
    op.drop_table("users")
    with op.batch_alter_table("training_jobs") as batch:
        batch.drop_index("ix_training_jobs_created_by")
        batch.drop_column("role_json")
        batch.drop_column("created_by")
