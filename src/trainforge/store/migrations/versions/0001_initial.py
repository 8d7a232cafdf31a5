"""Initial schema: training jobs, secondary-status transitions, log lines, metric points.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "training_jobs",
        sa.Column("id", _Id, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(63), nullable=False, unique=True),
        sa.Column("arn", sa.String(256), nullable=False),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("secondary_status", sa.String(32), nullable=False),
        sa.Column("status_message", sa.Text, nullable=True),
        sa.Column("failure_reason", sa.Text, nullable=True),
        sa.Column("instance_type", sa.String(64), nullable=False),
        sa.Column("instance_count", sa.Integer, nullable=False),
        sa.Column("model_artifacts", sa.Text, nullable=False),
        sa.Column("creation_time", sa.Float, nullable=False),
        sa.Column("last_modified_time", sa.Float, nullable=False),
        sa.Column("training_start_time", sa.Float, nullable=True),
        sa.Column("training_end_time", sa.Float, nullable=True),
        sa.Column("stop_requested", sa.String(32), nullable=True),
        sa.Column("backend", sa.String(32), nullable=True),
        sa.Column("backend_handle", sa.Text, nullable=True),
        sa.Column("agent_token_hash", sa.String(128), nullable=True),
        sa.Column("heartbeat_time", sa.Float, nullable=True),
    )
    op.create_index("ix_training_jobs_status", "training_jobs", ["status"])
    op.create_index("ix_training_jobs_creation_time", "training_jobs", ["creation_time"])
    op.create_table(
        "secondary_status_transitions",
        sa.Column("id", _Id, primary_key=True, autoincrement=True),
        sa.Column("job_id", _Id, sa.ForeignKey("training_jobs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("start_time", sa.Float, nullable=False),
        sa.Column("end_time", sa.Float, nullable=True),
        sa.Column("message", sa.Text, nullable=True),
        sa.Column("log_cursor", sa.BigInteger, nullable=True),
    )
    op.create_index("ix_transitions_job", "secondary_status_transitions", ["job_id", "id"])
    op.create_table(
        "log_lines",
        sa.Column("id", _Id, primary_key=True, autoincrement=True),
        sa.Column("job_id", _Id, sa.ForeignKey("training_jobs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("host", sa.String(64), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("timestamp", sa.Float, nullable=False),
        sa.Column("stream", sa.String(8), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.UniqueConstraint("job_id", "host", "seq", name="uq_log_lines_job_host_seq"),
    )
    op.create_index("ix_log_lines_job_id", "log_lines", ["job_id", "id"])
    op.create_table(
        "metric_points",
        sa.Column("id", _Id, primary_key=True, autoincrement=True),
        sa.Column("job_id", _Id, sa.ForeignKey("training_jobs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("host", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("timestamp", sa.Float, nullable=False),
    )
    op.create_index("ix_metric_points_job_name", "metric_points", ["job_id", "name", "timestamp"])


def downgrade() -> None:
    op.drop_table("metric_points")
    op.drop_table("log_lines")
    op.drop_table("secondary_status_transitions")
    op.drop_table("training_jobs")
