"""LocalWorkload against real pgbouncer and PostgreSQL processes.

Each test gets its own workload folder with two pgbouncer processes sharing one TCP port
(``so_reuseport``), in front of the session's PostgreSQL server. Clients are the real ``psql``.
"""

import os
import pwd
import secrets
import signal
import socket
import stat
from collections.abc import Iterator

import pytest

from domain.charm_config import CharmConfig, initial_config
from domain.errors import InvalidPgbConfig
from domain.pgb_config import ConnString, parse_pgb_ini, per_process_dir, render_pgb_ini
from domain.ports import WorkloadUnavailable
from localenv.local_workload import LocalWorkload, PgbouncerStartFailed
from localenv.net import free_port
from localenv.postgres_cluster import PostgresCluster, psql
from localenv.processes import tcp_listeners, wait_until

pytestmark = pytest.mark.real

PROCESSES = 2
APP_USER = "pgb_app"
APP_PASSWORD = secrets.token_urlsafe(16)


@pytest.fixture(scope="module")
def app_user(postgres: PostgresCluster) -> Iterator[str]:
    """A login role in PostgreSQL, also listed in the auth file (and pgbouncer's admin); dropped
    after the module (the server is the session's)."""
    postgres.psql(f"DROP ROLE IF EXISTS {APP_USER}")
    postgres.psql(f"CREATE ROLE {APP_USER} LOGIN PASSWORD '{APP_PASSWORD}'")
    yield APP_USER
    postgres.psql(f"DROP ROLE {APP_USER}")


@pytest.fixture
def workload(workload_dir: str) -> Iterator[LocalWorkload]:
    with LocalWorkload(workload_dir, processes=PROCESSES) as workload:
        yield workload


def pgbouncer_ini(port: int, postgres: PostgresCluster, pool_mode: str = "session") -> str:
    """The charm's initial config on ``port``, with a database ``mydb`` and an admin user."""
    cfg = initial_config(CharmConfig(listen_port=port, pool_mode=pool_mode), PROCESSES)
    cfg = cfg.with_settings({"admin_users": APP_USER, "listen_addr": "127.0.0.1"})
    cfg = cfg.with_database(
        "mydb",
        ConnString({"host": postgres.host, "port": str(postgres.port), "dbname": "postgres"}),
    )
    return render_pgb_ini(cfg)


def auth_file() -> str:
    return f'"{APP_USER}" "{APP_PASSWORD}"\n'


def show_config(instance_dir: str, port: int) -> dict[str, str]:
    """SHOW CONFIG on one process's admin console, through its own unix socket."""
    out = psql(
        "SHOW CONFIG",
        host=instance_dir,
        port=port,
        user=APP_USER,
        password=APP_PASSWORD,
        dbname="pgbouncer",
    )
    return {row.split("|")[0]: row.split("|")[1] for row in out.splitlines()}


def start(workload: LocalWorkload, postgres: PostgresCluster, port: int) -> list[int]:
    workload.write_cfg(pgbouncer_ini(port, postgres))
    workload.write_auth(auth_file())
    workload.reload()
    pids = workload.pids()
    assert None not in pids
    return [pid for pid in pids if pid is not None]


def test_processes_share_the_port_and_reach_postgres(
    workload: LocalWorkload, postgres: PostgresCluster, app_user: str
) -> None:
    port = free_port()

    pids = start(workload, postgres, port)

    assert len(set(pids)) == PROCESSES
    assert (workload.starts, workload.signals_sent) == (PROCESSES, 0)
    assert tcp_listeners(port) == set(pids)
    over_tcp = psql(
        "SELECT current_user", host="127.0.0.1", port=port, user=app_user,
        password=APP_PASSWORD, dbname="mydb",
    )  # fmt: skip
    assert over_tcp == app_user
    for index in range(PROCESSES):
        over_socket = psql(
            "SELECT current_user", host=workload.instance_dir(index), port=port, user=app_user,
            password=APP_PASSWORD, dbname="mydb",
        )  # fmt: skip
        assert over_socket == app_user


def test_reload_applies_pool_mode_to_every_process_without_restart(
    workload: LocalWorkload, postgres: PostgresCluster, app_user: str
) -> None:
    port = free_port()
    pids = start(workload, postgres, port)
    dirs = [workload.instance_dir(index) for index in range(PROCESSES)]
    assert [show_config(d, port)["pool_mode"] for d in dirs] == ["session"] * PROCESSES

    workload.write_cfg(pgbouncer_ini(port, postgres, pool_mode="transaction"))
    workload.reload()

    for instance_dir in dirs:
        assert wait_until(
            lambda d=instance_dir: show_config(d, port)["pool_mode"] == "transaction"
        )
    assert workload.pids() == pids
    assert (workload.starts, workload.signals_sent) == (PROCESSES, PROCESSES)


