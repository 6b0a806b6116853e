"""Alembic environment: the engine comes from the Store (config.attributes['engine'])."""

from alembic import context

from llmdock.store.models import Base

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
