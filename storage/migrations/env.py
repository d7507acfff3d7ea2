"""Alembic environment: the engine is handed in by ``storage.migrate``."""

from alembic import context

import storage.models_identity
import storage.models_outbound  # noqa: F401  (registers its tables on Base.metadata)
from storage.models import Base

engine = context.config.attributes["engine"]
with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
