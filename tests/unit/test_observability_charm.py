"""The exporters and the COS relations under ``ops.testing``: one event per test.

The container's pgbouncer folder is a real temporary folder, so the .pgpass file, pgbouncer.ini
and the auth file are read back from disk; the Pebble plan is read from the output state.
"""

import json
import os
import stat
import subprocess
import sys
from collections.abc import Mapping

import pytest
from cosl import JujuTopology, LZMABase64
from ops import testing

from adapters.juju.secret_store import SECRET_ID_KEY, SECRET_LABEL
from app.charm import PgBouncerK8sCharm
from charms.prometheus_k8s.v0.prometheus_scrape import PrometheusConfig
from domain.auth_file import parse_auth_file
from domain.pgb_config import parse_pgb_ini
from tests.unit.charm_harness import (
    CONFIG,
    META,
    MODEL,
    PROCESSES,
    ROOT,
    container,
    context,
    read_file,
    write_files,
)
from tests.unit.peer_fixtures import AUTH_A, CFG_A, HOST0, HOST1, HOST2

STATS_PASSWORD = "0123456789abcdef0123456789abcdef"
APP = "pgbouncer-k8s"


pytestmark = pytest.mark.usefixtures("two_processes")


def metrics() -> testing.Relation:
    return testing.Relation("metrics-endpoint", remote_app_name="prometheus-k8s")


def backend() -> testing.Relation:
    return testing.Relation(
        "backend-database",
        remote_app_name="postgresql-k8s",
        remote_app_data={"endpoints": "postgresql-k8s-primary:5432", "secret-user": "secret:x"},
    )


def leader_state(folder, *relations, secret=None, peers_data=None):
    write_files(folder, cfg=CFG_A, auth=AUTH_A)
    secret = secret or testing.Secret(
        tracked_content={"auth-file": AUTH_A}, owner="app", label=SECRET_LABEL
    )
    peer = testing.PeerRelation(
        "pgb-peers",
        local_app_data={"cfg_file": CFG_A, "leader_hostname": HOST0, SECRET_ID_KEY: secret.id},
        local_unit_data={"hostname": HOST0},
        peers_data=peers_data
        if peers_data is not None
        else {
            1: {"hostname": HOST1, "pgbouncer_processes": "3"},
            2: {"hostname": HOST2},  # has not published its process count yet
        },
    )
    return testing.State(
        leader=True,
        model=MODEL,
        containers={container(folder)},
        relations={peer, backend(), *relations},
        secrets={secret},
    )


def _store(out: testing.State) -> Mapping[str, str]:
    (secret,) = [s for s in out.secrets if s.label == SECRET_LABEL]
    return secret.latest_content or secret.tracked_content


def test_without_prometheus_no_exporter_and_no_stats_user(folder):
    out = context().run(context().on.update_status(), leader_state(folder))
    plan = out.get_container("pgbouncer").plan
    assert not [name for name in plan.services if name.startswith("pgbouncer_exporter_")]
    assert read_file(folder, "exporter.pgpass") is None
    assert "stats-password" not in _store(out)


def test_leader_with_prometheus_runs_one_exporter_per_process_logged_in_as_stats_user(folder):
    ctx = context()
    out = ctx.run(ctx.on.update_status(), leader_state(folder, metrics()))

    password = _store(out)["stats-password"]
    assert len(password) == 48
    cfg = parse_pgb_ini(read_file(folder, "pgbouncer.ini") or "")
    assert cfg.setting("stats_users") == "pgbouncer_stats"
    auth = parse_auth_file(read_file(folder, "userlist.txt") or "")
    assert auth.get("pgbouncer_stats") is not None
    assert auth.get("pgbouncer_stats").secret == password  # type: ignore[union-attr]
    # The followers get both files: the config published, the auth file in the store.
    (peer,) = [r for r in out.relations if r.endpoint == "pgb-peers"]
    assert "stats_users = pgbouncer_stats" in peer.local_app_data["cfg_file"]
    assert _store(out)["auth-file"] == read_file(folder, "userlist.txt")

    passfile = folder / "exporter.pgpass"
    assert passfile.read_text() == f"*:*:pgbouncer:pgbouncer_stats:{password}\n"
    assert stat.S_IMODE(passfile.stat().st_mode) == 0o600

    pgbouncer = out.get_container("pgbouncer")
    exporters = sorted(n for n in pgbouncer.plan.services if n.startswith("pgbouncer_exporter_"))
    assert exporters == ["pgbouncer_exporter_0", "pgbouncer_exporter_1"]
    for name in exporters:
        service = pgbouncer.plan.services[name]
        assert password not in service.command
        assert all(password not in value for value in service.environment.values())
        assert pgbouncer.service_statuses[name].value == "active"


