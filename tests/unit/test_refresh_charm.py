"""The charm after ``juju refresh``, under ``ops.testing``: one event per test.

- The seed's layout (the store's keys in plain text in the application databag) on a Juju with
  secrets: the leader's first hook, whichever it is, moves them into the secret and deletes
  them; on a Juju without secrets nothing moves (positive control).
- The migration interrupted after each of its steps: faults injected into ops' own API
  (``add_secret``, the databag's ``__setitem__``/``__delitem__``) with monkeypatch, never into
  the charm's code. The next hook finishes it, and the end state is the uninterrupted one.
- The schema version: data of a newer schema is not adopted, the unit says so and keeps
  serving; a leader never overwrites it.
- upgrade-charm in a new pod (empty container, empty Pebble plan): the unit serves the same
  files again before anything else.
"""

import dataclasses
import pathlib

import ops
import pytest
from ops import testing

from adapters.juju.refresh_steps import MIGRATION_FAILED
from adapters.juju.secret_store import SECRET_ID_KEY, SECRET_LABEL, open_store
from tests.unit.charm_harness import MODEL, PROCESSES, container, context, read_file, write_files
from tests.unit.peer_fixtures import AUTH_A, CFG_A, CFG_B, HOST0, HOST1
from tests.unit.test_charm import ack_of, backend, store_secret

PW4 = "Z4OtFCe6r5HG6mk1XuR6LkwZ"
PW7 = "x9Hq2LmPwe4RtY7uIo0pAs1D"
SEED_APP = {
    "cfg_file": CFG_A,
    "leader_hostname": HOST0,
    "auth_file": AUTH_A,
    "relation_id_4": PW4,
    "relation_id_7": PW7,
}
STORE = {"auth-file": AUTH_A, "relation-id-4": PW4, "relation-id-7": PW7}
# ack_wanted: the seed's layout has none, so this revision's leader says it wants none.
DONE_APP_KEYS = {
    "cfg_file",
    "leader_hostname",
    SECRET_ID_KEY,
    "store_digest",
    "schema_version",
    "ack_wanted",
}
MOVING = "moving 3 plain-text credential(s) from the peer databag into the peer secret"


pytestmark = pytest.mark.usefixtures("two_processes")


def seed_leader(folder: pathlib.Path, files: bool = False) -> testing.State:
    """The leader of a model in the seed's layout; its pod is new (empty container) unless
    ``files``."""
    if files:
        write_files(folder, cfg=CFG_A, auth=AUTH_A)
    peer = testing.PeerRelation(
        "pgb-peers",
        local_app_data=dict(SEED_APP),
        local_unit_data={"hostname": HOST0, **ack_of(CFG_A, AUTH_A)},
        peers_data={1: {"hostname": HOST1, **ack_of(CFG_A, AUTH_A)}},
    )
    return testing.State(
        leader=True,
        model=MODEL,
        containers={container(folder, running=files)},
        relations={peer, backend()},
    )


def peer_of(state: testing.State) -> testing.PeerRelation:
    [peer] = [r for r in state.relations if isinstance(r, testing.PeerRelation)]
    return peer


def peer_secrets(state: testing.State) -> list[testing.Secret]:
    return [secret for secret in state.secrets if secret.label == SECRET_LABEL]


def assert_migrated(out: testing.State) -> None:
    app = peer_of(out).local_app_data
    assert set(app) == DONE_APP_KEYS
    assert app["schema_version"] == "2"
    [secret] = peer_secrets(out)
    assert secret.latest_content == STORE
    assert app[SECRET_ID_KEY] == secret.id
    for value in (AUTH_A.split()[1].strip('"'), PW4, PW7):
        assert value not in "".join(app.values())


HOOKS = {
    "upgrade-charm": lambda ctx, _state: ctx.on.upgrade_charm(),
    "config-changed": lambda ctx, _state: ctx.on.config_changed(),
    "update-status": lambda ctx, _state: ctx.on.update_status(),
    "leader-elected": lambda ctx, _state: ctx.on.leader_elected(),
    "peer relation-changed": lambda ctx, state: ctx.on.relation_changed(
        peer_of(state), remote_unit=1
    ),
    "backend relation-changed": lambda ctx, state: ctx.on.relation_changed(
        next(r for r in state.relations if r.endpoint == "backend-database")
    ),
}


