"""The exporters in the hook's one plan, under ``ops.testing``: one event per test.

Each state is written out as a unit would be: its files, its Pebble plan and services, its
databags, its memory. What Pebble was asked to do is read from the double's journal
(``tests.pebble_double``) and from spies on ops' ``Container``: the exporters start, stop or
stay untouched in the same hook as everything else, with one signal to pgbouncer at most.
"""

import pathlib

import ops
import pytest
from ops import pebble, testing

from adapters.juju.secret_store import SECRET_ID_KEY, SECRET_LABEL
from adapters.pebble.exporters import LAYER_LABEL as EXPORTER_LAYER
from adapters.pebble.exporters import exporter_layer
from domain.observability import ExporterSpec
from tests.pebble_double import PebbleWorld
from tests.unit.charm_harness import MODEL, container, context, read_file, serving
from tests.unit.peer_fixtures import HOST0, HOST1
from tests.unit.test_charm import ack_of
from tests.unit.test_observability_charm import STATS_PASSWORD, backend, leader_state, metrics

EXPORTERS = ["pgbouncer_exporter_0", "pgbouncer_exporter_1"]
PGBOUNCERS = ["pgbouncer_0", "pgbouncer_1"]
# The leader's files once the stats user is in them, as the charm renders them.
CFG_STATS = """\
[databases]
app = auth_user=pgbouncer_auth_relation_id_3 dbname=app host=10.1.1.1 port=5432

[pgbouncer]
auth_file = /var/lib/postgresql/pgbouncer/userlist.txt
listen_addr = *
listen_port = 6432
logfile = /var/lib/postgresql/pgbouncer/pgbouncer.log
pidfile = /var/lib/postgresql/pgbouncer/pgbouncer.pid
pool_mode = session
stats_users = pgbouncer_stats
user = postgres
"""
AUTH_STATS = (
    '"pgbouncer_auth_relation_id_3" "md5aad46d9afbcc8c8248d254d567b577c1"\n'
    f'"pgbouncer_stats" "{STATS_PASSWORD}"\n'
)
PGPASS = f"*:*:pgbouncer:pgbouncer_stats:{STATS_PASSWORD}\n"
# What the unit remembers of its exporters: two processes on 6432 with STATS_PASSWORD.
SET_UP = "838802539e0d102e"
SPECS = (
    ExporterSpec(0, 6432, 9127, "/var/lib/postgresql/pgbouncer"),
    ExporterSpec(1, 6432, 9128, "/var/lib/postgresql/pgbouncer"),
)


pytestmark = pytest.mark.usefixtures("two_processes")


def settled_with_exporters(folder: pathlib.Path, *relations: testing.Relation) -> testing.State:
    """A leader whose files have the stats user, whose exporters run (the passfile written,
    the set-up remembered), which published and acknowledged all of it."""
    (folder / "pgbouncer.ini").write_text(CFG_STATS)
    (folder / "userlist.txt").write_text(AUTH_STATS)
    (folder / "exporter.pgpass").write_text(PGPASS)
    secret = testing.Secret(
        tracked_content={"auth-file": AUTH_STATS, "stats-password": STATS_PASSWORD},
        owner="app",
        label=SECRET_LABEL,
    )
    peer = testing.PeerRelation(
        "pgb-peers",
        local_app_data={"cfg_file": CFG_STATS, "leader_hostname": HOST0, SECRET_ID_KEY: secret.id},
        local_unit_data={
            "hostname": HOST0,
            "pgbouncer_processes": "2",
            **ack_of(CFG_STATS, AUTH_STATS),
        },
        peers_data={1: {"hostname": HOST1, "pgbouncer_processes": "2"}},
    )
    pgbouncer = container(folder)
    layers = {
        **pgbouncer.layers,
        EXPORTER_LAYER: pebble.Layer(exporter_layer(SPECS)),  # type: ignore[arg-type]
    }
    statuses = {
        **pgbouncer.service_statuses,
        **{name: pebble.ServiceStatus.ACTIVE for name in EXPORTERS},
    }
    pgbouncer = testing.Container(
        pgbouncer.name,
        can_connect=True,
        mounts=pgbouncer.mounts,
        layers=layers,
        service_statuses=statuses,
    )
    memory = testing.StoredState(
        owner_path="PgBouncerK8sCharm", name="_stored", content={"exporters_digest": SET_UP}
    )
    return testing.State(
        leader=True,
        model=MODEL,
        containers={pgbouncer},
        relations={peer, backend(), *relations},
        secrets={secret},
        stored_states={memory},
    )


