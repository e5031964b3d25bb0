"""The database relation (client applications) under ``ops.testing``: one event per test.

Nothing of the charm is mocked. Where a hook would reach the backend, the backend relation
points at a closed port on the loopback interface, so the real psycopg fails at once: the
tests see the fault handling. Serving a request against a real PostgreSQL, and a client
connecting through pgbouncer, are in ``tests/integration/test_clients_real.py``. The tests
that hand credentials start from a relation already set up (its database in this charm's
databag, its password in the peer store, its entries in the published pgbouncer.ini), as a
former hook left it, and let a peer hook bring the acknowledgements.
"""

import dataclasses
import json
import pathlib

import ops
import pytest
from ops import testing

from adapters.juju.secret_store import SECRET_ID_KEY, SECRET_LABEL
from domain.peer_data import Acknowledgement, no_acknowledgement_wanted, short_digest
from localenv.net import free_port
from tests.unit.charm_harness import MODEL, container, context, read_file, serving, write_files
from tests.unit.peer_fixtures import HOST0, HOST1, HOST2

# Fixed relation ids: an id left to ops.testing could be any number, 5 included.
PEER_ID, BACKEND_ID, CLIENT_ID = 1, 2, 5
CLIENT_USER = "relation_id_5"
CLIENT_PASSWORD = "Cl13nt-Pw4rd-Xq8zR2mT6vYb"
CLIENT_SECRET_LABEL = "database-relation-5"
BACKEND_USER = "relation_id_7"
BACKEND_PASSWORD = "Vh3kP9sLq2Zx7RwT5mNc8bJd"
AUTH_PASSWORD = "Qe8rT2yU4iO6pA1sD3fG5hJk"
AUTH_LINE = f'"pgbouncer_auth_relation_id_7" "{AUTH_PASSWORD}"\n'
REQUEST_SECRETS = '["username", "password", "tls", "tls-ca", "uris"]'
REQUEST = {"database": "app", "extra-user-roles": "CREATEDB", "requested-secrets": REQUEST_SECRETS}
# The leader's pgbouncer.ini with the backend's auth_query, before and after serving "app"
# (the backend's primary 10.1.1.1, its replica 10.1.1.2). Written out by hand.
CFG = """\
[databases]
other = dbname=other host=10.1.1.1 port=5432

[pgbouncer]
auth_file = /var/lib/postgresql/pgbouncer/userlist.txt
auth_query = SELECT usename, passwd FROM pgbouncer_auth.get_auth($1)
auth_user = pgbouncer_auth_relation_id_7
listen_addr = *
listen_port = 6432
logfile = /var/lib/postgresql/pgbouncer/pgbouncer.log
pidfile = /var/lib/postgresql/pgbouncer/pgbouncer.pid
pool_mode = session
user = postgres
"""
CFG_SERVED = CFG.replace(
    "[databases]\n",
    "[databases]\n"
    "app = auth_user=pgbouncer_auth_relation_id_7 dbname=app host=10.1.1.1 port=5432\n"
    "app_readonly = auth_user=pgbouncer_auth_relation_id_7 dbname=app host=10.1.1.2 port=5432\n",
)
# What a client whose credentials were handed by this unit (leader on port 6432) has.
HANDED = {
    "database": "app",
    "endpoints": f"{HOST0}:6432",
    "read-only-endpoints": f"{HOST1}:6432",
    "version": "16.4",
}


pytestmark = pytest.mark.usefixtures("two_processes")


def ack_of(cfg: str | None, auth: str | None) -> dict[str, str]:
    ack = Acknowledgement.of(cfg, auth, True)
    return {
        "applied_cfg_digest": ack.cfg_digest,
        "applied_auth_digest": ack.auth_digest,
        "apply_ok": "true",
    }


def client(local: dict[str, str] | None = None, remote: dict[str, str] | None = None):
    return testing.Relation(
        "database",
        id=CLIENT_ID,
        remote_app_name="client-app",
        remote_app_data=REQUEST if remote is None else remote,
        local_app_data=local or {},
    )


def backend(port: int = 5432, juju: str = "3.6.0") -> tuple[testing.Relation, set]:
    """The backend relation, answered; with Juju secrets, also the provider's secret."""
    remote = {
        "endpoints": f"127.0.0.1:{port}" if port != 5432 else "10.1.1.1:5432",
        "read-only-endpoints": "10.1.1.2:5432",
        "database": "pgbouncer-k8s",
        "version": "16.4",
    }
    secrets = set()
    if juju.startswith("3"):
        secret = testing.Secret(
            tracked_content={"username": BACKEND_USER, "password": BACKEND_PASSWORD}
        )
        remote["secret-user"] = secret.id
        secrets.add(secret)
    else:
        remote |= {"username": BACKEND_USER, "password": BACKEND_PASSWORD}
    relation = testing.Relation(
        "backend-database", id=BACKEND_ID, remote_app_name="postgresql-k8s", remote_app_data=remote
    )
    return relation, secrets


