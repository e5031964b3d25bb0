"""The charm under ``ops.testing``: one event per test, files checked in real folders.

The container's ``/var/lib/postgresql/pgbouncer`` is mounted on a temporary folder, so what
the charm writes through Pebble is read back from disk. Signals are counted with a spy on
``ops.Container.send_signal`` (ops' own API, not the charm's code).
"""

import dataclasses
import pathlib

import pytest
from ops import pebble, testing

from adapters.juju.secret_store import SECRET_ID_KEY, SECRET_LABEL
from domain.backend_service import NO_BACKEND
from domain.peer_data import (
    Acknowledgement,
    content_digest,
    no_acknowledgement_wanted,
    short_digest,
)
from domain.peer_sync import NOT_REACHABLE
from localenv.pebble_calls import counting_pebble_calls as pebble_calls
from tests.unit.charm_harness import (
    MODEL,
    PROCESSES,
    container,
    context,
    read_file,
    serving,
    write_files,
)
from tests.unit.peer_fixtures import AUTH_A, AUTH_B, CFG_A, CFG_B, CFG_BAD, CFG_PORT, HOST0, HOST1

pytestmark = pytest.mark.usefixtures("two_processes")


@pytest.fixture
def signals(mocker):
    import ops

    return mocker.spy(ops.Container, "send_signal")


def backend() -> testing.Relation:
    return testing.Relation(
        "backend-database",
        remote_app_name="postgresql-k8s",
        remote_app_data={"endpoints": "postgresql-k8s-primary:5432", "secret-user": "secret:x"},
    )


def ack_of(cfg: str | None, auth: str | None, ok: bool = True) -> dict[str, str]:
    ack = Acknowledgement.of(cfg, auth, ok)
    return {
        "applied_cfg_digest": ack.cfg_digest,
        "applied_auth_digest": ack.auth_digest,
        "apply_ok": "true" if ok else "false",
    }


def store_secret(auth: str = AUTH_A) -> testing.Secret:
    return testing.Secret(tracked_content={"auth-file": auth}, owner="app", label=SECRET_LABEL)


def follower_state(
    folder: pathlib.Path,
    cfg: str = CFG_A,
    auth: str = AUTH_A,
    secret: testing.Secret | None = None,
    local_unit_data: dict[str, str] | None = None,
    **container_args,
) -> tuple[testing.State, testing.PeerRelation]:
    """Unit 0, a follower; unit 1 leads and has published ``cfg`` and ``auth``."""
    secret = secret or store_secret(auth)
    peer = testing.PeerRelation(
        "pgb-peers",
        local_app_data={"cfg_file": cfg, "leader_hostname": HOST1, SECRET_ID_KEY: secret.id},
        local_unit_data=local_unit_data or {"hostname": HOST0},
        peers_data={1: {"hostname": HOST1}},
    )
    state = testing.State(
        leader=False,
        model=MODEL,
        containers={container(folder, **container_args)},
        relations={peer, backend()},
        secrets={secret},
    )
    return state, peer


# --- pgb-peers-relation-created ----------------------------------------------------------------


def test_created_leader_publishes_config_and_puts_auth_in_a_juju_secret(folder):
    write_files(folder, cfg=CFG_A, auth=AUTH_A)
    peer = testing.PeerRelation("pgb-peers")
    state = testing.State(
        leader=True, model=MODEL, containers={container(folder)}, relations={peer, backend()}
    )
    out = context("3.6.0").run(context().on.relation_created(peer), state)

    app_data = out.get_relation(peer.id).local_app_data
    assert app_data["cfg_file"] == CFG_A
    assert "auth_file" not in app_data
    assert AUTH_A.split()[1].strip('"') not in "".join(app_data.values())
    secret = out.get_secret(label=SECRET_LABEL)
    assert secret.latest_content == {"auth-file": AUTH_A}
    assert app_data[SECRET_ID_KEY] == secret.id
    assert out.get_relation(peer.id).local_unit_data["hostname"] == HOST0
    assert out.deferred == []


