"""The client relation's domain: literal requests, configs and answers."""

import hashlib
import re

import pytest

from domain.backend import BackendEndpoints, HostPort
from domain.charm_config import CharmConfig, initial_config
from domain.clients import (
    ClaimAction,
    ClientAnswer,
    ClientApp,
    ClientRequest,
    DatabaseClaim,
    DatabaseRecord,
    ExistingDatabase,
    InvalidClientRequest,
    client_answer,
    client_uri,
    database_claim,
    owner_role,
    parse_extra_roles,
    ready_for_client,
    with_client,
    without_client,
)
from domain.peer_data import Acknowledgement, UnitPeerData
from domain.pgb_config import ConnString, render_pgb_ini
from tests.unit.peer_fixtures import HOST0, HOST1, HOST2

AUTH_USER = "pgbouncer_auth_operator"
BACKEND = BackendEndpoints(
    endpoints=(HostPort("10.1.1.1", 5432),),
    read_only_endpoints=(HostPort("10.1.1.2", 5433), HostPort("10.1.1.3", 5432)),
    version="14.11",
)
REQUEST = ClientRequest(relation_id=4, database="app")


def test_request_names_its_user_and_readonly_database():
    assert REQUEST.user == "relation_id_4"
    assert REQUEST.readonly_database == "app_readonly"


@pytest.mark.parametrize(
    ("database", "reason"),
    [
        ("pgbouncer", "database 'pgbouncer' is reserved"),
        ("postgres", "database 'postgres' is reserved"),
        ("shop_readonly", "database 'shop_readonly' is reserved"),
        ("1app", "database '1app': use 1-63 letters"),
        ("a b", "database 'a b': use 1-63 letters"),
        ("x" * 64, "database 'xxxxxxxx"),
        ("", "database '': use 1-63 letters"),
    ],
)
def test_bad_database_names_are_refused(database, reason):
    with pytest.raises(InvalidClientRequest, match=f"^{reason[:24]}"):
        ClientRequest(relation_id=4, database=database)


def test_extra_roles_are_parsed_case_and_spaces_aside():
    assert parse_extra_roles("createdb, CreateRole") == ("CREATEDB", "CREATEROLE")
    assert parse_extra_roles(" login ,\tCreateDB\n,,") == ("CREATEDB", "LOGIN")
    assert parse_extra_roles(None) == ()
    assert parse_extra_roles("") == ()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("createdb", ("CREATEDB",)),
        (" CreateDB ", ("CREATEDB",)),
        ("LOGIN,createdb", ("CREATEDB", "LOGIN")),
        ("", ()),
    ],
)
def test_the_allow_list_is_served(text, expected):
    assert ClientRequest(4, "app", parse_extra_roles(text)).extra_user_roles == expected


SUPERUSER_WHY = "it bypasses every permission check"
CREATEROLE_WHY = "it can grant itself any non-superuser role"
PG_ROLE_WHY = "a pg_\\* role reaches beyond"
UNKNOWN_WHY = "not a role attribute this charm grants"


