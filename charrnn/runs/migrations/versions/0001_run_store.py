"""The run store: runs, their epochs and their checkpoints (as of the first release under Alembic).

A store written before Alembic (no charrnn_version table) is brought to this revision in place: the tables it
lacks are made, the columns it lacks added (pid_start, val_perplexity, study, trial, val_points came one by
one), and checkpoint paths written absolute made relative to the store's folder (charrnn.runs.schema).

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from charrnn.runs.schema import relative_path

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TEXT, REAL = sa.Text(), sa.Float(precision=53)  # REAL is a double in both SQLite and PostgreSQL


def tables() -> list[sa.Table]:
    meta = sa.MetaData()
    runs = sa.Table(
        "runs",
        meta,
        sa.Column("id", TEXT, primary_key=True),
        sa.Column("name", TEXT, nullable=False),
        sa.Column("created", REAL, nullable=False),
        sa.Column("updated", REAL, nullable=False),
        sa.Column("config", TEXT, nullable=False),
        sa.Column("corpus", TEXT, nullable=False),
        sa.Column("status", TEXT, nullable=False),
        sa.Column("reason", TEXT, nullable=False, server_default=""),
        sa.Column("device", TEXT, nullable=False, server_default=""),
        sa.Column("host", TEXT, nullable=False, server_default=""),
        sa.Column("pid", sa.Integer, nullable=False, server_default="0"),
        sa.Column("pid_start", sa.BigInteger),  # the process's start (clock ticks since boot): a reused pid is not it
        sa.Column("study", TEXT),  # a trial's run: its tune study and trial number
        sa.Column("trial", sa.Integer),
    )
    run_id = sa.Column("run_id", TEXT, sa.ForeignKey(runs.c.id, ondelete="CASCADE"), primary_key=True)
    epochs = sa.Table(
        "epochs",
        meta,
        run_id,
        sa.Column("epoch", sa.Integer, primary_key=True, autoincrement=False),
        *(sa.Column(name, REAL) for name in ("perplexity", "tokens_per_sec", "grad_norm", "clipped", "elapsed")),
        sa.Column("loss", REAL),
        sa.Column("sample", TEXT),
        sa.Column("val_perplexity", REAL),
        sa.Column("val_points", TEXT),  # JSON [[epochs trained, held-out perplexity], ...] inside the epoch
    )
    checkpoints = sa.Table(
        "checkpoints",
        meta,
        sa.Column("run_id", TEXT, sa.ForeignKey(runs.c.id, ondelete="CASCADE"), primary_key=True),
        sa.Column("epoch", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("path", TEXT, nullable=False),
        sa.Column("created", REAL, nullable=False),
    )
    return [runs, epochs, checkpoints]


def upgrade(home) -> None:
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    existing = set(inspector.get_table_names())
    for table in tables():
        if table.name not in existing:
            table.create(bind)
            continue
        have = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name not in have:  # a store from before the column (nullable: old rows keep None)
                op.add_column(table.name, sa.Column(column.name, column.type))
    rows = bind.execute(sa.text("SELECT run_id, epoch, path FROM checkpoints")).fetchall()
    for run_id, epoch, path in rows:
        new = relative_path(path, run_id, home)
        if new != path:
            bind.execute(
                sa.text("UPDATE checkpoints SET path=:path WHERE run_id=:run_id AND epoch=:epoch"),
                {"path": new, "run_id": run_id, "epoch": epoch},
            )


def downgrade(home) -> None:
    raise NotImplementedError("a run store is never taken back to before its first revision")