def test_created_leader_on_juju_without_secrets_uses_the_app_databag(folder):
    write_files(folder, cfg=CFG_A, auth=AUTH_A)
    peer = testing.PeerRelation("pgb-peers")
    state = testing.State(
        leader=True, model=MODEL, containers={container(folder)}, relations={peer, backend()}
    )
    ctx = context("2.9.44")
    out = ctx.run(ctx.on.relation_created(peer), state)

    app_data = out.get_relation(peer.id).local_app_data
    assert app_data["auth_file"] == AUTH_A
    assert app_data["cfg_file"] == CFG_A
    assert list(out.secrets) == []


def test_created_leader_without_config_defers(folder):
    peer = testing.PeerRelation("pgb-peers")
    state = testing.State(
        leader=True, model=MODEL, containers={container(folder)}, relations={peer, backend()}
    )
    ctx = context()
    out = ctx.run(ctx.on.relation_created(peer), state)

    assert len(out.deferred) == 1
    assert "cfg_file" not in out.get_relation(peer.id).local_app_data
    assert out.unit_status == testing.WaitingStatus("no pgbouncer config yet")


def test_created_leader_with_backend_not_ready_publishes_config_then_defers(folder):
    write_files(folder, cfg=CFG_A)
    peer = testing.PeerRelation("pgb-peers")
    state = testing.State(
        leader=True, model=MODEL, containers={container(folder)}, relations={peer, backend()}
    )
    ctx = context()
    out = ctx.run(ctx.on.relation_created(peer), state)

    assert out.get_relation(peer.id).local_app_data["cfg_file"] == CFG_A
    assert len(out.deferred) == 1
    assert list(out.secrets) == []


def test_created_follower_only_saves_its_hostname(folder):
    peer = testing.PeerRelation("pgb-peers", local_app_data={"cfg_file": CFG_A})
    state = testing.State(
        leader=False, model=MODEL, containers={container(folder)}, relations={peer}
    )
    ctx = context()
    out = ctx.run(ctx.on.relation_created(peer), state)

    assert out.get_relation(peer.id).local_unit_data["hostname"] == HOST0
    assert read_file(folder, "pgbouncer.ini") is None


# --- pgb-peers-relation-changed: follower --------------------------------------------------------


def test_changed_follower_writes_both_files_and_reloads_once(folder, signals):
    write_files(folder, cfg=CFG_A, auth=AUTH_A)
    state, peer = follower_state(
        folder,
        cfg=CFG_B,
        auth=AUTH_B,
        local_unit_data={"hostname": HOST0, **ack_of(CFG_A, AUTH_A)},
    )
    ctx = context()
    out = ctx.run(ctx.on.relation_changed(peer, remote_unit=1), state)

    assert read_file(folder, "pgbouncer.ini") == CFG_B
    assert read_file(folder, "userlist.txt") == AUTH_B
    for index in range(PROCESSES):
        copy = read_file(folder, f"instance_{index}/pgbouncer.ini")
        assert copy is not None
        assert "pool_mode = transaction" in copy
        assert f"/var/lib/postgresql/pgbouncer/instance_{index}/pgbouncer.pid" in copy
    assert (folder / "pgbouncer.ini").stat().st_mode & 0o777 == 0o600
    assert (folder / "userlist.txt").stat().st_mode & 0o777 == 0o600
    assert signals.call_count == 1
    assert signals.call_args.args[1:] == ("SIGHUP", "pgbouncer_0", "pgbouncer_1")
    assert out.get_relation(peer.id).local_unit_data == {
        "hostname": HOST0,
        **ack_of(CFG_B, AUTH_B),
        "schema_version": "2",
    }
    assert out.deferred == []


def test_changed_follower_on_juju_without_secrets_reads_the_app_databag(folder, signals):
    write_files(folder, cfg=CFG_A, auth=AUTH_A)
    peer = testing.PeerRelation(
        "pgb-peers",
        local_app_data={"cfg_file": CFG_A, "leader_hostname": HOST1, "auth_file": AUTH_B},
        local_unit_data={"hostname": HOST0, **ack_of(CFG_A, AUTH_A)},
        peers_data={1: {"hostname": HOST1}},
    )
    state = testing.State(
        leader=False, model=MODEL, containers={container(folder)}, relations={peer, backend()}
    )
    ctx = context("2.9.44")
    ctx.run(ctx.on.relation_changed(peer, remote_unit=1), state)

    assert read_file(folder, "userlist.txt") == AUTH_B
    assert signals.call_count == 1


