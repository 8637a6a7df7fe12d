"""Which files belong to a run store, by resolved path: so that a checkpoint path stored in the database never
leads outside it (a symlink, ``..``, an absolute path), and so that nothing is written over the store's own files."""

from pathlib import Path, PurePath

VISITORS = "visitors.sqlite"  # an earlier release's owners of runs beside the store (now a table, read in)


def owns(path: str | Path, databases: tuple[Path, ...], checkpoint_dir: Path) -> bool:
    """Whether `path`, once symlinks and ``..`` are resolved, is one of the store's databases (with its -wal,
    -shm and -journal files) or anything under its checkpoint folder: a file that writing over would damage
    the store."""
    try:
        real, dbs = Path(path).expanduser().resolve(), [db.resolve() for db in databases]
    except (OSError, RuntimeError):  # a symlink loop: not a file of ours
        return False
    owned = {f for db in dbs for f in (db, *(db.with_name(db.name + end) for end in ("-wal", "-shm", "-journal")))}
    return real in owned or real.is_relative_to(checkpoint_dir.resolve())


def inside(home: Path, real_home: Path, stored: str, folder: Path) -> Path | None:
    """The file a stored checkpoint path names, as a path under `home`; None unless it is inside `folder` once
    symlinks and ``..`` are resolved (an absolute path never is used). `real_home` is `home` resolved."""
    if PurePath(stored).is_absolute():
        return None
    try:
        real = (home / stored).resolve()
    except (OSError, RuntimeError):  # a symlink loop
        return None
    base = real_home / folder.relative_to(home)  # not resolved: a symlinked folder leads elsewhere
    return home / real.relative_to(real_home) if real.is_relative_to(base) else None


def own_files(home: Path, real_home: Path, folder: Path, pattern: str) -> list[Path]:
    """Files matching `pattern` in `folder` (a run's checkpoint folder), only if they really are inside it."""
    if not folder.is_dir():
        return []
    names = [p.relative_to(home).as_posix() for p in folder.glob(pattern)]
    return [p for p in (inside(home, real_home, n, folder) for n in names) if p is not None]


def remove_if_empty(folder: Path) -> None:
    """Remove a run's checkpoint folder once nothing is left in it (never one that is a symlink)."""
    if folder.is_dir() and not folder.is_symlink() and not any(folder.iterdir()):
        folder.rmdir()
