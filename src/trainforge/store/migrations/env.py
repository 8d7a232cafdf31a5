"""Alembic environment: runs on the connection handed over in ``config.attributes["connection"]``."""

from __future__ import annotations

from alembic import context

from trainforge.store.tables import metadata

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("trainforge migrations run through trainforge.store.migrate(), not the alembic CLI")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
