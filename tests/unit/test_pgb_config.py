"""Tests of domain.pgb_config: the pgbouncer.ini model, its text, and what changes need.

Expected texts and messages are written out literally here, never produced by the code under
test. The ``real`` tests start Debian's pgbouncer 1.18 on a free loopback port to check that
what the model accepts and renders is what the binary accepts, and that the setting lists the
model keeps (known settings, restart-only settings) are the binary's own.
"""

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain import pgb_config
from domain.charm_config import CharmConfig, initial_config
from domain.errors import InvalidPgbConfig
from domain.pgb_config import (
    AUTH_PATH,
    CFG_PATH,
    PGB_DIR,
    RESTART_ONLY_SETTINGS,
    SETTINGS,
    ChangeKind,
    ConnString,
    PgbConfig,
    PoolSizes,
    change_kind,
    min_pgbouncer_version,
    parse_pgb_ini,
    per_process_config,
    per_process_dir,
    pool_sizes,
    render_pgb_ini,
    rendered_settings,
    settings_change_kind,
)
from domain.pgb_version import SETTINGS_INTRODUCED_IN

BASE = {"logfile": "/l/pgbouncer.log", "pidfile": "/l/pgbouncer.pid"}
MINIMAL = "[databases]\n\n[pgbouncer]\nlogfile = /l/pgbouncer.log\npidfile = /l/pgbouncer.pid\n"


def minimal(**settings: str) -> PgbConfig:
    return PgbConfig(databases=(), pgbouncer={**BASE, **settings})


def ini(databases: str = "", pgbouncer: str = "", extra: str = "") -> str:
    """A text with the two required settings, plus the given lines."""
    return (
        f"[databases]\n{databases}\n[pgbouncer]\nlogfile = /l/pgbouncer.log\n"
        f"pidfile = /l/pgbouncer.pid\n{pgbouncer}\n{extra}"
    )


# ---------------------------------------------------------------------------------------------
# Paths


def test_paths() -> None:
    assert PGB_DIR == "/var/lib/postgresql/pgbouncer"
    assert CFG_PATH == "/var/lib/postgresql/pgbouncer/pgbouncer.ini"
    assert AUTH_PATH == "/var/lib/postgresql/pgbouncer/userlist.txt"
    assert per_process_dir(0) == "/var/lib/postgresql/pgbouncer/instance_0"
    assert per_process_dir(3, "/tmp/x") == "/tmp/x/instance_3"


# ---------------------------------------------------------------------------------------------
# Golden texts


GOLDEN_DATABASES_TEXT = """\
[databases]
* = host=10.0.0.9 port=5432
app = dbname=app host=10.0.0.1 password='it''s a secret' port=5432 user=relation_1
rep.ro = auth_user=pgb dbname=reports host=10.0.0.2 password=back\\slash pool_mode=transaction

[pgbouncer]
admin_users = alice,bob
auth_file = /l/userlist.txt
listen_port = 6432
logfile = /l/pgbouncer.log
pidfile = /l/pgbouncer.pid

[users]
relation_1 = max_user_connections=5 pool_mode=session
"""


def golden_databases_config() -> PgbConfig:
    return PgbConfig(
        databases={
            "rep.ro": ConnString(
                {
                    "host": "10.0.0.2",
                    "dbname": "reports",
                    "auth_user": "pgb",
                    "password": "back\\slash",
                    "pool_mode": "transaction",
                }
            ),
            "app": ConnString(
                [
                    ("user", "relation_1"),
                    ("password", "it's a secret"),
                    ("host", "10.0.0.1"),
                    ("port", "5432"),
                    ("dbname", "app"),
                ]
            ),
            "*": ConnString({"host": "10.0.0.9", "port": "5432"}),
        },
        pgbouncer={
            "pidfile": "/l/pgbouncer.pid",
            "logfile": "/l/pgbouncer.log",
            "listen_port": "6432",
            "auth_file": "/l/userlist.txt",
            "admin_users": "bob, alice,bob",
        },
        users={"relation_1": "max_user_connections=5 pool_mode=session"},
    )


def test_render_golden_databases_with_quoted_passwords() -> None:
    assert render_pgb_ini(golden_databases_config()) == GOLDEN_DATABASES_TEXT


def test_parse_golden_databases_with_quoted_passwords() -> None:
    cfg = parse_pgb_ini(GOLDEN_DATABASES_TEXT)
    assert cfg == golden_databases_config()
    app = cfg.database("app")
    assert app is not None
    assert app.get("password") == "it's a secret"
    reports = cfg.database("rep.ro")
    assert reports is not None
    assert reports.get("password") == "back\\slash"


def test_parse_tolerates_what_pgbouncer_tolerates() -> None:
    text = """\
; a comment
# another comment
[databases]
   app   =   user = 'a b'   host=h  port=5432
empty =

[pgbouncer]
	logfile	=	/l/pgbouncer.log
pidfile=/l/pgbouncer.pid
server_reset_query = DISCARD ALL ; not a comment in pgbouncer
stats_users = x,  y ,x
"""
    assert parse_pgb_ini(text) == PgbConfig(
        databases={
            "app": ConnString({"user": "a b", "host": "h", "port": "5432"}),
            "empty": ConnString(()),
        },
        pgbouncer={
            **BASE,
            "server_reset_query": "DISCARD ALL ; not a comment in pgbouncer",
            "stats_users": "x,y",
        },
    )


def test_render_is_deterministic_and_sorted() -> None:
    a = PgbConfig(
        databases={"b": ConnString({"port": "1", "host": "h"}), "a": ConnString(())},
        pgbouncer={"pidfile": "/p", "logfile": "/l", "admin_users": "z,a"},
        peers={2: ConnString({"host": "h2"}), 1: ConnString({"host": "h1"})},
    )
    b = PgbConfig(
        databases=[("a", ConnString(())), ("b", ConnString([("host", "h"), ("port", "1")]))],
        pgbouncer=[("admin_users", "a,z,a"), ("logfile", "/l"), ("pidfile", "/p")],
        peers=[(1, ConnString({"host": "h1"})), (2, ConnString({"host": "h2"}))],
    )
    assert a == b
    assert hash(a) == hash(b)
    assert (
        render_pgb_ini(a)
        == render_pgb_ini(b)
        == (
            "[databases]\na =\nb = host=h port=1\n\n"
            "[pgbouncer]\nadmin_users = a,z\nlogfile = /l\npidfile = /p\n\n"
            "[peers]\n1 = host=h1\n2 = host=h2\n"
        )
    )


