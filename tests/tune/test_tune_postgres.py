"""charrnn tune on a real PostgreSQL server (a throwaway cluster, tests/pg.py): two workers share a study,
one trial at a time or (one of them) asking 3 trials at once and training them batched.

In CI (`CI` set) a missing PostgreSQL fails this test (.ci/run installs Debian's); elsewhere it skips
and says why."""

import pytest
from test_tune import two_workers

from charrnn.tune.storage import open_storage, study_names


@pytest.fixture(scope="module")
def postgres(postgres_cluster):
    return postgres_cluster.url


def test_two_workers_share_one_postgres_study(postgres, tmp_path, time_machine_path):
    study = two_workers(postgres, tmp_path / "home")
    assert study_names(open_storage(postgres)) == [study.study_name]


def test_a_parallel_worker_and_a_single_one_share_one_postgres_study(postgres, tmp_path, time_machine_path):
    """Ask-and-tell beside Study.optimize: no trial lost, doubled or left running (two_workers checks)."""
    study = two_workers(postgres, tmp_path / "home", "mixed", (("--parallel", "3"), ()))
    assert study.study_name in study_names(open_storage(postgres))
