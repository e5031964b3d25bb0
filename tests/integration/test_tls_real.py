"""TLS with the real programs: the charm's units serving clients with their own certificates.

Three units of the real charm (``MultiUnitModel``, ``real=True``, two pgbouncer 1.18 processes
each, every unit on its own loopback address as every pod has its own IP) are related to the
session's PostgreSQL, to a client application, and to a certificate authority that answers the
units' requests (``localenv.tls_provider``: the TLS library's own helpers). Then:

- ``psql`` with ``sslmode=verify-full`` and the CA connects through every process of every
  unit, naming the unit by the hostname clients are given (``hostaddr`` maps it to the unit's
  loopback address); pgbouncer's own log says the session used TLS;
- a plain connection is accepted, and refused once the operator sets ``client_tls_required``;
- with ``client_tls_required``, the metrics exporters still log in over each process's unix
  socket (one unit of real processes, the stats user refused over plain TCP);
- rotation: the provider issues new certificates; after the reload an open TLS session still
  works (same server process) and a new one sees the new certificate's serial;
- a rescheduled pod serves TLS again from its first start;
- removing the relation: clients are told ``tls`` false, the key and certificate are gone
  from every unit, a TLS-only client is refused and a plain one accepted.

The backend side runs against a second PostgreSQL with ``ssl = on`` and its own CA:
pgbouncer verifies it (``verify-ca``) when the relation publishes ``tls-ca``, and a server whose
certificate another CA signed is refused; without a CA it keeps ``prefer``.
"""

from __future__ import annotations

import os
import random
import socket
import ssl
import struct
import subprocess
import time
from collections.abc import Iterator

import psycopg
import pytest
from cryptography import x509

from domain.charm_config import CharmConfig, initial_config
from domain.observability import (
    STATS_USER,
    exporters,
    pgpass_file,
    with_stats_user,
    with_stats_users,
)
from domain.pgb_config import (
    BACKEND_TLS_CA_PATH,
    CLIENT_TLS_KEY_PATH,
    parse_pgb_ini,
    render_pgb_ini,
)
from domain.tls import ClientTlsFiles, TlsInPlace, TlsIntent, apply_tls_intent
from localenv.binaries import pg_program
from localenv.juju_model import MultiUnitModel
from localenv.local_workload import CONSOLE_NAME, LocalWorkload
from localenv.net import free_port
from localenv.postgres_cluster import PostgresCluster
from localenv.processes import pgrep
from localenv.tls_provider import CertificateAuthority
from tests.charm_leftovers import drop_what_the_charm_made

pytestmark = pytest.mark.real

PROCESSES = 2
CLIENT_DB = "tls_appdb"


