"""Metric points posted by supervisors carry a key, so a resent batch is stored once.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("metric_points", sa.Column("seq", sa.BigInteger, nullable=True))
    op.create_index(
        "uq_metric_points_job_host_name_seq", "metric_points", ["job_id", "host", "name", "seq"], unique=True
    )


def downgrade() -> None:
    op.drop_index("uq_metric_points_job_host_name_seq", table_name="metric_points")
    op.drop_column("metric_points", "seq")
