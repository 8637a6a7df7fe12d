"""Who owns a run, as people read it: the signed-in person's name (their email, else the provider's subject) beside
the hash of their identity, so that the Runs table shows it (issue 24). An anonymous demo visitor has none.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade(home) -> None:
    op.add_column("owners", sa.Column("who", sa.Text()))


def downgrade(home) -> None:
    op.drop_column("owners", "who")