def store(juju: str, password: str | None = CLIENT_PASSWORD) -> tuple[dict[str, str], set]:
    """The peer store holding the auth file (and the client's password): the peer app databag
    keys and the secrets for it."""
    if not juju.startswith("3"):
        keys = {"auth_file": AUTH_LINE}
        if password:
            keys["relation_id_5"] = password
        return keys, set()
    content = {"auth-file": AUTH_LINE}
    if password:
        content["relation-id-5"] = password
    secret = testing.Secret(tracked_content=content, owner="app", label=SECRET_LABEL)
    return {SECRET_ID_KEY: secret.id}, {secret}


def peers(
    published: str, follower_cfg: str | None = None, juju: str = "3.6.0", **units
) -> tuple[testing.PeerRelation, set]:
    """This unit (0) leads and has published ``published``; unit 1 runs ``follower_cfg``."""
    store_keys, secrets = store(juju)
    peers_data = {1: {"hostname": HOST1, **ack_of(follower_cfg, AUTH_LINE)}, **units}
    relation = testing.PeerRelation(
        "pgb-peers",
        id=PEER_ID,
        local_app_data={"cfg_file": published, "leader_hostname": HOST0, **store_keys},
        local_unit_data={"hostname": HOST0, **ack_of(published, AUTH_LINE)},
        peers_data=peers_data,
    )
    return relation, secrets


def leader_state(folder: pathlib.Path, *relations, secrets=(), **kwargs) -> testing.State:
    return testing.State(
        leader=kwargs.pop("leader", True),
        model=MODEL,
        containers=kwargs.pop("containers", {container(folder)}),
        relations=set(relations),
        secrets=set(secrets),
        **kwargs,
    )


def client_secret(out: testing.State) -> testing.Secret | None:
    found = [secret for secret in out.secrets if secret.label == CLIENT_SECRET_LABEL]
    return found[0] if found else None


def handed_secret(endpoint: str = f"{HOST0}:6432") -> testing.Secret:
    return testing.Secret(
        tracked_content={
            "username": CLIENT_USER,
            "password": CLIENT_PASSWORD,
            "uris": f"postgresql://{CLIENT_USER}:{CLIENT_PASSWORD}@{endpoint}/app",
        },
        owner="app",
        label=CLIENT_SECRET_LABEL,
        remote_grants={CLIENT_ID: {"client-app"}},
    )


def assert_no_credential_in_plain_sight(out: testing.State) -> None:
    texts = [out.unit_status.message, out.app_status.message]
    for relation in out.relations:
        texts += relation.local_app_data.values()
        texts += relation.local_unit_data.values()
    texts += [repr(stored.content) for stored in out.stored_states]
    for text in texts:
        for credential in (CLIENT_PASSWORD, BACKEND_PASSWORD, AUTH_PASSWORD):
            assert credential not in text


# --- relation-changed: serving the request ---------------------------------------------------


def test_request_against_an_unreachable_backend_waits_defers_and_writes_nothing(folder):
    write_files(folder, cfg=CFG, auth=AUTH_LINE)
    closed_port = free_port()
    backend_relation, backend_secrets = backend(closed_port)
    peer, store_secrets = peers(CFG, CFG)
    relation = client()
    state = leader_state(
        folder, peer, backend_relation, relation, secrets=backend_secrets | store_secrets
    )
    ctx = context("3.6.0")
    out = ctx.run(ctx.on.relation_changed(relation, remote_unit=0), state)

    assert isinstance(out.unit_status, testing.WaitingStatus)
    assert out.unit_status.message.startswith(
        "database relation 5: cannot set up database app on the backend:"
        " backend database: connection failed:"
    )
    assert f"port {closed_port} failed: Connection refused" in out.unit_status.message
    assert len(out.deferred) == 1
    # Nothing half-done: the config, the client's databag and the store are untouched.
    assert read_file(folder, "pgbouncer.ini") == CFG
    assert out.get_relation(relation.id).local_app_data == {}
    assert out.get_secret(label=SECRET_LABEL).latest_content == {
        "auth-file": AUTH_LINE,
        "relation-id-5": CLIENT_PASSWORD,
    }
    assert client_secret(out) is None
    assert_no_credential_in_plain_sight(out)


def test_new_request_against_an_unreachable_backend_stores_no_password(folder):
    write_files(folder, cfg=CFG, auth=AUTH_LINE)
    backend_relation, backend_secrets = backend(free_port(), "2.9.44")
    peer = testing.PeerRelation(
        "pgb-peers",
        id=PEER_ID,
        local_app_data={"cfg_file": CFG, "auth_file": AUTH_LINE},
        local_unit_data={"hostname": HOST0},
    )
    relation = client()
    state = leader_state(folder, peer, backend_relation, relation, secrets=backend_secrets)
    ctx = context("2.9.44")
    out = ctx.run(ctx.on.relation_changed(relation, remote_unit=0), state)

    assert "Connection refused" in out.unit_status.message
    assert len(out.deferred) == 1
    assert "relation_id_5" not in out.get_relation(peer.id).local_app_data
    assert out.get_relation(relation.id).local_app_data == {}


