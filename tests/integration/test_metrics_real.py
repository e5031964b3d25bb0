"""Metrics from every process, against real pgbouncer processes sharing one port.

A unit runs P pgbouncer processes behind one TCP port (``so_reuseport``); the kernel hands
each new connection to one of them. K clients connect through that port. What each
per-process target reads, ``SHOW POOLS`` on its own process's admin console, through that
process's unix socket, logged in as the stats user with the password from a 0600 .pgpass
file, adds up to K. One reader through the shared TCP port (the upstream charm's single
exporter) sees one process only: less than K.

The Go ``pgbouncer_exporter`` the workload image ships is not installable here (no Go
toolchain or module proxy; Debian's ``prometheus-pgbouncer-exporter`` is another, Python,
implementation whose ``SHOW STATS`` collector fails on pgbouncer 1.18, see
``test_debian_exporter_cannot_scrape_pgbouncer_1_18``), so the targets are read the way the
Go exporter reads them: the connection string ``ExporterSpec.connection_string`` names, no
password in it, the password from ``PGPASSFILE``, then ``SHOW POOLS``.

The stats user is attacked too: with its password it can read, and nothing more.
"""

import contextlib
import os
import pathlib
import re
import secrets
import shutil
import subprocess
import threading
from collections.abc import Iterator

import psycopg
import pytest

from domain.charm_config import CharmConfig, initial_config
from domain.observability import (
    STATS_USER,
    exporters,
    pgpass_file,
    with_stats_user,
    with_stats_users,
)
from domain.pgb_config import ConnString, render_pgb_ini
from localenv.local_workload import LocalWorkload
from localenv.net import free_port
from localenv.postgres_cluster import PostgresCluster
from localenv.processes import wait_until

pytestmark = pytest.mark.real

_LOKI_RULES = pathlib.Path(__file__).resolve().parents[2] / "src" / "loki_alert_rules"
# The |~ pattern of the shipped Loki rule.
_LOKI_MATCH = re.search(r'\|~ "([^"]+)"', (_LOKI_RULES / "pgbouncer.rules").read_text())
assert _LOKI_MATCH is not None
LOKI_PATTERN = _LOKI_MATCH[1]

PROCESSES = 3
CLIENTS = 12
APP_USER = "pgb_metrics_app"
APP_PASSWORD = secrets.token_urlsafe(16)
STATS_PASSWORD = secrets.token_hex(16)


@pytest.fixture(scope="module")
def app_user(postgres: PostgresCluster) -> Iterator[str]:
    """A login role for the clients; dropped after the module (the server is the session's)."""
    postgres.psql(f"DROP ROLE IF EXISTS {APP_USER}")
    postgres.psql(f"CREATE ROLE {APP_USER} LOGIN PASSWORD '{APP_PASSWORD}'")
    yield APP_USER
    postgres.psql(f"DROP ROLE {APP_USER}")


@pytest.fixture
def unit(
    workload_dir: str, postgres: PostgresCluster, app_user: str
) -> Iterator[tuple[LocalWorkload, int]]:
    """P processes on one port, configured as the charm does: stats user in both files."""
    port = free_port()
    cfg = initial_config(CharmConfig(listen_port=port, pool_mode="session"), PROCESSES)
    cfg = with_stats_users(cfg.with_settings({"listen_addr": "127.0.0.1"}))
    cfg = cfg.with_database(
        "mydb",
        ConnString({"host": postgres.host, "port": str(postgres.port), "dbname": "postgres"}),
    )
    with LocalWorkload(workload_dir, processes=PROCESSES) as workload:
        workload.write_cfg(render_pgb_ini(cfg))
        workload.write_auth(with_stats_user(f'"{app_user}" "{APP_PASSWORD}"\n', STATS_PASSWORD))
        workload.restart()
        yield workload, port


@pytest.fixture
def passfile(workload_dir: str) -> str:
    """The exporters' .pgpass, as the charm writes it: mode 0600."""
    path = os.path.join(workload_dir, "exporter.pgpass")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(pgpass_file(STATS_PASSWORD))
    return path


def _target_pools(conninfo: str, passfile: str) -> dict[str, int]:
    """SHOW POOLS as a target reads it: clients active per database (admin console left out)."""
    with psycopg.connect(conninfo, passfile=passfile, autocommit=True) as conn:
        rows = conn.execute("SHOW POOLS").fetchall()
        columns = [column.name for column in conn.execute("SHOW POOLS").description or []]
    by_db: dict[str, int] = {}
    for row in rows:
        record = dict(zip(columns, row, strict=True))
        if record["database"] != "pgbouncer":
            by_db[record["database"]] = by_db.get(record["database"], 0) + int(record["cl_active"])
    return by_db


