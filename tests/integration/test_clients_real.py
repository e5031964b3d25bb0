"""Client applications served for real: the whole charm under ``ops.testing``, pgbouncer run by
``LocalWorkload`` in folders under /tmp, the session's PostgreSQL as the backend.

A client gets its credentials from the charm and connects the way an application does (the
real ``psql``), through pgbouncer, to the database it asked for. Two units are two
``ops.testing`` states of the same application, each with its own ``LocalWorkload``; what the
leader publishes is handed to the follower as Juju would, and the follower's acknowledgement
back to the leader. Both run pgbouncer on the same port (``so_reuseport``), so each is checked
while the other is stopped.
"""

import dataclasses
import json
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator

import pytest
from ops import testing

from adapters.juju.secret_store import SECRET_LABEL
from adapters.postgres.auth_setup import make_dsn, remove_auth
from adapters.postgres.clients import REGISTRY_SCHEMA, REGISTRY_TABLE
from charm import PgBouncerK8sCharm
from domain.backend import auth_user_for
from domain.charm_config import CharmConfig, initial_config
from domain.clients import owner_role
from domain.peer_data import short_digest
from domain.pgb_config import render_pgb_ini
from domain.ports import WorkloadPort
from localenv.local_workload import LocalWorkload
from localenv.net import free_port
from localenv.postgres_cluster import PostgresCluster, PostgresError, psql
from localenv.processes import pgrep
from tests.charm_leftovers import drop_client_databases
from tests.unit.charm_harness import CONFIG, META, MODEL
from tests.unit.peer_fixtures import HOST0, HOST1
from tests.v1_client import V1ClientCharm
from tests.v1_client import context as v1_client_context

pytestmark = pytest.mark.real

PROCESSES = 2
PEER_ID, BACKEND_ID = 1, 2


def _name(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(4)}"


def charm_with(workload: LocalWorkload) -> type[PgBouncerK8sCharm]:
    """The charm of one unit, with its own local pgbouncer in place of the container."""

    class UnitCharm(PgBouncerK8sCharm):
        processes = PROCESSES

        def make_workload(self) -> WorkloadPort:
            return workload

    return UnitCharm


def context(charm: type[PgBouncerK8sCharm], unit_id: int = 0) -> testing.Context:
    return testing.Context(
        charm,
        meta=META,
        config=CONFIG,
        juju_version="3.6.0",
        app_name="pgbouncer-k8s",
        unit_id=unit_id,
    )


@dataclasses.dataclass
class World:
    """The backend's superuser and database, and the client relation's names."""

    backend_user: str
    backend_password: str
    backend_database: str
    client_id: int
    client_database: str

    @property
    def client_user(self) -> str:
        return f"relation_id_{self.client_id}"


@pytest.fixture
def world(postgres: PostgresCluster) -> Iterator[World]:
    backend_user, backend_password = _name("pgb_backend"), secrets.token_urlsafe(18)
    postgres.psql(f"CREATE ROLE {backend_user} LOGIN SUPERUSER PASSWORD '{backend_password}'")
    backend_database = _name("pgb_backend_db")
    postgres.psql(f'CREATE DATABASE "{backend_database}"')
    # A relation id no other test uses: the client's role name is cluster-wide.
    world = World(
        backend_user,
        backend_password,
        backend_database,
        client_id=secrets.randbelow(90_000) + 10_000,
        client_database=_name("client_db"),
    )
    yield world
    superuser = make_dsn(postgres.host, postgres.port, postgres.superuser, postgres.password)
    drop_client_databases(postgres, [world.client_database])
    postgres.psql(f'DROP DATABASE IF EXISTS "{backend_database}" WITH (FORCE)')
    remove_auth(superuser, auth_user_for(backend_user), ["postgres"])
    # The client's user too when it is no member of the owner role (a test made it first).
    for role in (world.client_user, backend_user):
        exists = postgres.psql(f"SELECT count(*) FROM pg_roles WHERE rolname = '{role}'")
        if exists == "1":
            postgres.psql(f"REASSIGN OWNED BY {role} TO {postgres.superuser}")
            postgres.psql(f"DROP OWNED BY {role}")
            postgres.psql(f"DROP ROLE {role}")


