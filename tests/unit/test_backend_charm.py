"""The backend-database relation under ``ops.testing``: one event per test.

Nothing of the charm is mocked. Where a hook would reach the backend, the relation points at a
closed port on the loopback interface, so the real psycopg fails at once with "connection
refused": the tests see the charm's fault handling, and that the credentials were read (a
unit without credentials never tries to connect). The successful setup against a real
PostgreSQL is in ``tests/integration/test_backend_real.py``.
"""

import json
import pathlib

import pytest
from ops import testing

from adapters.juju.secret_store import SECRET_ID_KEY, SECRET_LABEL
from domain.backend_service import RELATION_REMOVED, WAITING_FOR_CREDENTIALS
from localenv.net import free_port
from tests.unit.charm_harness import MODEL, container, context, read_file, write_files
from tests.unit.peer_fixtures import HOST0

BACKEND_USER = "relation_id_7"
BACKEND_PASSWORD = "Vh3kP9sLq2Zx7RwT5mNc8bJd"
AUTH_USER = "pgbouncer_auth_relation_id_7"
AUTH_PASSWORD = "Qe8rT2yU4iO6pA1sD3fG5hJk"
AUTH_LINE = f'"{AUTH_USER}" "{AUTH_PASSWORD}"\n'
REQUEST = {
    "database": "pgbouncer-k8s",
    "extra-user-roles": "SUPERUSER",
    "requested-secrets": '["username", "password", "tls", "tls-ca", "uris"]',
}
# pgbouncer.ini as the charm renders it (sorted), without and with the auth_query settings.
CFG = """\
[databases]
app = dbname=app host=10.1.1.1 port=5432

[pgbouncer]
auth_file = /var/lib/postgresql/pgbouncer/userlist.txt
listen_addr = *
listen_port = 6432
logfile = /var/lib/postgresql/pgbouncer/pgbouncer.log
pidfile = /var/lib/postgresql/pgbouncer/pgbouncer.pid
pool_mode = session
user = postgres
"""
CFG_WITH_AUTH = """\
[databases]
app = dbname=app host=10.1.1.1 port=5432

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


pytestmark = pytest.mark.usefixtures("two_processes")


@pytest.fixture
def closed_port() -> int:
    return free_port()


def user_secret() -> testing.Secret:
    """The provider's secret, shared with this application (owner=None: we only consume it)."""
    return testing.Secret(tracked_content={"username": BACKEND_USER, "password": BACKEND_PASSWORD})


def backend(remote: dict[str, str] | None = None, local: dict[str, str] | None = None):
    return testing.Relation(
        "backend-database",
        remote_app_name="postgresql-k8s",
        remote_app_data=remote or {},
        local_app_data=local or {},
    )


def answer_with_secret(port: int, secret: testing.Secret) -> dict[str, str]:
    return {
        "endpoints": f"127.0.0.1:{port}",
        "read-only-endpoints": f"127.0.0.1:{port}",
        "database": "pgbouncer-k8s",
        "version": "16.4",
        "secret-user": secret.id,
    }


def answer_in_plain_fields(port: int) -> dict[str, str]:
    return {
        "endpoints": f"127.0.0.1:{port}",
        "database": "pgbouncer-k8s",
        "username": BACKEND_USER,
        "password": BACKEND_PASSWORD,
    }


def peers(**kwargs) -> testing.PeerRelation:
    return testing.PeerRelation("pgb-peers", local_unit_data={"hostname": HOST0}, **kwargs)


def leader_state(folder: pathlib.Path, *relations, **kwargs) -> testing.State:
    return testing.State(
        leader=True,
        model=MODEL,
        containers=kwargs.pop("containers", {container(folder)}),
        relations={peers(), *relations},
        **kwargs,
    )


def assert_no_secret_anywhere(out: testing.State) -> None:
    """No password in any databag this charm writes, in its status or in its stored state."""
    texts = [out.unit_status.message, out.app_status.message]
    for relation in out.relations:
        texts += relation.local_app_data.values()
        texts += relation.local_unit_data.values()
    texts += [repr(stored.content) for stored in out.stored_states]
    for text in texts:
        assert BACKEND_PASSWORD not in text
        assert AUTH_PASSWORD not in text


