"""Alembic environment, configured programmatically by :mod:`mupnc.db.migrate` (no alembic.ini).

The caller passes an open connection in ``config.attributes["connection"]``; the whole
upgrade runs in that connection's transaction.
"""

from alembic import context

from mupnc.db.models import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
