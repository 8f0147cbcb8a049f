"""Alembic's environment for the workspace store: always run from code with an open connection.

`workspace.migrate` builds the Config and passes the connection in `config.attributes["connection"]`; no
alembic.ini and no URL in a file.
"""

from __future__ import annotations

from alembic import context

from workspace.tables import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