def test_request_before_the_backend_is_ready_waits_and_defers(folder):
    write_files(folder, cfg=CFG.replace("auth_user = pgbouncer_auth_relation_id_7\n", ""))
    backend_relation, backend_secrets = backend()
    # The provider has not sent its credentials yet.
    answer = dict(backend_relation.remote_app_data)
    del answer["secret-user"]
    backend_relation = dataclasses.replace(backend_relation, remote_app_data=answer)
    relation = client()
    peer = testing.PeerRelation("pgb-peers", id=PEER_ID, local_unit_data={"hostname": HOST0})
    state = leader_state(folder, peer, backend_relation, relation, secrets=backend_secrets)
    ctx = context("3.6.0")
    out = ctx.run(ctx.on.relation_changed(relation, remote_unit=0), state)

    assert out.unit_status == testing.WaitingStatus(
        "database relation 5 (client-app): waiting for the backend database"
        " (its credentials and auth_query set up)"
    )
    assert len(out.deferred) == 1
    assert out.get_relation(relation.id).local_app_data == {}


def test_request_with_an_unreachable_container_waits_and_defers(folder):
    backend_relation, backend_secrets = backend()
    relation = client()
    peer = testing.PeerRelation("pgb-peers", id=PEER_ID, local_unit_data={"hostname": HOST0})
    state = leader_state(
        folder,
        peer,
        backend_relation,
        relation,
        secrets=backend_secrets,
        containers={container(folder, can_connect=False)},
    )
    ctx = context("3.6.0")
    out = ctx.run(ctx.on.relation_changed(relation, remote_unit=0), state)

    assert out.unit_status == testing.WaitingStatus(
        "database relation 5 (client-app): waiting for the pgbouncer container"
        " (Pebble is not reachable)"
    )
    assert len(out.deferred) == 1


@pytest.mark.parametrize(
    ("request_data", "reason"),
    [
        ({"database": "postgres"}, "database 'postgres' is reserved"),
        ({"database": "app; DROP"}, "database 'app; DROP': use 1-63 letters"),
        (
            {"database": "app", "extra-user-roles": "superuser"},
            "extra-user-roles 'SUPERUSER' refused: it bypasses every permission check;"
            " allowed: CREATEDB, LOGIN",
        ),
        (
            {"database": "app", "extra-user-roles": "createdb, CreateRole"},
            "extra-user-roles 'CREATEROLE' refused: it can grant itself any non-superuser role",
        ),
        (
            {"database": "app", "extra-user-roles": " pg_execute_server_program"},
            "extra-user-roles 'PG_EXECUTE_SERVER_PROGRAM' refused: a pg_* role reaches beyond",
        ),
        (
            {"database": "app", "extra-user-roles": "createdb createrole"},
            "extra-user-roles 'CREATEDB CREATEROLE' refused: not a role attribute",
        ),
        (
            {"database": "app", "requested-secrets": "username"},
            "requested-secrets: expected a JSON list of field names",
        ),
    ],
)
def test_a_request_that_cannot_be_served_blocks_naming_the_relation(folder, request_data, reason):
    write_files(folder, cfg=CFG, auth=AUTH_LINE)
    backend_relation, backend_secrets = backend(free_port())
    peer, store_secrets = peers(CFG, CFG)
    relation = client(remote=request_data)
    state = leader_state(
        folder, peer, backend_relation, relation, secrets=backend_secrets | store_secrets
    )
    ctx = context("3.6.0")
    out = ctx.run(ctx.on.relation_changed(relation, remote_unit=0), state)

    assert isinstance(out.unit_status, testing.BlockedStatus)
    assert out.unit_status.message.startswith("database relation 5 (client-app): " + reason)
    assert out.deferred == []
    assert out.get_relation(relation.id).local_app_data == {}
    assert read_file(folder, "pgbouncer.ini") == CFG
    # No credentials: no secret for the client.
    assert not [s for s in out.secrets if s.label == f"database-relation-{relation.id}"]


def test_a_v1_client_asking_for_two_databases_on_one_relation_is_refused(folder):
    requests = [{"resource": "one", "request-id": "aaaa"}, {"resource": "two", "salt": "s"}]
    relation = client(remote={"version": "v1", "requests": json.dumps(requests)})
    backend_relation, backend_secrets = backend(free_port())
    peer, store_secrets = peers(CFG, CFG)
    write_files(folder, cfg=CFG, auth=AUTH_LINE)
    state = leader_state(
        folder, peer, backend_relation, relation, secrets=backend_secrets | store_secrets
    )
    ctx = context("3.6.0")
    out = ctx.run(ctx.on.relation_changed(relation, remote_unit=0), state)

    assert out.unit_status == testing.BlockedStatus(
        "database relation 5 (client-app): requests: 2 databases asked on one relation; this"
        " charm serves one database per relation (relate once per database)"
    )
    assert out.get_relation(relation.id).local_app_data == {}
    assert read_file(folder, "pgbouncer.ini") == CFG


def test_a_client_that_has_not_asked_yet_gets_nothing(folder):
    write_files(folder, cfg=CFG, auth=AUTH_LINE)
    backend_relation, backend_secrets = backend(free_port())
    peer, store_secrets = peers(CFG, CFG)
    relation = client(remote={})
    state = leader_state(
        folder, peer, backend_relation, relation, secrets=backend_secrets | store_secrets
    )
    ctx = context("3.6.0")
    out = ctx.run(ctx.on.relation_changed(relation, remote_unit=0), state)

    assert out.deferred == []
    assert out.get_relation(relation.id).local_app_data == {}


