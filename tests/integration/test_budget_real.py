"""The connection budget against the real pgbouncer 1.18 and PostgreSQL 15.

N units of P pgbouncer processes each (one ``LocalWorkload`` per unit, each on its own port,
as units are separate pods), every unit on the leader's one configuration for an application
of N x P processes, serving K client applications set up as the charm sets them up. Checked:
the rendered files of every process add up to at most the configured number per database, and
PostgreSQL's own ``pg_stat_activity``, sampled while idle clients sit connected through every
process and pgbench drives more clients than the budget through every process, never shows
more server connections to a database than the configured number.
"""

import contextlib
import random
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

from adapters.postgres.auth_setup import install_auth, make_dsn, remove_auth
from adapters.postgres.clients import create_client, role_mark
from domain.backend import BackendEndpoints, HostPort, with_auth_query
from domain.budget import connection_budget
from domain.charm_config import CharmConfig, initial_config
from domain.clients import ClientApp, ClientRequest, with_client
from domain.pgb_config import parse_pgb_ini, render_pgb_ini
from localenv.binaries import pg_program
from localenv.local_workload import LocalWorkload
from localenv.net import free_port
from localenv.postgres_cluster import PostgresCluster
from localenv.processes import pgrep
from tests.charm_leftovers import drop_client_databases

pytestmark = pytest.mark.real

UNITS, PROCESSES, CLIENTS = 2, 2, 2
CONFIGURED = 10  # 10 // (2 x 2) = 2 per process: a pool of 1 and the auth role's 1


class Sampler(threading.Thread):
    """Polls pg_stat_activity: the most server connections seen per client database."""

    def __init__(self, dsn: str, databases: list[str]) -> None:
        super().__init__(daemon=True)
        self.dsn, self.databases = dsn, databases
        self.peak = dict.fromkeys(databases, 0)
        self.peak_who: dict[str, str] = {}
        self.samples = 0
        self._halt = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self._halt.is_set():
                rows = conn.execute(
                    "SELECT datname, count(*), string_agg(usename || ':' || state, ',')"
                    " FROM pg_stat_activity"
                    " WHERE datname = ANY(%s) AND backend_type = 'client backend'"
                    " GROUP BY datname",
                    [self.databases],
                ).fetchall()
                for datname, count, who in rows:
                    if int(count) > self.peak[datname]:
                        self.peak[datname] = int(count)
                        self.peak_who[datname] = str(who)
                self.samples += 1
                time.sleep(0.02)

    def stop(self) -> dict[str, int]:
        self._halt.set()
        self.join(timeout=10)
        return self.peak


@pytest.fixture
def setup(postgres: PostgresCluster) -> Iterator[dict]:
    admin, admin_pw = f"pgb_admin_{secrets.token_hex(4)}", secrets.token_urlsafe(18)
    postgres.psql(f"CREATE ROLE {admin} LOGIN SUPERUSER PASSWORD '{admin_pw}'")
    dsn = make_dsn(postgres.host, postgres.port, admin, admin_pw)
    auth_user, auth_pw = f"pgbouncer_auth_{admin}", secrets.token_urlsafe(18)
    install_auth(dsn, auth_user, auth_pw, ["postgres"])
    clients = []
    for k in range(CLIENTS):
        relation_id = secrets.randbelow(900_000) + 100_000
        request = ClientRequest(relation_id, f"budget_{k}_{secrets.token_hex(3)}")
        password = secrets.token_urlsafe(18)
        create_client(
            dsn,
            request.user,
            password,
            request.database,
            (),
            role_mark("m", "pgbouncer-k8s", relation_id),
            ClientApp("m", f"app{k}"),
        )
        install_auth(dsn, auth_user, auth_pw, [request.database])
        clients.append((request, password))
    bases = [tempfile.mkdtemp(prefix=f"pgb-budget-{n}-") for n in range(UNITS)]
    units = [LocalWorkload(base, processes=PROCESSES) for base in bases]
    try:
        yield {
            "dsn": dsn,
            "auth": (auth_user, auth_pw),
            "clients": clients,
            "units": units,
            "ports": [free_port() for _ in units],
        }
    finally:
        for unit in units:
            unit.stop()
        for base in bases:
            assert pgrep(base) == [], "pgbouncer processes left running"
            shutil.rmtree(base, ignore_errors=True)
        drop_client_databases(postgres, [request.database for request, _ in clients])
        superuser = make_dsn(postgres.host, postgres.port, postgres.superuser, postgres.password)
        remove_auth(superuser, auth_user, ["postgres"])
        postgres.psql(f"DROP ROLE {admin}")