# ---------------------------------------------------------------------------------------------
# Rejections, with their exact messages


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("", "section [databases] is missing", id="empty"),
        pytest.param("[databases]\n", "section [pgbouncer] is missing", id="no-pgbouncer"),
        pytest.param(
            "[pgbouncer]\nlogfile = l\npidfile = p\n",
            "section [databases] is missing",
            id="no-databases",
        ),
        pytest.param(
            "[databases]\njunk\n",
            "line 2: neither a [section], a key = value line nor a comment",
            id="junk-line",
        ),
        pytest.param(
            "[databases]\n= host=h\n",
            "line 2: neither a [section], a key = value line nor a comment",
            id="no-key",
        ),
        pytest.param(
            '[databases]\n"my db" = host=h\n',
            "line 2: neither a [section], a key = value line nor a comment",
            id="quoted-db-name",
        ),
        pytest.param(
            "listen_port = 6432\n[databases]\n",
            "line 1: 'listen_port' comes before any [section]",
            id="outside-section",
        ),
        pytest.param(
            ini(extra="[databases]\n"),
            "line 7: section [databases] is given twice",
            id="duplicate-section",
        ),
        pytest.param(
            ini(pgbouncer="logfile = /other"),
            "line 6: [pgbouncer] logfile: given more than once",
            id="duplicate-setting",
        ),
        pytest.param(
            ini(databases="app = host=a\napp = host=b"),
            "line 3: [databases] app: given more than once",
            id="duplicate-database",
        ),
        pytest.param(
            ini(extra="%include /etc/pgbouncer/other.ini\n"),
            "line 7: %include and other directives are refused "
            "(the charm never writes them and a follower must not read other files)",
            id="include",
        ),
        pytest.param(
            ini(extra="[bogus]\n"),
            "line 7: unknown section [bogus] (pgbouncer knows databases, pgbouncer, users, peers)",
            id="unknown-section",
        ),
        pytest.param(
            "[Databases]\n",
            "line 1: write [databases]: pgbouncer matches section names exactly",
            id="section-case",
        ),
        pytest.param(
            "[databases\n",
            "line 1: a section header must end with ']'",
            id="open-header",
        ),
        pytest.param(
            ini(pgbouncer="verbose = 1\x00"),
            "line 6: control character U+0000 (only tab is allowed)",
            id="nul",
        ),
        pytest.param(
            ini().replace("\n", "\r\n"),
            "line 1: control character U+000D (only tab is allowed)",
            id="crlf",
        ),
        pytest.param(
            ini(pgbouncer="syslog_ident = pgb\x85"),
            "line 6: control character U+0085 (only tab is allowed)",
            id="c1-control",
        ),
        pytest.param(
            "[databases]\n\n[pgbouncer]\npidfile = /p\n",
            "[pgbouncer] logfile: required and not empty",
            id="no-logfile",
        ),
        pytest.param(
            "[databases]\n\n[pgbouncer]\nlogfile = /l\npidfile =\n",
            "[pgbouncer] pidfile: required and not empty",
            id="empty-pidfile",
        ),
        pytest.param(
            ini(pgbouncer="listen_port = 70000"),
            "[pgbouncer] listen_port: 70000 is not a port from 1024 to 65535 (pgbouncer runs "
            "unprivileged)",
            id="port-too-big",
        ),
        pytest.param(
            ini(pgbouncer="listen_port = 0"),
            "[pgbouncer] listen_port: 0 is not a port from 1024 to 65535 (pgbouncer runs "
            "unprivileged)",
            id="port-zero",
        ),
        pytest.param(
            ini(pgbouncer="listen_port = 0x10"),
            "[pgbouncer] listen_port: 0x10 is not a plain decimal integer (pgbouncer would read "
            "it as 16)",
            id="port-hex",
        ),
        pytest.param(
            ini(pgbouncer="default_pool_size = -5"),
            "[pgbouncer] default_pool_size: -5 is not a plain decimal integer (pgbouncer would "
            "read it as -5)",
            id="negative-pool",
        ),
        pytest.param(
            ini(pgbouncer="max_client_conn = 2147483648"),
            "[pgbouncer] max_client_conn: 2147483648 is not an integer from 0 to 2147483647",
            id="int-overflow",
        ),
        pytest.param(
            ini(pgbouncer="pkt_buf = 4k"),
            "[pgbouncer] pkt_buf: 4k is not a plain decimal integer (pgbouncer refuses it)",
            id="int-suffix",
        ),
        pytest.param(
            ini(pgbouncer="pool_mode = sessions"),
            "[pgbouncer] pool_mode: sessions is not one of session, transaction, statement",
            id="pool-mode",
        ),
        pytest.param(
            ini(pgbouncer="so_reuseport = yes"),
            "[pgbouncer] so_reuseport: yes is not a boolean (0 or 1)",
            id="bool-word",
        ),
        pytest.param(
            ini(pgbouncer="so_reuseport = 2"),
            "[pgbouncer] so_reuseport: 2 is not a boolean (0 or 1)",
            id="bool-two",
        ),
        pytest.param(
            ini(pgbouncer="query_timeout = 5s"),
            "[pgbouncer] query_timeout: 5s is not a number of seconds (such as 15 or 0.5, below "
            "10**9)",
            id="seconds",
        ),
        pytest.param(
            ini(pgbouncer="unix_socket_mode = 777"),
            "[pgbouncer] unix_socket_mode: 777 is not an octal file mode (such as 0777)",
            id="socket-mode",
        ),
        pytest.param(
            ini(pgbouncer="auth_type = password"),
            "[pgbouncer] auth_type: password is not one of "
            "cert, md5, scram-sha-256, plain, trust, any, hba, pam",
            id="auth-type",
        ),
        pytest.param(
            ini(pgbouncer="server_tls_sslmode = on"),
            "[pgbouncer] server_tls_sslmode: on is not one of "
            "disable, allow, prefer, require, verify-ca, verify-full",
            id="sslmode",
        ),
        pytest.param(
            ini(pgbouncer="verbose = 1 ; loud"),
            "[pgbouncer] verbose: '1 ; loud' is not a plain decimal integer (pgbouncer refuses "
            "it)",
            id="inline-comment",
        ),
        pytest.param(
            ini(pgbouncer="statement_timeout = 10"),
            "[pgbouncer] statement_timeout: unknown setting (pgbouncer refuses to start on it)",
            id="unknown-setting",
        ),
        pytest.param(
            ini(pgbouncer="LISTEN_PORT = 6432"),
            "[pgbouncer] LISTEN_PORT: pgbouncer matches setting names case-sensitively: "
            "write listen_port",
            id="setting-case",
        ),
        pytest.param(
            ini(pgbouncer="conffile = /etc/other.ini"),
            "[pgbouncer] conffile: refused: it makes pgbouncer read another file on reload",
            id="conffile",
        ),
        pytest.param(
            ini(databases="pgbouncer = host=h"),
            "[databases] pgbouncer: reserved for pgbouncer's admin console",
            id="reserved-db",
        ),
        pytest.param(
            ini(databases="caf\u00e9 = host=h"),
            "[databases] caf\u00e9: a database name is 1-63 of A-Z a-z 0-9 _ . - *",
            id="db-name",
        ),
        pytest.param(
            ini(databases="app = host=h bogus=1"),
            "[databases] app: unknown parameter 'bogus'",
            id="unknown-param",
        ),
        pytest.param(
            ini(databases="app = DBNAME=app"),
            "[databases] app: unknown parameter 'DBNAME'",
            id="param-case",
        ),
        pytest.param(
            ini(databases="app = auth_query=x"),
            "[databases] app: unknown parameter 'auth_query'",
            id="setting-as-param",
        ),
        pytest.param(
            ini(databases="app = host=h port=abc"),
            "[databases] app: port: abc is not a plain decimal integer (pgbouncer refuses it)",
            id="param-port",
        ),
        pytest.param(
            ini(databases="app = pool_size=-1"),
            "[databases] app: pool_size: -1 is not a plain decimal integer (pgbouncer would "
            "read it as -1)",
            id="param-pool-size",
        ),
        pytest.param(
            ini(databases="app = pool_mode=fast"),
            "[databases] app: pool_mode: fast is not one of session, transaction, statement",
            id="param-pool-mode",
        ),
        pytest.param(
            ini(databases="app = host=a host=b"),
            "[databases] app: parameter 'host' is given more than once",
            id="param-twice",
        ),
        pytest.param(
            ini(databases="app = host='h"),
            "[databases] app: the value of parameter 'host' has no closing quote",
            id="unbalanced-quote",
        ),
        pytest.param(
            ini(databases="app = host='h''"),
            "[databases] app: the value of parameter 'host' has no closing quote",
            id="escaped-quote-at-end",
        ),
        pytest.param(
            ini(databases="app = user='a'host=h"),
            "[databases] app: the value of parameter 'user' goes on after its closing quote",
            id="after-quote",
        ),
        pytest.param(
            ini(databases="app = user="),
            "[databases] app: parameter 'user' has an empty value",
            id="empty-value",
        ),
        pytest.param(
            ini(databases="app = user='' host=h"),
            "[databases] app: parameter 'user' has an empty value",
            id="empty-quoted-value",
        ),
        pytest.param(
            ini(databases="app = host=h\tport=5432"),
            "[databases] app: the value of parameter 'host' holds a control character or a tab",
            id="tab-separator",
        ),
        pytest.param(
            ini(databases="app = host=h 5432"),
            "[databases] app: parameter 2 is not key=value (after 'host')",
            id="word-without-equals",
        ),
        pytest.param(
            ini(databases="app = =h"),
            "[databases] app: parameter 1 is not key=value",
            id="empty-param-name",
        ),
        pytest.param(
            ini(databases="app = auth-user=x"),
            "[databases] app: 'auth-user' is not a parameter name",
            id="bad-param-name",
        ),
        pytest.param(
            ini(extra="[users]\nbob = pool_mode=session bogus=1\n"),
            "[users] bob: unknown parameter 'bogus'",
            id="user-param",
        ),
        pytest.param(
            ini(extra="[users]\nbob = max_user_connections=many\n"),
            "[users] bob: max_user_connections: many is not a plain decimal integer (pgbouncer "
            "refuses it)",
            id="user-typed",
        ),
        pytest.param(
            ini(extra="[users]\nb\u00f6b = pool_mode=session\n"),
            "[users] b\u00f6b: a user name is 1-63 of A-Z a-z 0-9 _ . -",
            id="user-name",
        ),
        pytest.param(
            ini(extra="[peers]\none = host=h\n"),
            "[peers] one: a peer id is an integer from 1 to 16383",
            id="peer-id-word",
        ),
        pytest.param(
            ini(extra="[peers]\n0 = host=h\n"),
            "[peers] 0: a peer id is from 1 to 16383",
            id="peer-id-zero",
        ),
        pytest.param(
            ini(extra="[peers]\n1 = host=h dbname=x\n"),
            "[peers] 1: unknown parameter 'dbname'",
            id="peer-param",
        ),
    ],
)
def test_parse_rejects(text: str, message: str) -> None:
    with pytest.raises(InvalidPgbConfig) as caught:
        parse_pgb_ini(text)
    assert str(caught.value) == message