@pytest.mark.parametrize("hook", list(HOOKS))
def test_the_leaders_first_hook_after_refresh_moves_every_plain_credential(folder, hook):
    state = seed_leader(folder, files=hook != "upgrade-charm")
    ctx = context("3.6.0")
    out = ctx.run(HOOKS[hook](ctx, state), state)

    assert_migrated(out)
    assert testing.MaintenanceStatus(MOVING) in ctx.unit_status_history
    assert MIGRATION_FAILED not in out.unit_status.message


def test_without_juju_secrets_the_seed_layout_stays(folder):
    state = seed_leader(folder)
    ctx = context("2.9.44")
    out = ctx.run(ctx.on.upgrade_charm(), state)

    app = peer_of(out).local_app_data
    assert {key: app[key] for key in SEED_APP} == SEED_APP
    assert out.secrets == frozenset()
    assert app["schema_version"] == "2"
    assert all(status.name != "maintenance" for status in ctx.unit_status_history)


@pytest.mark.parametrize("files", [False, True], ids=["empty folder", "files kept"])
def test_upgrade_charm_in_a_new_pod_serves_the_same_files_before_anything_else(folder, files):
    """A follower's new pod: an empty plan, and an empty folder (or the files still there);
    the leader's data is in the secret."""
    if files:
        write_files(folder, cfg=CFG_A, auth=AUTH_A)
    secret = store_secret(AUTH_A)
    peer = testing.PeerRelation(
        "pgb-peers",
        local_app_data={"cfg_file": CFG_A, "leader_hostname": HOST1, SECRET_ID_KEY: secret.id},
        local_unit_data={"hostname": HOST0, **ack_of(CFG_A, AUTH_A)},
        peers_data={1: {"hostname": HOST1}},
    )
    state = testing.State(
        leader=False,
        model=MODEL,
        containers={container(folder, running=False)},
        relations={peer, backend()},
        secrets={secret},
    )
    ctx = context("3.6.0")
    out = ctx.run(ctx.on.upgrade_charm(), state)

    assert read_file(folder, "pgbouncer.ini") == CFG_A
    assert read_file(folder, "userlist.txt") == AUTH_A
    pebble = out.get_container("pgbouncer")
    assert "pgbouncer" in pebble.layers
    assert {name for name, status in pebble.service_statuses.items() if status.value == "active"}
    assert len(pebble.service_statuses) == PROCESSES
    assert out.deferred == []


# --- interrupted, then resumed ----------------------------------------------------------------


def _fail(*_args, **_kwargs):
    raise ops.ModelError("ERROR injected: hook tool failed")


def _fail_on_key(original, key: str):
    def setitem(self, name, value):
        if name == key:
            _fail()
        return original(self, name, value)

    return setitem


def _fail_after(original, calls: int):
    count = [0]

    def delitem(self, name):
        count[0] += 1
        if count[0] > calls:
            _fail()
        return original(self, name)

    return delitem


INTERRUPTIONS = {
    "before the secret is created": ("add_secret", None),
    "after creating the secret, before recording its id": ("setitem", SECRET_ID_KEY),
    "after the secret is written, before any plain key is deleted": ("delitem", 0),
    "after deleting one plain key": ("delitem", 1),
    "after deleting two plain keys": ("delitem", 2),
}


@pytest.mark.parametrize("where", list(INTERRUPTIONS))
def test_a_migration_interrupted_after_any_step_is_finished_by_the_next_hook(
    folder, monkeypatch, where
):
    ctx = context("3.6.0")
    uninterrupted = ctx.run(ctx.on.update_status(), seed_leader(folder, files=True))

    kind, arg = INTERRUPTIONS[where]
    data = ops.model.RelationDataContent
    with monkeypatch.context() as patch:
        if kind == "add_secret":
            patch.setattr(ops.Application, "add_secret", _fail)
        elif kind == "setitem":
            patch.setattr(data, "__setitem__", _fail_on_key(data.__setitem__, arg))
        else:
            patch.setattr(data, "__delitem__", _fail_after(data.__delitem__, arg))
        interrupted = ctx.run(ctx.on.update_status(), seed_leader(folder, files=True))

    app = peer_of(interrupted).local_app_data
    assert MIGRATION_FAILED in interrupted.unit_status.message
    # Nothing lost: every credential is in the secret or still in the databag.
    secrets = peer_secrets(interrupted)
    in_secret = secrets[0].latest_content if secrets else {}
    for key, value in STORE.items():
        assert in_secret.get(key) == value or app.get(key.replace("-", "_")) == value, key

    resumed = ctx.run(ctx.on.update_status(), interrupted)
    assert_migrated(resumed)
    assert MIGRATION_FAILED not in resumed.unit_status.message
    done = peer_of(resumed).local_app_data
    assert dict(done, secret_id="") == dict(peer_of(uninterrupted).local_app_data, secret_id="")
    assert read_file(folder, "userlist.txt") == AUTH_A