@pytest.fixture
def workloads() -> Iterator[Callable[[str], LocalWorkload]]:
    """Local workloads, each in its own folder directly under /tmp (the ``postgres`` user
    must reach it); at the end all are stopped, no process runs from them, folders gone."""
    made: list[LocalWorkload] = []

    def make(name: str) -> LocalWorkload:
        workload = LocalWorkload(tempfile.mkdtemp(prefix=f"pgb-{name}-"), processes=PROCESSES)
        made.append(workload)
        return workload

    try:
        yield make
        for workload in made:
            workload.stop()
            assert pgrep(workload.base_dir) == [], "pgbouncer processes left running"
    finally:
        for workload in made:
            workload.stop()
            shutil.rmtree(workload.base_dir, ignore_errors=True)


def initial_cfg(port: int) -> str:
    """What pebble-ready rendered on the leader, listening on the loopback address only."""
    cfg = initial_config(CharmConfig(listen_port=port), PROCESSES)
    return render_pgb_ini(cfg.with_settings({"listen_addr": "127.0.0.1"}))


def leader_state(
    postgres: PostgresCluster, world: World, port: int, follower: bool
) -> tuple[testing.State, testing.Relation, testing.Relation]:
    backend_secret = testing.Secret(
        tracked_content={"username": world.backend_user, "password": world.backend_password}
    )
    backend = testing.Relation(
        "backend-database",
        id=BACKEND_ID,
        remote_app_name="postgresql-k8s",
        remote_app_data={
            "endpoints": f"{postgres.host}:{postgres.port}",
            "database": world.backend_database,
            "version": "15.8",
            "secret-user": backend_secret.id,
        },
    )
    client = testing.Relation(
        "database",
        id=world.client_id,
        remote_app_name="client-app",
        remote_app_data={
            "database": world.client_database,
            "extra-user-roles": "createdb",
            "requested-secrets": '["username", "password", "tls", "tls-ca", "uris"]',
        },
    )
    peer = testing.PeerRelation(
        "pgb-peers",
        id=PEER_ID,
        local_unit_data={"hostname": HOST0},
        peers_data={1: {"hostname": HOST1}} if follower else {},
    )
    state = testing.State(
        leader=True,
        model=MODEL,
        config={"listen_port": port},
        relations={peer, backend, client},
        secrets={backend_secret},
    )
    return state, backend, client


def client_credentials(out: testing.State, relation_id: int) -> dict[str, str]:
    secret_id = out.get_relation(relation_id).local_app_data["secret-user"]
    content = out.get_secret(id=secret_id).latest_content
    assert content is not None
    return dict(content)


def as_client(port: int, credentials: dict[str, str], dbname: str, sql: str) -> str:
    return psql(
        sql,
        host="127.0.0.1",
        port=port,
        user=credentials["username"],
        password=credentials["password"],
        dbname=dbname,
    )


def count(postgres: PostgresCluster, query: str, dbname: str = "postgres") -> str:
    return postgres.psql(query, dbname=dbname)


def test_a_single_unit_serves_a_client_in_the_hook_of_its_request(postgres, world, workloads):
    port = free_port()
    leader = workloads("leader")
    leader.write_cfg(initial_cfg(port))
    state, backend, client = leader_state(postgres, world, port, follower=False)
    ctx = context(charm_with(leader))

    set_up = ctx.run(ctx.on.relation_changed(backend, remote_unit=0), state)
    client = set_up.get_relation(client.id)
    out = ctx.run(ctx.on.relation_changed(client, remote_unit=0), set_up)

    assert out.deferred == []
    assert out.unit_status == testing.ActiveStatus(
        f"pgbouncer on port {port}, 2 processes, config {short_digest(leader.read_cfg())}"
    )
    answer = out.get_relation(client.id).local_app_data
    assert answer["database"] == world.client_database
    assert answer["endpoints"] == f"{HOST0}:{port}"
    assert answer["read-only-endpoints"] == f"{HOST0}:{port}"
    assert answer["version"] == "15.8"
    credentials = client_credentials(out, client.id)
    assert credentials["username"] == world.client_user
    assert credentials["uris"] == (
        f"postgresql://{world.client_user}:{credentials['password']}@{HOST0}:{port}/"
        f"{world.client_database}"
    )
    assert credentials["password"] not in "".join(answer.values())
    # The client's own database, owned by its role, which got CREATEDB and nothing more.
    owner = "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{}'"
    assert count(postgres, owner.format(world.client_database)) == owner_role(
        world.client_database
    )
    attributes = "SELECT rolcreatedb, rolsuper, rolcreaterole FROM pg_roles WHERE rolname = '{}'"
    assert count(postgres, attributes.format(world.client_user)) == "t|f|f"
    # Through pgbouncer, to its database and to the read-only entry.
    who = "SELECT session_user || '@' || current_database()"
    expected = f"{world.client_user}@{world.client_database}"
    assert as_client(port, credentials, world.client_database, who) == expected
    assert as_client(port, credentials, world.client_database + "_readonly", who) == expected
    with pytest.raises(PostgresError, match="authentication failed"):
        as_client(port, credentials | {"password": "not-it"}, world.client_database, who)