SECRET = "Zq9-SeCrEt"


@pytest.mark.parametrize(
    "entry",
    [
        f"app = password='{SECRET}",
        f"app = password={SECRET}\tport=1",
        f"app = password='{SECRET}'x",
        f"app = password={SECRET} {SECRET}",
        f"app = {SECRET}",
        f"app = password={SECRET} password={SECRET}",
        f"app = password='{SECRET} ",
    ],
)
def test_messages_never_echo_a_password(entry: str) -> None:
    with pytest.raises(InvalidPgbConfig) as caught:
        parse_pgb_ini(ini(databases=entry))
    assert SECRET not in str(caught.value)


def test_repr_masks_passwords() -> None:
    conn = ConnString({"host": "h", "password": SECRET})
    assert repr(conn) == "ConnString(params=(('host', 'h'), ('password', '***')))"
    assert SECRET not in repr(minimal().with_database("app", conn))


# ---------------------------------------------------------------------------------------------
# Constructors


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"host": ""}, "parameter 'host' has an empty value"),
        ({"host": "a\nb"}, "the value of parameter 'host' holds a control character or a tab"),
        ({"host": "a\tb"}, "the value of parameter 'host' holds a control character or a tab"),
        ({"my key": "v"}, "'my key' is not a parameter name"),
        ([("host", "a"), ("host", "b")], "parameter 'host' is given more than once"),
        ({"port": "65536"}, "port: 65536 is not a port (1-65535)"),
        (
            {"pool_mode": "Session"},
            "pool_mode: Session is not one of session, transaction, statement",
        ),
    ],
)
def test_conn_string_rejects(params: dict[str, str] | list[tuple[str, str]], message: str) -> None:
    with pytest.raises(InvalidPgbConfig) as caught:
        ConnString(params)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"databases": {"a b": ConnString(())}, "pgbouncer": BASE},
            "[databases] a b: a database name is 1-63 of A-Z a-z 0-9 _ . - *",
        ),
        (
            {"databases": [("a", ConnString(())), ("a", ConnString(()))], "pgbouncer": BASE},
            "[databases] a: given more than once",
        ),
        (
            {"databases": {}, "pgbouncer": {**BASE, "auth_file": " /x"}},
            "[pgbouncer] auth_file: the value starts or ends with blanks",
        ),
        (
            {"databases": {}, "pgbouncer": {**BASE, "auth_file": "/x\n"}},
            "[pgbouncer] auth_file: the value holds a control character",
        ),
        (
            {"databases": {}, "pgbouncer": {**BASE, "auth_file": "/x\ny"}},
            "[pgbouncer] auth_file: the value holds a control character",
        ),
        (
            {"databases": {}, "pgbouncer": BASE, "users": {"u": "pool_mode=x"}},
            "[users] u: pool_mode: x is not one of session, transaction, statement",
        ),
        (
            {"databases": {}, "pgbouncer": BASE, "users": {"u": " pool_mode=session"}},
            "[users] u: the value starts or ends with blanks",
        ),
        (
            {"databases": {}, "pgbouncer": BASE, "peers": {16384: ConnString({"host": "h"})}},
            "[peers] 16384: a peer id is from 1 to 16383",
        ),
        (
            {"databases": {}, "pgbouncer": {**BASE, "peer_id": "16384"}},
            "[pgbouncer] peer_id: 16384 is not a peer id (0-16383, 0 = no peering)",
        ),
    ],
)
def test_pgb_config_rejects(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidPgbConfig) as caught:
        PgbConfig(**kwargs)  # pyright: ignore[reportArgumentType]
    assert str(caught.value) == message