def test_changed_follower_with_the_same_data_writes_nothing_and_sends_no_signal(folder, signals):
    write_files(folder, cfg=CFG_A, auth=AUTH_A)
    before = {p: p.stat().st_mtime_ns for p in folder.rglob("*")}
    state, peer = follower_state(
        folder, local_unit_data={"hostname": HOST0, **ack_of(CFG_A, AUTH_A)}
    )
    ctx = context()
    out = ctx.run(ctx.on.relation_changed(peer, remote_unit=1), state)

    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*")} == before
    assert signals.call_count == 0
    assert out.get_relation(peer.id).local_unit_data == {
        "hostname": HOST0,
        **ack_of(CFG_A, AUTH_A),
        "schema_version": "2",
    }


def remembering(cfg: str, auth: str | None) -> testing.StoredState:
    """The charm's StoredState of a unit whose pgbouncer runs ``cfg`` and ``auth``."""
    applied = Acknowledgement.of(cfg, auth, ok=True)
    return testing.StoredState(
        owner_path="PgBouncerK8sCharm",
        content={"applied_cfg": applied.cfg_digest, "applied_auth": applied.auth_digest},
    )


SETTLED_FOLLOWER = {"hostname": HOST0, "schema_version": "2", "pgbouncer_version": "1.18.0"}


def test_a_quiet_follower_trusts_what_it_remembers_and_asks_pebble_nothing(folder, monkeypatch):
    # Nothing new for it: what the leader publishes is what it remembers running.
    write_files(folder, cfg=CFG_A, auth=AUTH_A)
    state, peer = follower_state(folder, local_unit_data=SETTLED_FOLLOWER)
    peer = dataclasses.replace(
        peer,
        local_app_data={**peer.local_app_data, "ack_wanted": no_acknowledgement_wanted(CFG_A)},
    )
    state = dataclasses.replace(
        state, relations={peer, backend()}, stored_states={remembering(CFG_A, AUTH_A)}
    )
    ctx = context()
    with pebble_calls() as calls:
        out = ctx.run(ctx.on.relation_changed(peer, remote_unit=1), state)

    assert calls == {}  # not its files, not its processes, not its version
    assert out.deferred == []
    assert out.unit_status == serving(folder)  # the remembered config's digest
    assert out.get_relation(peer.id).local_unit_data == SETTLED_FOLLOWER


def test_a_quiet_follower_shows_its_processes_as_the_last_look_saw_them(folder, monkeypatch):
    # The last update-status found process 1 down; this hook reads nothing from Pebble, and
    # the status it rebuilds still says so (not "active").
    write_files(folder, cfg=CFG_A, auth=AUTH_A)
    state, peer = follower_state(folder, local_unit_data=SETTLED_FOLLOWER)
    peer = dataclasses.replace(
        peer,
        local_app_data={**peer.local_app_data, "ack_wanted": no_acknowledgement_wanted(CFG_A)},
    )
    down = "pgbouncer process 1 (backoff) not serving; restarting"
    memory = remembering(CFG_A, AUTH_A)
    memory = dataclasses.replace(memory, content={**memory.content, "processes_reason": down})
    state = dataclasses.replace(state, relations={peer, backend()}, stored_states={memory})
    ctx = context()
    with pebble_calls() as calls:
        out = ctx.run(ctx.on.relation_changed(peer, remote_unit=1), state)

    assert calls == {}
    assert out.unit_status == testing.WaitingStatus(down)


