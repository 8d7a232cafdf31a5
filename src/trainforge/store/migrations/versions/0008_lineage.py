"""Lineage: what each host of a job ran on (environment, code, data, image), and layer resolutions stored once.

``job_hosts.lineage`` holds the JSON a host's supervisor reported with its ``Training`` status (environment
fingerprint, code fingerprint, data manifest, container image digest). ``environment_locks`` holds each
``requirements.txt`` layer's full resolution (every package pinned with hashes), keyed by the layer's cache key,
so every node installs the same packages for it.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("job_hosts") as batch:
        batch.add_column(sa.Column("lineage", sa.Text, nullable=True))
    op.create_table(
        "environment_locks",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("resolution", sa.Text, nullable=False),
        sa.Column("python", sa.String(32), nullable=False),
        sa.Column("created_time", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("environment_locks")
    with op.batch_alter_table("job_hosts") as batch:
        batch.drop_column("lineage")