def test_a_tab_inside_a_setting_value_is_kept() -> None:
    cfg = minimal(server_check_query="select\t1")
    assert parse_pgb_ini(render_pgb_ini(cfg)) == cfg


# ---------------------------------------------------------------------------------------------
# Accessors and changes


def test_conn_string_accessors() -> None:
    conn = ConnString({"host": "h", "port": "5432"})
    assert conn.get("host") == "h"
    assert conn.get("user") is None
    changed = conn.with_param("user", "u").with_param("host", "h2")
    assert changed.params == (("host", "h2"), ("port", "5432"), ("user", "u"))
    assert conn.params == (("host", "h"), ("port", "5432"))
    assert changed.without_param("port").without_param("nothing").render() == "host=h2 user=u"
    assert ConnString.parse("port = 1   host='a b'") == ConnString({"host": "a b", "port": "1"})


@pytest.mark.parametrize(
    ("value", "rendered"),
    [
        ("plain", "plain"),
        ("a b", "'a b'"),
        ("it's", "'it''s'"),
        ("''", "''''''"),
        ("back\\slash", "back\\slash"),
        ("x=y", "x=y"),
        ("caf\u00e9", "caf\u00e9"),
    ],
)
def test_conn_string_quoting(value: str, rendered: str) -> None:
    conn = ConnString({"password": value})
    assert conn.render() == f"password={rendered}"
    assert ConnString.parse(conn.render()) == conn


def test_pgb_config_accessors() -> None:
    cfg = minimal(listen_port="6432")
    assert cfg.setting("listen_port") == "6432"
    assert cfg.setting("listen_addr") is None
    changed = cfg.with_settings({"listen_port": "7000", "listen_addr": "*", "logfile": "/x"})
    assert changed.setting("listen_port") == "7000"
    assert changed.setting("listen_addr") == "*"
    assert changed.with_settings({"listen_addr": None}).setting("listen_addr") is None
    assert cfg.setting("listen_port") == "6432"
    with pytest.raises(InvalidPgbConfig, match=r"^\[pgbouncer\] pidfile: required"):
        cfg.with_settings({"pidfile": None})
    with pytest.raises(
        InvalidPgbConfig, match=r"^\[pgbouncer\] listen_port: x is not a plain decimal"
    ):
        cfg.with_settings({"listen_port": "x"})

    app = ConnString({"host": "h"})
    with_db = cfg.with_database("app", app)
    assert with_db.database("app") == app
    assert with_db.database("other") is None
    assert with_db.with_database("app", ConnString(())).database("app") == ConnString(())
    assert with_db.without_database("app") == cfg
    assert cfg.without_database("app") is cfg
    with pytest.raises(InvalidPgbConfig, match=r"^\[databases\] pgbouncer: reserved"):
        cfg.with_database("pgbouncer", app)


def test_admin_and_stats_users_are_normalised() -> None:
    cfg = minimal(admin_users=" bob,alice,,bob ", stats_users="")
    assert cfg.setting("admin_users") == "alice,bob"
    assert cfg.setting("stats_users") == ""
    assert cfg == minimal(admin_users="alice,bob", stats_users="")


def test_min_pgbouncer_version() -> None:
    assert min_pgbouncer_version(minimal()) == (1, 18)
    assert min_pgbouncer_version(minimal(peer_id="1")) == (1, 19)
    peers = PgbConfig(databases={}, pgbouncer=BASE, peers={1: ConnString({"host": "h"})})
    assert min_pgbouncer_version(peers) == (1, 19)
    auth_db = minimal().with_database("a", ConnString({"auth_dbname": "postgres"}))
    assert min_pgbouncer_version(auth_db) == (1, 19)


# ---------------------------------------------------------------------------------------------
# change_kind


def test_restart_only_settings() -> None:
    # What 1.18's SHOW CONFIG reports as "changeable = no", plus peer_id (1.19).
    assert (
        frozenset(
            {
                "disable_pqexec",
                "job_name",
                "listen_addr",
                "listen_backlog",
                "listen_port",
                "peer_id",
                "pidfile",
                "pkt_buf",
                "resolv_conf",
                "so_reuseport",
                "track_extra_parameters",  # 1.20's SHOW CONFIG
                "unix_socket_dir",
                "unix_socket_group",
                "unix_socket_mode",
                "user",
            }
        )
        == RESTART_ONLY_SETTINGS
    )
    assert SETTINGS.keys() >= RESTART_ONLY_SETTINGS


OLD = minimal(listen_port="6432", pool_mode="session").with_database(
    "a", ConnString({"host": "h"})
)