def test_a_follower_with_nothing_remembered_reads_its_files(folder, monkeypatch):
    # The control of the test above: the same hook without the memory asks Pebble.
    write_files(folder, cfg=CFG_A, auth=AUTH_A)
    state, peer = follower_state(folder, local_unit_data=SETTLED_FOLLOWER)
    peer = dataclasses.replace(
        peer,
        local_app_data={**peer.local_app_data, "ack_wanted": no_acknowledgement_wanted(CFG_A)},
    )
    state = dataclasses.replace(state, relations={peer, backend()})
    ctx = context()
    with pebble_calls() as calls:
        out = ctx.run(ctx.on.relation_changed(peer, remote_unit=1), state)

    assert calls["pull"] == 2
    assert calls["get_services"] == 1  # the process check
    assert out.unit_status == serving(folder)


def test_a_follower_that_remembers_another_config_reads_its_files(folder, signals):
    write_files(folder, cfg=CFG_B, auth=AUTH_A)
    state, peer = follower_state(folder, local_unit_data=SETTLED_FOLLOWER)
    state = dataclasses.replace(state, stored_states={remembering(CFG_B, AUTH_A)})
    ctx = context()
    out = ctx.run(ctx.on.relation_changed(peer, remote_unit=1), state)

    assert read_file(folder, "pgbouncer.ini") == CFG_A
    assert signals.call_count == 1  # one reload
    assert out.unit_status == serving(folder)
    assert dict(out.get_stored_state("_stored", owner_path="PgBouncerK8sCharm").content)[
        "applied_cfg"
    ] == (content_digest(CFG_A))


@pytest.mark.parametrize("event", ["update_status", "pebble_ready", "upgrade_charm"])
def test_a_follower_rechecks_its_files_whatever_it_remembers_on(folder, event):
    # Its memory says it runs what the leader published, but the file was changed behind its
    # back (a rescheduled pod, a hand edit): these events look at the files and repair them.
    write_files(folder, cfg=CFG_B, auth=AUTH_A)
    state, _peer = follower_state(folder, local_unit_data=SETTLED_FOLLOWER)
    state = dataclasses.replace(state, stored_states={remembering(CFG_A, AUTH_A)})
    ctx = context()
    hook = (
        ctx.on.pebble_ready(state.get_container("pgbouncer"))
        if event == "pebble_ready"
        else (getattr(ctx.on, event)())
    )
    ctx.run(hook, state)

    assert read_file(folder, "pgbouncer.ini") == CFG_A


def test_a_peer_event_trusts_the_memory_where_those_events_recheck(folder, signals):
    # The counterpart of the test above: on a peer event the files are not looked at.
    write_files(folder, cfg=CFG_B, auth=AUTH_A)
    state, peer = follower_state(folder, local_unit_data=SETTLED_FOLLOWER)
    state = dataclasses.replace(state, stored_states={remembering(CFG_A, AUTH_A)})
    ctx = context()
    ctx.run(ctx.on.relation_changed(peer, remote_unit=1), state)

    assert read_file(folder, "pgbouncer.ini") == CFG_B
    assert signals.call_count == 0


def test_changed_follower_restarts_for_a_new_listen_port(folder, signals, mocker):
    import ops

    # The services run (a settled unit): only a restart call makes them bind the new port.
    restarts = mocker.spy(ops.Container, "restart")
    write_files(folder, cfg=CFG_A, auth=AUTH_A)
    state, peer = follower_state(
        folder, cfg=CFG_PORT, local_unit_data={"hostname": HOST0, **ack_of(CFG_A, AUTH_A)}
    )
    ctx = context()
    out = ctx.run(ctx.on.relation_changed(peer, remote_unit=1), state)

    assert read_file(folder, "pgbouncer.ini") == CFG_PORT
    assert signals.call_count == 0
    assert restarts.call_count == 1
    assert restarts.call_args.args[1:] == ("pgbouncer_0", "pgbouncer_1")
    services = out.get_container("pgbouncer").service_statuses
    assert services == {
        "pgbouncer_0": pebble.ServiceStatus.ACTIVE,
        "pgbouncer_1": pebble.ServiceStatus.ACTIVE,
    }
    assert out.get_relation(peer.id).local_unit_data == {
        "hostname": HOST0,
        **ack_of(CFG_PORT, AUTH_A),
        "schema_version": "2",
    }


