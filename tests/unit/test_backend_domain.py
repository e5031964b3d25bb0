"""Tests for ``domain.backend``: literal inputs, literal expected texts.

The md5 secret below was computed once, outside the code under test, as md5 over the password
followed by the user name (what PostgreSQL's ``md5(password || user)`` gives).
"""

import pytest

from domain.backend import (
    AUTH_QUERY,
    BackendCredentials,
    BackendEndpoints,
    HostPort,
    InvalidBackendData,
    auth_databases,
    auth_password,
    auth_user_for,
    is_auth_configured,
    parse_endpoints,
    with_auth_query,
    without_auth_query,
)
from domain.errors import InvalidAuthFile, InvalidPgbConfig
from domain.pgb_config import ChangeKind, change_kind, parse_pgb_ini

USER = "relation_id_3"
AUTH_USER = "pgbouncer_auth_relation_id_3"
PASSWORD = "Zp4sQ8uVx2LmN7rT1wKb9yHc"
MD5 = "md5a8e5c3e279e16e4228cdb751c0dd4b51"

CFG = """\
[databases]
app = dbname=app host=10.1.1.1 port=5432

[pgbouncer]
auth_file = /var/lib/postgresql/pgbouncer/userlist.txt
auth_type = md5
listen_addr = *
listen_port = 6432
logfile = /var/lib/postgresql/pgbouncer/pgbouncer.log
pidfile = /var/lib/postgresql/pgbouncer/pgbouncer.pid
user = postgres
"""

CFG_WITH_AUTH = """\
[databases]
app = dbname=app host=10.1.1.1 port=5432

[pgbouncer]
auth_file = /var/lib/postgresql/pgbouncer/userlist.txt
auth_query = SELECT usename, passwd FROM pgbouncer_auth.get_auth($1)
auth_type = md5
auth_user = pgbouncer_auth_relation_id_3
listen_addr = *
listen_port = 6432
logfile = /var/lib/postgresql/pgbouncer/pgbouncer.log
pidfile = /var/lib/postgresql/pgbouncer/pgbouncer.pid
user = postgres
"""

# A config without auth_file: with_auth_query adds it.
CFG_NO_AUTH_FILE = """\
[databases]

[pgbouncer]
logfile = /var/lib/postgresql/pgbouncer/pgbouncer.log
pidfile = /var/lib/postgresql/pgbouncer/pgbouncer.pid
"""

AUTH_LINE = '"pgbouncer_auth_relation_id_3" "Zp4sQ8uVx2LmN7rT1wKb9yHc"\n'


# --- names ------------------------------------------------------------------------------------


def test_auth_user_is_prefixed_backend_user() -> None:
    assert auth_user_for(USER) == AUTH_USER
    assert BackendCredentials(USER, PASSWORD).auth_user == AUTH_USER


def test_auth_query_is_the_one_pgbouncer_runs() -> None:
    assert AUTH_QUERY == "SELECT usename, passwd FROM pgbouncer_auth.get_auth($1)"


def test_longest_user_name_fits_postgres_63_byte_role_names() -> None:
    assert auth_user_for("u" * 48) == "pgbouncer_auth_" + "u" * 48
    with pytest.raises(InvalidBackendData, match="too long"):
        auth_user_for("u" * 49)


@pytest.mark.parametrize("name", ["", "rel id", 'rel"3', "rel\n3", "relé"])
def test_user_names_that_would_need_quoting_are_refused(name: str) -> None:
    with pytest.raises(InvalidBackendData):
        BackendCredentials(name, PASSWORD)


def test_credentials_hide_the_password() -> None:
    credentials = BackendCredentials(USER, PASSWORD)
    assert PASSWORD not in repr(credentials)
    assert repr(credentials) == "BackendCredentials(username='relation_id_3')"


def test_bad_password_error_does_not_quote_it() -> None:
    with pytest.raises(InvalidBackendData) as caught:
        BackendCredentials(USER, "pass\x00word")
    assert str(caught.value) == "password holds a control character"
    with pytest.raises(InvalidBackendData, match="password is empty"):
        BackendCredentials(USER, "")


# --- endpoints --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgresql-k8s-primary:5432", HostPort("postgresql-k8s-primary", 5432)),
        ("10.1.1.1:6543", HostPort("10.1.1.1", 6543)),
        ("pg.example", HostPort("pg.example", 5432)),
        ("[fd00::1]:5433", HostPort("[fd00::1]", 5433)),
        ("[fd00::1]", HostPort("[fd00::1]", 5432)),
        (" db:5432 ", HostPort("db", 5432)),
    ],
)
def test_host_port_parses(text: str, expected: HostPort) -> None:
    assert HostPort.parse(text) == expected


@pytest.mark.parametrize(
    "text", ["fd00::1:5432", "db:", "db:abc", "db:0", "db:65536", ":5432", "[fd00::1]x", "a b:1"]
)
def test_host_port_refuses(text: str) -> None:
    with pytest.raises(InvalidBackendData):
        HostPort.parse(text)


def test_ipv6_address_loses_its_brackets_for_libpq() -> None:
    assert HostPort("[fd00::1]", 5433).address == "fd00::1"
    assert HostPort("[fd00::1]", 5433).render() == "[fd00::1]:5433"
    assert HostPort("db", 5432).address == "db"