def test_a_follower_does_nothing_with_a_request(folder):
    write_files(folder, cfg=CFG, auth=AUTH_LINE)
    backend_relation, backend_secrets = backend(free_port())
    relation = client()
    peer = testing.PeerRelation(
        "pgb-peers",
        id=PEER_ID,
        local_app_data={"cfg_file": CFG},
        local_unit_data={"hostname": HOST0},
    )
    state = leader_state(
        folder, peer, backend_relation, relation, secrets=backend_secrets, leader=False
    )
    ctx = context("3.6.0")
    out = ctx.run(ctx.on.relation_changed(relation, remote_unit=0), state)

    assert out.deferred == []
    assert out.get_relation(relation.id).local_app_data == {}
    assert read_file(folder, "pgbouncer.ini") == CFG


# --- handing credentials: the acknowledgement gate -------------------------------------------


def served_state(folder: pathlib.Path, follower_cfg: str | None, juju: str = "3.6.0"):
    """The request was served: the leader's config has the entries and is published, the
    password is in the store, the client's databag says which database; unit 1 runs
    ``follower_cfg``."""
    write_files(folder, cfg=CFG_SERVED, auth=AUTH_LINE)
    backend_relation, backend_secrets = backend(juju=juju)
    peer, store_secrets = peers(CFG_SERVED, follower_cfg, juju)
    relation = client(local={"database": "app"})
    state = leader_state(
        folder, peer, backend_relation, relation, secrets=backend_secrets | store_secrets
    )
    return state, peer, relation


def test_credentials_are_withheld_while_a_unit_has_not_applied_the_database(folder):
    state, peer, relation = served_state(folder, follower_cfg=CFG)
    ctx = context("3.6.0")
    out = ctx.run(ctx.on.relation_changed(peer, remote_unit=1), state)

    assert out.unit_status == testing.WaitingStatus("waiting for 1 unit to apply database app")
    assert out.get_relation(relation.id).local_app_data == {"database": "app"}
    assert client_secret(out) is None
    assert out.deferred == []


def test_credentials_are_handed_in_a_granted_secret_once_every_unit_applied(folder):
    state, peer, relation = served_state(folder, follower_cfg=CFG_SERVED)
    ctx = context("3.6.0")
    out = ctx.run(ctx.on.relation_changed(peer, remote_unit=1), state)

    secret = client_secret(out)
    assert secret is not None
    assert secret.owner == "app"
    assert secret.latest_content == {
        "username": CLIENT_USER,
        "password": CLIENT_PASSWORD,
        "uris": f"postgresql://{CLIENT_USER}:{CLIENT_PASSWORD}@{HOST0}:6432/app",
    }
    assert secret.remote_grants == {CLIENT_ID: {"client-app"}}
    assert out.get_relation(relation.id).local_app_data == HANDED | {"secret-user": secret.id}
    assert out.unit_status == serving(folder)
    assert_no_credential_in_plain_sight(out)


def test_without_juju_secrets_credentials_are_plain_fields(folder):
    state, peer, relation = served_state(folder, CFG_SERVED, juju="2.9.44")
    ctx = context("2.9.44")
    out = ctx.run(ctx.on.relation_changed(peer, remote_unit=1), state)

    assert out.get_relation(relation.id).local_app_data == HANDED | {
        "username": CLIENT_USER,
        "password": CLIENT_PASSWORD,
        "uris": f"postgresql://{CLIENT_USER}:{CLIENT_PASSWORD}@{HOST0}:6432/app",
    }
    assert client_secret(out) is None


LEGACY_REQUEST = {"database": "app", "extra-user-roles": "CREATEDB"}
PLAIN_CREDENTIALS = {
    "username": CLIENT_USER,
    "password": CLIENT_PASSWORD,
    "uris": f"postgresql://{CLIENT_USER}:{CLIENT_PASSWORD}@{HOST0}:6432/app",
}


def test_a_client_that_asked_for_no_secrets_gets_plain_fields_on_juju_3(folder):
    state, peer, relation = served_state(folder, follower_cfg=CFG_SERVED)
    state = dataclasses.replace(
        state,
        relations={
            r if r.id != relation.id else client(local={"database": "app"}, remote=LEGACY_REQUEST)
            for r in state.relations
        },
    )
    ctx = context("3.6.0")
    out = ctx.run(ctx.on.relation_changed(peer, remote_unit=1), state)

    assert out.get_relation(relation.id).local_app_data == HANDED | PLAIN_CREDENTIALS
    assert client_secret(out) is None
    assert out.unit_status == serving(folder)


def test_a_client_that_starts_asking_for_secrets_gets_them_moved_into_one(folder):
    state, _peer, relation = served_state(folder, follower_cfg=CFG_SERVED)
    moved = client(local=HANDED | PLAIN_CREDENTIALS, remote=REQUEST)
    state = dataclasses.replace(
        state, relations={r if r.id != relation.id else moved for r in state.relations}
    )
    ctx = context("3.6.0")
    out = ctx.run(ctx.on.update_status(), state)

    secret = client_secret(out)
    assert secret is not None
    assert secret.latest_content == PLAIN_CREDENTIALS
    assert out.get_relation(relation.id).local_app_data == HANDED | {"secret-user": secret.id}
    assert_no_credential_in_plain_sight(out)