def test_changed_follower_refuses_an_invalid_cfg_file_and_keeps_its_own(folder, signals):
    write_files(folder, cfg=CFG_A, auth=AUTH_A)
    state, peer = follower_state(
        folder, cfg=CFG_BAD, local_unit_data={"hostname": HOST0, **ack_of(CFG_A, AUTH_A)}
    )
    ctx = context()
    out = ctx.run(ctx.on.relation_changed(peer, remote_unit=1), state)

    assert read_file(folder, "pgbouncer.ini") == CFG_A
    assert signals.call_count == 0
    assert isinstance(out.unit_status, testing.WaitingStatus)
    assert out.unit_status.message.startswith("invalid cfg_file from the leader: ")
    assert "listen_port" in out.unit_status.message
    assert out.get_relation(peer.id).local_unit_data["apply_ok"] == "false"


def test_changed_follower_with_unreadable_databag_keeps_its_files(folder, signals):
    write_files(folder, cfg=CFG_A, auth=AUTH_A)
    peer = testing.PeerRelation(
        "pgb-peers",
        local_app_data={"cfg_file": CFG_B, "leader_hostname": "not a host!"},
        local_unit_data={"hostname": HOST0},
        peers_data={1: {"hostname": HOST1}},
    )
    state = testing.State(
        leader=False, model=MODEL, containers={container(folder)}, relations={peer, backend()}
    )
    ctx = context()
    out = ctx.run(ctx.on.relation_changed(peer, remote_unit=1), state)

    assert read_file(folder, "pgbouncer.ini") == CFG_A
    assert signals.call_count == 0
    assert isinstance(out.unit_status, testing.WaitingStatus)
    assert "leader_hostname" in out.unit_status.message


def test_changed_follower_with_unreachable_container_defers(folder):
    state, peer = follower_state(folder, can_connect=False)
    ctx = context()
    out = ctx.run(ctx.on.relation_changed(peer, remote_unit=1), state)

    assert len(out.deferred) == 1
    assert out.unit_status == testing.WaitingStatus(NOT_REACHABLE)


# --- pgb-peers-relation-changed: leader ---------------------------------------------------------


def test_changed_leader_publishes_config_and_hostname(folder):
    write_files(folder, cfg=CFG_A)
    peer = testing.PeerRelation("pgb-peers", peers_data={1: {"hostname": HOST1}})
    state = testing.State(
        leader=True, model=MODEL, containers={container(folder)}, relations={peer, backend()}
    )
    ctx = context()
    out = ctx.run(ctx.on.relation_changed(peer, remote_unit=1), state)

    app_data = out.get_relation(peer.id).local_app_data
    # ... and that it waits for no acknowledgement (no client waits for its credentials).
    assert app_data == {
        "cfg_file": CFG_A,
        "leader_hostname": HOST0,
        "ack_wanted": no_acknowledgement_wanted(CFG_A),
    }


def test_changed_leader_rescheduled_restores_both_files_from_peer_data(folder):
    secret = store_secret(AUTH_A)
    peer = testing.PeerRelation(
        "pgb-peers",
        local_app_data={"cfg_file": CFG_A, "leader_hostname": HOST0, SECRET_ID_KEY: secret.id},
        local_unit_data={"hostname": HOST0, **ack_of(CFG_A, AUTH_A)},
        peers_data={1: {"hostname": HOST1}},
    )
    state = testing.State(
        leader=True,
        model=MODEL,
        containers={container(folder, running=False)},
        relations={peer, backend()},
        secrets={secret},
    )
    ctx = context()
    out = ctx.run(ctx.on.relation_changed(peer, remote_unit=1), state)

    assert read_file(folder, "pgbouncer.ini") == CFG_A
    assert read_file(folder, "userlist.txt") == AUTH_A
    assert set(out.get_container("pgbouncer").service_statuses) == {"pgbouncer_0", "pgbouncer_1"}


# --- other events -------------------------------------------------------------------------------