@pytest.mark.parametrize(
    ("old", "new", "kind"),
    [
        pytest.param(None, OLD, ChangeKind.RESTART, id="first-start"),
        pytest.param(OLD, OLD, ChangeKind.NONE, id="same"),
        pytest.param(OLD, parse_pgb_ini(render_pgb_ini(OLD)), ChangeKind.NONE, id="reparsed"),
        pytest.param(
            OLD, OLD.with_settings({"pool_mode": "transaction"}), ChangeKind.RELOAD, id="pool"
        ),
        pytest.param(
            OLD, OLD.with_database("b", ConnString({"host": "h"})), ChangeKind.RELOAD, id="db+"
        ),
        pytest.param(OLD, OLD.without_database("a"), ChangeKind.RELOAD, id="db-"),
        pytest.param(
            OLD, OLD.with_settings({"max_client_conn": "50"}), ChangeKind.RELOAD, id="added"
        ),
        pytest.param(
            OLD, OLD.with_settings({"tcp_keepalive": "0"}), ChangeKind.RELOAD, id="tcp-online"
        ),
        pytest.param(
            OLD, OLD.with_settings({"listen_port": "7000"}), ChangeKind.RESTART, id="port"
        ),
        pytest.param(
            OLD, OLD.with_settings({"listen_addr": "*"}), ChangeKind.RESTART, id="addr-added"
        ),
        pytest.param(
            OLD.with_settings({"so_reuseport": "1"}), OLD, ChangeKind.RESTART, id="reuse-removed"
        ),
        pytest.param(
            OLD, OLD.with_settings({"pidfile": "/other.pid"}), ChangeKind.RESTART, id="pidfile"
        ),
        pytest.param(
            OLD,
            OLD.with_settings({"pkt_buf": "8192", "pool_mode": "statement"}),
            ChangeKind.RESTART,
            id="restart-wins",
        ),
    ],
)
def test_change_kind(old: PgbConfig | None, new: PgbConfig, kind: ChangeKind) -> None:
    assert change_kind(old, new) is kind


# ---------------------------------------------------------------------------------------------
# Pool sizes and per-process copies


@pytest.mark.parametrize(
    ("max_db_connections", "processes", "sizes"),
    [
        (0, 1, (20, 10, 10)),
        (0, 4, (20, 10, 10)),
        (100, 1, (50, 25, 25)),
        (100, 2, (25, 13, 13)),
        (100, 3, (17, 9, 9)),
        (10, 3, (2, 1, 1)),
        (1, 3, (1, 1, 1)),
        (7, 1, (4, 2, 2)),
        (8, 1, (4, 2, 2)),
        (9, 1, (5, 3, 3)),
    ],
)
def test_pool_sizes(max_db_connections: int, processes: int, sizes: tuple[int, int, int]) -> None:
    assert pool_sizes(max_db_connections, processes) == PoolSizes(*sizes)


@pytest.mark.parametrize(
    ("max_db_connections", "processes", "message"),
    [
        (100, 0, "processes: 0 is not an integer >= 1"),
        (-1, 1, "[pgbouncer] max_db_connections: -1 is not an integer >= 0"),
        (True, 1, "[pgbouncer] max_db_connections: True is not an integer >= 0"),
    ],
)
def test_pool_sizes_rejects(max_db_connections: int, processes: int, message: str) -> None:
    with pytest.raises(InvalidPgbConfig) as caught:
        pool_sizes(max_db_connections, processes)
    assert str(caught.value) == message


def test_pool_sizes_value_rejects_negative() -> None:
    with pytest.raises(InvalidPgbConfig, match=r"^\[pgbouncer\] min_pool_size: -1 is not"):
        PoolSizes(default_pool_size=1, min_pool_size=-1, reserve_pool_size=1)


def test_per_process_config() -> None:
    cfg = minimal(unix_socket_dir="/l", auth_file="/l/userlist.txt", listen_port="6432")
    copy = per_process_config(cfg, 1, base_dir="/base")
    assert copy == cfg.with_settings(
        {
            "pidfile": "/base/instance_1/pgbouncer.pid",
            "logfile": "/dev/null",
            "unix_socket_dir": "/base/instance_1",
            "auth_file": "/base/userlist.txt",
        }
    )
    assert copy.setting("peer_id") is None
    default = per_process_config(cfg, 0)
    assert default.setting("pidfile") == f"{PGB_DIR}/instance_0/pgbouncer.pid"
    assert default.setting("auth_file") == AUTH_PATH


def test_per_process_config_with_peers_sets_peer_id() -> None:
    cfg = PgbConfig(databases={}, pgbouncer=BASE, peers={1: ConnString({"host": "h"})})
    assert per_process_config(cfg, 0).setting("peer_id") == "1"
    assert per_process_config(cfg, 2).setting("peer_id") == "3"


def test_per_process_index_must_be_natural() -> None:
    with pytest.raises(InvalidPgbConfig, match=r"^process index: -1 is not an integer >= 0$"):
        per_process_dir(-1)


# ---------------------------------------------------------------------------------------------
# Properties

_TEXT_CHARS = st.characters(blacklist_categories=("Cc", "Cs"))
_NAME = st.from_regex(r"[A-Za-z0-9_.*-]{1,12}", fullmatch=True).filter(lambda n: n != "pgbouncer")


def _param_value(key: str) -> st.SearchStrategy[str]:
    check = pgb_config.DATABASE_PARAMS.get(key) or pgb_config.USER_PARAMS[key]
    if check is pgb_config._check_port:
        return st.integers(1, 65535).map(str)
    if check is pgb_config._check_count:
        return st.integers(0, 2**31 - 1).map(str)
    if check is pgb_config._check_pool_mode:
        return st.sampled_from(pgb_config.POOL_MODES)
    return st.text(_TEXT_CHARS, min_size=1, max_size=12)


def _conn_strings(keys: list[str]) -> st.SearchStrategy[ConnString]:
    return st.fixed_dictionaries({}, optional={key: _param_value(key) for key in keys}).map(
        ConnString
    )


_DB_CONN = _conn_strings(sorted(pgb_config.DATABASE_PARAMS))
_USER_VALUE = _conn_strings(sorted(pgb_config.USER_PARAMS)).map(ConnString.render)
_PEER_CONN = _conn_strings(["host", "port", "pool_size"])
_SETTING_TEXT = st.text(st.one_of(_TEXT_CHARS, st.just("\t")), max_size=12).filter(
    lambda v: v == v.strip(" \t") and not (len(v) > 1 and v[0] == v[-1] and v[0] in "'\"")
)
_INT_RANGES = {
    pgb_config._check_port: (1, 65535),
    pgb_config._check_listen_port: (1024, 65535),
    pgb_config._check_count: (0, 2**31 - 1),
    pgb_config._check_keepcnt: (0, 127),
    pgb_config._check_keep_seconds: (0, 32767),
    pgb_config._check_pkt_buf: (512, 1048576),
    pgb_config._check_max_packet_size: (10000, 2**31 - 1),
}
_SAMPLES = {
    pgb_config._check_listen_addr: ("", "*", "127.0.0.1", "localhost,127.0.0.2", "0.0.0.0"),
    pgb_config._check_tls_protocols: ("secure", "tlsv1.2,tlsv1.3", "!tlsv1.0:all"),
    pgb_config._check_tls_ciphers: ("default", "fast", "legacy"),
    pgb_config._check_dheparams: ("auto", "none"),
    pgb_config._check_ecdhcurve: ("auto", "prime256v1"),
}


