"""Alembic's environment for the run store: always given an open connection (charrnn.runs.schema.migrate), inside
the one transaction that brings a store up to date; the version table is charrnn's own, so a database that also
holds Optuna's tables (and its alembic_version) keeps both apart."""

from alembic import context

VERSION_TABLE = "charrnn_version"

context.configure(
    connection=context.config.attributes["connection"],
    version_table=VERSION_TABLE,
    transactional_ddl=True,
)
with context.begin_transaction():
    context.run_migrations(home=context.config.attributes["home"])
