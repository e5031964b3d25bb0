"""The charm against Pebble as the real daemon answers (``tests/pebble_double.py``).

Each row of ``platform-facts.md`` the charm touches, one event per test: a follower receives
new files from its leader (or a config change) while its container is in the state the row
describes. What Pebble was asked to do is read from the double's journal; files from the
mounted folder.
"""

import dataclasses
import os
import pathlib
import stat

import pytest
from ops import pebble, testing

from adapters.juju.secret_store import SECRET_ID_KEY, SECRET_LABEL
from adapters.pebble.layer import LAYER_LABEL, WORKLOAD_USER, pgbouncer_layer, service_names
from domain.peer_data import Acknowledgement
from tests.pebble_double import BACKOFF, PebbleWorld
from tests.unit.charm_harness import DEFAULT_PORT, MODEL, container, context, write_files
from tests.unit.peer_fixtures import AUTH_A, CFG_A, CFG_B, CFG_PORT, HOST0, HOST1

pytestmark = pytest.mark.usefixtures("two_processes")


@pytest.fixture
def folder(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "pgbouncer"
    path.mkdir()
    write_files(path, cfg=CFG_A, auth=AUTH_A)
    return path


def _ack(cfg: str, auth: str) -> dict[str, str]:
    ack = Acknowledgement.of(cfg, auth, True)
    return {
        "applied_cfg_digest": ack.cfg_digest,
        "applied_auth_digest": ack.auth_digest,
        "apply_ok": "true",
    }


def _follower(workload: testing.Container, cfg: str) -> tuple[testing.State, testing.PeerRelation]:
    """Unit 0 follows; it applied CFG_A and AUTH_A, and the leader now publishes ``cfg``."""
    secret = testing.Secret(tracked_content={"auth-file": AUTH_A}, owner="app", label=SECRET_LABEL)
    peer = testing.PeerRelation(
        "pgb-peers",
        local_app_data={"cfg_file": cfg, "leader_hostname": HOST1, SECRET_ID_KEY: secret.id},
        local_unit_data={"hostname": HOST0, **_ack(CFG_A, AUTH_A)},
        peers_data={1: {"hostname": HOST1}},
    )
    backend = testing.Relation(
        "backend-database",
        remote_app_name="postgresql-k8s",
        remote_app_data={"endpoints": "postgresql-k8s-primary:5432", "secret-user": "secret:x"},
    )
    state = testing.State(
        leader=False,
        model=MODEL,
        containers={workload},
        relations={peer, backend},
        secrets={secret},
    )
    return state, peer


def _with_statuses(workload: testing.Container, **statuses: object) -> testing.Container:
    return dataclasses.replace(
        workload, service_statuses={**workload.service_statuses, **statuses}
    )


def _run(state: testing.State, peer: testing.PeerRelation) -> testing.State:
    ctx = context()
    return ctx.run(ctx.on.relation_changed(peer, remote_unit=1), state)


@pytest.mark.parametrize("down", [BACKOFF, pebble.ServiceStatus.INACTIVE])
def test_reload_with_one_process_down_signals_the_running_one_and_starts_the_other(
    folder: pathlib.Path, pebble_world: PebbleWorld, down: object
):
    workload = _with_statuses(container(folder), pgbouncer_1=down)
    state, peer = _follower(workload, CFG_B)

    out = _run(state, peer)

    assert pebble_world.journal == [("SIGHUP", "pgbouncer_0"), ("start", "pgbouncer_1")]
    statuses = out.get_container("pgbouncer").service_statuses
    assert statuses == {name: pebble.ServiceStatus.ACTIVE for name in service_names(2)}
    assert out.get_relation(peer.id).local_unit_data["applied_cfg_digest"] == (
        Acknowledgement.of(CFG_B, AUTH_A, True).cfg_digest
    )
    assert out.deferred == []


def test_reload_with_every_process_running_only_signals(
    folder: pathlib.Path, pebble_world: PebbleWorld
):
    state, peer = _follower(container(folder), CFG_B)

    _run(state, peer)

    assert pebble_world.journal == [("SIGHUP", "pgbouncer_0"), ("SIGHUP", "pgbouncer_1")]


def test_a_refused_start_names_the_process_and_pgbouncers_reason(
    folder: pathlib.Path, pebble_world: PebbleWorld
):
    pebble_world.refusing["pgbouncer_1"] = "unknown parameter: pgbouncer/bogus_setting"
    state, peer = _follower(container(folder, running=False), CFG_PORT)
    ctx = context()

    out = ctx.run(ctx.on.relation_changed(peer, remote_unit=1), state)

    status = out.unit_status
    assert isinstance(status, testing.WaitingStatus)
    assert "\n" not in status.message
    assert "pgbouncer process 1 did not start: unknown parameter: pgbouncer/bogus_setting" in (
        status.message
    )
    assert status.message.endswith("; cannot load config file")
    logged = "\n".join(log.message for log in ctx.juju_log)
    assert "cannot perform the following tasks:" in logged
    assert '- Start service "pgbouncer_1"' in logged
    # The other process runs; the unit acknowledges nothing it could not apply.
    assert out.get_container("pgbouncer").service_statuses["pgbouncer_0"] == (
        pebble.ServiceStatus.ACTIVE
    )
    assert out.get_relation(peer.id).local_unit_data["applied_cfg_digest"] == (
        Acknowledgement.of(CFG_A, AUTH_A, True).cfg_digest
    )
    assert len(out.deferred) == 1


def test_from_three_processes_to_two_the_third_is_stopped_and_disabled(
    folder: pathlib.Path, pebble_world: PebbleWorld
):
    three = pebble.Layer(pgbouncer_layer(3, DEFAULT_PORT, tcp=True))  # type: ignore[arg-type]
    workload = dataclasses.replace(
        container(folder),
        layers={LAYER_LABEL: three},
        service_statuses={name: pebble.ServiceStatus.ACTIVE for name in service_names(3)},
    )
    state, peer = _follower(workload, CFG_B)

    out = _run(state, peer)

    after = out.get_container("pgbouncer")
    assert after.service_statuses["pgbouncer_2"] == pebble.ServiceStatus.INACTIVE
    assert after.plan.services["pgbouncer_2"].startup == "disabled"
    assert "on-check-failure" not in after.plan.services["pgbouncer_2"].to_dict()
    assert after.plan.checks["pgbouncer_2_up"].to_dict().get("exec") == {"command": "true"}
    assert pebble_world.actions("stop") == ["pgbouncer_2"]
    assert pebble_world.actions("SIGHUP") == ["pgbouncer_0", "pgbouncer_1"]
    assert pebble_world.actions("restart") == []


def test_a_lost_plan_is_put_back_with_a_check_per_process(
    folder: pathlib.Path, pebble_world: PebbleWorld
):
    # A restarted pod: Pebble's plan is empty, the files are back from the leader.
    state, peer = _follower(container(folder, running=False), CFG_B)

    out = _run(state, peer)

    plan = out.get_container("pgbouncer").plan
    assert sorted(plan.services) == ["pgbouncer_0", "pgbouncer_1"]
    assert sorted(plan.checks) == ["pgbouncer_0_up", "pgbouncer_1_up"]
    assert plan.services["pgbouncer_1"].on_check_failure == {"pgbouncer_1_up": "restart"}
    assert pebble_world.actions("start") == ["pgbouncer_0", "pgbouncer_1"]


@pytest.mark.skipif(os.geteuid() != 0, reason="giving files to the workload user needs root")
@pytest.mark.parametrize("where", ["workload folder", "process folder"])
def test_folders_the_image_ships_unusable_are_made_the_workload_users(
    tmp_path: pathlib.Path, pebble_world: PebbleWorld, where: str
):
    import pwd

    folder = tmp_path / "pgbouncer"
    write_files(folder, cfg=CFG_A, auth=AUTH_A)
    workload = container(folder)
    # What an image may ship: root:root 0700, where postgres cannot enter.
    target = folder if where == "workload folder" else folder / "instance_1"
    target.mkdir(exist_ok=True)
    os.chown(target, 0, 0)
    target.chmod(0o700)
    state, peer = _follower(workload, CFG_B)

    out = _run(state, peer)

    postgres = pwd.getpwnam(WORKLOAD_USER)
    for path in (folder, folder / "instance_0", folder / "instance_1"):
        st = path.stat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (
            postgres.pw_uid,
            postgres.pw_gid,
            0o700,
        ), path
    assert (folder / "pgbouncer.ini").read_text() == CFG_B
    assert (folder / "userlist.txt").read_text() == AUTH_A
    assert out.deferred == []


def test_update_status_reports_a_process_down_and_starts_it(
    folder: pathlib.Path, pebble_world: PebbleWorld
):
    # Process 1 was killed and its check failed; process 0 serves.
    workload = dataclasses.replace(
        _with_statuses(container(folder), pgbouncer_1=pebble.ServiceStatus.INACTIVE),
        check_infos={
            testing.CheckInfo("pgbouncer_0_up", status=pebble.CheckStatus.UP),
            testing.CheckInfo("pgbouncer_1_up", status=pebble.CheckStatus.DOWN, failures=3),
        },
    )
    state, _ = _follower(workload, CFG_A)
    ctx = context()

    out = ctx.run(ctx.on.update_status(), state)

    assert out.unit_status == testing.WaitingStatus(
        "pgbouncer process 1 (inactive) not serving; restarting"
    )
    assert pebble_world.journal == [("start", "pgbouncer_1")]


def test_update_status_reports_a_running_process_whose_check_fails(
    folder: pathlib.Path, pebble_world: PebbleWorld
):
    workload = dataclasses.replace(
        container(folder),
        check_infos={
            testing.CheckInfo("pgbouncer_0_up", status=pebble.CheckStatus.DOWN, failures=3),
            testing.CheckInfo("pgbouncer_1_up", status=pebble.CheckStatus.UP),
        },
    )
    state, _ = _follower(workload, CFG_A)
    ctx = context()

    out = ctx.run(ctx.on.update_status(), state)

    assert out.unit_status == testing.WaitingStatus(
        "pgbouncer process 0 (check down) not serving; restarting"
    )
    # Pebble restarts it (on-check-failure); the charm leaves a running process alone.
    assert pebble_world.journal == []


@pytest.mark.skipif(os.geteuid() != 0, reason="giving files to the workload user needs root")
def test_a_fresh_container_gets_folders_the_workload_user_owns_with_mode_0700(
    tmp_path: pathlib.Path, pebble_world: PebbleWorld
):
    # Nothing under /var/lib/postgresql yet: Pebble would make folders 0755 by itself.
    parent = tmp_path / "postgresql"
    parent.mkdir()
    workload = testing.Container(
        "pgbouncer",
        can_connect=True,
        mounts={"lib": testing.Mount(location="/var/lib/postgresql", source=parent)},
    )
    state = testing.State(
        leader=True,
        model=MODEL,
        containers={workload},
        relations={testing.PeerRelation("pgb-peers")},
    )
    ctx = context()

    ctx.run(ctx.on.pebble_ready(workload), state)

    import pwd

    postgres = pwd.getpwnam(WORKLOAD_USER)
    folder = parent / "pgbouncer"
    assert (folder / "pgbouncer.ini").is_file()
    for path in (folder, folder / "instance_0", folder / "instance_1"):
        st = path.stat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (
            postgres.pw_uid,
            postgres.pw_gid,
            0o700,
        ), path
    assert pebble_world.actions("restart") == ["pgbouncer_0", "pgbouncer_1"]