def test_a_follower_reads_a_half_migrated_store_whole(folder):
    """The secret holds the auth file, the databag still holds a password: the follower's
    view has both (a client relation's answer needs the password)."""
    write_files(folder, cfg=CFG_A, auth=AUTH_A)
    secret = store_secret(AUTH_A)
    peer = testing.PeerRelation(
        "pgb-peers",
        local_app_data={
            "cfg_file": CFG_B,
            "leader_hostname": HOST1,
            SECRET_ID_KEY: secret.id,
            "auth_file": "stale",
            "relation_id_4": PW4,
        },
        local_unit_data={"hostname": HOST0},
        peers_data={1: {"hostname": HOST1}},
    )
    state = testing.State(
        leader=False,
        model=MODEL,
        containers={container(folder)},
        relations={peer, backend()},
        secrets={secret},
    )
    ctx = context("3.6.0")
    with ctx(ctx.on.relation_changed(peer, remote_unit=1), state) as manager:
        model = manager.charm.model
        relation = model.get_relation("pgb-peers")
        assert relation is not None
        store = open_store(model, relation, is_leader=False).read()
        manager.run()
    assert store == {"auth_file": AUTH_A, "relation_id_4": PW4}
    assert read_file(folder, "pgbouncer.ini") == CFG_B
    assert read_file(folder, "userlist.txt") == AUTH_A


# --- the schema version --------------------------------------------------------------------


def _newer_schema_state(
    folder: pathlib.Path, leader: bool, peer_version: str = "3"
) -> testing.State:
    write_files(folder, cfg=CFG_A, auth=AUTH_A)
    secret = store_secret(AUTH_A)
    peer = testing.PeerRelation(
        "pgb-peers",
        local_app_data={
            "cfg_file": CFG_B,
            "leader_hostname": HOST1,
            SECRET_ID_KEY: secret.id,
            "schema_version": "3",
        },
        local_unit_data={"hostname": HOST0},
        peers_data={1: {"hostname": HOST1, "schema_version": peer_version}},
    )
    return testing.State(
        leader=leader,
        model=MODEL,
        containers={container(folder)},
        relations={peer, backend()},
        secrets={secret},
    )


NEWER = (
    "peer data is schema 3, newer than this revision's 2: keeping the current files until the "
    "refresh completes"
)


@pytest.mark.parametrize("leader", [False, True], ids=["follower", "leader"])
def test_data_of_a_newer_schema_is_not_adopted_and_the_status_says_so(folder, leader):
    state = _newer_schema_state(folder, leader)
    ctx = context("3.6.0")
    out = ctx.run(ctx.on.relation_changed(peer_of(state), remote_unit=1), state)

    assert read_file(folder, "pgbouncer.ini") == CFG_A
    assert out.unit_status == testing.WaitingStatus(NEWER)
    assert peer_of(out).local_app_data == peer_of(state).local_app_data
    assert out.deferred == []


def test_the_same_unit_adopts_once_the_schema_is_one_it_reads(folder):
    """Positive control for the test above: only the version differs."""
    state = _newer_schema_state(folder, leader=False)
    peer = peer_of(state)
    app = dict(peer.local_app_data, schema_version="2")
    state = dataclasses.replace(
        state, relations={dataclasses.replace(peer, local_app_data=app), backend()}
    )
    ctx = context("3.6.0")
    out = ctx.run(ctx.on.relation_changed(peer_of(state), remote_unit=1), state)

    assert read_file(folder, "pgbouncer.ini") == CFG_B
    assert out.unit_status.name == "active"


def test_after_a_rollback_the_leader_takes_over_data_nobody_reads(folder):
    """Schema 3 published, but no unit speaks it any more (unit 1 says 2): the leader
    publishes its own files and version."""
    state = _newer_schema_state(folder, leader=True, peer_version="2")
    ctx = context("3.6.0")
    out = ctx.run(ctx.on.update_status(), state)

    app = peer_of(out).local_app_data
    assert app["schema_version"] == "2"
    assert app["cfg_file"] == CFG_A
    assert read_file(folder, "pgbouncer.ini") == CFG_A
    assert out.unit_status.name == "active"