def test_scrape_jobs_list_every_process_of_every_unit(folder):
    ctx = context()
    out = ctx.run(ctx.on.update_status(), leader_state(folder, metrics()))

    (relation,) = [r for r in out.relations if r.endpoint == "metrics-endpoint"]
    jobs = json.loads(relation.local_app_data["scrape_jobs"])
    targets = {
        (config["labels"]["juju_unit"], config["labels"]["pgbouncer_process"]): config["targets"]
        for job in jobs
        for config in job["static_configs"]
    }
    # This unit (2 processes) and unit 1 (3); unit 2 has not said how many it runs yet.
    assert targets == {
        (f"{APP}/0", "0"): [f"{HOST0}:9127"],
        (f"{APP}/0", "1"): [f"{HOST0}:9128"],
        (f"{APP}/1", "0"): [f"{HOST1}:9127"],
        (f"{APP}/1", "1"): [f"{HOST1}:9128"],
        (f"{APP}/1", "2"): [f"{HOST1}:9129"],
    }
    # What Prometheus' side of the library makes of them: every target keeps its unit and
    # process labels beside the application's topology.
    metadata = json.loads(relation.local_app_data["scrape_metadata"])
    topology = JujuTopology.from_dict(metadata)
    expanded = PrometheusConfig.expand_wildcard_targets_into_individual_jobs(jobs, {}, topology)
    labels = [config["labels"] for job in expanded for config in job["static_configs"]]
    assert len(labels) == 5
    assert all(label["juju_application"] == APP for label in labels)
    assert {(label["juju_unit"], label["pgbouncer_process"]) for label in labels} == set(targets)
    # The alert rules ship with the jobs.
    rules = json.loads(relation.local_app_data["alert_rules"])
    names = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    assert {"PgBouncerProcessDown", "PgBouncerServerLoginFailures"} <= names


def test_follower_takes_the_stats_password_from_the_store(folder):
    write_files(folder, cfg=CFG_A, auth=AUTH_A)
    secret = testing.Secret(
        tracked_content={"auth-file": AUTH_A, "stats-password": STATS_PASSWORD},
        owner="app",
        label=SECRET_LABEL,
    )
    peer = testing.PeerRelation(
        "pgb-peers",
        local_app_data={"cfg_file": CFG_A, "leader_hostname": HOST1, SECRET_ID_KEY: secret.id},
        local_unit_data={"hostname": HOST0},
        peers_data={1: {"hostname": HOST1}},
    )
    state = testing.State(
        leader=False,
        model=MODEL,
        containers={container(folder)},
        relations={peer, backend(), metrics()},
        secrets={secret},
    )
    ctx = context()
    out = ctx.run(ctx.on.update_status(), state)

    assert read_file(folder, "exporter.pgpass") == (
        f"*:*:pgbouncer:pgbouncer_stats:{STATS_PASSWORD}\n"
    )
    plan = out.get_container("pgbouncer").plan
    assert "pgbouncer_exporter_1" in plan.services
    # A follower writes no file of the leader's and publishes its process count.
    assert read_file(folder, "pgbouncer.ini") == CFG_A
    (peer_out,) = [r for r in out.relations if r.endpoint == "pgb-peers"]
    assert peer_out.local_unit_data["pgbouncer_processes"] == str(PROCESSES)
    assert _store(out)["stats-password"] == STATS_PASSWORD


def test_a_second_hook_changes_nothing(folder, mocker):
    import ops

    ctx = context()
    first = ctx.run(ctx.on.update_status(), leader_state(folder, metrics()))
    files = {name: read_file(folder, name) for name in ("pgbouncer.ini", "userlist.txt")}
    calls = [mocker.spy(ops.Container, name) for name in ("add_layer", "restart", "start", "push")]
    second = ctx.run(ctx.on.update_status(), first)
    # No layer added, no service restarted or started, no file pushed.
    assert [spy.call_count for spy in calls] == [0, 0, 0, 0]
    assert {name: read_file(folder, name) for name in files} == files
    assert _store(second) == _store(first)
    assert second.get_container("pgbouncer").plan == first.get_container("pgbouncer").plan


def test_grafana_gets_the_dashboard(folder):
    ctx = testing.Context(
        PgBouncerK8sCharm, meta=META, config=CONFIG, app_name=APP, charm_root=ROOT
    )
    dashboards = testing.Relation("grafana-dashboard", remote_app_name="grafana-k8s")
    out = ctx.run(ctx.on.relation_created(dashboards), leader_state(folder, dashboards))
    (relation,) = [r for r in out.relations if r.endpoint == "grafana-dashboard"]
    shipped = json.loads(relation.local_app_data["dashboards"])
    templates = shipped["templates"]
    assert len(templates) == 1
    (template,) = templates.values()
    assert template["charm"] == APP
    sent = json.loads(LZMABase64.decompress(template["content"]))
    ours = json.loads((ROOT / "src" / "grafana_dashboards" / "pgbouncer.json").read_text())
    # The library stamps its own uid and a charm tag; the panels are ours, as written.
    assert sent["title"] == ours["title"]
    assert sent["panels"] == ours["panels"]


