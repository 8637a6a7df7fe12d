"""Checkpoints in the database: each row holds the checkpoint's bytes and their SHA-256 (checked on every load), so
that any machine with the store's URL can generate from, resume or download any run.

The files a store kept under ``<home>/checkpoints/<run id>/`` are read into their rows here, in the migration's one
transaction, and each row's bytes are read back and compared with the file's SHA-256; only after the transaction
has committed are the files removed (charrnn.runs.schema.migrate), so a failed upgrade leaves every file and the
old store as they were. A row whose file is missing, or whose path leads outside the run's folder, could never be
loaded: it is dropped. The `path` column goes.

Revision ID: 0003
Revises: 0002
"""

import hashlib

import sqlalchemy as sa
from alembic import context, op

from charrnn.runs import paths

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

NEW = "checkpoints_0003"


def upgrade(home) -> None:
    op.add_column("checkpoints", sa.Column("data", sa.LargeBinary()))
    op.add_column("checkpoints", sa.Column("sha256", sa.Text()))
    op.add_column("checkpoints", sa.Column("size", sa.BigInteger()))
    bind = op.get_bind()
    moved = context.config.attributes.setdefault("moved", [])  # files to remove once the transaction commits
    real = home.resolve()
    for run_id, epoch, stored in bind.execute(sa.text("SELECT run_id, epoch, path FROM checkpoints")).fetchall():
        key = {"run_id": run_id, "epoch": epoch}
        path = paths.inside(home, real, stored, home / "checkpoints" / run_id)
        if path is None or not path.is_file():
            bind.execute(sa.text("DELETE FROM checkpoints WHERE run_id=:run_id AND epoch=:epoch"), key)
            continue
        data = path.read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        bind.execute(
            sa.text("UPDATE checkpoints SET data=:data, sha256=:sha, size=:size WHERE run_id=:run_id AND epoch=:epoch"),
            {"data": data, "sha": sha, "size": len(data), **key},
        )
        back = bind.execute(sa.text("SELECT data FROM checkpoints WHERE run_id=:run_id AND epoch=:epoch"), key)
        if hashlib.sha256(back.scalar_one()).hexdigest() != sha:  # never: but a file is only removed once it is sure
            raise RuntimeError(f"checkpoint {path} did not read back from the database as written; nothing changed")
        moved.append(path)
    # The table again without `path`, its new columns required: made anew and renamed, the same way on SQLite
    # (which cannot drop a column under a foreign key in place) and PostgreSQL, keeping ON DELETE CASCADE.
    table(NEW).create(bind)
    columns = "run_id, epoch, created, data, sha256, size"
    bind.execute(sa.text(f"INSERT INTO {NEW} ({columns}) SELECT {columns} FROM checkpoints"))
    op.drop_table("checkpoints")
    op.rename_table(NEW, "checkpoints")


def table(name: str) -> sa.Table:
    runs = sa.Table("runs", sa.MetaData(), sa.Column("id", sa.Text(), primary_key=True))
    return sa.Table(
        name,
        runs.metadata,
        sa.Column("run_id", sa.Text(), sa.ForeignKey(runs.c.id, ondelete="CASCADE"), primary_key=True),
        sa.Column("epoch", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("created", sa.Float(precision=53), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("sha256", sa.Text(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
    )


def downgrade(home) -> None:
    raise NotImplementedError("checkpoints stay in the database; `runs copy` moves runs between stores")