def test_two_units_serve_a_client_once_both_applied_and_broken_drops_it(
    postgres, world, workloads
):
    port = free_port()
    leader, follower = workloads("leader"), workloads("follower")
    leader.write_cfg(initial_cfg(port))
    state, backend, client = leader_state(postgres, world, port, follower=True)
    leader_ctx = context(charm_with(leader))
    follower_ctx = context(charm_with(follower), unit_id=1)

    # The leader sets up the backend, then serves the request: unit 1 has applied nothing.
    set_up = leader_ctx.run(leader_ctx.on.relation_changed(backend, remote_unit=0), state)
    client = set_up.get_relation(client.id)
    served = leader_ctx.run(leader_ctx.on.relation_changed(client, remote_unit=0), set_up)
    assert served.unit_status == testing.WaitingStatus(
        f"waiting for 1 unit to apply database {world.client_database}"
    )
    assert "secret-user" not in served.get_relation(client.id).local_app_data

    # The follower applies what the leader published (Juju carries the databags over).
    published = served.get_relation(PEER_ID)
    follower_peer = testing.PeerRelation(
        "pgb-peers",
        id=PEER_ID,
        local_app_data=published.local_app_data,
        local_unit_data={"hostname": HOST1},
        peers_data={0: published.local_unit_data},
    )
    store = served.get_secret(label=SECRET_LABEL)
    follower_state = testing.State(
        leader=False,
        model=MODEL,
        config={"listen_port": port},
        relations={follower_peer},
        secrets={store},
    )
    applied = follower_ctx.run(
        follower_ctx.on.relation_changed(follower_peer, remote_unit=0), follower_state
    )
    assert follower.read_cfg() == leader.read_cfg()
    assert follower.read_auth() == leader.read_auth()

    # Its acknowledgement reaches the leader: the credentials are handed.
    leader_peer = testing.PeerRelation(
        "pgb-peers",
        id=PEER_ID,
        local_app_data=published.local_app_data,
        local_unit_data=published.local_unit_data,
        peers_data={1: applied.get_relation(PEER_ID).local_unit_data},
    )
    acked = dataclasses.replace(
        served, relations={*(r for r in served.relations if r.id != PEER_ID), leader_peer}
    )
    handed = leader_ctx.run(leader_ctx.on.relation_changed(leader_peer, remote_unit=1), acked)
    answer = handed.get_relation(client.id).local_app_data
    assert answer["endpoints"] == f"{HOST0}:{port}"
    assert answer["read-only-endpoints"] == f"{HOST1}:{port}"
    credentials = client_credentials(handed, client.id)

    # Through each unit's pgbouncer in turn (both listen on the port: one is stopped).
    who = "SELECT session_user || '@' || current_database()"
    expected = f"{world.client_user}@{world.client_database}"
    follower.stop()
    assert as_client(port, credentials, world.client_database, who) == expected
    as_client(port, credentials, world.client_database, "CREATE TABLE kept (n int)")
    as_client(port, credentials, world.client_database, "INSERT INTO kept VALUES (42)")
    leader.stop()
    follower.reload()  # starts the follower's processes again, with its files as they are
    try:
        assert as_client(port, credentials, world.client_database + "_readonly", who) == expected
    finally:
        follower.stop()
    leader.reload()

    # The client goes: its role is dropped, its data stays, the leader forgets it.
    broken = leader_ctx.run(leader_ctx.on.relation_broken(handed.get_relation(client.id)), handed)
    assert broken.deferred == []
    role_query = f"SELECT count(*) FROM pg_roles WHERE rolname = '{world.client_user}'"
    assert count(postgres, role_query) == "0"
    assert count(postgres, "SELECT n FROM kept", dbname=world.client_database) == "42"
    cfg = leader.read_cfg()
    assert cfg is not None
    assert f"\n{world.client_database} = " not in cfg
    assert f"\n{world.client_database}_readonly = " not in cfg
    store_content = broken.get_secret(label=SECRET_LABEL).latest_content
    assert store_content is not None
    assert f"relation-id-{world.client_id}" not in store_content
    assert broken.get_relation(PEER_ID).local_app_data["cfg_file"] == cfg
    assert not [s for s in broken.secrets if s.label == f"database-relation-{world.client_id}"]
    with pytest.raises(PostgresError):
        as_client(port, credentials, world.client_database, who)


