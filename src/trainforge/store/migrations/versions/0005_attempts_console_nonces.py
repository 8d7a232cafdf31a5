"""Job attempts (a retried job's lines and metrics are kept per attempt) and the console's one-time nonces
(used sign-in tickets, signed-out sessions) stored rather than held in one process's memory.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("training_jobs") as batch:
        batch.add_column(sa.Column("attempt", sa.Integer, nullable=False, server_default="1"))
    with op.batch_alter_table("log_lines") as batch:
        batch.add_column(sa.Column("attempt", sa.Integer, nullable=False, server_default="1"))
        batch.drop_constraint("uq_log_lines_job_host_seq", type_="unique")
        batch.create_unique_constraint("uq_log_lines_job_attempt_host_seq", ["job_id", "attempt", "host", "seq"])
    with op.batch_alter_table("metric_points") as batch:
        batch.add_column(sa.Column("attempt", sa.Integer, nullable=False, server_default="1"))
    op.drop_index("uq_metric_points_job_host_name_seq", table_name="metric_points")
    op.create_index(
        "uq_metric_points_job_attempt_host_name_seq",
        "metric_points",
        ["job_id", "attempt", "host", "name", "seq"],
        unique=True,
    )
    op.create_table(
        "console_nonces",
        sa.Column("nonce", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("expires_time", sa.Float, nullable=False),
    )
    op.create_index("ix_console_nonces_expires", "console_nonces", ["expires_time"])


def downgrade() -> None:
    # The old schema keeps one attempt per job: the lines and points of later attempts cannot be represented.
    op.execute("DELETE FROM log_lines WHERE attempt > 1")
    op.execute("DELETE FROM metric_points WHERE attempt > 1")
    op.drop_index("ix_console_nonces_expires", table_name="console_nonces")
    op.drop_table("console_nonces")
    op.drop_index("uq_metric_points_job_attempt_host_name_seq", table_name="metric_points")
    op.create_index(
        "uq_metric_points_job_host_name_seq", "metric_points", ["job_id", "host", "name", "seq"], unique=True
    )
    with op.batch_alter_table("metric_points") as batch:
        batch.drop_column("attempt")
    with op.batch_alter_table("log_lines") as batch:
        batch.drop_constraint("uq_log_lines_job_attempt_host_seq", type_="unique")
        batch.create_unique_constraint("uq_log_lines_job_host_seq", ["job_id", "host", "seq"])
        batch.drop_column("attempt")
    with op.batch_alter_table("training_jobs") as batch:
        batch.drop_column("attempt")