def _clients(port: int, count: int) -> list[psycopg.Connection]:
    return [
        psycopg.connect(
            host="127.0.0.1",
            port=port,
            dbname="mydb",
            user=APP_USER,
            password=APP_PASSWORD,
            autocommit=True,
        )
        for _ in range(count)
    ]


def test_per_process_targets_add_up_to_every_client(
    unit: tuple[LocalWorkload, int], workload_dir: str, passfile: str
) -> None:
    _workload, port = unit
    specs = exporters(PROCESSES, port, base_dir=workload_dir)
    clients = _clients(port, CLIENTS)
    try:
        per_process = [_target_pools(spec.connection_string, passfile) for spec in specs]
        counts = [pools.get("mydb", 0) for pools in per_process]

        assert sum(counts) == CLIENTS
        # The kernel spread them: more than one process holds clients.
        assert sum(1 for count in counts if count) >= 2, counts

        # The upstream charm's one exporter, through the shared TCP port: one process only.
        shared = f"host=127.0.0.1 port={port} dbname=pgbouncer user={STATS_USER} sslmode=disable"
        seen = _target_pools(shared, passfile).get("mydb", 0)
        assert seen in counts
        assert seen < CLIENTS
    finally:
        for client in clients:
            client.close()
    # Closed clients leave every process's count.
    assert wait_until(
        lambda: (
            sum(_target_pools(s.connection_string, passfile).get("mydb", 0) for s in specs) == 0
        )
    )


def test_the_connection_string_alone_cannot_log_in(
    unit: tuple[LocalWorkload, int], workload_dir: str, tmp_path
) -> None:
    # Without the .pgpass file the string the plan holds is worth nothing.
    _, port = unit
    spec = exporters(PROCESSES, port, base_dir=workload_dir)[0]
    empty = tmp_path / "none.pgpass"
    empty.write_text("")
    empty.chmod(0o600)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(spec.connection_string, passfile=str(empty), connect_timeout=5).close()


@pytest.mark.parametrize(
    "command", ["RELOAD", "PAUSE mydb", "KILL mydb", "SHUTDOWN", "SET default_pool_size = 1"]
)
def test_the_stats_user_can_read_but_not_command(
    unit: tuple[LocalWorkload, int], workload_dir: str, passfile: str, command: str
) -> None:
    _, port = unit
    spec = exporters(PROCESSES, port, base_dir=workload_dir)[0]
    with psycopg.connect(spec.connection_string, passfile=passfile, autocommit=True) as conn:
        # Positive control: the rightful reader reads.
        assert conn.execute("SHOW VERSION").fetchone() is not None
        with pytest.raises(psycopg.Error, match="admin access needed"):
            conn.execute(command.encode())
    # pgbouncer still runs and still serves after every attempt.
    with psycopg.connect(spec.connection_string, passfile=passfile, autocommit=True) as conn:
        assert conn.execute("SHOW POOLS").fetchall()


def test_the_stats_user_reaches_no_database(
    unit: tuple[LocalWorkload, int], workload_dir: str, passfile: str
) -> None:
    _, port = unit
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(
            host="127.0.0.1", port=port, dbname="mydb", user=STATS_USER,
            password=STATS_PASSWORD, connect_timeout=5,
        ).close()  # fmt: skip


def test_a_wrong_stats_password_is_refused(
    unit: tuple[LocalWorkload, int], workload_dir: str
) -> None:
    _, port = unit
    spec = exporters(PROCESSES, port, base_dir=workload_dir)[0]
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(spec.connection_string, password="W" * 32, connect_timeout=5).close()


def _debian_exporter(spec_dir: str, port: int, metrics_port: int, passfile: str):
    return subprocess.Popen(
        [
            "prometheus-pgbouncer-exporter", "--host", "127.0.0.1", "--port", str(metrics_port),
            "--pgbouncer-host", spec_dir, "--pgbouncer-port", str(port),
            "--pgbouncer-user", STATS_USER,
        ],
        env={"PATH": os.environ["PATH"], "PGPASSFILE": passfile},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )  # fmt: skip