def test_follower_reads_the_newest_secret_revision_on_relation_changed(folder, signals):
    # Juju sends no secret-changed to units of the owning application: the leader's new
    # store_digest fires relation-changed instead, and the follower must not read a stale
    # revision then.
    write_files(folder, cfg=CFG_A, auth=AUTH_A)
    secret = testing.Secret(
        tracked_content={"auth-file": AUTH_A},
        latest_content={"auth-file": AUTH_B},
        owner="app",
        label=SECRET_LABEL,
    )
    state, peer = follower_state(
        folder, secret=secret, local_unit_data={"hostname": HOST0, **ack_of(CFG_A, AUTH_A)}
    )
    ctx = context()
    ctx.run(ctx.on.relation_changed(peer, remote_unit=1), state)

    assert read_file(folder, "userlist.txt") == AUTH_B
    assert signals.call_count == 1


def test_leader_storing_auth_publishes_a_store_digest_not_the_auth(folder):
    write_files(folder, cfg=CFG_A, auth=AUTH_B)
    secret = store_secret(AUTH_A)
    peer = testing.PeerRelation(
        "pgb-peers",
        local_app_data={"cfg_file": CFG_A, "leader_hostname": HOST0, SECRET_ID_KEY: secret.id},
        local_unit_data={"hostname": HOST0, **ack_of(CFG_A, AUTH_A)},
        peers_data={1: {"hostname": HOST1}},
    )
    state = testing.State(
        leader=True,
        model=MODEL,
        containers={container(folder)},
        relations={peer, backend()},
        secrets={secret},
    )
    ctx = context()
    out = ctx.run(ctx.on.relation_created(peer), state)

    assert out.get_secret(label=SECRET_LABEL).latest_content == {"auth-file": AUTH_B}
    app_data = out.get_relation(peer.id).local_app_data
    assert set(app_data) == {
        "cfg_file",
        "leader_hostname",
        SECRET_ID_KEY,
        "store_digest",
        "schema_version",
        "ack_wanted",
    }
    assert "relation_id_4" not in "".join(app_data.values())


def test_leader_elected_publishes_its_hostname(folder):
    write_files(folder, cfg=CFG_A, auth=AUTH_A)
    peer = testing.PeerRelation(
        "pgb-peers",
        local_app_data={"cfg_file": CFG_A, "leader_hostname": HOST1},
        local_unit_data={"hostname": HOST0},
    )
    state = testing.State(
        leader=True, model=MODEL, containers={container(folder)}, relations={peer, backend()}
    )
    ctx = context()
    out = ctx.run(ctx.on.leader_elected(), state)

    assert out.get_relation(peer.id).local_app_data["leader_hostname"] == HOST0


def test_departure_of_the_leader_shows_in_the_follower_status(folder):
    write_files(folder, cfg=CFG_A, auth=AUTH_A)
    state, peer = follower_state(
        folder, local_unit_data={"hostname": HOST0, **ack_of(CFG_A, AUTH_A)}
    )
    ctx = context()
    out = ctx.run(ctx.on.relation_departed(peer, remote_unit=1, departing_unit=1), state)

    assert out.unit_status == testing.WaitingStatus(
        f"leader {HOST1} departed; waiting for a new leader"
    )


def test_pebble_ready_leader_renders_publishes_and_starts_the_layer(folder):
    peer = testing.PeerRelation("pgb-peers")
    pgbouncer = container(folder, running=False)
    state = testing.State(leader=True, model=MODEL, containers={pgbouncer}, relations={peer})
    ctx = context()
    out = ctx.run(ctx.on.pebble_ready(pgbouncer), state)

    cfg = read_file(folder, "pgbouncer.ini")
    assert cfg is not None
    assert "listen_port = 6432" in cfg
    assert out.get_relation(peer.id).local_app_data["cfg_file"] == cfg
    plan = out.get_container("pgbouncer").plan
    assert sorted(plan.services) == ["pgbouncer_0", "pgbouncer_1"]
    assert plan.services["pgbouncer_1"].command == (
        "pgbouncer /var/lib/postgresql/pgbouncer/instance_1/pgbouncer.ini"
    )
    assert out.unit_status == testing.BlockedStatus(NO_BACKEND)
    # In sync, but serving nobody: the application says so too.
    assert out.app_status == testing.BlockedStatus(NO_BACKEND)