@pytest.mark.parametrize(
    ("text", "refused", "why"),
    [
        ("superuser", "SUPERUSER", SUPERUSER_WHY),
        (" SuperUser ", "SUPERUSER", SUPERUSER_WHY),
        ("CREATEROLE", "CREATEROLE", CREATEROLE_WHY),
        ("createrole", "CREATEROLE", CREATEROLE_WHY),
        ("createdb,CreateRole", "CREATEROLE", CREATEROLE_WHY),
        ("replication", "REPLICATION", "it streams every database"),
        ("BypassRLS", "BYPASSRLS", "it bypasses row security"),
        ("admin", "ADMIN", "it can grant its roles to others"),
        ("pg_execute_server_program", "PG_EXECUTE_SERVER_PROGRAM", PG_ROLE_WHY),
        ("PG_READ_SERVER_FILES", "PG_READ_SERVER_FILES", PG_ROLE_WHY),
        ("pg_read_all_data", "PG_READ_ALL_DATA", PG_ROLE_WHY),
        ("pg_write_server_files", "PG_WRITE_SERVER_FILES", PG_ROLE_WHY),
        ("pg_signal_backend", "PG_SIGNAL_BACKEND", PG_ROLE_WHY),
        ("pg_monitor", "PG_MONITOR", PG_ROLE_WHY),
        ('"CREATEROLE"', '"CREATEROLE"', UNKNOWN_WHY),
        ("'createrole'", "'CREATEROLE'", UNKNOWN_WHY),
        ("CREATE ROLE", "CREATE ROLE", UNKNOWN_WHY),
        ("createdb createrole", "CREATEDB CREATEROLE", UNKNOWN_WHY),
        ("createdb;createrole", "CREATEDB;CREATEROLE", UNKNOWN_WHY),
        ("createdb\ncreaterole", "CREATEDB\nCREATEROLE", UNKNOWN_WHY),
        ("createrole\x00", "CREATEROLE\x00", UNKNOWN_WHY),
        ("WITH CREATEROLE", "WITH CREATEROLE", UNKNOWN_WHY),
        ("CREATEDB SUPERUSER", "CREATEDB SUPERUSER", UNKNOWN_WHY),
        ("NOCREATEDB", "NOCREATEDB", UNKNOWN_WHY),
        ("inherit", "INHERIT", UNKNOWN_WHY),
        ("relation_id_3", "RELATION_ID_3", UNKNOWN_WHY),
        ("pgbouncer_auth_postgres", "PGBOUNCER_AUTH_POSTGRES", UNKNOWN_WHY),
        ("app_owner", "APP_OWNER", UNKNOWN_WHY),
        ("postgres", "POSTGRES", UNKNOWN_WHY),
        # Non-ASCII never goes through upper(): the long s (U+017F) upper-cases to "S".
        ("\u017fuperu\u017fer", "\u017fuperu\u017fer", UNKNOWN_WHY),
        ("ᴄʀᴇᴀᴛᴇʀᴏʟᴇ", "ᴄʀᴇᴀᴛᴇʀᴏʟᴇ", UNKNOWN_WHY),
        ("c\u200breaterole", "c\u200breaterole", UNKNOWN_WHY),
    ],
)
def test_every_role_beyond_the_allow_list_is_refused_in_any_spelling(text, refused, why):
    with pytest.raises(InvalidClientRequest) as caught:
        ClientRequest(4, "app", parse_extra_roles(text))
    message = str(caught.value)
    assert message.startswith(f"extra-user-roles {refused!r} refused: ")
    assert re.search(why, message)
    assert message.endswith("; allowed: CREATEDB, LOGIN")


@pytest.mark.parametrize(
    ("database", "owner"),
    [
        ("app", "app_owner"),
        ("a" * 57, "a" * 57 + "_owner"),
        ("a" * 58, "a" * 48 + "_" + hashlib.sha256(b"a" * 58).hexdigest()[:8] + "_owner"),
    ],
)
def test_owner_role_fits_a_postgresql_identifier(database, owner):
    assert owner_role(database) == owner
    assert ClientRequest(4, database).owner == owner
    assert len(owner) <= 63


def test_long_database_names_sharing_a_prefix_get_different_owners():
    first, second = "x" * 60 + "one", "x" * 60 + "two"
    assert owner_role(first) != owner_role(second)
    assert {len(owner_role(first)), len(owner_role(second))} == {63}


ALPHA = ClientApp("model-1", "alpha")
BETA = ClientApp("model-1", "beta")
ALPHA_ELSEWHERE = ClientApp("model-2", "alpha")
USER = "relation_id_4"


@pytest.mark.parametrize(
    ("existing", "record", "ours", "expected"),
    [
        (None, None, False, DatabaseClaim(ClaimAction.CREATE)),
        # A record whose database is gone guards nothing.
        (None, DatabaseRecord(7, BETA), False, DatabaseClaim(ClaimAction.CREATE)),
        (
            ExistingDatabase(7, "app_owner"),
            DatabaseRecord(7, ALPHA),
            True,
            DatabaseClaim(ClaimAction.REUSE),
        ),
        # A client moved ownership around inside its own database: still its own.
        (
            ExistingDatabase(7, USER),
            DatabaseRecord(7, ALPHA),
            False,
            DatabaseClaim(ClaimAction.REUSE),
        ),
        # Recorded, then the charm crashed before CREATE DATABASE: its owner role owns it.
        (
            ExistingDatabase(7, "app_owner"),
            DatabaseRecord(None, ALPHA),
            False,
            DatabaseClaim(ClaimAction.REUSE),
        ),
        (
            ExistingDatabase(7, "squatter"),
            DatabaseRecord(None, ALPHA),
            False,
            DatabaseClaim(
                ClaimAction.REFUSE, "database app was not created by this charm (owner squatter)"
            ),
        ),
        (
            ExistingDatabase(7, "app_owner"),
            DatabaseRecord(7, BETA),
            False,
            DatabaseClaim(
                ClaimAction.REFUSE, "database app belongs to another application (beta)"
            ),
        ),
        (
            ExistingDatabase(7, "app_owner"),
            DatabaseRecord(7, ALPHA_ELSEWHERE),
            False,
            DatabaseClaim(
                ClaimAction.REFUSE, "database app belongs to another application (alpha)"
            ),
        ),
        # Made by an earlier version of the charm for this very relation.
        (ExistingDatabase(7, USER), None, True, DatabaseClaim(ClaimAction.ADOPT)),
        (
            ExistingDatabase(7, USER),
            None,
            False,
            DatabaseClaim(
                ClaimAction.REFUSE,
                "database app already exists and was not created by this charm for alpha;"
                " not granting it",
            ),
        ),
        (
            ExistingDatabase(7, "someone"),
            None,
            True,
            DatabaseClaim(
                ClaimAction.REFUSE,
                "database app already exists and was not created by this charm for alpha;"
                " not granting it",
            ),
        ),
    ],
)
def test_a_database_is_handed_only_to_the_application_it_was_created_for(
    existing, record, ours, expected
):
    assert database_claim("app", ALPHA, existing, record, USER, ours) == expected


