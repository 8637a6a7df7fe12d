"""Training throughput with the run store on PostgreSQL against the default SQLite file (issue 23: at least
0.95x). The book's recipe, `python -m charrnn train --epochs E --json`, on one machine, alternated so that other
load hits both alike. Two figures per run: the median tokens/s over its epochs (the first, warming up, left out),
and its whole wall time (the store's writes between epochs, checkpoints included, count there too; the wall ratio
is SQLite's time over PostgreSQL's, so above 1 means PostgreSQL was faster).

    python tools/store_speed.py --postgres postgresql://user@host/db --epochs 60 --reps 3

Prints a JSON summary; a fresh CHARRNN_HOME per run. Both stores keep the runs' checkpoints as rows (bytes and
SHA-256), so the figure compares the whole run store, checkpoints included.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def one_run(epochs: int, database: str | None) -> tuple[float, float]:
    env = {**os.environ, "CHARRNN_HOME": tempfile.mkdtemp(prefix="charrnn-speed-")}
    env.pop("CHARRNN_DATABASE_URL", None)
    cmd = [sys.executable, "-m", "charrnn", "train", "--epochs", str(epochs), "--device", "cpu", "--json"]
    if database:
        cmd += ["--database", database]
    began = time.perf_counter()
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout
    wall = time.perf_counter() - began
    rates = [json.loads(line)["tokens_per_sec"] for line in out.splitlines() if '"tokens_per_sec"' in line]
    return statistics.median(rates[1:-1]), wall  # the last line is the closing summary; the first epoch warms up


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--postgres", required=True, metavar="URL", help="a PostgreSQL database to record into")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--reps", type=int, default=3)
    args = p.parse_args()
    figures, walls = {"sqlite": [], "postgresql": []}, {"sqlite": [], "postgresql": []}
    for _ in range(args.reps):
        for name, database in (("sqlite", None), ("postgresql", args.postgres)):
            rate, wall = one_run(args.epochs, database)
            figures[name].append(rate)
            walls[name].append(round(wall, 2))
    summary = {name: round(statistics.median(values)) for name, values in figures.items()}
    summary["ratio"] = round(summary["postgresql"] / summary["sqlite"], 3)
    wall = {name: round(statistics.median(values), 2) for name, values in walls.items()}
    wall["ratio"] = round(wall["sqlite"] / wall["postgresql"], 3)
    print(
        json.dumps(
            {
                "epochs": args.epochs,
                "reps": args.reps,
                "runs": figures,
                "walls": walls,
                "median": summary,
                "wall_median": wall,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