# --- keeping the answer current --------------------------------------------------------------


def handed_state(
    folder: pathlib.Path,
    answer: dict[str, str],
    secret: testing.Secret,
    peers_data: dict[int, dict[str, str]],
    **kwargs,
):
    write_files(folder, cfg=CFG_SERVED, auth=AUTH_LINE)
    backend_relation, backend_secrets = backend()
    store_keys, store_secrets = store("3.6.0")
    peer = testing.PeerRelation(
        "pgb-peers",
        id=PEER_ID,
        local_app_data={
            "cfg_file": CFG_SERVED,
            "leader_hostname": kwargs.pop("leader_hostname", HOST0),
            **store_keys,
        },
        local_unit_data={"hostname": HOST0, **ack_of(CFG_SERVED, AUTH_LINE)},
        peers_data=peers_data,
    )
    relation = client(local=answer | {"secret-user": secret.id})
    state = leader_state(
        folder,
        peer,
        backend_relation,
        relation,
        secrets=backend_secrets | store_secrets | {secret},
        **kwargs,
    )
    return state, peer, relation


def test_a_peer_joining_adds_its_read_only_endpoint_and_handed_credentials_stay(folder):
    # Unit 2 has applied nothing yet: what was handed is not taken back.
    both = {1: {"hostname": HOST1, **ack_of(CFG_SERVED, AUTH_LINE)}, 2: {"hostname": HOST2}}
    secret = handed_secret()
    state, peer, relation = handed_state(folder, HANDED, secret, both)
    ctx = context("3.6.0")
    out = ctx.run(ctx.on.relation_joined(peer, remote_unit=2), state)

    assert out.get_relation(relation.id).local_app_data == HANDED | {
        "read-only-endpoints": f"{HOST1}:6432,{HOST2}:6432",
        "secret-user": secret.id,
    }
    # The endpoint did not move: the credentials are not rewritten.
    assert client_secret(out) == secret


def test_a_peer_departing_takes_its_read_only_endpoint_away(folder):
    answer = HANDED | {"read-only-endpoints": f"{HOST1}:6432,{HOST2}:6432"}
    secret = handed_secret()
    left = {1: {"hostname": HOST1, **ack_of(CFG_SERVED, AUTH_LINE)}}
    state, peer, relation = handed_state(folder, answer, secret, left)
    ctx = context("3.6.0")
    out = ctx.run(ctx.on.relation_departed(peer, remote_unit=2, departing_unit=2), state)

    assert out.get_relation(relation.id).local_app_data["read-only-endpoints"] == f"{HOST1}:6432"


def test_the_last_peer_departing_leaves_the_leader_serving_reads(folder):
    secret = handed_secret()
    state, peer, relation = handed_state(folder, HANDED, secret, {})
    ctx = context("3.6.0")
    out = ctx.run(ctx.on.relation_departed(peer, remote_unit=1, departing_unit=1), state)

    assert out.get_relation(relation.id).local_app_data["read-only-endpoints"] == f"{HOST0}:6432"


def test_a_new_leader_points_the_client_at_itself(folder):
    # Unit 1 led and answered; this unit (0) is elected.
    old_answer = HANDED | {
        "endpoints": f"{HOST1}:6432",
        "read-only-endpoints": f"{HOST0}:6432",
    }
    secret = handed_secret(endpoint=f"{HOST1}:6432")
    old_leader = {1: {"hostname": HOST1, **ack_of(CFG_SERVED, AUTH_LINE)}}
    state, _, relation = handed_state(
        folder, old_answer, secret, old_leader, leader_hostname=HOST1
    )
    ctx = context("3.6.0")
    out = ctx.run(ctx.on.leader_elected(), state)

    assert out.get_relation(relation.id).local_app_data == HANDED | {"secret-user": secret.id}
    moved = client_secret(out)
    assert moved is not None
    assert moved.latest_content is not None
    assert moved.latest_content["uris"] == (
        f"postgresql://{CLIENT_USER}:{CLIENT_PASSWORD}@{HOST0}:6432/app"
    )
    assert moved.latest_content["password"] == CLIENT_PASSWORD
    assert_no_credential_in_plain_sight(out)


def test_a_new_listen_port_reaches_the_endpoints_and_the_uris(folder):
    secret = handed_secret()
    synced = {1: {"hostname": HOST1, **ack_of(CFG_SERVED, AUTH_LINE)}}
    state, _, relation = handed_state(folder, HANDED, secret, synced, config={"listen_port": 7000})
    ctx = context("3.6.0")
    out = ctx.run(ctx.on.config_changed(), state)

    assert "listen_port = 7000\n" in (read_file(folder, "pgbouncer.ini") or "")
    answer = out.get_relation(relation.id).local_app_data
    assert answer["endpoints"] == f"{HOST0}:7000"
    assert answer["read-only-endpoints"] == f"{HOST1}:7000"
    moved = client_secret(out)
    assert moved is not None
    assert moved.latest_content is not None
    assert moved.latest_content["uris"].endswith(f"@{HOST0}:7000/app")