def test_restart_moves_the_processes_to_a_new_port(
    workload: LocalWorkload, postgres: PostgresCluster, app_user: str
) -> None:
    old_port, new_port = free_port(), free_port()
    old_pids = start(workload, postgres, old_port)

    workload.write_cfg(pgbouncer_ini(new_port, postgres))
    workload.restart()

    new_pids = [pid for pid in workload.pids() if pid is not None]
    assert len(new_pids) == PROCESSES
    assert not set(new_pids) & set(old_pids)
    assert tcp_listeners(new_port) == set(new_pids)
    assert tcp_listeners(old_port) == set()
    assert workload.starts == 2 * PROCESSES
    result = psql(
        "SELECT 1", host="127.0.0.1", port=new_port, user=app_user, password=APP_PASSWORD,
        dbname="mydb",
    )  # fmt: skip
    assert result == "1"


def test_reload_starts_a_process_that_died(
    workload: LocalWorkload, postgres: PostgresCluster, app_user: str
) -> None:
    port = free_port()
    first, second = start(workload, postgres, port)
    os.kill(first, signal.SIGKILL)
    assert wait_until(lambda: workload.pids()[0] is None)

    workload.reload()

    replacement, kept = workload.pids()
    assert kept == second
    assert replacement not in (None, first)
    assert (workload.starts, workload.signals_sent) == (PROCESSES + 1, 1)
    assert tcp_listeners(port) == {replacement, second}


def test_files_are_private_to_the_workload_user(
    workload: LocalWorkload, postgres: PostgresCluster
) -> None:
    port = free_port()
    text = pgbouncer_ini(port, postgres)

    workload.write_cfg(text)
    workload.write_auth(auth_file())

    assert workload.read_cfg() == text
    assert workload.read_auth() == auth_file()
    base = workload.base_dir
    files = [f"{base}/pgbouncer.ini", f"{base}/userlist.txt"]
    files += [f"{per_process_dir(i, base)}/pgbouncer.ini" for i in range(PROCESSES)]
    for path in files:
        mode = os.stat(path)
        assert stat.S_IMODE(mode.st_mode) == 0o600, path
        if os.geteuid() == 0:
            assert mode.st_uid == pwd.getpwnam("postgres").pw_uid, path
    for index in range(PROCESSES):
        folder = per_process_dir(index, base)
        with open(f"{folder}/pgbouncer.ini", encoding="utf-8") as file:
            copy = parse_pgb_ini(file.read())
        assert copy.setting("pidfile") == f"{folder}/pgbouncer.pid"
        assert copy.setting("unix_socket_dir") == folder
        assert copy.setting("auth_file") == f"{base}/userlist.txt"
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    assert sorted(n for n in os.listdir(base) if n.startswith(".")) == []  # no temp files left

    workload.remove_auth()
    workload.remove_auth()
    assert workload.read_auth() is None


def test_invalid_config_is_refused_and_not_written(
    workload: LocalWorkload, postgres: PostgresCluster
) -> None:
    good = pgbouncer_ini(free_port(), postgres)
    workload.write_cfg(good)

    with pytest.raises(InvalidPgbConfig):
        workload.write_cfg(good + "no_such_setting = 1\n")

    assert workload.read_cfg() == good


def test_a_process_that_cannot_listen_fails_with_its_log(
    workload: LocalWorkload, postgres: PostgresCluster
) -> None:
    with socket.socket() as squatter:  # holds the port without SO_REUSEPORT
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        workload.write_cfg(pgbouncer_ini(port, postgres))
        workload.write_auth(auth_file())

        with pytest.raises(PgbouncerStartFailed, match="Address already in use"):
            workload.reload()

    assert workload.pids() == [None] * PROCESSES


def test_an_unreachable_workload_refuses_everything_but_stop(workload: LocalWorkload) -> None:
    workload.set_reachable(False)

    assert not workload.is_reachable()
    for call in (
        workload.read_cfg,
        workload.read_auth,
        workload.remove_auth,
        workload.reload,
        workload.restart,
        lambda: workload.write_auth(auth_file()),
    ):
        with pytest.raises(WorkloadUnavailable):
            call()
    workload.stop()


def test_a_reload_keeps_processes_started_before_any_auth_file(
    workload: LocalWorkload, postgres: PostgresCluster
) -> None:
    # Each process runs as the workload user from the start, as Pebble runs it, so whatever
    # it reopens on a reload is its own.
    port = free_port()
    workload.write_cfg(pgbouncer_ini(port, postgres))
    workload.reload()
    before = workload.pids()

    workload.write_cfg(pgbouncer_ini(port, postgres, pool_mode="transaction"))
    workload.write_auth(auth_file())
    workload.reload()

    assert wait_until(lambda: workload.pids() == before, timeout=1.0)
    for pid in before:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            uid = next(line.split()[1] for line in status if line.startswith("Uid:"))
        assert int(uid) == (pwd.getpwnam("postgres").pw_uid if os.geteuid() == 0 else os.getuid())
    assert show_config(per_process_dir(0, workload.base_dir), port)["pool_mode"] == "transaction"