def test_a_prometheus_joining_starts_the_exporters_in_that_hook(folder, pebble_world: PebbleWorld):
    relation = metrics()
    ctx = context()
    out = ctx.run(ctx.on.relation_joined(relation, remote_unit=0), leader_state(folder, relation))

    pgbouncer = out.get_container("pgbouncer")
    assert [pgbouncer.service_statuses[name].value for name in EXPORTERS] == ["active", "active"]
    # The stats user came with them, in the same plan: one SIGHUP per process, nothing else
    # signalled or restarted among pgbouncer's services.
    assert [s for action, s in pebble_world.journal if s in PGBOUNCERS] == PGBOUNCERS
    assert pebble_world.actions("SIGHUP") == PGBOUNCERS
    assert "stats_users = pgbouncer_stats" in (read_file(folder, "pgbouncer.ini") or "")
    assert read_file(folder, "exporter.pgpass") is not None
    assert out.deferred == []
    assert out.unit_status == serving(folder)


def test_the_last_prometheus_leaving_stops_and_disables_the_exporters(
    folder, pebble_world: PebbleWorld
):
    relation = metrics()
    state = settled_with_exporters(folder, relation)
    ctx = context()
    out = ctx.run(ctx.on.relation_broken(relation), state)

    pgbouncer = out.get_container("pgbouncer")
    assert [pgbouncer.service_statuses[name].value for name in EXPORTERS] == [
        "inactive",
        "inactive",
    ]
    assert [pgbouncer.plan.services[name].startup for name in EXPORTERS] == [
        "disabled",
        "disabled",
    ]
    # pgbouncer keeps running, unsignalled.
    assert pebble_world.journal == [("stop", name) for name in EXPORTERS]
    assert [pgbouncer.service_statuses[name].value for name in PGBOUNCERS] == ["active", "active"]
    assert out.deferred == []


def test_a_quiet_update_status_with_prometheus_related_asks_pebble_nothing_more(
    folder, mocker, pebble_world: PebbleWorld
):
    state = settled_with_exporters(folder, metrics())
    names = ("pull", "push", "get_plan", "get_services", "add_layer", "start", "restart", "stop")
    spies = {name: mocker.spy(ops.Container, name) for name in names}
    ctx = context()
    out = ctx.run(ctx.on.update_status(), state)

    calls = {name: spy.call_count for name, spy in spies.items()}
    # The two files and one read of the services, as without Prometheus; no exporter call.
    assert calls == {
        "pull": 2,
        "push": 0,
        "get_plan": 0,
        "get_services": 1,
        "add_layer": 0,
        "start": 0,
        "restart": 0,
        "stop": 0,
    }
    assert pebble_world.journal == []
    assert out.unit_status == serving(folder)


def test_before_the_peer_relation_prometheus_waits_with_the_rest(folder, pebble_world):
    (folder / "pgbouncer.ini").write_text(CFG_STATS)
    state = testing.State(
        leader=True, model=MODEL, containers={container(folder)}, relations={metrics()}
    )
    ctx = context()
    out = ctx.run(ctx.on.update_status(), state)

    # The peer routine's own reason, not a metrics one: nothing of the metrics was tried.
    assert out.unit_status == testing.WaitingStatus(
        "PublishCfg failed: the pgb-peers relation does not exist yet"
    )
    assert pebble_world.journal == []
    assert read_file(folder, "exporter.pgpass") is None