def test_a_quiet_peer_hook_writes_nothing_to_the_client(folder):
    synced = {1: {"hostname": HOST1, **ack_of(CFG_SERVED, AUTH_LINE)}}
    secret = handed_secret()
    state, peer, relation = handed_state(folder, HANDED, secret, synced)
    ctx = context("3.6.0")
    out = ctx.run(ctx.on.relation_changed(peer, remote_unit=1), state)

    assert out.get_relation(relation.id).local_app_data == HANDED | {"secret-user": secret.id}
    assert client_secret(out) == secret
    assert out.unit_status == serving(folder)


def test_a_follower_leaves_client_relations_alone_in_peer_hooks(folder):
    write_files(folder, cfg=CFG_SERVED, auth=AUTH_LINE)
    store_keys, store_secrets = store("3.6.0")
    peer = testing.PeerRelation(
        "pgb-peers",
        id=PEER_ID,
        local_app_data={"cfg_file": CFG_SERVED, "leader_hostname": HOST1, **store_keys},
        local_unit_data={"hostname": HOST0},
        peers_data={1: {"hostname": HOST1}, 2: {"hostname": HOST2}},
    )
    relation = client()
    backend_relation, backend_secrets = backend()
    state = leader_state(
        folder,
        peer,
        relation,
        backend_relation,
        secrets=backend_secrets | store_secrets,
        leader=False,
    )
    ctx = context("3.6.0")
    out = ctx.run(ctx.on.relation_changed(peer, remote_unit=1), state)

    assert out.get_relation(relation.id).local_app_data == {}
    assert client_secret(out) is None


# --- relation-broken -------------------------------------------------------------------------


def test_broken_removes_entries_password_and_secret_and_retries_the_role_drop(folder):
    synced = {1: {"hostname": HOST1, **ack_of(CFG_SERVED, AUTH_LINE)}}
    secret = handed_secret()
    state, peer, relation = handed_state(folder, HANDED, secret, synced)
    closed_port = free_port()
    backend_relation, backend_secrets = backend(closed_port)
    state = testing.State(
        leader=True,
        model=MODEL,
        containers=state.containers,
        relations={peer, relation, backend_relation},
        secrets={*state.secrets, *backend_secrets},
    )
    ctx = context("3.6.0")
    out = ctx.run(ctx.on.relation_broken(relation), state)

    assert read_file(folder, "pgbouncer.ini") == CFG
    assert out.get_relation(peer.id).local_app_data["cfg_file"] == CFG
    assert out.get_secret(label=SECRET_LABEL).latest_content == {"auth-file": AUTH_LINE}
    assert client_secret(out) is None
    assert out.deferred == []
    assert isinstance(out.unit_status, testing.WaitingStatus)
    assert out.unit_status.message.startswith(
        "dropping role relation_id_5 on the backend: backend database: connection failed:"
    )
    assert_no_credential_in_plain_sight(out)
    # The relation is gone from the model; the drop is tried again on the next hook.
    later = dataclasses.replace(out, relations={peer, backend_relation})
    again = ctx.run(ctx.on.update_status(), later)
    assert again.unit_status.message.startswith("dropping role relation_id_5 on the backend:")
    assert again.deferred == []


def test_broken_keeps_the_entries_another_relation_still_uses(folder):
    synced = {1: {"hostname": HOST1, **ack_of(CFG_SERVED, AUTH_LINE)}}
    secret = handed_secret()
    state, _, relation = handed_state(folder, HANDED, secret, synced)
    other = testing.Relation(
        "database",
        id=6,
        remote_app_name="second-app",
        remote_app_data={"database": "app"},
        local_app_data={"database": "app"},
    )
    store_secret = next(s for s in state.secrets if s.label == SECRET_LABEL)
    both = dict(store_secret.tracked_content) | {"relation-id-6": "Other-Pw-8zR2mT6vYbXq"}
    state = testing.State(
        leader=True,
        model=MODEL,
        containers=state.containers,
        relations={*state.relations, other},
        secrets={
            *(s for s in state.secrets if s.label != SECRET_LABEL),
            dataclasses.replace(store_secret, tracked_content=both, latest_content=both),
        },
    )
    ctx = context("3.6.0")
    out = ctx.run(ctx.on.relation_broken(relation), state)

    assert read_file(folder, "pgbouncer.ini") == CFG_SERVED
    assert "relation-id-5" not in out.get_secret(label=SECRET_LABEL).latest_content
    assert client_secret(out) is None


def test_broken_with_an_unreachable_container_defers(folder):
    relation = client(local=HANDED)
    backend_relation, backend_secrets = backend()
    peer = testing.PeerRelation("pgb-peers", id=PEER_ID, local_unit_data={"hostname": HOST0})
    state = leader_state(
        folder,
        peer,
        relation,
        backend_relation,
        secrets=backend_secrets,
        containers={container(folder, can_connect=False)},
    )
    ctx = context("3.6.0")
    out = ctx.run(ctx.on.relation_broken(relation), state)

    assert len(out.deferred) == 1
    assert out.unit_status == testing.WaitingStatus(
        "database relation 5 (client-app) removed; taking it out is pending:"
        " waiting for the pgbouncer container (Pebble is not reachable)"
    )