# --- relation-created ----------------------------------------------------------------------------


def test_created_leader_requests_a_superuser_and_secrets(folder):
    relation = backend()
    ctx = context("3.6.0")
    out = ctx.run(ctx.on.relation_created(relation), leader_state(folder, relation))

    written = out.get_relation(relation.id).local_app_data
    assert written == REQUEST
    # What the charm wrote is the JSON list the provider parses.
    assert json.loads(written["requested-secrets"]) == [
        "username",
        "password",
        "tls",
        "tls-ca",
        "uris",
    ]
    assert out.unit_status == testing.WaitingStatus(WAITING_FOR_CREDENTIALS)
    assert out.deferred == []


def test_created_leader_on_juju_without_secrets_asks_for_no_secret(folder):
    relation = backend()
    ctx = context("2.9.44")
    out = ctx.run(ctx.on.relation_created(relation), leader_state(folder, relation))

    assert out.get_relation(relation.id).local_app_data == {
        "database": "pgbouncer-k8s",
        "extra-user-roles": "SUPERUSER",
    }


def test_created_follower_writes_nothing(folder):
    relation = backend()
    state = testing.State(
        leader=False, model=MODEL, containers={container(folder)}, relations={peers(), relation}
    )
    ctx = context()
    out = ctx.run(ctx.on.relation_created(relation), state)

    assert out.get_relation(relation.id).local_app_data == {}


# --- relation-changed ----------------------------------------------------------------------------


def test_changed_before_the_provider_answers_waits_without_deferring(folder):
    write_files(folder, cfg=CFG)
    relation = backend(remote={"database": "pgbouncer-k8s"}, local=REQUEST)
    ctx = context()
    out = ctx.run(ctx.on.relation_changed(relation, remote_unit=0), leader_state(folder, relation))

    assert out.unit_status == testing.WaitingStatus(WAITING_FOR_CREDENTIALS)
    assert out.deferred == []
    assert read_file(folder, "userlist.txt") is None


def test_changed_with_credentials_in_a_juju_secret_tries_the_backend(folder, closed_port):
    write_files(folder, cfg=CFG)
    secret = user_secret()
    relation = backend(remote=answer_with_secret(closed_port, secret), local=REQUEST)
    ctx = context("3.6.0")
    out = ctx.run(
        ctx.on.relation_changed(relation, remote_unit=0),
        leader_state(folder, relation, secrets={secret}),
    )

    assert isinstance(out.unit_status, testing.WaitingStatus)
    assert out.unit_status.message.startswith(
        "cannot set up auth_query on the backend: backend database: connection failed:"
    )
    assert f"port {closed_port} failed: Connection refused" in out.unit_status.message
    assert len(out.deferred) == 1
    # Nothing half-done: no auth file, the config untouched, nothing published or stored.
    assert read_file(folder, "userlist.txt") is None
    assert read_file(folder, "pgbouncer.ini") == CFG
    assert list(out.get_relation(relation.id).local_app_data.items()) == list(REQUEST.items())
    assert {s.label for s in out.secrets} == {None}
    assert_no_secret_anywhere(out)


# --- secret-changed: the provider rotated the credentials ----------------------------------------

ROTATED_PASSWORD = "R0tated-Pw-4kLm9nBv2cXz"


def test_a_new_revision_of_the_backend_secret_is_set_up_at_once(folder, closed_port):
    """The settled leader gets secret-changed for the provider's secret: it reads the new
    revision and reaches the backend with it at once (here a closed port: the attempt shows
    as a waiting status and a deferral, never as the old credentials kept quietly)."""
    write_files(folder, cfg=CFG_WITH_AUTH, auth=AUTH_LINE)
    secret = testing.Secret(
        tracked_content={"username": BACKEND_USER, "password": BACKEND_PASSWORD},
        latest_content={"username": BACKEND_USER, "password": ROTATED_PASSWORD},
    )
    relation = backend(remote=answer_with_secret(closed_port, secret), local=REQUEST)
    ctx = context("3.6.0")
    out = ctx.run(ctx.on.secret_changed(secret), leader_state(folder, relation, secrets={secret}))

    assert isinstance(out.unit_status, testing.WaitingStatus)
    assert out.unit_status.message.startswith(
        "cannot set up auth_query on the backend: backend database: connection failed:"
    )
    assert len(out.deferred) == 1
    assert out.get_secret(id=secret.id).tracked_content["password"] == ROTATED_PASSWORD
    # The files stay as they were: the auth role's password does not change with a rotation.
    assert read_file(folder, "userlist.txt") == AUTH_LINE
    assert read_file(folder, "pgbouncer.ini") == CFG_WITH_AUTH
    assert ROTATED_PASSWORD not in out.unit_status.message


