"""Tests of domain.pgb_validation and domain.pgb_version: what a unit lets its pgbouncer run.

Literal configs, exact messages. The rules come from what the real pgbouncer 1.18 refuses or
runs without serving (``tests/integration/test_pgb_differential.py`` and the campaign in
``bench/pgb_differential.py`` check them against the binary) and from the contract.
"""

import pytest

from domain.errors import InvalidPgbConfig
from domain.pgb_config import parse_pgb_ini
from domain.pgb_validation import CA, CERT, HBA, KEY, WorkloadFacts, check_published
from domain.pgb_version import (
    InvalidPgbVersion,
    PgbVersion,
    min_version,
    needs,
    parse_version_output,
    too_new,
)

D = "/var/lib/postgresql/pgbouncer"
BASE = f"""\
[databases]
app = host=10.1.1.1 port=5432 dbname=app

[pgbouncer]
auth_file = {D}/userlist.txt
auth_type = md5
listen_addr = *
listen_port = 6432
logfile = {D}/pgbouncer.log
pidfile = {D}/pgbouncer.pid
unix_socket_dir = {D}
user = postgres
"""
V1_18 = PgbVersion(1, 18, 0)
V1_21 = PgbVersion(1, 21, 0)
FILES = {
    f"{D}/tls/key.pem": KEY,
    f"{D}/tls/cert.pem": CERT,
    f"{D}/tls/ca.pem": CA,
    f"{D}/hba.conf": HBA,
}
FACTS = WorkloadFacts(version=V1_18, files=FILES)


def with_lines(*lines: str, text: str = BASE) -> str:
    """``text`` with each ``key = value`` line replacing its key's line, or added."""
    out = text.splitlines()
    for line in lines:
        key = line.split(" ", 1)[0]
        found = [i for i, old in enumerate(out) if old.split(" ", 1)[0] == key]
        if found:
            out[found[0]] = line
        else:
            out.append(line)
    return "\n".join(out) + "\n"


def test_the_base_config_runs_and_has_one_copy_per_process() -> None:
    checked = check_published(BASE, WorkloadFacts(processes=2))
    assert checked.cfg == parse_pgb_ini(BASE)
    assert [copy.setting("unix_socket_dir") for copy, _ in checked.process_copies] == [
        f"{D}/instance_0",
        f"{D}/instance_1",
    ]
    # pidfile and unix_socket_dir; the copies log to standard error (logfile /dev/null).
    assert [text.count("instance_1") for _, text in checked.process_copies] == [0, 2]
    assert all("logfile = /dev/null" in text for _, text in checked.process_copies)


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        # The contract: pgbouncer stays in its folder, as the workload user.
        (["user = root"], "[pgbouncer] user: must be the workload user postgres (or unset)"),
        (
            ["unix_socket_group = root"],
            "[pgbouncer] unix_socket_group: must be the workload user's group postgres",
        ),
        (
            ["logfile = /tmp/pgbouncer.log"],
            f"[pgbouncer] logfile: must be inside {D} "
            "(the contract keeps pgbouncer in its folder)",
        ),
        (
            [f"logfile = {D}/../pgbouncer.log"],
            f"[pgbouncer] logfile: '{D}/../pgbouncer.log' is not a plain absolute path "
            "(no quotes, ~, . or ..)",
        ),
        (
            [f"pidfile = {D}/run/pgbouncer.pid"],
            f"[pgbouncer] pidfile: must be in {D} or one of its instance_<n> folders",
        ),
        (
            [f"auth_file = {D}/other.txt"],
            f"[pgbouncer] auth_file: must be the charm's auth file {D}/userlist.txt",
        ),
        (
            ["unix_socket_dir = /tmp"],
            f"[pgbouncer] unix_socket_dir: must be inside {D} (the contract keeps pgbouncer "
            "in its folder)",
        ),
        (
            ["resolv_conf = /etc/resolv.conf"],
            f"[pgbouncer] resolv_conf: must be inside {D} (the contract keeps pgbouncer in its "
            "folder)",
        ),
        (
            [f"auth_hba_file = {D}/missing.conf", "auth_type = hba"],
            "[pgbouncer] auth_hba_file: names a file this unit does not have",
        ),
        # Auth types and the files they need.
        (
            ["auth_file ="],
            "[pgbouncer] auth_file: auth_type md5 checks passwords from it: required",
        ),
        (
            ["auth_type = hba"],
            "[pgbouncer] auth_hba_file: auth_type hba reads its rules from it: required",
        ),
        (
            ["auth_type = trust"],
            "[pgbouncer] auth_type: trust lets clients in without the passwords "
            "the charm hands out",
        ),
        (
            ["auth_type = cert"],
            "[pgbouncer] auth_type: cert needs client_tls_sslmode = verify-full",
        ),
        # TLS modes and the files they need, of the right kind.
        (
            ["client_tls_sslmode = require"],
            "[pgbouncer] client_tls_key_file: client_tls_sslmode require needs it",
        ),
        (
            [
                "client_tls_sslmode = verify-full",
                f"client_tls_key_file = {D}/tls/key.pem",
                f"client_tls_cert_file = {D}/tls/cert.pem",
            ],
            "[pgbouncer] client_tls_ca_file: client_tls_sslmode verify-full needs it",
        ),
        (
            ["client_tls_sslmode = require", f"client_tls_key_file = {D}/tls/cert.pem"],
            "[pgbouncer] client_tls_key_file: needs a TLS key, this unit's file is a TLS "
            "certificate",
        ),
        # Somewhere to listen.
        (
            ["listen_addr =", "unix_socket_dir ="],
            "[pgbouncer] listen_addr: pgbouncer would listen nowhere: no address and no socket",
        ),
        # Newer than this unit's pgbouncer.
        (["peer_id = 1"], "peer_id: needs pgbouncer 1.19.0, this unit runs 1.18.0"),
        (
            ["max_prepared_statements = 100", "track_extra_parameters = IntervalStyle"],
            "track_extra_parameters, max_prepared_statements: needs pgbouncer 1.21.0, "
            "this unit runs 1.18.0",
        ),
    ],
)
def test_check_published_refuses(lines: list[str], message: str) -> None:
    with pytest.raises(InvalidPgbConfig) as caught:
        check_published(with_lines(*lines), FACTS)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    "lines",
    [
        ["user ="],  # Pebble already runs pgbouncer as the workload user
        ["unix_socket_group = postgres"],
        ["unix_socket_dir ="],  # TCP only
        ["listen_addr ="],  # the unix socket only
        ["auth_type = scram-sha-256"],
        ["auth_type = hba", f"auth_hba_file = {D}/hba.conf"],
        [
            "client_tls_sslmode = verify-full",
            f"client_tls_key_file = {D}/tls/key.pem",
            f"client_tls_cert_file = {D}/tls/cert.pem",
            f"client_tls_ca_file = {D}/tls/ca.pem",
            "auth_type = cert",
        ],
        [f"server_tls_ca_file = {D}/tls/ca.pem", "server_tls_sslmode = verify-ca"],
        [f"logfile = {D}/instance_3/pgbouncer.log"],
    ],
)
def test_check_published_accepts(lines: list[str]) -> None:
    text = with_lines(*lines)
    assert check_published(text, FACTS).cfg == parse_pgb_ini(text)