def test_with_client_adds_primary_and_readonly_entries_with_the_auth_user():
    cfg = with_client(initial_config(CharmConfig(), 1), REQUEST, BACKEND, AUTH_USER)

    assert cfg.database("app") == ConnString(
        {"host": "10.1.1.1", "port": "5432", "dbname": "app", "auth_user": AUTH_USER}
    )
    assert cfg.database("app_readonly") == ConnString(
        {"host": "10.1.1.2", "port": "5433", "dbname": "app", "auth_user": AUTH_USER}
    )
    assert "[databases]\napp = auth_user=pgbouncer_auth_operator dbname=app host=10.1.1.1 " in (
        render_pgb_ini(cfg)
    )


def test_without_read_only_endpoints_reads_go_to_the_primary():
    backend = BackendEndpoints(endpoints=(HostPort("10.1.1.1"),))
    cfg = with_client(initial_config(CharmConfig(), 1), REQUEST, backend, AUTH_USER)
    assert cfg.database("app_readonly") == cfg.database("app")


def test_without_client_removes_both_entries_and_nothing_else():
    base = initial_config(CharmConfig(), 1)
    other = ClientRequest(relation_id=5, database="shop")
    both = with_client(with_client(base, REQUEST, BACKEND, AUTH_USER), other, BACKEND, AUTH_USER)
    assert without_client(both, "app") == with_client(base, other, BACKEND, AUTH_USER)


def test_answer_points_at_the_leader_and_the_other_units():
    answer = client_answer(REQUEST, HOST0, 6432, [HOST0, HOST2, HOST1], "14.11")
    assert answer == ClientAnswer(
        database="app",
        endpoints=f"{HOST0}:6432",
        read_only_endpoints=f"{HOST1}:6432,{HOST2}:6432",
        version="14.11",
    )
    assert answer.fields() == {
        "database": "app",
        "endpoints": f"{HOST0}:6432",
        "read-only-endpoints": f"{HOST1}:6432,{HOST2}:6432",
        "version": "14.11",
    }


def test_a_single_unit_serves_reads_itself():
    assert client_answer(REQUEST, HOST0, 7000, [], None).read_only_endpoints == f"{HOST0}:7000"


def test_uri_quotes_the_password():
    assert client_uri("relation_id_4", "p@ss/w:rd", "h:6432", "app") == (
        "postgresql://relation_id_4:p%40ss%2Fw%3Ard@h:6432/app"
    )


def _units(cfg: str | None, *, ok: bool = True, lagging: bool = False) -> dict[str, UnitPeerData]:
    current = UnitPeerData(HOST0, Acknowledgement.of(cfg, None, ok))
    behind = UnitPeerData(HOST1, Acknowledgement.of(None, None, True))
    return {"u/0": current, "u/1": behind if lagging else current}


def test_credentials_wait_until_every_unit_runs_a_config_with_the_database():
    base = render_pgb_ini(initial_config(CharmConfig(), 1))
    served = render_pgb_ini(
        with_client(initial_config(CharmConfig(), 1), REQUEST, BACKEND, AUTH_USER)
    )

    assert ready_for_client(REQUEST, served, _units(served))
    assert not ready_for_client(REQUEST, served, _units(served, lagging=True))
    assert not ready_for_client(REQUEST, served, _units(served, ok=False))
    assert not ready_for_client(REQUEST, base, _units(base))
    assert not ready_for_client(REQUEST, None, _units(None))
    assert not ready_for_client(REQUEST, served, {})