def test_another_applications_secret_changing_leaves_the_backend_alone(folder, closed_port):
    write_files(folder, cfg=CFG_WITH_AUTH, auth=AUTH_LINE)
    user = user_secret()
    other = testing.Secret(
        tracked_content={"token": "old-token-value"}, latest_content={"token": "new-token-1"}
    )
    relation = backend(remote=answer_with_secret(closed_port, user), local=REQUEST)
    ctx = context("3.6.0")
    out = ctx.run(
        ctx.on.secret_changed(other), leader_state(folder, relation, secrets={user, other})
    )

    assert out.deferred == []
    assert not isinstance(out.unit_status, testing.WaitingStatus)


def test_changed_with_credentials_in_plain_fields_on_juju_2_9_tries_the_backend(
    folder, closed_port
):
    write_files(folder, cfg=CFG)
    relation = backend(remote=answer_in_plain_fields(closed_port))
    ctx = context("2.9.44")
    out = ctx.run(ctx.on.relation_changed(relation, remote_unit=0), leader_state(folder, relation))

    assert isinstance(out.unit_status, testing.WaitingStatus)
    assert "Connection refused" in out.unit_status.message
    assert len(out.deferred) == 1
    assert read_file(folder, "userlist.txt") is None
    # The request is (re)written by the leader even when relation-created came before it led.
    assert out.get_relation(relation.id).local_app_data == {
        "database": "pgbouncer-k8s",
        "extra-user-roles": "SUPERUSER",
    }
    assert_no_secret_anywhere(out)


def test_changed_with_a_secret_not_granted_yet_waits_and_defers(folder, closed_port):
    write_files(folder, cfg=CFG)
    remote = answer_with_secret(closed_port, user_secret())  # that secret is not in the model
    relation = backend(remote=remote, local=REQUEST)
    ctx = context("3.6.0")
    out = ctx.run(ctx.on.relation_changed(relation, remote_unit=0), leader_state(folder, relation))

    assert out.unit_status == testing.WaitingStatus(
        "the backend's credentials secret is not readable (not granted yet, or gone)"
    )
    assert len(out.deferred) == 1


def test_changed_with_unusable_endpoints_blocks_without_deferring(folder):
    write_files(folder, cfg=CFG)
    remote = answer_in_plain_fields(5432) | {"endpoints": "postgresql-k8s-primary:port"}
    relation = backend(remote=remote)
    ctx = context("2.9.44")
    out = ctx.run(ctx.on.relation_changed(relation, remote_unit=0), leader_state(folder, relation))

    assert out.unit_status == testing.BlockedStatus(
        "backend-database relation data: endpoints: 'postgresql-k8s-primary:port' is not host:port"
    )
    assert out.deferred == []


def test_changed_with_an_unusable_user_name_blocks_and_does_not_quote_the_password(folder):
    write_files(folder, cfg=CFG)
    remote = answer_in_plain_fields(5432) | {"username": "relation 7"}
    relation = backend(remote=remote)
    ctx = context("2.9.44")
    out = ctx.run(ctx.on.relation_changed(relation, remote_unit=0), leader_state(folder, relation))

    assert out.unit_status == testing.BlockedStatus(
        "backend-database credentials: username may hold only A-Z a-z 0-9 _ . -"
    )
    assert_no_secret_anywhere(out)