def _setting_value(key: str) -> st.SearchStrategy[str]:
    check = SETTINGS[key]
    if check in _INT_RANGES:
        low, high = _INT_RANGES[check]
        return st.integers(low, high).map(str)
    if check in _SAMPLES:
        return st.sampled_from(_SAMPLES[check])
    if check is pgb_config._check_bool:
        return st.sampled_from(["0", "1"])
    if check is pgb_config._check_seconds:
        return st.sampled_from(["0", "15", "0.5", "3600"])
    if check is pgb_config._check_octal_mode:
        return st.sampled_from(["0777", "0700", "00"])
    if check is pgb_config._check_peer_id:
        return st.integers(0, 16383).map(str)
    if check is pgb_config._check_text:
        return _SETTING_TEXT
    return st.sampled_from(
        {
            "pool_mode": pgb_config.POOL_MODES,
            "auth_type": ("md5", "scram-sha-256", "trust", "hba"),
        }.get(key, ("disable", "prefer", "verify-full"))
    )


_SETTINGS = st.fixed_dictionaries(
    {"logfile": _SETTING_TEXT.filter(bool), "pidfile": _SETTING_TEXT.filter(bool)},
    optional={
        key: _setting_value(key)
        for key in sorted(SETTINGS)
        if key not in ("logfile", "pidfile", "conffile")
    },
)
CONFIGS = st.builds(
    PgbConfig,
    databases=st.dictionaries(_NAME, _DB_CONN, max_size=6),
    pgbouncer=_SETTINGS,
    users=st.dictionaries(st.from_regex(r"[A-Za-z0-9_.-]{1,8}", fullmatch=True), _USER_VALUE),
    peers=st.dictionaries(st.integers(1, 16383), _PEER_CONN, max_size=3),
)


@given(CONFIGS)
def test_render_parse_round_trip(cfg: PgbConfig) -> None:
    text = render_pgb_ini(cfg)
    again = parse_pgb_ini(text)
    assert again == cfg
    assert render_pgb_ini(again) == text
    assert change_kind(cfg, again) is ChangeKind.NONE


@given(_DB_CONN)
def test_conn_string_round_trip(conn: ConnString) -> None:
    assert ConnString.parse(conn.render()) == conn
    assert ConnString.parse(conn.render()).render() == conn.render()


_INI_FRAGMENTS = st.sampled_from(
    [
        "[databases]",
        "[pgbouncer]",
        "[users]",
        "[peers]",
        "logfile = /l",
        "pidfile = /p",
        "app = host=h port=5432",
        "app = password='a b''c'",
        "x = user='",
        "1 = host=h",
        "bob = pool_mode=session",
        "listen_port = 6432",
        "; comment",
        "%include f",
        "",
        "=",
        "'",
        " ",
        "\t",
    ]
)


@settings(max_examples=300)
@given(st.one_of(st.text(), st.lists(st.one_of(_INI_FRAGMENTS, st.text()), max_size=12)))
def test_parse_raises_only_invalid_pgb_config(text: str | list[str]) -> None:
    if isinstance(text, list):
        text = "\n".join(text)
    try:
        cfg = parse_pgb_ini(text)
    except InvalidPgbConfig:
        return
    assert parse_pgb_ini(render_pgb_ini(cfg)) == cfg


_CONN_TOKENS = st.sampled_from(
    ["host", "port", "user", "password", "=", " ", "  ", "'", "''", "a b", "5432", "x", "\t", "é"]
)


@settings(max_examples=500)
@given(st.lists(_CONN_TOKENS, max_size=14).map("".join))
def test_fast_split_agrees_with_the_scanner(text: str) -> None:
    # The regex shortcut of the parser must accept and split exactly like the reference scanner.
    def outcome(make: object) -> object:
        try:
            return make()  # pyright: ignore[reportCallIssue]
        except InvalidPgbConfig as err:
            return str(err)

    fast = outcome(lambda: pgb_config._conn_from_text(text))
    reference = outcome(lambda: ConnString(pgb_config._scan_conn(text)))
    assert fast == reference
    if isinstance(fast, ConnString):
        assert fast.render() == ConnString(fast.params).render()


# The fast path of parse_pgb_ini: a large [databases] section in the shape render_pgb_ini writes
# is read with one regex and each entry is split on first use; any other text goes the general,
# line-by-line way. Both must accept, refuse and build exactly alike. ``_parse(text, 0)`` is
# parse_pgb_ini with the fast path tried on sections of any size.

_DB_TOKENS = st.sampled_from(
    [
        "host=h",
        "host=10.0.0.1",
        "port=5432",
        "port=05432",
        "port=65535",
        "port=65536",
        "port=0",
        "pool_size=999999999",
        "pool_size=2147483647",
        "pool_size=2147483648",
        "pool_mode=session",
        "pool_mode=sessions",
        "password='a b'",
        "password='ab'",
        "password='a''b'",
        "password='''",
        "password=a'b",
        "user=x",
        "user=é",
        "dbname=",
        "auth_user=u",
        "max_user_connections=1",
        "auth_dbname=postgres",
        "=",
        "'",
        " ",
        "  ",
        "\t",
    ]
)
_DB_LINE = st.tuples(
    st.sampled_from(["a", "b", "c.d", "*", "pgbouncer", "a b", ";a", ""]),
    st.sampled_from([" = ", " =", "=", " =  "]),
    st.lists(_DB_TOKENS, max_size=6).map(" ".join),
).map("".join)
_DB_TEXTS = st.builds(
    lambda lines, gap, tail: (
        "[databases]\n"
        + "".join(line + "\n" for line in lines)
        + gap
        + "[pgbouncer]\nlogfile = /l\npidfile = /p\n"
        + tail
    ),
    st.lists(_DB_LINE, max_size=5),
    st.sampled_from(["\n", "", "\n\n", "; c\n"]),
    st.sampled_from(["", "[users]\nbob = pool_mode=session\n", "[databases]\n", "x\n"]),
)


def _parsed(parse: object, text: str) -> object:
    try:
        cfg = parse(text)  # pyright: ignore[reportCallIssue]
    except InvalidPgbConfig as err:
        return str(err)
    assert isinstance(cfg, PgbConfig)
    return (cfg, render_pgb_ini(cfg), [(name, conn.params) for name, conn in cfg.databases])


@settings(max_examples=600)
@given(st.one_of(_DB_TEXTS, CONFIGS.map(render_pgb_ini)))
def test_fast_parse_agrees_with_the_general_parser(text: str) -> None:
    assert _parsed(_fast_first, text) == _parsed(_general_only, text)