LOKI_URL = "http://loki-k8s-0.loki-k8s-endpoints.cos.svc.cluster.local:3100/loki/api/v1/push"


def _logging(with_endpoint: bool = True) -> testing.Relation:
    data = {"endpoint": json.dumps({"url": LOKI_URL})} if with_endpoint else {}
    return testing.Relation("logging", remote_app_name="loki-k8s", remote_units_data={0: data})


def test_logging_forwards_every_pebble_service_to_loki(folder):
    ctx = testing.Context(
        PgBouncerK8sCharm, meta=META, config=CONFIG, app_name=APP, charm_root=ROOT
    )
    logging_relation = _logging()
    out = ctx.run(
        ctx.on.relation_changed(logging_relation, remote_unit=0),
        leader_state(folder, logging_relation, metrics()),
    )
    plan = out.get_container("pgbouncer").plan
    (target,) = plan.log_targets.values()
    assert target.type == "loki"
    assert target.location == LOKI_URL
    # Every service: the pgbouncer processes and their exporters.
    assert target.services == ["all"]
    assert target.labels is not None
    assert target.labels["juju_application"] == APP
    assert target.labels["juju_unit"] == f"{APP}/0"
    # The login-failure rule goes to Loki labelled with this application's topology, which
    # the Loki charm's side of the library injects into the selector (with its cos-tool).
    (relation,) = [r for r in out.relations if r.endpoint == "logging"]
    rules = json.loads(relation.local_app_data["alert_rules"])
    (rule,) = [rule for group in rules["groups"] for rule in group["rules"]]
    assert rule["alert"] == "PgBouncerServerLoginFailedInLogs"
    assert rule["labels"]["juju_application"] == APP
    assert '|~ "ERROR S: login failed|server login failed"' in rule["expr"]
    assert "%%juju_topology%%" not in rule["expr"]


def test_loki_gone_stops_the_forwarding(folder):
    ctx = testing.Context(
        PgBouncerK8sCharm, meta=META, config=CONFIG, app_name=APP, charm_root=ROOT
    )
    logging_relation = _logging()
    first = ctx.run(
        ctx.on.relation_changed(logging_relation, remote_unit=0),
        leader_state(folder, logging_relation),
    )
    assert first.get_container("pgbouncer").plan.log_targets
    out = ctx.run(ctx.on.relation_broken(first.get_relation(logging_relation.id)), first)
    targets = out.get_container("pgbouncer").plan.log_targets
    assert all(target.services == ["-all"] for target in targets.values())


_HOOK_WITHOUT_COS = """
import sys
from ops import testing
from tests.unit.charm_harness import MODEL, context
ctx = context()
pgb = testing.Container("pgbouncer", can_connect=False)
ctx.run(ctx.on.update_status(), testing.State(leader=True, model=MODEL, containers={pgb}))
print(sorted(m for m in sys.modules if m.startswith(("charms.", "cosl"))))
"""


@pytest.mark.parametrize(("relation", "loaded"), [(None, "[]"), ("logging", "loki_push_api")])
def test_the_cos_libraries_load_only_where_related(relation, loaded):
    code = _HOOK_WITHOUT_COS
    if relation:
        code = code.replace(
            "containers={pgb})",
            f"containers={{pgb}}, relations={{testing.Relation({relation!r})}})",
        )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "lib"), str(ROOT)]),
    }
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    last = out.stdout.strip().splitlines()[-1]
    if loaded == "[]":
        assert last == "[]"
    else:
        assert loaded in last
        assert "prometheus_scrape" not in last


def test_prometheus_gone_stops_the_exporters(folder):
    ctx = context()
    relation = metrics()
    first = ctx.run(ctx.on.update_status(), leader_state(folder, relation))
    assert first.get_container("pgbouncer").service_statuses["pgbouncer_exporter_0"].value == (
        "active"
    )
    out = ctx.run(ctx.on.relation_broken(first.get_relation(relation.id)), first)
    pgbouncer = out.get_container("pgbouncer")
    for name in ("pgbouncer_exporter_0", "pgbouncer_exporter_1"):
        assert pgbouncer.service_statuses[name].value == "inactive"
        assert pgbouncer.plan.services[name].startup == "disabled"
    # pgbouncer itself keeps running.
    assert pgbouncer.service_statuses["pgbouncer_0"].value == "active"


def test_a_listen_port_on_a_metrics_port_blocks_with_the_reason(folder):
    ctx = context()
    state = leader_state(folder, metrics())
    write_files(folder, cfg=CFG_A.replace("listen_port = 6432", "listen_port = 9128"))
    out = ctx.run(ctx.on.update_status(), state)
    assert out.unit_status == testing.BlockedStatus(
        "metrics: listen_port 9128 collides with the metrics ports 9127-9128"
    )
