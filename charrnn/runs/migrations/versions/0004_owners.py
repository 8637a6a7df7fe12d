"""Whose runs: the hash of the demo visitor's key that started each run (charrnn.runs.demo), in the run store's own
database, so that a visitor keeps their runs on every app server that shares it. Until now it was a file per home
(``visitors.sqlite``); RunStore reads such a file in when it opens the store, and removes it.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade(home) -> None:
    op.create_table(  # no foreign key: a deleted run stays the visitor's (its id is never reused)
        "owners",
        sa.Column("run_id", sa.Text(), primary_key=True),
        sa.Column("key_hash", sa.Text(), nullable=False, index=True),
    )


def downgrade(home) -> None:
    op.drop_table("owners")
