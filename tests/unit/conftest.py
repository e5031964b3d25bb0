"""Fixtures shared by the charm's ``ops.testing`` tests.

A module opts into a fixed process count with
``pytestmark = pytest.mark.usefixtures("two_processes")``: the charm otherwise derives it from
the machine's cores, and the expected files name every process. ``folder`` is the container's
pgbouncer folder, a real temporary folder mounted into the ``ops.testing`` container; modules
that need it pre-filled define their own.
"""

import pathlib

import pytest

from charm import PgBouncerK8sCharm
from tests.unit.charm_harness import PROCESSES


@pytest.fixture
def two_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(PgBouncerK8sCharm, "processes", PROCESSES)


@pytest.fixture
def folder(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "pgbouncer"
    path.mkdir()
    return path