def test_config_changed_leader_rerenders_publishes_and_reloads(folder, signals):
    peer = testing.PeerRelation("pgb-peers")
    pgbouncer = container(folder, running=False)
    ctx = context()
    started = ctx.run(
        ctx.on.pebble_ready(pgbouncer),
        testing.State(leader=True, model=MODEL, containers={pgbouncer}, relations={peer}),
    )
    out = ctx.run(
        ctx.on.config_changed(), dataclasses.replace(started, config={"pool_mode": "transaction"})
    )

    cfg = read_file(folder, "pgbouncer.ini")
    assert cfg is not None
    assert "pool_mode = transaction" in cfg
    assert out.get_relation(peer.id).local_app_data["cfg_file"] == cfg
    assert signals.call_count == 1


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("listen_port", 0, "listen_port"),
        ("pool_mode", "sometimes", "pool_mode"),
        ("max_db_connections", -1, "max_db_connections"),
    ],
)
def test_invalid_config_option_blocks_and_keeps_the_config(
    folder, signals, option, value, message
):
    write_files(folder, cfg=CFG_A, auth=AUTH_A)
    peer = testing.PeerRelation(
        "pgb-peers",
        local_app_data={"cfg_file": CFG_A, "leader_hostname": HOST0},
        local_unit_data={"hostname": HOST0, **ack_of(CFG_A, AUTH_A)},
    )
    state = testing.State(
        leader=True,
        model=MODEL,
        config={option: value},
        containers={container(folder)},
        relations={peer, backend()},
    )
    ctx = context()
    out = ctx.run(ctx.on.config_changed(), state)

    assert read_file(folder, "pgbouncer.ini") == CFG_A
    assert signals.call_count == 0
    assert isinstance(out.unit_status, testing.BlockedStatus)
    assert message in out.unit_status.message


def test_leader_app_status_counts_units_in_sync(folder):
    write_files(folder, cfg=CFG_A, auth=AUTH_A)
    secret = store_secret(AUTH_A)
    # The leader waits for acknowledgements of CFG_A (a client waits for its credentials).
    peer = testing.PeerRelation(
        "pgb-peers",
        local_app_data={
            "cfg_file": CFG_A,
            "leader_hostname": HOST0,
            SECRET_ID_KEY: secret.id,
            "ack_wanted": content_digest(CFG_A),
        },
        local_unit_data={"hostname": HOST0},
        peers_data={
            1: {"hostname": HOST1, **ack_of(CFG_A, AUTH_A)},
            2: {"hostname": "pgbouncer-k8s-2.x", **ack_of(CFG_B, AUTH_A)},
        },
    )
    state = testing.State(
        leader=True,
        model=MODEL,
        containers={container(folder)},
        relations={peer, backend()},
        secrets={secret},
    )
    ctx = context()
    out = ctx.run(ctx.on.update_status(), state)

    assert out.app_status == testing.WaitingStatus(
        f"config {short_digest(CFG_A)} published; 2/3 units acknowledged it;"
        " behind: pgbouncer-k8s/2"
    )
    assert out.unit_status == serving(folder)


def test_leader_app_status_names_the_published_config_when_it_waits_for_nothing(folder):
    write_files(folder, cfg=CFG_A, auth=AUTH_A)
    secret = store_secret(AUTH_A)
    peer = testing.PeerRelation(
        "pgb-peers",
        local_app_data={
            "cfg_file": CFG_A,
            "leader_hostname": HOST0,
            SECRET_ID_KEY: secret.id,
            "ack_wanted": no_acknowledgement_wanted(CFG_A),
        },
        local_unit_data={"hostname": HOST0},
        # Acknowledgements of an older config are no reason to wait.
        peers_data={1: {"hostname": HOST1, **ack_of(CFG_B, AUTH_A)}},
    )
    state = testing.State(
        leader=True,
        model=MODEL,
        containers={container(folder)},
        relations={peer, backend()},
        secrets={secret},
    )
    ctx = context()
    out = ctx.run(ctx.on.update_status(), state)

    assert out.app_status == testing.ActiveStatus(
        f"config {short_digest(CFG_A)} published; each unit's status shows the config it runs"
    )
    assert out.unit_status == serving(folder)
    # No acknowledgement to itself: its unit databag holds what it held, and its schema.
    assert out.get_relation(peer.id).local_unit_data == {"hostname": HOST0, "schema_version": "2"}