def leader_cfg(
    postgres: PostgresCluster, setup: dict, pool_mode: str, configured: int = CONFIGURED
) -> str:
    """The leader's pgbouncer.ini for an application of UNITS x PROCESSES processes."""
    charm = CharmConfig(max_db_connections=configured, pool_mode=pool_mode)
    cfg = initial_config(charm, UNITS * PROCESSES).with_settings({"listen_addr": "127.0.0.1"})
    backend = BackendEndpoints(endpoints=(HostPort(postgres.host, postgres.port),))
    for request, _ in setup["clients"]:
        cfg = with_client(cfg, request, backend, setup["auth"][0])
    return with_auth_query(render_pgb_ini(cfg), *setup["auth"]).cfg


def apply(setup: dict, cfg: str) -> None:
    auth_user, auth_pw = setup["auth"]
    auth = with_auth_query(cfg, auth_user, auth_pw).auth
    for unit, port in zip(setup["units"], setup["ports"], strict=True):
        unit.write_auth(auth)
        unit.write_cfg(
            render_pgb_ini(parse_pgb_ini(cfg).with_settings({"listen_port": str(port)}))
        )
        unit.reload()


def every_process(setup: dict) -> Iterator[tuple[str, int]]:
    """(unix socket folder, port) of every pgbouncer process of every unit."""
    for unit, port in zip(setup["units"], setup["ports"], strict=True):
        for index in range(PROCESSES):
            yield unit.instance_dir(index), port


def test_rendered_files_of_every_process_add_up_to_the_budget(postgres, setup):
    apply(setup, leader_cfg(postgres, setup, "session"))
    totals = {"max_db_connections": 0, "pools": 0, "min_pool_size": 0}
    files = 0
    for unit in setup["units"]:
        for index in range(PROCESSES):
            with open(f"{unit.instance_dir(index)}/pgbouncer.ini", encoding="utf-8") as file:
                cfg = parse_pgb_ini(file.read())
            files += 1
            share = int(cfg.setting("max_db_connections") or 0)
            assert share >= 1  # 0 would be unlimited
            totals["max_db_connections"] += share
            totals["pools"] += int(cfg.setting("default_pool_size") or 0) + int(
                cfg.setting("reserve_pool_size") or 0
            )
            totals["min_pool_size"] += int(cfg.setting("min_pool_size") or 0)
    assert files == UNITS * PROCESSES
    assert totals == {"max_db_connections": 8, "pools": 4, "min_pool_size": 0}
    assert connection_budget(CONFIGURED, [PROCESSES] * UNITS).total == 8


def _connect_idle(host: str, port: int, request: ClientRequest, password: str):
    conn = psycopg.connect(
        host=host,
        port=port,
        user=request.user,
        password=password,
        dbname=request.database,
        autocommit=True,
    )
    conn.execute("SELECT 1")
    return conn


