"""Faults at the charm's Pebble and hook-tool call sites, under ``ops.testing``.

``ops.testing`` simulates a healthy Pebble and Juju; the failures are injected into ops' own
API (``ops.Container`` and relation data methods) with pytest's monkeypatch, never into the
charm's code. For every fault: no uncaught exception, a deferral or a clear status, files
intact, and the next event, with the fault gone, recovers.
"""

import dataclasses
import pathlib

import ops
import pytest
from ops import pebble, testing

from tests.unit.charm_harness import PROCESSES, container, context, read_file, write_files
from tests.unit.peer_fixtures import AUTH_A, AUTH_B, CFG_A, CFG_B
from tests.unit.test_charm import ack_of, follower_state

HOST0_ACK = ack_of(CFG_A, AUTH_A)


pytestmark = pytest.mark.usefixtures("two_processes")


@pytest.fixture
def folder(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "pgbouncer"
    write_files(path, cfg=CFG_A, auth=AUTH_A)
    return path


def _api_error(*_args, **_kwargs):
    raise pebble.APIError({}, 500, "Internal Server Error", "injected fault")


def _connection_error(*_args, **_kwargs):
    raise pebble.ConnectionError("injected: socket closed")


def _change_error(*_args, **_kwargs):
    change = pebble.Change.from_dict(
        {
            "id": "1",
            "kind": "restart",
            "summary": "injected",
            "status": "Error",
            "ready": True,
            "spawn-time": "2026-11-27T00:00:00Z",
        }
    )
    raise pebble.ChangeError("injected: service failed to start", change)


def _model_error(*_args, **_kwargs):
    raise ops.ModelError("ERROR injected: relation-set failed")


FAULTS = [
    pytest.param("push", _api_error, id="push: APIError"),
    pytest.param("push", _connection_error, id="push: ConnectionError"),
    pytest.param("pull", _connection_error, id="pull: ConnectionError"),
    pytest.param("send_signal", _connection_error, id="send_signal: ConnectionError"),
    pytest.param("restart", _change_error, id="restart: ChangeError"),
    pytest.param("add_layer", _api_error, id="add_layer: APIError"),
]


def _new_data_state(
    folder: pathlib.Path, restart: bool
) -> tuple[testing.State, testing.PeerRelation]:
    cfg = CFG_B.replace("6432", "7432") if restart else CFG_B
    return follower_state(
        folder, cfg=cfg, auth=AUTH_B, local_unit_data={"hostname": _hostname(), **HOST0_ACK}
    )


def _hostname() -> str:
    return "pgbouncer-k8s-0.pgbouncer-k8s-endpoints.test.svc.cluster.local"


@pytest.mark.parametrize(("method", "fault"), FAULTS)
def test_pebble_fault_defers_and_the_next_event_recovers(monkeypatch, folder, method, fault):
    restart = method in ("restart", "add_layer")
    state, peer = _new_data_state(folder, restart)
    ctx = context()

    with monkeypatch.context() as patch:
        patch.setattr(ops.Container, method, fault)
        out = ctx.run(ctx.on.relation_changed(peer, remote_unit=1), state)

    assert len(out.deferred) == 1
    assert isinstance(out.unit_status, testing.WaitingStatus)
    assert "injected" in out.unit_status.message or "Pebble" in out.unit_status.message
    # Nothing was acknowledged that is not running.
    assert (
        out.get_relation(peer.id).local_unit_data["applied_cfg_digest"]
        == (HOST0_ACK["applied_cfg_digest"])
    )

    # The fault is gone: the deferred event and a fresh one bring the unit in sync.
    again = ctx.run(ctx.on.update_status(), dataclasses.replace(out))
    expected_cfg = CFG_B.replace("6432", "7432") if restart else CFG_B
    assert read_file(folder, "pgbouncer.ini") == expected_cfg
    assert read_file(folder, "userlist.txt") == AUTH_B
    assert again.deferred == []
    assert again.get_relation(peer.id).local_unit_data == {
        "hostname": _hostname(),
        **ack_of(expected_cfg, AUTH_B),
        "schema_version": "2",
    }


def test_relation_set_fault_defers_without_losing_the_written_files(monkeypatch, folder):
    state, peer = _new_data_state(folder, restart=False)
    ctx = context()

    with monkeypatch.context() as patch:
        patch.setattr(ops.RelationDataContent, "__setitem__", _model_error)
        out = ctx.run(ctx.on.relation_changed(peer, remote_unit=1), state)

    assert len(out.deferred) == 1
    assert isinstance(out.unit_status, testing.WaitingStatus)
    assert "relation-set failed" in out.unit_status.message
    assert read_file(folder, "pgbouncer.ini") == CFG_B

    again = ctx.run(ctx.on.update_status(), out)
    assert (
        again.get_relation(peer.id).local_unit_data["applied_cfg_digest"]
        == (ack_of(CFG_B, AUTH_B)["applied_cfg_digest"])
    )


def test_a_secret_that_disappeared_keeps_the_files_and_waits(folder):
    state, peer = follower_state(folder, cfg=CFG_B)
    gone = dataclasses.replace(state, secrets=frozenset())
    ctx = context()
    out = ctx.run(ctx.on.relation_changed(peer, remote_unit=1), gone)

    assert read_file(folder, "pgbouncer.ini") == CFG_A
    assert len(out.deferred) == 1
    assert isinstance(out.unit_status, testing.WaitingStatus)
    assert "not found" in out.unit_status.message


def test_a_secret_whose_permission_was_lost_keeps_the_files_and_waits(monkeypatch, folder):
    state, peer = follower_state(folder, cfg=CFG_B, auth=AUTH_B)
    ctx = context()

    def denied(*_args, **_kwargs):
        raise ops.ModelError("ERROR permission denied")

    monkeypatch.setattr(ops.Secret, "get_content", denied)
    out = ctx.run(ctx.on.relation_changed(peer, remote_unit=1), state)

    assert read_file(folder, "pgbouncer.ini") == CFG_A
    assert read_file(folder, "userlist.txt") == AUTH_A
    assert len(out.deferred) == 1
    assert out.unit_status == testing.WaitingStatus(
        "cannot read the peer secret: ERROR permission denied"
    )


def test_rescheduled_follower_recreates_both_files_before_starting(folder):
    for path in sorted(folder.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    state, _peer = follower_state(
        folder, local_unit_data={"hostname": _hostname(), **HOST0_ACK}, running=False
    )
    pgbouncer = next(iter(state.containers))
    ctx = context()
    out = ctx.run(ctx.on.pebble_ready(pgbouncer), state)

    assert read_file(folder, "pgbouncer.ini") == CFG_A
    assert read_file(folder, "userlist.txt") == AUTH_A
    assert (folder / "userlist.txt").stat().st_mode & 0o777 == 0o600
    for index in range(PROCESSES):
        assert read_file(folder, f"instance_{index}/pgbouncer.ini") is not None
    assert set(out.get_container("pgbouncer").service_statuses) == {"pgbouncer_0", "pgbouncer_1"}


@pytest.mark.parametrize("method", ["set_content", "add_secret"])
def test_leader_failing_to_write_the_store_defers_and_retries(monkeypatch, folder, method):
    # The leader has a new auth file to store; writing the secret fails, then works.
    write_files(folder, cfg=CFG_A, auth=AUTH_B)
    existing = method == "set_content"
    secret = testing.Secret(
        tracked_content={"auth-file": AUTH_A}, owner="app", label="pgb-peers-store"
    )
    app_data = {"cfg_file": CFG_A, "leader_hostname": _hostname()}
    if existing:
        app_data["secret_id"] = secret.id
    peer = testing.PeerRelation(
        "pgb-peers",
        local_app_data=app_data,
        local_unit_data={"hostname": _hostname(), **HOST0_ACK},
        peers_data={
            1: {"hostname": "pgbouncer-k8s-1.pgbouncer-k8s-endpoints.test.svc.cluster.local"}
        },
    )
    backend = testing.Relation(
        "backend-database",
        remote_app_name="postgresql-k8s",
        remote_app_data={"endpoints": "10.1.1.1:5432", "secret-user": "secret:x"},
    )
    state = testing.State(
        leader=True,
        model=testing.Model(name="test"),
        containers={container(folder)},
        relations={peer, backend},
        secrets={secret} if existing else set(),
    )
    ctx = context()

    with monkeypatch.context() as patch:
        target = ops.Secret if existing else ops.Application
        patch.setattr(target, method, _model_error)
        out = ctx.run(ctx.on.relation_created(peer), state)

    assert len(out.deferred) == 1
    assert isinstance(out.unit_status, testing.WaitingStatus)
    assert "cannot write the peer secret" in out.unit_status.message
    assert "auth_file" not in out.get_relation(peer.id).local_app_data

    again = ctx.run(ctx.on.update_status(), out)
    stored = again.get_secret(label="pgb-peers-store")
    assert stored.latest_content == {"auth-file": AUTH_B}
    assert again.deferred == []