def run_psql(
    conninfo: str, sql: str = "SELECT 1", timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env["PGCONNECT_TIMEOUT"] = "30"  # the machine is shared: a slow accept is no failure
    return subprocess.run(
        [pg_program("psql"), "--no-psqlrc", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql, conninfo],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def conninfo(model: MultiUnitModel, n: int, client: dict[str, str], **extra: str) -> str:
    parts = {
        "host": model.hostname(n),
        "hostaddr": model.unit_address(n),
        "port": str(model.config["listen_port"]),
        "user": client["username"],
        "password": client["password"],
        "dbname": CLIENT_DB,
        **extra,
    }
    return " ".join(f"{key}='{value}'" for key, value in parts.items())


def peer_certificate_serial(host: str, address: str, port: int, ca_file: str) -> int:
    """A new TLS session's server certificate serial, verified against the CA and ``host``
    (PostgreSQL's SSLRequest, then the handshake: what libpq's verify-full does)."""
    context = ssl.create_default_context(cafile=ca_file)
    with socket.create_connection((address, port), timeout=10) as raw:
        raw.sendall(struct.pack("!ii", 8, 80877103))
        assert raw.recv(1) == b"S", "the server refused TLS"
        with context.wrap_socket(raw, server_hostname=host) as tls:
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def tls_logins(model: MultiUnitModel, n: int, index: int) -> int:
    """How many TLS logins process ``index`` of unit ``n`` logged (pgbouncer logs each
    login with its TLS version and cipher, to standard error: the per-process copies have
    ``logfile = /dev/null``, and the local workload keeps each process's output in a file)."""
    log = os.path.join(model.local_workload(n).instance_dir(index), CONSOLE_NAME)
    with open(log, encoding="utf-8", errors="replace") as file:
        return sum(1 for line in file if "login attempt" in line and "tls=TLS" in line)


@pytest.fixture
def ca_file(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[CertificateAuthority, str]:
    ca = CertificateAuthority()
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    path.write_text(ca.pem)
    return ca, str(path)


@pytest.fixture
def model(postgres: PostgresCluster) -> Iterator[MultiUnitModel]:
    with MultiUnitModel(
        3,
        real=True,
        processes=PROCESSES,
        backend=False,
        unit_addresses=True,
        config={"listen_port": free_port()},
    ) as model:
        yield model
    assert pgrep(model.base_dir) == [], "pgbouncer processes left running"
    drop_what_the_charm_made(postgres, [CLIENT_DB])


def test_verified_tls_through_every_unit_rotation_and_removal(
    model: MultiUnitModel, postgres: PostgresCluster, ca_file: tuple[CertificateAuthority, str]
) -> None:
    ca, ca_path = ca_file
    model.relate_backend(postgres)
    relation_id = model.relate_client("tls-client", CLIENT_DB)
    certificates = model.relate_certificates(ca)
    model.settle(random.Random(0))
    assert not model.divergence(), model.divergence()
    client = model.client_credentials(relation_id)
    answer = model.relation_data(relation_id)
    assert answer["tls"] == "True"
    assert answer["tls-ca"].strip() == ca.pem.strip()
    published = parse_pgb_ini(model.published_cfg() or "")
    assert published.setting("client_tls_sslmode") == "prefer"
    assert published.setting("client_tls_key_file") == CLIENT_TLS_KEY_PATH
    for n in model.units:
        assert model.unit_status(n).startswith("active"), model.unit_status(n)
    # Each unit's key: in the secret that unit owns and in its own container, nowhere else.
    keys = {}
    for n in model.units:
        owned = [
            s.tracked_content["private-key"]
            for s in model.unit_secrets(n)
            if "private-key" in s.tracked_content
        ]
        assert len(owned) == 1, n
        with open(model.local_workload(n).tls_path(CLIENT_TLS_KEY_PATH), encoding="ascii") as f:
            assert f.read().strip() == owned[0].strip()
        keys[n] = owned[0]
    assert len(set(keys.values())) == len(keys)
    everything_shared = (
        str(model.app_data)
        + str(model.secrets())
        + str([model.unit_data(n) for n in model.units])
        + str(model.relation_data(relation_id))
        + str(model.relation_data(certificates))
    )
    for key in keys.values():
        assert key.splitlines()[1] not in everything_shared

    # verify-full through every process of every unit, by the unit's own hostname.
    for n in model.units:
        for _attempt in range(60):
            result = run_psql(
                conninfo(model, n, client, sslmode="verify-full", sslrootcert=ca_path),
                "SELECT session_user",
            )
            assert result.returncode == 0, result.stderr
            assert result.stdout.strip() == client["username"]
            if all(tls_logins(model, n, i) for i in range(PROCESSES)):
                break
        assert all(tls_logins(model, n, i) for i in range(PROCESSES)), n
        # Another unit's name is not in this unit's certificate: verify-full refuses it.
        other = (n + 1) % len(model.units)
        wrong = conninfo(model, n, client, sslmode="verify-full", sslrootcert=ca_path)
        wrong = wrong.replace(model.hostname(n), model.hostname(other))
        refused = run_psql(wrong)
        assert refused.returncode != 0
        assert "does not match host name" in refused.stderr, refused.stderr

    # A plain client is accepted while TLS is optional...
    plain = run_psql(conninfo(model, 1, client, sslmode="disable"))
    assert plain.returncode == 0, plain.stderr
    # ... and refused once the operator requires TLS; TLS clients still get in.
    model.set_config(client_tls_required=True)
    model.settle(random.Random(1))
    for n in model.units:
        plain = run_psql(conninfo(model, n, client, sslmode="disable"))
        assert plain.returncode != 0
        assert "SSL required" in plain.stderr, plain.stderr
        secure = run_psql(conninfo(model, n, client, sslmode="verify-full", sslrootcert=ca_path))
        assert secure.returncode == 0, secure.stderr

    # Rotation: an open TLS session survives the reload; new sessions see the new serial.
    port = int(model.config["listen_port"])
    before = {
        n: peer_certificate_serial(model.hostname(n), model.unit_address(n), port, ca_path)
        for n in model.units
    }
    pids = {n: model.local_workload(n).pids() for n in model.units}
    with psycopg.connect(
        conninfo(model, 2, client, sslmode="verify-full", sslrootcert=ca_path)
    ) as session:
        assert session.execute("SELECT 1").fetchone() == (1,)
        model.rotate_certificates()
        model.settle(random.Random(2))
        assert session.execute("SELECT 2").fetchone() == (2,)
    after = {
        n: peer_certificate_serial(model.hostname(n), model.unit_address(n), port, ca_path)
        for n in model.units
    }
    for n in model.units:
        assert after[n] != before[n], n
        assert model.local_workload(n).pids() == pids[n], "rotation restarted pgbouncer"

    # A rescheduled pod (empty container): the unit puts its key and certificate back from
    # the library's secret before it starts pgbouncer, and serves TLS from its first start.
    model.reschedule(1)
    model.settle(random.Random(9))
    secure = run_psql(conninfo(model, 1, client, sslmode="verify-full", sslrootcert=ca_path))
    assert secure.returncode == 0, secure.stderr
    pids[1] = model.local_workload(1).pids()

    # Removal: clients are told, files go, plain connections only.
    model.set_config(client_tls_required=False)
    model.unrelate(certificates)
    model.settle(random.Random(3))
    answer = model.relation_data(relation_id)
    assert answer["tls"] == "False"
    assert "tls-ca" not in answer
    assert "client_tls_sslmode" not in (model.published_cfg() or "")
    for n in model.units:
        workload = model.local_workload(n)
        assert not os.path.exists(workload.tls_path(CLIENT_TLS_KEY_PATH)), n
        assert model.local_workload(n).pids() == pids[n], "removal restarted pgbouncer"
        secure = run_psql(conninfo(model, n, client, sslmode="require"))
        assert secure.returncode != 0
        assert "server does not support SSL" in secure.stderr, secure.stderr
        plain = run_psql(conninfo(model, n, client, sslmode="disable"))
        assert plain.returncode == 0, plain.stderr
        assert model.unit_status(n).startswith("active"), model.unit_status(n)


def test_a_unit_without_its_certificate_keeps_serving_without_tls(
    model: MultiUnitModel, postgres: PostgresCluster, ca_file: tuple[CertificateAuthority, str]
) -> None:
    ca, ca_path = ca_file
    model.relate_backend(postgres)
    relation_id = model.relate_client("tls-client", CLIENT_DB)
    model.settle(random.Random(4))
    client = model.client_credentials(relation_id)
    pids = {n: model.local_workload(n).pids() for n in model.units}
    late = 2
    model.withheld.add(late)
    model.relate_certificates(ca)
    model.settle(random.Random(5))
    assert "client_tls_sslmode = prefer" in (model.published_cfg() or "")
    assert model.unit_status(late) == (
        "waiting: no TLS certificate for this unit yet: clients connect without TLS"
    )
    # The late unit serves plain connections, with its processes of before.
    refused = run_psql(conninfo(model, late, client, sslmode="require"))
    assert refused.returncode != 0
    assert "server does not support SSL" in refused.stderr, refused.stderr
    plain = run_psql(conninfo(model, late, client, sslmode="disable"))
    assert plain.returncode == 0, plain.stderr
    # The others serve TLS already.
    for n in (0, 1):
        secure = run_psql(conninfo(model, n, client, sslmode="verify-full", sslrootcert=ca_path))
        assert secure.returncode == 0, secure.stderr
    # Its certificate comes: TLS by a reload, nobody restarted.
    model.release_certificates()
    model.settle(random.Random(6))
    assert model.unit_status(late).startswith("active"), model.unit_status(late)
    secure = run_psql(conninfo(model, late, client, sslmode="verify-full", sslrootcert=ca_path))
    assert secure.returncode == 0, secure.stderr
    assert {n: model.local_workload(n).pids() for n in model.units} == pids


def test_the_exporters_read_through_their_sockets_when_clients_must_use_tls(
    workload_dir: str, ca_file: tuple[CertificateAuthority, str]
) -> None:
    """With ``client_tls_required`` pgbouncer refuses plain TCP logins; the exporters log in
    over each process's unix socket with ``sslmode=disable`` (``ExporterSpec``), which
    pgbouncer 1.18 does not hold to the TLS rule, so the metrics keep coming. The control:
    the same stats user over plain TCP is refused for want of TLS, and admitted over TLS."""
    ca, _ca_path = ca_file
    password = "s" * 32
    port = free_port()
    cfg = initial_config(CharmConfig(listen_port=port), PROCESSES)
    cfg = with_stats_users(cfg.with_settings({"listen_addr": "127.0.0.1"}))
    cfg = apply_tls_intent(cfg, TlsIntent(client=True, require=True))
    key, cert = ca.server_pair("pgbouncer-k8s-0", sans_dns=["localhost"], sans_ip=["127.0.0.1"])
    passfile = os.path.join(workload_dir, "exporter.pgpass")
    descriptor = os.open(passfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(pgpass_file(password))
    with LocalWorkload(workload_dir, processes=PROCESSES) as workload:
        workload.write_client_tls(ClientTlsFiles(key=key, cert=cert, ca=ca.pem))
        workload.write_cfg(render_pgb_ini(cfg), TlsInPlace(client=True))
        workload.write_auth(with_stats_user("", password))
        workload.restart()
        for spec in exporters(PROCESSES, port, base_dir=workload_dir):
            with psycopg.connect(spec.connection_string, passfile=passfile) as conn:
                conn.autocommit = True
                assert conn.execute("SHOW VERSION").fetchone() is not None, spec.index
        tcp = f"host=127.0.0.1 port={port} dbname=pgbouncer user={STATS_USER}"
        with pytest.raises(psycopg.OperationalError, match="SSL required"):
            psycopg.connect(f"{tcp} sslmode=disable", passfile=passfile).close()
        with psycopg.connect(f"{tcp} sslmode=require", passfile=passfile) as conn:
            conn.autocommit = True
            assert conn.execute("SHOW VERSION").fetchone() is not None


@pytest.fixture(scope="module")
def backend_ca() -> CertificateAuthority:
    return CertificateAuthority("test PostgreSQL CA")


@pytest.fixture(scope="module")
def postgres_tls(backend_ca: CertificateAuthority) -> Iterator[PostgresCluster]:
    """A PostgreSQL with ssl = on, its certificate signed by ``backend_ca``."""
    pair = backend_ca.server_pair("postgresql-k8s-primary", sans_ip=["127.0.0.1"])
    cluster = PostgresCluster(ssl=pair).start()
    try:
        yield cluster
    finally:
        cluster.stop()


def server_connection_uses_ssl(
    model: MultiUnitModel, client: dict[str, str], postgres: PostgresCluster
) -> str:
    """Whether the server connection unit 0's pgbouncer gives this client runs TLS: ``t``,
    ``f``, or empty when PostgreSQL knows no such process.

    The client asks for its server process's pid inside an open transaction (so pgbouncer
    cannot hand that connection to anyone else or close it meanwhile); PostgreSQL's superuser
    then reads that process's row of ``pg_stat_ssl``. The client itself cannot: it works as its
    database's owner role, and ``pg_stat_ssl`` shows other roles' rows only to the privileged.
    """
    with psycopg.connect(
        conninfo(model, 0, client, sslmode="disable"), connect_timeout=30
    ) as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        return postgres.psql(f"SELECT ssl FROM pg_stat_ssl WHERE pid = {int(row[0])}")


@pytest.mark.parametrize("published_ca", ["right", "none"])
def test_backend_verified_with_the_ca_it_publishes(
    postgres_tls: PostgresCluster, backend_ca: CertificateAuthority, published_ca: str
) -> None:
    with MultiUnitModel(
        2,
        real=True,
        processes=PROCESSES,
        backend=False,
        unit_addresses=True,
        config={"listen_port": free_port()},
    ) as model:
        ca = backend_ca.pem if published_ca == "right" else None
        model.relate_backend(postgres_tls, tls_ca=ca)
        relation_id = model.relate_client("tls-client", CLIENT_DB)
        model.settle(random.Random(7))
        assert not model.divergence(), model.divergence()
        cfg = parse_pgb_ini(model.published_cfg() or "")
        if published_ca == "right":
            assert cfg.setting("server_tls_sslmode") == "verify-ca"
            assert cfg.setting("server_tls_ca_file") == BACKEND_TLS_CA_PATH
            for n in model.units:
                path = model.local_workload(n).tls_path(BACKEND_TLS_CA_PATH)
                with open(path, encoding="ascii") as file:
                    assert file.read().strip() == backend_ca.pem.strip()
                assert oct(os.stat(path).st_mode & 0o777) == "0o600"
        else:
            assert cfg.setting("server_tls_sslmode") == "prefer"
            assert cfg.setting("server_tls_ca_file") is None
        client = model.client_credentials(relation_id)
        # prefer or verify-ca: the server connection is encrypted either way.
        assert server_connection_uses_ssl(model, client, postgres_tls) == "t"
    assert pgrep(model.base_dir) == []


def test_backend_with_a_certificate_another_ca_signed_is_refused(
    postgres_tls: PostgresCluster, backend_ca: CertificateAuthority
) -> None:
    """The attack: a server that is not the one the backend's CA vouches for. pgbouncer
    verifying with the published CA refuses it; the positive control is the test above."""
    impostor_ca = CertificateAuthority("someone else's CA")
    with MultiUnitModel(
        1,
        real=True,
        processes=1,
        backend=False,
        unit_addresses=True,
        config={"listen_port": free_port()},
    ) as model:
        model.relate_backend(postgres_tls, tls_ca=impostor_ca.pem)
        relation_id = model.relate_client("tls-client", CLIENT_DB + "_x")
        model.settle(random.Random(8))
        assert "server_tls_sslmode = verify-ca" in (model.published_cfg() or "")
        client = model.client_credentials(relation_id)
        # pgbouncer keeps the client waiting (query_wait_timeout, 120 s) while it retries the
        # server login, so the refusal a client sees is a query that never answers: a short
        # wait stands for it, and pgbouncer's log says why.
        try:
            result = run_psql(
                conninfo(model, 0, client, sslmode="disable", dbname=CLIENT_DB + "_x"),
                "SELECT 1",
                timeout=8,
            )
            answered = result.returncode == 0 and result.stdout.strip() == "1"
        except subprocess.TimeoutExpired:
            answered = False
        assert not answered
        log = os.path.join(model.local_workload(0).instance_dir(0), CONSOLE_NAME)
        deadline = time.monotonic() + 20
        text = ""
        while time.monotonic() < deadline and "certificate verify failed" not in text:
            time.sleep(0.2)
            with open(log, encoding="utf-8", errors="replace") as file:
                text = file.read()
        assert "certificate verify failed" in text, text[-2000:]
    assert pgrep(model.base_dir) == []