def test_a_backend_change_on_a_settled_leader_signals_pgbouncer_once(postgres, world, workloads):
    # One hook, two relations' changes (the auth setup and the client's entries follow the
    # backend's new primary address): the files are written once and pgbouncer gets one
    # SIGHUP per process, no restart.
    port = free_port()
    leader = workloads("leader")
    leader.write_cfg(initial_cfg(port))
    state, backend, client = leader_state(postgres, world, port, follower=False)
    ctx = context(charm_with(leader))
    set_up = ctx.run(ctx.on.relation_changed(backend, remote_unit=0), state)
    served = ctx.run(
        ctx.on.relation_changed(set_up.get_relation(client.id), remote_unit=0), set_up
    )
    assert "secret-user" in served.get_relation(client.id).local_app_data
    signals, starts = leader.signals_sent, leader.starts
    before = leader.read_cfg()

    moved = dataclasses.replace(
        backend,
        local_app_data=served.get_relation(backend.id).local_app_data,
        remote_app_data={**backend.remote_app_data, "endpoints": f"localhost:{postgres.port}"},
    )
    state = dataclasses.replace(
        served, relations={*(r for r in served.relations if r.id != backend.id), moved}
    )
    out = ctx.run(ctx.on.relation_changed(moved, remote_unit=0), state)

    assert out.deferred == []
    cfg = leader.read_cfg()
    assert cfg is not None
    assert cfg != before
    assert f"{world.client_database} = " in cfg
    assert "host=localhost" in cfg.split(f"\n{world.client_database} = ")[1].splitlines()[0]
    assert leader.signals_sent - signals == PROCESSES  # one SIGHUP per process
    assert leader.starts == starts
    credentials = client_credentials(out, client.id)
    who = "SELECT session_user || '@' || current_database()"
    expected = f"{world.client_user}@{world.client_database}"
    assert as_client(port, credentials, world.client_database, who) == expected


# --- every shape of request: v0 with and without secrets, v1 --------------------------------


def _v1_request(database: str) -> tuple[dict[str, str], testing.State, testing.Relation]:
    """What the library's v1 requirer writes on relation-created, and its state after."""
    V1ClientCharm.database = database
    ctx = v1_client_context()
    relation = testing.Relation("database", remote_app_name="pgbouncer-k8s")
    out = ctx.run(
        ctx.on.relation_created(relation), testing.State(leader=True, relations={relation})
    )
    return dict(out.get_relation(relation.id).local_app_data), out, relation


def _v1_receive(
    client_state: testing.State, relation: testing.Relation, answer: dict[str, str], secret
) -> dict[str, str]:
    """The v1 client reads the charm's answer (and the secret granted to it) the way the
    library does; what its ``resource_created`` event carried."""
    V1ClientCharm.created.clear()
    ctx = v1_client_context()
    answered = dataclasses.replace(client_state.get_relation(relation.id), remote_app_data=answer)
    granted = testing.Secret(tracked_content=dict(secret.latest_content), id=secret.id)
    state = dataclasses.replace(client_state, relations={answered}, secrets={granted})
    ctx.run(ctx.on.relation_changed(answered, remote_unit=0), state)
    assert len(V1ClientCharm.created) == 1, "the v1 client saw no resource_created"
    return V1ClientCharm.created[0]


