"""Writing files so that a reader never sees half of one."""

import os
import tempfile
from pathlib import Path


def atomic_write(path, write) -> Path:
    """Call `write(f)` on a temporary file beside `path`, fsync it, then rename it into place.

    A crash or kill leaves either the old file or the new one, plus at worst a hidden
    `.<name>.*.tmp` that is never taken for the real file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def check_save(path: str | None, overwrite: bool, store) -> None:
    """Refuse a --save that would write over the run store's own files (`store.owns`), or over any other file
    without --overwrite."""
    if path is None:
        return
    if store.owns(path):
        raise ValueError(
            f"--save: {path} is a file of the run store {store.home} (its database or a run's checkpoint); writing "
            "there would destroy runs. Save elsewhere, or use `--run RUN_ID` to generate from a stored run"
        )
    if Path(path).expanduser().exists() and not overwrite:
        raise ValueError(f"--save: {path} already exists; add --overwrite to replace it, or choose another path")