def test_newer_settings_run_on_the_version_that_has_them() -> None:
    text = with_lines("peer_id = 1", "max_prepared_statements = 100", "[peers]", "1 = host=h")
    facts = WorkloadFacts(version=V1_21)
    assert check_published(text, facts).cfg.setting("max_prepared_statements") == "100"
    with pytest.raises(InvalidPgbConfig) as caught:
        check_published(text, WorkloadFacts(version=PgbVersion(1, 20, 0)))
    assert str(caught.value) == (
        "max_prepared_statements: needs pgbouncer 1.21.0, this unit runs 1.20.0"
    )
    with pytest.raises(InvalidPgbConfig) as caught:
        check_published(text, WorkloadFacts(version=V1_18))
    assert str(caught.value) == (
        "[peers], peer_id, max_prepared_statements: needs pgbouncer 1.21.0, this unit runs 1.18.0"
    )


def test_every_per_process_copy_passes_the_same_check() -> None:
    # A socket folder that fits for the main file but not for instance_1000's copy.
    base = "/" + "d" * (92 - len("/instance_1000"))
    text = BASE.replace(D, base)
    facts = WorkloadFacts(base_dir=base, processes=1)
    check_published(text, facts)
    with pytest.raises(InvalidPgbConfig) as caught:
        check_published(text, WorkloadFacts(base_dir=base, processes=1001))
    assert str(caught.value) == (
        "the copy for process 1000: [pgbouncer] unix_socket_dir: longer than 92 bytes: "
        "no socket fits"
    )


# --- versions --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "version"),
    [
        ("PgBouncer 1.18.0\nlibevent 2.1.12-stable\nadns: c-ares 1.18.1\n", PgbVersion(1, 18, 0)),
        ("PgBouncer 1.21.0\n", PgbVersion(1, 21, 0)),
        ("pgbouncer 1.23.1-rc1\n", PgbVersion(1, 23, 1)),
    ],
)
def test_parse_version_output(output: str, version: PgbVersion) -> None:
    assert parse_version_output(output) == version


@pytest.mark.parametrize("output", ["", "bash: pgbouncer: command not found", "PgBouncer x.y"])
def test_parse_version_output_refuses(output: str) -> None:
    with pytest.raises(InvalidPgbVersion):
        parse_version_output(output)


def test_versions_compare_as_numbers() -> None:
    assert PgbVersion(1, 9, 0) < PgbVersion(1, 18, 0) < PgbVersion(1, 21, 0)
    assert str(PgbVersion.parse("1.21")) == "1.21.0"


def test_needs_names_each_newer_feature_with_its_version() -> None:
    cfg = parse_pgb_ini(
        with_lines("track_extra_parameters = IntervalStyle", "[peers]", "1 = host=h").replace(
            "dbname=app", "dbname=app auth_dbname=auth"
        )
    )
    assert needs(cfg) == [
        ("[peers]", PgbVersion(1, 19, 0)),
        ("track_extra_parameters", PgbVersion(1, 20, 0)),
        ("[databases] auth_dbname", PgbVersion(1, 19, 0)),
    ]
    assert min_version(cfg) == PgbVersion(1, 20, 0)
    assert too_new(cfg, PgbVersion(1, 19, 5)) == [("track_extra_parameters", PgbVersion(1, 20, 0))]
    assert too_new(cfg, V1_21) == []
    assert min_version(parse_pgb_ini(BASE)) == V1_18


def test_a_parameter_name_inside_a_quoted_value_is_not_the_parameter() -> None:
    tricky = BASE.replace("dbname=app", "dbname=app password='x auth_dbname=y'")
    cfg = parse_pgb_ini(tricky)
    assert not cfg.uses_database_param("auth_dbname")
    assert needs(cfg) == []
    assert parse_pgb_ini(
        tricky.replace("dbname=app ", "dbname=app auth_dbname=z ")
    ).uses_database_param("auth_dbname")
