"""The client relation's domain: literal requests, configs and answers."""

import pytest

from domain.backend import BackendEndpoints, HostPort
from domain.charm_config import CharmConfig, initial_config
from domain.clients import (
    ClientAnswer,
    ClientRequest,
    InvalidClientRequest,
    client_answer,
    client_uri,
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


def test_extra_roles_are_parsed_and_superuser_is_refused():
    assert parse_extra_roles("createdb, CreateRole") == ("CREATEDB", "CREATEROLE")
    assert parse_extra_roles(None) == ()
    with pytest.raises(InvalidClientRequest, match="'SUPERUSER' is not one of"):
        ClientRequest(4, "app", parse_extra_roles("superuser"))


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
