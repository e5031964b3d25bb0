"""Fixtures for the ``real`` tests: a throwaway PostgreSQL and a workload folder.

Both check at teardown that nothing they started is still running.
"""

import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest

from localenv.postgres_cluster import PostgresCluster
from localenv.processes import children, pgrep


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """A PostgreSQL server for the whole session; at the end, it and its children are gone."""
    cluster = PostgresCluster().start()
    data_dir = cluster.data_dir
    with open(os.path.join(data_dir, "postmaster.pid"), encoding="ascii") as file:
        postmaster = int(file.readline())
    try:
        yield cluster
    finally:
        cluster.stop()
    assert not os.path.exists(data_dir)
    assert pgrep(data_dir) == [], "postgres left running"
    assert children(postmaster) == [], "postgres processes left running"


@pytest.fixture
def workload_dir() -> Iterator[str]:
    """A fresh folder standing for the container's /var/lib/postgresql/pgbouncer.

    It is made directly under /tmp so the ``postgres`` user can reach it (pytest's tmp_path is
    private to root). At teardown, after the workload using it has stopped, no process may
    still run from it.
    """
    path = tempfile.mkdtemp(prefix="pgb-workload-")
    try:
        yield path
        assert pgrep(path) == [], "pgbouncer processes left running"
    finally:
        shutil.rmtree(path, ignore_errors=True)