# 10: 2 per process (a pool of 1, 1 for auth_query), 8 in all; 4: 1 per process, which the
# pool and the auth role share (pgbouncer evicts one for the other), 4 in all.
@pytest.mark.parametrize("configured", [10, 4])
def test_pg_stat_activity_stays_within_the_budget_with_idle_and_busy_clients(
    postgres, setup, configured
):
    total = connection_budget(configured, [PROCESSES] * UNITS).total
    assert total is not None
    databases = [request.database for request, _ in setup["clients"]]
    # pgbench's tables, made directly on the server before anything is counted.
    for request, password in setup["clients"]:
        init = subprocess.run(
            [
                pg_program("pgbench"),
                "--initialize",
                "--quiet",
                "--scale=1",
                f"--host={postgres.host}",
                f"--port={postgres.port}",
                f"--username={request.user}",
                request.database,
            ],
            env={"PGPASSWORD": password, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert init.returncode == 0, init.stderr
    # Session mode: every idle client holds the server connection it used, and nothing more.
    apply(setup, leader_cfg(postgres, setup, "session", configured))
    sampler = Sampler(postgres.dsn(), databases)
    sampler.start()
    with contextlib.ExitStack() as stack:
        for host, port in every_process(setup):
            for request, password in setup["clients"]:
                stack.enter_context(_connect_idle(host, port, request, password))
        time.sleep(1.5)  # an idle pool opens nothing more (min_pool_size would, by now)
        idle = dict(sampler.peak)
    # Every process served one idle client per database: one server connection each (and
    # the auth role's, which pgbouncer counts against the same database).
    for database in databases:
        assert UNITS * PROCESSES <= idle[database] <= total, idle

    # Transaction mode, and more clients than the budget through every process at once.
    apply(setup, leader_cfg(postgres, setup, "transaction", configured))
    benches = []
    with contextlib.ExitStack() as stack:
        for host, port in every_process(setup):
            for request, password in setup["clients"]:
                # Idle clients stay connected through the busy run.
                stack.enter_context(_connect_idle(host, port, request, password))
        for host, port in every_process(setup):
            for request, password in setup["clients"]:
                benches.append(
                    subprocess.Popen(
                        [
                            pg_program("pgbench"),
                            "--client=5",
                            "--jobs=1",
                            "--time=4",
                            "--no-vacuum",
                            f"--host={host}",
                            f"--port={port}",
                            f"--username={request.user}",
                            request.database,
                        ],
                        env={"PGPASSWORD": password, "PATH": "/usr/bin:/bin"},
                        stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT,
                        text=True,
                    )
                )
        outputs = [bench.communicate(timeout=120)[0] for bench in benches]
    peak = sampler.stop()
    for bench, out in zip(benches, outputs, strict=True):
        assert bench.returncode == 0, out
        assert "number of failed transactions: 0" in out, out
    busy_clients = UNITS * PROCESSES * 5
    assert busy_clients > configured  # more demand than budget: the cap is what holds it
    for database in databases:
        assert UNITS * PROCESSES <= peak[database] <= total <= configured, sampler.peak_who
    print(
        f"max_db_connections {configured}: peak server connections per database {peak}"
        f" (budget total {total}), idle {idle}; {sampler.samples} samples"
    )


# --- the charm: scaling moves every unit's share ----------------------------------------------


def _files_of_every_process(model) -> list[dict[str, int]]:
    found = []
    for n in model.units:
        workload = model.local_workload(n)
        for index in range(PROCESSES):
            with open(f"{workload.instance_dir(index)}/pgbouncer.ini", encoding="utf-8") as file:
                cfg = parse_pgb_ini(file.read())
            found.append(
                {
                    key: int(cfg.setting(key) or 0)
                    for key in ("max_db_connections", "default_pool_size", "min_pool_size")
                }
            )
    return found


def test_scaling_in_and_out_moves_every_processs_share(postgres):
    """The real charm on 3 units of 2 processes (``MultiUnitModel``, real pgbouncer): the
    files every process runs add up to the operator's number, after adding two units and
    after removing three; every live unit reloaded with the new share."""
    from localenv.juju_model import MultiUnitModel

    with MultiUnitModel(
        3,
        real=True,
        processes=PROCESSES,
        backend_port=postgres.port,
        config={"listen_port": free_port(), "max_db_connections": 60},
    ) as model:
        model.setup_backend('"admin" "admin-password"\n')
        model.settle(random.Random(0))
        assert not model.divergence()
        sizes = {3: 10, 5: 6, 2: 15}  # 60 // (units x 2)

        def check(units: int) -> None:
            files = _files_of_every_process(model)
            assert len(files) == units * PROCESSES
            assert {f["max_db_connections"] for f in files} == {sizes[units]}
            assert sum(f["max_db_connections"] for f in files) <= 60
            assert sum(f["default_pool_size"] for f in files) <= 60
            assert {f["min_pool_size"] for f in files} == {0}

        check(3)
        added = [model.add_unit(), model.add_unit()]
        model.settle(random.Random(1))
        assert not model.divergence()
        check(5)
        for n in [added[0], 1, 2]:
            model.remove_unit(n)
        model.settle(random.Random(2))
        assert not model.divergence()
        check(2)
    assert pgrep(model.base_dir) == [], "pgbouncer processes left running"
