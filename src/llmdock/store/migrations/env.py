"""Alembic environment: the engine comes from the Store (config.attributes['engine'])."""

from alembic import context

from llmdock.store.models import Base
from llmdock.store.trace_search import include_name

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=True,
        include_name=include_name,
    )
    with context.begin_transaction():
        context.run_migrations()