def _fast_first(text: str) -> PgbConfig:
    return pgb_config._parse(text, 0)


def _general_only(text: str) -> PgbConfig:
    pgb_config._reject_control_characters(text)
    return pgb_config._parse_general(text)


@pytest.mark.parametrize(
    "line",
    [
        "app = port=05432",  # valid, but not the shape render() writes
        "app = host='h'",  # render() would not quote it
        "app = host=h  port=1",
        "app = port=1 host=h",  # keys out of order
        "app = host=h host=i",
        "app = pool_size=2147483647",
        "app =  ",
    ],
)
def test_text_in_another_shape_takes_the_general_path(line: str) -> None:
    text = ini(databases=line + "\n")
    assert pgb_config._parse_rendered(text) is None
    assert _parsed(_fast_first, text) == _parsed(_general_only, text)


def test_rendered_entries_are_split_in_bulk() -> None:
    text = ini(
        databases="a = dbname=a port=1\napp = dbname=d host=h password='s3 cr''t' port=5432\n"
        "b =\nc = dbname=c user=u=v\n"
    )
    cfg = pgb_config._parse_rendered(text)
    assert cfg is not None
    # Plain entries around a quoted and an empty one each get their own parameters.
    assert cfg.database("a") == ConnString({"dbname": "a", "port": "1"})
    assert cfg.database("c") == ConnString({"dbname": "c", "user": "u=v"})
    assert cfg.database("c").get("user") == "u=v"  # type: ignore[union-attr]
    conn = cfg.database("app")
    assert conn is not None
    assert conn.render() == "dbname=d host=h password='s3 cr''t' port=5432"
    assert conn.get("password") == "s3 cr't"
    expected = ConnString({"dbname": "d", "host": "h", "password": "s3 cr't", "port": "5432"})
    assert conn == expected
    assert hash(conn) == hash(expected)
    assert repr(conn) == (
        "ConnString(params=(('dbname', 'd'), ('host', 'h'), ('password', '***'), "
        "('port', '5432')))"
    )
    assert cfg.database("b") == ConnString(())
    assert cfg == parse_pgb_ini(text) == pgb_config._parse_general(text)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        getattr(conn, "nothing")  # noqa: B009


def test_rendered_text_is_still_fully_checked() -> None:
    # The fast path gives up on these; the general path names the problem and its line.
    with pytest.raises(InvalidPgbConfig, match=r"^line 3: \[databases\] a: given more than once$"):
        _fast_first(ini(databases="a = host=h\na = host=i\n"))
    with pytest.raises(InvalidPgbConfig, match=r"^\[databases\] pgbouncer: reserved"):
        _fast_first(ini(databases="pgbouncer = host=h\n"))
    with pytest.raises(InvalidPgbConfig, match=r"^\[databases\] a: port: 0 is not a port"):
        _fast_first(ini(databases="a = port=0\n"))
    with pytest.raises(InvalidPgbConfig, match=r"^line 8: section \[databases\] is given twice"):
        _fast_first(ini(databases="a = host=h\n", extra="[databases]\n"))
    with pytest.raises(InvalidPgbConfig, match=r"^\[pgbouncer\] listen_port: 0 is not a port"):
        _fast_first(ini(databases="a = host=h\n", pgbouncer="listen_port = 0"))


def _built(make: object) -> object:
    try:
        return make()  # pyright: ignore[reportCallIssue]
    except InvalidPgbConfig as err:
        return str(err)


@given(
    CONFIGS,
    st.one_of(_NAME, st.sampled_from(["pgbouncer", "a b", ""])),
    st.one_of(_DB_CONN, _PEER_CONN, st.just(ConnString({"max_user_connections": "1"}))),
    st.dictionaries(
        st.sampled_from(["listen_port", "pool_mode", "logfile", "LISTEN_PORT", "nope"]),
        st.one_of(st.none(), st.sampled_from(["6432", "0", "session", "x", ""])),
        max_size=3,
    ),
)
def test_changes_check_like_the_constructor(
    cfg: PgbConfig, name: str, conn: ConnString, changes: dict[str, str | None]
) -> None:
    # with_database, without_database and with_settings check only what changed; they must
    # accept and refuse exactly like building the changed configuration from scratch.
    def rebuilt(databases: dict[str, ConnString], settings: dict[str, str]) -> PgbConfig:
        return PgbConfig(databases, settings, users=cfg.users, peers=cfg.peers)

    databases, settings = dict(cfg.databases), dict(cfg.pgbouncer)
    assert _built(lambda: cfg.with_database(name, conn)) == _built(
        lambda: rebuilt({**databases, name: conn}, settings)
    )
    assert cfg.without_database(name) == rebuilt(
        {key: value for key, value in databases.items() if key != name}, settings
    )
    changed = {key: value for key, value in {**settings, **changes}.items() if value is not None}
    assert _built(lambda: cfg.with_settings(changes)) == _built(
        lambda: rebuilt(databases, changed)
    )


def test_large_rendered_sections_take_the_fast_path() -> None:
    size = pgb_config._FAST_PATH_MIN_DATABASES
    lines = "".join(f"db{i:04} = dbname=d{i} host=10.0.0.1 port=5432\n" for i in range(size))
    text = ini(databases=lines)
    fast = pgb_config._parse_rendered(text, size)
    assert fast is not None
    assert pgb_config._parse_rendered(ini(databases=lines.partition("\n")[2]), size) is None
    assert parse_pgb_ini(text) == fast == _general_only(text)
    assert render_pgb_ini(fast) == text.rstrip("\n") + "\n"


# ---------------------------------------------------------------------------------------------
# The real pgbouncer 1.18


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def _work_dir() -> Iterator[Path]:
    # Not pytest's tmp_path: pgbouncer runs as postgres, which cannot enter root's 0700 folder.
    with tempfile.TemporaryDirectory(prefix="pgb-config-test-") as name:
        path = Path(name)
        if os.geteuid() == 0:
            shutil.chown(path, "postgres")
        yield path