def test_endpoints_list_primary_first() -> None:
    endpoints = BackendEndpoints(
        endpoints=parse_endpoints("primary:5432,other:5432"),
        read_only_endpoints=parse_endpoints("replicas:5432"),
        database="pgbouncer-k8s",
        version="16.4",
    )
    assert endpoints.primary == HostPort("primary", 5432)
    assert endpoints.read_only_endpoints == (HostPort("replicas", 5432),)


@pytest.mark.parametrize("text", ["", " , ", ","])
def test_no_endpoint_is_refused(text: str) -> None:
    with pytest.raises(InvalidBackendData, match="no endpoint"):
        parse_endpoints(text)
    with pytest.raises(InvalidBackendData, match="no endpoint"):
        BackendEndpoints(endpoints=())


# --- databases --------------------------------------------------------------------------------


def test_auth_databases_prefer_what_the_provider_created() -> None:
    assert auth_databases("pgbouncer-k8s", None) == ("pgbouncer-k8s", "postgres")
    assert auth_databases("pgbouncer-k8s", "pgbouncer_k8s") == ("pgbouncer_k8s", "postgres")
    assert auth_databases("postgres", None) == ("postgres",)


# --- the two files ----------------------------------------------------------------------------


def test_with_auth_query_sets_the_three_settings_and_one_plain_line() -> None:
    files = with_auth_query(CFG, AUTH_USER, PASSWORD)

    assert files.cfg == CFG_WITH_AUTH
    assert files.auth == AUTH_LINE
    assert PASSWORD not in repr(files)


def test_with_auth_query_md5_line() -> None:
    files = with_auth_query(CFG, AUTH_USER, PASSWORD, md5=True)

    assert files.auth == f'"pgbouncer_auth_relation_id_3" "{MD5}"\n'
    assert files.cfg == CFG_WITH_AUTH


def test_with_auth_query_adds_auth_file_when_missing() -> None:
    files = with_auth_query(CFG_NO_AUTH_FILE, AUTH_USER, PASSWORD)

    assert files.cfg == (
        "[databases]\n"
        "\n"
        "[pgbouncer]\n"
        "auth_file = /var/lib/postgresql/pgbouncer/userlist.txt\n"
        "auth_query = SELECT usename, passwd FROM pgbouncer_auth.get_auth($1)\n"
        "auth_user = pgbouncer_auth_relation_id_3\n"
        "logfile = /var/lib/postgresql/pgbouncer/pgbouncer.log\n"
        "pidfile = /var/lib/postgresql/pgbouncer/pgbouncer.pid\n"
    )


def test_with_auth_query_is_idempotent() -> None:
    assert with_auth_query(CFG_WITH_AUTH, AUTH_USER, PASSWORD).cfg == CFG_WITH_AUTH


def test_with_auth_query_refuses_an_invalid_config() -> None:
    with pytest.raises(InvalidPgbConfig):
        with_auth_query(CFG + "no_such_setting = 1\n", AUTH_USER, PASSWORD)


def test_with_auth_query_refuses_a_password_pgbouncer_would_take_for_a_hash() -> None:
    with pytest.raises(InvalidBackendData, match="looks like an md5"):
        with_auth_query(CFG, AUTH_USER, MD5)


def test_with_auth_query_refuses_a_password_that_cannot_be_written() -> None:
    with pytest.raises(InvalidAuthFile) as caught:
        with_auth_query(CFG, AUTH_USER, "line\nbreak")
    assert "line\nbreak" not in str(caught.value)


def test_without_auth_query_removes_user_and_query_and_keeps_auth_file() -> None:
    removal = without_auth_query(CFG_WITH_AUTH)

    assert removal == CFG
    # pgbouncer 1.18 keeps auth_user across a reload that no longer finds it: one rule,
    # change_kind, says so.
    assert change_kind(parse_pgb_ini(CFG_WITH_AUTH), parse_pgb_ini(removal)) is ChangeKind.RESTART


def test_without_auth_query_on_a_config_without_it_changes_nothing() -> None:
    assert without_auth_query(CFG) == CFG


# --- reading back -----------------------------------------------------------------------------


def test_auth_password_reads_the_plain_secret_back() -> None:
    assert auth_password(AUTH_LINE, AUTH_USER) == PASSWORD
    other = '"someone" "x"\n' + AUTH_LINE
    assert auth_password(other, AUTH_USER) == PASSWORD


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        f'"pgbouncer_auth_relation_id_3" "{MD5}"\n',
        '"pgbouncer_auth_relation_id_4" "x"\n',
        '"pgbouncer_auth_relation_id_3" "unclosed\n',
    ],
)
def test_auth_password_is_none_without_a_usable_plain_entry(text: str | None) -> None:
    assert auth_password(text, AUTH_USER) is None


def test_is_auth_configured() -> None:
    assert is_auth_configured(CFG_WITH_AUTH, AUTH_LINE, AUTH_USER)
    assert not is_auth_configured(CFG, AUTH_LINE, AUTH_USER)
    assert not is_auth_configured(CFG_WITH_AUTH, None, AUTH_USER)
    assert not is_auth_configured(None, AUTH_LINE, AUTH_USER)
    assert not is_auth_configured(CFG_WITH_AUTH, AUTH_LINE, "pgbouncer_auth_relation_id_4")
    assert not is_auth_configured("not an ini", AUTH_LINE, AUTH_USER)
