"""Alembic's environment for the city database (cloud_bridge/store.py runs
it with the store's own connection: `config.attributes["connection"]`)."""

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, transaction_per_migration=True, render_as_batch=True)
with context.begin_transaction():
    if connection.dialect.name == "postgresql":
        # Two workers starting at once: one migrates, the other waits, then
        # finds the database at the head.
        connection.exec_driver_sql("SELECT pg_advisory_xact_lock(5107021)")
    context.run_migrations()