@contextlib.contextmanager
def _running_pgbouncer(cfg: PgbConfig, base: Path, users: str = "") -> Iterator[PgbConfig]:
    """Start pgbouncer on per_process_config(cfg, 0, base), yield that config, stop it."""
    as_root = os.geteuid() == 0
    copy = per_process_config(cfg, 0, base_dir=str(base))
    copy = copy.with_settings(
        {"listen_addr": "127.0.0.1", "listen_port": str(_free_port())}
        # pgbouncer can switch to `user` only when started as root.
        | ({} if as_root else {"user": None})
    )
    folder = Path(per_process_dir(0, str(base)))
    folder.mkdir()
    (base / "userlist.txt").write_text(users)
    ini_path = folder / "pgbouncer.ini"
    ini_path.write_text(render_pgb_ini(copy))
    if as_root:
        for path in (folder, base / "userlist.txt", ini_path):
            shutil.chown(path, "postgres")
    process = subprocess.Popen(
        ["pgbouncer", "-q", str(ini_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        # The group too: pgbouncer's switch to `user` sets the group, which only root or a
        # process already in that group may do.
        user="postgres" if as_root else None,
        group="postgres" if as_root else None,
        extra_groups=[] if as_root else None,
    )
    try:
        port = int(copy.setting("listen_port") or 0)
        deadline = time.monotonic() + 10
        while True:
            if process.poll() is not None:
                log = Path(copy.setting("logfile") or "")
                output = (process.stdout.read() if process.stdout else b"").decode()
                pytest.fail(
                    f"pgbouncer exited with {process.returncode}: {output}"
                    f"{log.read_text() if log.exists() else ''}"
                )
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if time.monotonic() > deadline:
                pytest.fail("pgbouncer did not accept connections within 10 s")
            time.sleep(0.05)
        assert Path(copy.setting("pidfile") or "").read_text().strip() == str(process.pid)
        yield copy
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _console(cfg: PgbConfig, command: str) -> list[list[str]]:
    result = subprocess.run(
        [
            "psql",
            "-h",
            cfg.setting("unix_socket_dir") or "",
            "-p",
            cfg.setting("listen_port") or "",
            "-U",
            "admin",
            "-At",
            "-F",
            "\x1f",
            "-c",
            command,
            "pgbouncer",
        ],
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    )
    return [line.split("\x1f") for line in result.stdout.splitlines()]


needs_pgbouncer = pytest.mark.skipif(
    shutil.which("pgbouncer") is None, reason="pgbouncer is not installed"
)
needs_psql = pytest.mark.skipif(shutil.which("psql") is None, reason="psql is not installed")


def _can_run_as_postgres() -> bool:
    if os.geteuid() != 0:
        return True
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return False
    return True


needs_postgres_user = pytest.mark.skipif(
    not _can_run_as_postgres(), reason="running as root without a postgres user"
)


@pytest.mark.real
@needs_pgbouncer
@needs_postgres_user
def test_real_pgbouncer_starts_on_the_initial_config() -> None:
    with _work_dir() as base, _running_pgbouncer(initial_config(CharmConfig(), 2), base):
        pass


@pytest.mark.real
@needs_pgbouncer
@needs_psql
@needs_postgres_user
def test_real_pgbouncer_reads_quoted_values_as_the_model_does() -> None:
    users = {"a b'c": "with space and quote", "back\\slash": "backslash", "plain": "plain"}
    cfg = minimal(auth_type="trust", admin_users="admin")
    for index, user in enumerate(sorted(users)):
        cfg = cfg.with_database(
            f"db{index}", ConnString({"host": "127.0.0.1", "user": user, "password": "x y'z"})
        )
    text = render_pgb_ini(cfg)
    assert "user='a b''c'" in text
    assert "user=back\\slash" in text
    with _work_dir() as base, _running_pgbouncer(cfg, base, '"admin" ""\n') as running:
        rows = _console(running, "SHOW DATABASES")
    header_free = {row[0]: row for row in rows}
    # SHOW DATABASES: name, host, port, database, force_user, ...
    assert {header_free[f"db{i}"][4] for i in range(3)} == set(users)


@pytest.mark.real
@needs_pgbouncer
@needs_psql
@needs_postgres_user
def test_real_pgbouncer_knows_exactly_the_model_settings() -> None:
    cfg = minimal(auth_type="trust", admin_users="admin")
    with _work_dir() as base, _running_pgbouncer(cfg, base, '"admin" ""\n') as running:
        rows = _console(running, "SHOW CONFIG")
    # SHOW CONFIG: key, value, default, changeable.
    known = {row[0] for row in rows}
    fixed = {row[0] for row in rows if row[3] == "no"}
    later = set(SETTINGS_INTRODUCED_IN)  # domain.pgb_version: settings of 1.19 and newer
    assert later == {"peer_id", "auth_dbname", "track_extra_parameters", "max_prepared_statements"}
    assert known == SETTINGS.keys() - later
    assert fixed == RESTART_ONLY_SETTINGS - later


def test_removing_auth_user_needs_a_restart_but_changing_it_does_not():
    base = initial_config(CharmConfig(), 1)
    with_auth = base.with_settings({"auth_user": "pgbouncer_auth_a"})
    assert change_kind(with_auth, base) is ChangeKind.RESTART
    assert change_kind(base, with_auth) is ChangeKind.RELOAD
    assert (
        change_kind(with_auth, with_auth.with_settings({"auth_user": "pgbouncer_auth_b"}))
        is ChangeKind.RELOAD
    )


@pytest.mark.parametrize(
    ("old", "new", "kind"),
    [
        pytest.param(OLD, OLD.with_settings({"pool_mode": "transaction"}), ChangeKind.RELOAD),
        pytest.param(OLD, OLD.with_database("b", ConnString({"host": "h"})), ChangeKind.RELOAD),
        pytest.param(OLD, OLD.with_settings({"max_client_conn": "50"}), ChangeKind.RELOAD),
        pytest.param(OLD, OLD.with_settings({"listen_port": "7000"}), ChangeKind.RESTART),
        pytest.param(OLD, OLD.with_settings({"listen_addr": "*"}), ChangeKind.RESTART),
        pytest.param(OLD.with_settings({"so_reuseport": "1"}), OLD, ChangeKind.RESTART),
        pytest.param(
            OLD,
            OLD.with_settings({"pkt_buf": "8192", "pool_mode": "statement"}),
            ChangeKind.RESTART,
        ),
    ],
)
def test_a_written_files_settings_alone_give_the_same_change_kind(
    old: PgbConfig, new: PgbConfig, kind: ChangeKind
) -> None:
    # A unit that wrote ``old`` itself reads only its [pgbouncer] section (peer_sync).
    settings = rendered_settings(render_pgb_ini(old))
    assert settings is not None
    assert settings == dict(old.pgbouncer)
    assert settings_change_kind(settings, new) is kind
    assert change_kind(old, new) is kind


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("[databases]\na = host=h\n", id="no [pgbouncer] section"),
        pytest.param(MINIMAL + "listen_port\n", id="a line that is no setting"),
        pytest.param(MINIMAL + "[pgbouncer]\n", id="the section twice"),
    ],
)
def test_settings_that_cannot_be_read_alone_are_none(text: str) -> None:
    assert rendered_settings(text) is None
