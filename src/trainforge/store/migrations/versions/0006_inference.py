"""Inference records: models, endpoint configs, endpoints (and their instances), batch transform jobs, and their
log lines and endpoint metric points.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "models",
        sa.Column("id", _Id, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(63), nullable=False, unique=True),
        sa.Column("arn", sa.String(256), nullable=False),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("training_job_name", sa.String(63), nullable=True),
        sa.Column("created_by", sa.String(64), nullable=True),
        sa.Column("role_json", sa.Text, nullable=True),
        sa.Column("creation_time", sa.Float, nullable=False),
    )
    op.create_index("ix_models_creation_time", "models", ["creation_time"])
    op.create_table(
        "endpoint_configs",
        sa.Column("id", _Id, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(63), nullable=False, unique=True),
        sa.Column("arn", sa.String(256), nullable=False),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("created_by", sa.String(64), nullable=True),
        sa.Column("creation_time", sa.Float, nullable=False),
    )
    op.create_table(
        "endpoints",
        sa.Column("id", _Id, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(63), nullable=False, unique=True),
        sa.Column("arn", sa.String(256), nullable=False),
        sa.Column("config_name", sa.String(63), nullable=False),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("failure_reason", sa.Text, nullable=True),
        sa.Column("creation_time", sa.Float, nullable=False),
        sa.Column("last_modified_time", sa.Float, nullable=False),
        sa.Column("created_by", sa.String(64), nullable=True),
        sa.Column("role_json", sa.Text, nullable=True),
        sa.Column("backend", sa.String(32), nullable=True),
        sa.Column("backend_handle", sa.Text, nullable=True),
        sa.Column("agent_token_hash", sa.String(128), nullable=True),
        sa.Column("attempt", sa.Integer, nullable=False, server_default="1"),
        sa.Column("log_owner", sa.String(160), nullable=False),
    )
    op.create_index("ix_endpoints_status", "endpoints", ["status"])
    op.create_table(
        "endpoint_instances",
        sa.Column("endpoint_id", _Id, sa.ForeignKey("endpoints.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("attempt", sa.Integer, primary_key=True),
        sa.Column("host", sa.String(64), primary_key=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("address", sa.String(255), nullable=True),
        sa.Column("failure_reason", sa.Text, nullable=True),
        sa.Column("heartbeat_time", sa.Float, nullable=True),
        sa.Column("updated_time", sa.Float, nullable=False),
    )
    op.create_table(
        "transform_jobs",
        sa.Column("id", _Id, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(63), nullable=False, unique=True),
        sa.Column("arn", sa.String(256), nullable=False),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("model_spec", sa.Text, nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("failure_reason", sa.Text, nullable=True),
        sa.Column("creation_time", sa.Float, nullable=False),
        sa.Column("last_modified_time", sa.Float, nullable=False),
        sa.Column("transform_start_time", sa.Float, nullable=True),
        sa.Column("transform_end_time", sa.Float, nullable=True),
        sa.Column("stop_requested", sa.String(32), nullable=True),
        sa.Column("created_by", sa.String(64), nullable=True),
        sa.Column("role_json", sa.Text, nullable=True),
        sa.Column("backend", sa.String(32), nullable=True),
        sa.Column("backend_handle", sa.Text, nullable=True),
        sa.Column("agent_token_hash", sa.String(128), nullable=True),
        sa.Column("heartbeat_time", sa.Float, nullable=True),
        sa.Column("attempt", sa.Integer, nullable=False, server_default="1"),
    )
    op.create_index("ix_transform_jobs_status", "transform_jobs", ["status"])
    op.create_index("ix_transform_jobs_creation_time", "transform_jobs", ["creation_time"])
    op.create_table(
        "inference_log_lines",
        sa.Column("id", _Id, primary_key=True, autoincrement=True),
        sa.Column("owner", sa.String(160), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False, server_default="1"),
        sa.Column("host", sa.String(64), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("timestamp", sa.Float, nullable=False),
        sa.Column("stream", sa.String(8), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.UniqueConstraint("owner", "attempt", "host", "seq", name="uq_inference_log_lines_owner_attempt_host_seq"),
    )
    op.create_index("ix_inference_log_lines_owner", "inference_log_lines", ["owner", "id"])
    op.create_table(
        "endpoint_metric_points",
        sa.Column("id", _Id, primary_key=True, autoincrement=True),
        sa.Column("owner", sa.String(160), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("timestamp", sa.Float, nullable=False),
    )
    op.create_index("ix_endpoint_metric_points_owner", "endpoint_metric_points", ["owner", "name", "timestamp"])


def downgrade() -> None:
    op.drop_index("ix_endpoint_metric_points_owner", table_name="endpoint_metric_points")
    op.drop_table("endpoint_metric_points")
    op.drop_index("ix_inference_log_lines_owner", table_name="inference_log_lines")
    op.drop_table("inference_log_lines")
    op.drop_index("ix_transform_jobs_creation_time", table_name="transform_jobs")
    op.drop_index("ix_transform_jobs_status", table_name="transform_jobs")
    op.drop_table("transform_jobs")
    op.drop_table("endpoint_instances")
    op.drop_index("ix_endpoints_status", table_name="endpoints")
    op.drop_table("endpoints")
    op.drop_table("endpoint_configs")
    op.drop_index("ix_models_creation_time", table_name="models")
    op.drop_table("models")