def test_changed_without_pgbouncer_config_defers_before_touching_the_backend(folder, closed_port):
    relation = backend(remote=answer_in_plain_fields(closed_port))
    ctx = context("2.9.44")
    out = ctx.run(ctx.on.relation_changed(relation, remote_unit=0), leader_state(folder, relation))

    assert out.unit_status == testing.WaitingStatus(
        "no pgbouncer config yet to add the backend's auth_query to"
    )
    assert len(out.deferred) == 1


def test_changed_with_unreachable_container_defers(folder, closed_port):
    relation = backend(remote=answer_in_plain_fields(closed_port))
    state = leader_state(folder, relation, containers={container(folder, can_connect=False)})
    ctx = context("2.9.44")
    out = ctx.run(ctx.on.relation_changed(relation, remote_unit=0), state)

    assert out.unit_status == testing.WaitingStatus(
        "waiting for the pgbouncer container (Pebble is not reachable)"
    )
    assert len(out.deferred) == 1


def test_changed_follower_does_nothing(folder, closed_port):
    write_files(folder, cfg=CFG)
    relation = backend(remote=answer_in_plain_fields(closed_port))
    state = testing.State(
        leader=False,
        model=MODEL,
        containers={container(folder)},
        relations={peers(local_app_data={"cfg_file": CFG}), relation},
    )
    ctx = context("2.9.44")
    out = ctx.run(ctx.on.relation_changed(relation, remote_unit=0), state)

    assert out.deferred == []
    assert out.get_relation(relation.id).local_app_data == {}
    assert read_file(folder, "userlist.txt") is None
    assert read_file(folder, "pgbouncer.ini") == CFG


# --- relation-broken -----------------------------------------------------------------------------


def test_broken_leader_takes_auth_out_of_config_file_and_store(folder, closed_port):
    write_files(folder, cfg=CFG_WITH_AUTH, auth=AUTH_LINE)
    store = testing.Secret(
        tracked_content={"auth-file": AUTH_LINE}, owner="app", label=SECRET_LABEL
    )
    peer = peers(local_app_data={"cfg_file": CFG_WITH_AUTH, SECRET_ID_KEY: store.id})
    relation = backend(remote=answer_in_plain_fields(closed_port), local=REQUEST)
    state = testing.State(
        leader=True,
        model=MODEL,
        containers={container(folder)},
        relations={peer, relation},
        secrets={store},
    )
    ctx = context("3.6.0")
    out = ctx.run(ctx.on.relation_broken(relation), state)

    assert read_file(folder, "pgbouncer.ini") == CFG
    assert read_file(folder, "userlist.txt") is None
    assert "auth-file" not in out.get_secret(label=SECRET_LABEL).latest_content
    assert out.get_relation(peer.id).local_app_data["cfg_file"] == CFG
    assert out.unit_status == testing.BlockedStatus(RELATION_REMOVED)
    # Dropping the auth role on the (unreachable) backend failed: said in the log, no retry
    # of the whole removal.
    assert any("removing the auth setup from the backend" in log.message for log in ctx.juju_log)
    assert out.deferred == []
    assert_no_secret_anywhere(out)


def test_broken_leader_with_unreachable_container_defers(folder):
    relation = backend(local=REQUEST)
    state = leader_state(folder, relation, containers={container(folder, can_connect=False)})
    ctx = context()
    out = ctx.run(ctx.on.relation_broken(relation), state)

    assert len(out.deferred) == 1
    assert out.unit_status == testing.BlockedStatus(
        "backend-database relation removed; taking auth_query out is pending:"
        " waiting for the pgbouncer container (Pebble is not reachable)"
    )


def test_broken_follower_leaves_its_files_alone(folder):
    write_files(folder, cfg=CFG_WITH_AUTH, auth=AUTH_LINE)
    relation = backend()
    state = testing.State(
        leader=False, model=MODEL, containers={container(folder)}, relations={peers(), relation}
    )
    ctx = context()
    out = ctx.run(ctx.on.relation_broken(relation), state)

    assert read_file(folder, "pgbouncer.ini") == CFG_WITH_AUTH
    assert read_file(folder, "userlist.txt") == AUTH_LINE
    assert out.deferred == []
