"""Fixtures for the ``real`` tests: a throwaway PostgreSQL and a workload folder.

Both check at teardown that nothing they started is still running. The PostgreSQL is shared by
the whole session, so every module using it must also leave it as it found it (no role,
database, schema, grant or registry row left over): ``postgres_left_clean`` checks that.
"""

import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest

from adapters.postgres.clients import REGISTRY_SCHEMA, REGISTRY_TABLE
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


# What a module may not leave on the session's PostgreSQL: one catalog query in the maintenance
# database (roles, role memberships, databases and schemas with their grants), plus the charm's
# client registry when it exists. Client databases' own contents go with the databases. Grants
# are compared as in effect: a default ACL written out (a GRANT then its REVOKE) is no change.
_CATALOG = """
SELECT 'role ' || quote_ident(rolname) FROM pg_catalog.pg_roles WHERE rolname !~ '^pg_'
UNION ALL
SELECT 'membership ' || quote_ident(m.rolname) || ' in ' || quote_ident(g.rolname)
  FROM pg_catalog.pg_auth_members a
  JOIN pg_catalog.pg_roles m ON m.oid = a.member
  JOIN pg_catalog.pg_roles g ON g.oid = a.roleid
 WHERE g.rolname !~ '^pg_'
UNION ALL
SELECT 'database ' || quote_ident(datname)
       || ' grants ' || coalesce(datacl, acldefault('d', datdba))::text
  FROM pg_catalog.pg_database
UNION ALL
SELECT 'schema ' || quote_ident(nspname) || ' (in postgres)'
       || ' grants ' || coalesce(nspacl, acldefault('n', nspowner))::text
  FROM pg_catalog.pg_namespace
 WHERE nspname !~ '^pg_' AND nspname <> 'information_schema'
"""


def _leftovers_snapshot(cluster: PostgresCluster) -> set[str]:
    """What the session's PostgreSQL holds that a module could leave behind, one line each."""
    found = set(cluster.psql(_CATALOG).splitlines())
    if f"schema {REGISTRY_SCHEMA} (in postgres)" in {_grants(line)[0] for line in found}:
        registry = f"{REGISTRY_SCHEMA}.{REGISTRY_TABLE}"
        if cluster.psql(f"SELECT to_regclass('{registry}') IS NOT NULL") == "t":
            rows = cluster.psql(
                f"SELECT 'registry row ' || datname || ' of ' || application FROM {registry}"
            )
            found.update(rows.splitlines())
    return found


def _uses_postgres(module: pytest.Module, session: pytest.Session) -> bool:
    return any(
        "postgres" in getattr(item, "fixturenames", ())
        for item in session.items
        if item.getparent(pytest.Module) is module
    )


@pytest.fixture(scope="module", autouse=True)
def postgres_left_clean(request: pytest.FixtureRequest) -> Iterator[None]:
    """A module that uses the session's PostgreSQL leaves it as it found it.

    The server is shared by every module of the session: a role, database, schema, grant or
    registry row one module leaves can make a later one fail, depending on the run order.
    Modules that do not use ``postgres`` are not checked (and do not start it).
    """
    module = request.node
    if not isinstance(module, pytest.Module) or not _uses_postgres(module, request.session):
        yield
        return
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    before = _leftovers_snapshot(cluster)
    yield
    after = _leftovers_snapshot(cluster)
    if after != before:
        lines = [f"{module.nodeid} did not leave the session's PostgreSQL as it found it:"]
        lines += _differences(before, after)
        pytest.fail("\n".join(lines), pytrace=False)


def _differences(before: set[str], after: set[str]) -> list[str]:
    """One line per object left behind, taken away, or whose grants changed."""
    then = dict(_grants(line) for line in before)
    now = dict(_grants(line) for line in after)
    lines = [f"  left behind: {name}{_shown(now[name])}" for name in sorted(now.keys() - then)]
    lines += [f"  taken away:  {name}{_shown(then[name])}" for name in sorted(then.keys() - now)]
    lines += [
        f"  grants changed: {name} {then[name]} -> {now[name]}"
        for name in sorted(now.keys() & then.keys())
        if now[name] != then[name]
    ]
    return lines


def _grants(line: str) -> tuple[str, str]:
    name, _, grants = line.partition(" grants ")
    return name, grants


def _shown(grants: str) -> str:
    return f" grants {grants}" if grants else ""