def test_broken_follower_leaves_its_files_alone(folder):
    write_files(folder, cfg=CFG_SERVED, auth=AUTH_LINE)
    relation = client()
    peer = testing.PeerRelation("pgb-peers", id=PEER_ID, local_unit_data={"hostname": HOST0})
    state = leader_state(folder, peer, relation, leader=False)
    ctx = context("3.6.0")
    out = ctx.run(ctx.on.relation_broken(relation), state)

    assert read_file(folder, "pgbouncer.ini") == CFG_SERVED
    assert out.deferred == []


def test_broken_before_anything_was_set_up_leaves_the_backend_alone(folder):
    write_files(folder, cfg=CFG, auth=AUTH_LINE)
    backend_relation, backend_secrets = backend(free_port())
    peer, store_secrets = peers(CFG, CFG)
    relation = client()
    state = leader_state(
        folder, peer, backend_relation, relation, secrets=backend_secrets | store_secrets
    )
    ctx = context("3.6.0")
    out = ctx.run(ctx.on.relation_broken(relation), state)

    assert out.unit_status == serving(folder)
    assert read_file(folder, "pgbouncer.ini") == CFG
    # Nothing is left to drop: the next hook does not try the (unreachable) backend.
    later = dataclasses.replace(out, relations={r for r in out.relations if r.id != relation.id})
    again = ctx.run(ctx.on.update_status(), later)
    assert again.unit_status == serving(folder)


def test_a_client_changing_its_database_is_refused(folder):
    state, _, _ = served_state(folder, follower_cfg=CFG_SERVED)
    relation = client(local={"database": "app"}, remote={"database": "shop"})
    state = testing.State(
        leader=True,
        model=MODEL,
        containers=state.containers,
        relations={*(r for r in state.relations if r.id != CLIENT_ID), relation},
        secrets=state.secrets,
    )
    ctx = context("3.6.0")
    out = ctx.run(ctx.on.relation_changed(relation, remote_unit=0), state)

    assert out.unit_status == testing.BlockedStatus(
        "database relation 5 (client-app): the database cannot change from app to shop;"
        " remove the relation and add it again"
    )
    assert read_file(folder, "pgbouncer.ini") == CFG_SERVED


def broken_with_a_failed_drop(folder: pathlib.Path):
    """relation-broken whose role drop failed (the backend is unreachable): the model as the
    next hook sees it, without the client relation, and the context."""
    write_files(folder, cfg=CFG_SERVED, auth=AUTH_LINE)
    backend_relation, backend_secrets = backend(free_port())
    peer, store_secrets = peers(CFG_SERVED, CFG_SERVED)
    relation = client(local=HANDED)
    state = leader_state(
        folder, peer, backend_relation, relation, secrets=backend_secrets | store_secrets
    )
    ctx = context("3.6.0")
    out = ctx.run(ctx.on.relation_broken(relation), state)
    assert "dropping role relation_id_5 on the backend" in out.unit_status.message
    return ctx, dataclasses.replace(out, relations={peer, backend_relation}), backend_relation


def test_update_status_retries_a_pending_role_drop(folder):
    ctx, state, _backend = broken_with_a_failed_drop(folder)
    out = ctx.run(ctx.on.update_status(), state)

    assert "dropping role relation_id_5 on the backend" in out.unit_status.message
    again = ctx.run(ctx.on.update_status(), out)
    assert "dropping role relation_id_5 on the backend" in again.unit_status.message


def test_a_pending_role_drop_is_given_up_once_the_backend_relation_is_gone(folder):
    ctx, state, backend_relation = broken_with_a_failed_drop(folder)
    without_backend = dataclasses.replace(
        state, relations={r for r in state.relations if r.id != backend_relation.id}
    )
    out = ctx.run(ctx.on.update_status(), without_backend)

    assert any("drop the role(s) relation_id_5 by hand" in log.message for log in ctx.juju_log)
    assert "dropping role" not in out.unit_status.message
    # Given up once: the next hook neither tries nor logs it again.
    ctx.juju_log.clear()
    ctx.run(ctx.on.update_status(), out)
    assert not any("relation_id_5" in log.message for log in ctx.juju_log)