def test_one_hook_reads_the_peer_secret_once(folder, mocker):
    # The leader reads the store to build its view, to store the auth file and for its
    # application status: one secret-get serves all three.
    import ops

    peeks = mocker.spy(ops.Secret, "peek_content")
    write_files(folder, cfg=CFG_A, auth=AUTH_B)
    secret = store_secret(AUTH_A)
    peer = testing.PeerRelation(
        "pgb-peers",
        local_app_data={"cfg_file": CFG_A, "leader_hostname": HOST0, SECRET_ID_KEY: secret.id},
        local_unit_data={"hostname": HOST0, **ack_of(CFG_A, AUTH_B)},
        peers_data={1: {"hostname": HOST1, **ack_of(CFG_A, AUTH_B)}},
    )
    state = testing.State(
        leader=True,
        model=MODEL,
        containers={container(folder)},
        relations={peer, backend()},
        secrets={secret},
    )
    ctx = context()
    out = ctx.run(ctx.on.update_status(), state)

    assert out.get_secret(label=SECRET_LABEL).latest_content == {"auth-file": AUTH_B}
    assert out.app_status == testing.ActiveStatus(
        f"config {short_digest(CFG_A)} published; each unit's status shows the config it runs"
    )
    assert peeks.call_count == 1


def test_an_invalid_option_is_reported_once_a_hook(folder):
    write_files(folder, cfg=CFG_A, auth=AUTH_A)
    state, _peer = follower_state(folder)
    ctx = context()
    out = ctx.run(ctx.on.update_status(), dataclasses.replace(state, config={"listen_port": 0}))

    errors = [line for line in ctx.juju_log if "invalid charm config" in line.message]
    assert len(errors) == 1
    assert out.unit_status == testing.BlockedStatus(
        "invalid config option listen_port: 0 is not a port from 1024 to 65535"
    )


def test_pebble_ready_learns_the_images_pgbouncer_version_and_publishes_it(folder):
    peer = testing.PeerRelation("pgb-peers")
    pgbouncer = dataclasses.replace(
        container(folder, running=False),
        execs={
            testing.Exec(
                ["pgbouncer", "--version"], stdout="PgBouncer 1.21.0\nlibevent 2.1.12-stable\n"
            )
        },
    )
    state = testing.State(leader=True, model=MODEL, containers={pgbouncer}, relations={peer})
    ctx = context()
    out = ctx.run(ctx.on.pebble_ready(pgbouncer), state)

    assert out.get_relation(peer.id).local_unit_data["pgbouncer_version"] == "1.21.0"
    # Later hooks take it from the databag: the image is asked once per container start.
    again = ctx.run(ctx.on.update_status(), dataclasses.replace(out, containers={pgbouncer}))
    assert again.get_relation(peer.id).local_unit_data["pgbouncer_version"] == "1.21.0"
    assert [args.command for args in ctx.exec_history["pgbouncer"]] == [["pgbouncer", "--version"]]


def test_a_workload_that_cannot_tell_its_version_leaves_it_unpublished(folder):
    peer = testing.PeerRelation("pgb-peers")
    pgbouncer = container(folder, running=False)  # no pgbouncer --version to run
    state = testing.State(leader=True, model=MODEL, containers={pgbouncer}, relations={peer})
    out = context().run(context().on.pebble_ready(pgbouncer), state)

    assert "pgbouncer_version" not in out.get_relation(peer.id).local_unit_data
    assert "cfg_file" in out.get_relation(peer.id).local_app_data