@pytest.mark.parametrize("shape", ["v0 with secrets", "v0 without secrets", "v1"])
def test_every_shape_of_request_gets_a_database_it_logs_in_to(postgres, world, workloads, shape):
    port = free_port()
    leader = workloads("leader")
    leader.write_cfg(initial_cfg(port))
    state, backend, client = leader_state(postgres, world, port, follower=False)
    request = {"database": world.client_database, "extra-user-roles": "createdb"}
    client_state, client_side = None, None
    if shape == "v0 with secrets":
        request["requested-secrets"] = '["username", "password", "uris"]'
    elif shape == "v1":
        request, client_state, client_side = _v1_request(world.client_database)
        assert request["version"] == "v1"
    client = dataclasses.replace(client, remote_app_data=request)
    state = dataclasses.replace(
        state, relations={*(r for r in state.relations if r.id != client.id), client}
    )
    ctx = context(charm_with(leader))

    set_up = ctx.run(ctx.on.relation_changed(backend, remote_unit=0), state)
    out = ctx.run(ctx.on.relation_changed(set_up.get_relation(client.id), remote_unit=0), set_up)

    assert out.deferred == []
    answer = dict(out.get_relation(client.id).local_app_data)
    if shape == "v0 with secrets":
        assert "password" not in answer
        credentials = client_credentials(out, client.id)
    elif shape == "v0 without secrets":
        assert "secret-user" not in answer
        credentials = answer
    else:
        assert client_state is not None
        assert client_side is not None
        assert set(answer) == {"version", "requests", "data"}
        (response,) = json.loads(answer["requests"])
        secret = out.get_secret(id=response["secret-user"])
        credentials = _v1_receive(client_state, client_side, answer, secret)
        assert credentials["endpoints"] == f"{HOST0}:{port}"
        assert credentials["database"] == world.client_database
    assert credentials["username"] == world.client_user
    who = "SELECT session_user || '@' || current_database()"
    expected = f"{world.client_user}@{world.client_database}"
    assert as_client(port, credentials, world.client_database, who) == expected


def test_another_application_asking_for_a_served_database_is_blocked_and_given_nothing(
    postgres, world, workloads
):
    """The charm as a whole: application B asks for application A's database. B is blocked
    with the reason, gets no credentials, no role and no entry; A keeps working; and B's
    refusal does not keep a third application from being served in the next hooks."""
    port = free_port()
    leader = workloads("leader")
    leader.write_cfg(initial_cfg(port))
    state, backend, client = leader_state(postgres, world, port, follower=False)
    ctx = context(charm_with(leader))
    set_up = ctx.run(ctx.on.relation_changed(backend, remote_unit=0), state)
    served = ctx.run(
        ctx.on.relation_changed(set_up.get_relation(client.id), remote_unit=0), set_up
    )
    credentials = client_credentials(served, client.id)

    thief_id, other_id = world.client_id + 1, world.client_id + 2
    thief = testing.Relation(
        "database",
        id=thief_id,
        remote_app_name="thief-app",
        remote_app_data={"database": world.client_database},
    )
    cfg_before = leader.read_cfg()
    state = dataclasses.replace(served, relations={*served.relations, thief})
    out = ctx.run(ctx.on.relation_changed(thief, remote_unit=0), state)

    reason = (
        f"database relation {thief_id} (thief-app): database {world.client_database} belongs"
        " to another application (client-app)"
    )
    assert out.unit_status == testing.BlockedStatus(reason)
    assert out.get_relation(thief_id).local_app_data == {}
    assert leader.read_cfg() == cfg_before
    thief_role = f"SELECT count(*) FROM pg_roles WHERE rolname = 'relation_id_{thief_id}'"
    assert count(postgres, thief_role) == "0"
    # The rightful application still reads and writes its database.
    as_client(port, credentials, world.client_database, "CREATE TABLE mine (n int)")
    as_client(port, credentials, world.client_database, "INSERT INTO mine VALUES (1)")

    # A third application asks for a database of its own: served despite the refusal, which
    # stays in the status.
    other_db = f"{world.client_database}_other"
    other = testing.Relation(
        "database",
        id=other_id,
        remote_app_name="other-app",
        remote_app_data={"database": other_db},
    )
    state = dataclasses.replace(out, relations={*out.relations, other}, deferred=[])
    try:
        again = ctx.run(ctx.on.relation_changed(other, remote_unit=0), state)
        assert again.unit_status == testing.BlockedStatus(reason)
        assert again.get_relation(other_id).local_app_data["database"] == other_db
        handed = again.get_relation(other_id).local_app_data
        assert "secret-user" in handed or "password" in handed  # credentials handed
        assert again.get_relation(thief_id).local_app_data == {}
        cfg = leader.read_cfg() or ""
        assert f"\n{other_db} = " in cfg
        assert cfg.count(f"\n{world.client_database} = ") == 1
    finally:
        postgres.psql(f'DROP DATABASE IF EXISTS "{other_db}" WITH (FORCE)')
        postgres.psql(
            f"DELETE FROM {REGISTRY_SCHEMA}.{REGISTRY_TABLE} WHERE datname = '{other_db}'"
        )
        for role in (f"relation_id_{other_id}", owner_role(other_db)):
            postgres.psql(f"DROP ROLE IF EXISTS {role}")