@pytest.mark.skipif(
    shutil.which("prometheus-pgbouncer-exporter") is None,
    reason="Debian's prometheus-pgbouncer-exporter is not installed (scripts/setup.sh)",
)
def test_debian_exporter_cannot_scrape_pgbouncer_1_18(
    unit: tuple[LocalWorkload, int], workload_dir: str, passfile: str
) -> None:
    """Why the targets above are read without an exporter: Debian's is not the Go one.

    Debian's ``prometheus-pgbouncer-exporter`` 1.7 is Christopher Baines's Python exporter. It
    reaches a process through its unix socket (libpq takes a folder as host) and logs in with
    the .pgpass file, but its SHOW STATS collector reads the ``total_requests`` column, gone
    since pgbouncer 1.8, and it collects once at start-up: on pgbouncer 1.18 it exits before
    it ever listens.
    """
    _, port = unit
    spec = exporters(PROCESSES, port, base_dir=workload_dir)[0]
    metrics_port = free_port()
    proc = _debian_exporter(spec.socket_dir, port, metrics_port, passfile)
    try:
        output = proc.communicate(timeout=20)[0].decode()
    finally:
        proc.kill()
    # It logged in through the socket with the .pgpass file (the query ran), then died on
    # the first SHOW STATS row, before listening.
    assert proc.returncode != 0
    assert "KeyError: 'total_requests'" in output
    assert "password authentication failed" not in output


def test_a_failing_server_login_looks_as_the_alerts_expect(
    workload_dir: str, postgres: PostgresCluster, app_user: str, passfile: str
) -> None:
    """What a real pgbouncer shows when PostgreSQL starts refusing its logins.

    A pool that served before (pgbouncer knows the server's parameters) gets a new client
    after the role's password changed: the client's query waits while every server login
    fails, and the pool holds no server connection, which is what
    PgBouncerServerLoginFailures looks for; each failure writes a line the Loki rule
    matches (its pattern read from the shipped rule file). A pool that never logged in is
    different: pgbouncer closes its logging-in clients with the server's error at once, so
    only the log line shows it.
    """
    port = free_port()
    cfg = initial_config(CharmConfig(listen_port=port), 1)
    cfg = with_stats_users(
        cfg.with_settings({"listen_addr": "127.0.0.1", "server_login_retry": "1"})
    )
    cfg = cfg.with_database(
        "logindb",
        ConnString(
            {"host": postgres.host, "port": str(postgres.port), "dbname": "postgres",
             "user": APP_USER, "password": APP_PASSWORD}
        ),
    )  # fmt: skip
    with LocalWorkload(workload_dir, processes=1) as workload:
        workload.write_cfg(render_pgb_ini(cfg))
        workload.write_auth(with_stats_user(f'"{app_user}" "{APP_PASSWORD}"\n', STATS_PASSWORD))
        workload.restart()
        spec = exporters(1, port, base_dir=workload_dir)[0]

        def pool() -> dict[str, int]:
            with psycopg.connect(spec.connection_string, passfile=passfile, autocommit=True) as c:
                cursor = c.execute(b"SHOW POOLS")
                names = [column.name for column in cursor.description or []]
                rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
            row = next((row for row in rows if row["database"] == "logindb"), {})
            return {k: int(v) for k, v in row.items() if k.startswith(("cl_", "sv_"))}

        # The pool serves once; then PostgreSQL drops its server connection and the role's
        # password changes under it.
        _client_query(port, "logindb", timeout=20)
        postgres.psql(f"ALTER ROLE {APP_USER} PASSWORD 'changed-{secrets.token_hex(8)}'")
        try:
            postgres.psql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE usename = '{APP_USER}' AND application_name <> 'psql'"
            )
            assert wait_until(lambda: pool().get("sv_idle", 0) == 0, timeout=20)
            waiting = threading.Thread(
                target=_client_query, args=(port, "logindb", 30), daemon=True
            )
            waiting.start()
            assert wait_until(lambda: pool().get("cl_waiting", 0) > 0, timeout=20)
            servers = ("sv_active", "sv_idle", "sv_used", "sv_tested")
            assert [pool()[name] for name in servers] == [0, 0, 0, 0]
            log = pathlib.Path(workload.instance_dir(0), "console.log")
            assert wait_until(lambda: bool(re.search(LOKI_PATTERN, log.read_text())), timeout=20)
        finally:
            postgres.psql(f"ALTER ROLE {APP_USER} PASSWORD '{APP_PASSWORD}'")
        # Logins work again: the waiting client is served, nothing waits any more.
        assert wait_until(lambda: pool().get("cl_waiting", 0) == 0, timeout=30)
        waiting.join(timeout=30)


def _client_query(port: int, dbname: str, timeout: int) -> None:
    with contextlib.suppress(psycopg.Error), psycopg.connect(
        host="127.0.0.1", port=port, dbname=dbname, user=APP_USER, password=APP_PASSWORD,
        connect_timeout=timeout, autocommit=True,
    ) as conn:  # fmt: skip
        conn.execute(b"SELECT 1")
