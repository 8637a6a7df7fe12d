"""A run's stop, asked through the database: `runs.stop_asked` (when, as a Unix time), so that Stop works from any
machine that shares the store; the process training the run reads it between minibatches (charrnn.runs.recorder).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade(home) -> None:
    op.add_column("runs", sa.Column("stop_asked", sa.Float(precision=53)))


def downgrade(home) -> None:
    op.drop_column("runs", "stop_asked")