def test_a_refused_request_stays_in_the_status_in_every_hook(folder):
    # Relation 6 asks for SUPERUSER; relation 5 is served and handed; relation 7 has not asked
    # yet. Whatever hook runs next, the refusal is shown on the unit and the application does
    # not claim to be in sync.
    synced = {1: {"hostname": HOST1, **ack_of(CFG_SERVED, AUTH_LINE)}}
    secret = handed_secret()
    state, peer, _relation = handed_state(folder, HANDED, secret, synced)
    refused = testing.Relation(
        "database",
        id=6,
        remote_app_name="greedy-app",
        remote_app_data={"database": "greed", "extra-user-roles": "SUPERUSER"},
    )
    quiet = testing.Relation("database", id=7, remote_app_name="quiet-app")
    state = dataclasses.replace(state, relations={*state.relations, refused, quiet})
    reason = (
        "database relation 6 (greedy-app): extra-user-roles 'SUPERUSER' refused: it bypasses"
        " every permission check; allowed: CREATEDB, LOGIN"
    )
    ctx = context("3.6.0")

    after_config = ctx.run(ctx.on.config_changed(), state)
    other = after_config.get_relation(quiet.id)
    after_other = ctx.run(ctx.on.relation_changed(other, remote_unit=0), after_config)
    peers_now = after_other.get_relation(peer.id)
    after_peer = ctx.run(ctx.on.relation_changed(peers_now, remote_unit=1), after_other)

    for out in (after_config, after_other, after_peer):
        assert out.unit_status == testing.BlockedStatus(reason)
        assert out.app_status == testing.BlockedStatus(reason)
        assert out.get_relation(refused.id).local_app_data == {}
        assert out.deferred == []
    # The request changes to one that can be served: the refusal goes.
    fixed = dataclasses.replace(
        after_peer.get_relation(refused.id), remote_app_data={"database": "greed"}
    )
    relations = {*(r for r in after_peer.relations if r.id != refused.id), fixed}
    out = ctx.run(ctx.on.update_status(), dataclasses.replace(after_peer, relations=relations))
    assert "extra-user-roles" not in out.unit_status.message


# --- cost -------------------------------------------------------------------------------------

PEBBLE_CALLS = (
    "can_connect",
    "pull",
    "push",
    "remove_path",
    "send_signal",
    "restart",
    "add_layer",
)


def settled_with_clients(folder: pathlib.Path, count: int) -> testing.State:
    """A leader serving ``count`` clients, every one answered and handed, every unit in sync:
    a quiet update-status has nothing to do."""
    ids = range(100, 100 + count)
    entries = []
    for rid in ids:
        for name, host in ((f"db{rid}", "10.1.1.1"), (f"db{rid}_readonly", "10.1.1.2")):
            entries.append(
                f"{name} = auth_user=pgbouncer_auth_relation_id_7 dbname=db{rid}"
                f" host={host} port=5432\n"
            )
    cfg = CFG.replace("[databases]\n", "[databases]\n" + "".join(sorted(entries)))
    write_files(folder, cfg=cfg, auth=AUTH_LINE)
    content = {"auth-file": AUTH_LINE} | {f"relation-id-{rid}": f"Pw-{rid}-x" for rid in ids}
    store_secret = testing.Secret(tracked_content=content, owner="app", label=SECRET_LABEL)
    synced = ack_of(cfg, AUTH_LINE)
    peer = testing.PeerRelation(
        "pgb-peers",
        id=PEER_ID,
        local_app_data={
            "cfg_file": cfg,
            "leader_hostname": HOST0,
            SECRET_ID_KEY: store_secret.id,
            "schema_version": "2",
            "ack_wanted": no_acknowledgement_wanted(cfg),
        },
        local_unit_data={"hostname": HOST0, **synced, "schema_version": "2"},
        peers_data={1: {"hostname": HOST1, **synced, "schema_version": "2"}},
    )
    clients = {
        testing.Relation(
            "database",
            id=rid,
            remote_app_name=f"app{rid}",
            remote_app_data={"database": f"db{rid}", "requested-secrets": REQUEST_SECRETS},
            local_app_data=HANDED | {"database": f"db{rid}", "secret-user": f"secret:c{rid}"},
        )
        for rid in ids
    }
    backend_relation, backend_secrets = backend()
    return leader_state(
        folder, peer, backend_relation, *clients, secrets={store_secret, *backend_secrets}
    )


@pytest.mark.parametrize("count", [3, 30])
def test_a_quiet_leader_hook_costs_the_same_with_30_clients_as_with_3(folder, mocker, count):
    pebble = {name: mocker.spy(ops.Container, name) for name in PEBBLE_CALLS}
    peer_secret_reads = mocker.spy(ops.Secret, "peek_content")
    secret_gets = mocker.spy(ops.Model, "get_secret")
    relation_sets = mocker.spy(ops.RelationDataContent, "__setitem__")
    state = settled_with_clients(folder, count)
    ctx = context("3.6.0")

    out = ctx.run(ctx.on.update_status(), state)

    assert out.unit_status == serving(folder)
    assert out.app_status == testing.ActiveStatus(
        f"config {short_digest(read_file(folder, 'pgbouncer.ini'))} published;"
        " each unit's status shows the config it runs"
    )
    assert out.deferred == []
    calls = {name: spy.call_count for name, spy in pebble.items()}
    # Pebble: is it there, pgbouncer.ini, the auth file. Nothing written, nothing signalled.
    assert calls == {
        "can_connect": 1,
        "pull": 2,
        "push": 0,
        "remove_path": 0,
        "send_signal": 0,
        "restart": 0,
        "add_layer": 0,
    }
    # The peer secret once; two secrets looked up (it, and the backend's credentials).
    assert peer_secret_reads.call_count == 1
    assert secret_gets.call_count == 2
    assert relation_sets.call_count == 0
