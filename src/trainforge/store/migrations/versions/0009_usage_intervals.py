"""Usage intervals: instance time that outlives its record (an endpoint's launches), for cost accounting.

A deleted endpoint leaves the ``endpoints`` table, so each launch of its instances is recorded here when it starts
(``end_time`` null) and closed when its supervisors are gone. Training and transform jobs keep their records, so
their time is read from them.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "usage_intervals",
        sa.Column("id", _Id, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(200), nullable=False, unique=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("owner", sa.String(64), nullable=True),
        sa.Column("instance_type", sa.String(64), nullable=False),
        sa.Column("instance_count", sa.Integer, nullable=False),
        sa.Column("start_time", sa.Float, nullable=False),
        sa.Column("end_time", sa.Float, nullable=True),
    )
    op.create_index("ix_usage_intervals_start_time", "usage_intervals", ["start_time"])


def downgrade() -> None:
    op.drop_index("ix_usage_intervals_start_time", table_name="usage_intervals")
    op.drop_table("usage_intervals")
