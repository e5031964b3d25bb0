"""The metrics as part of the one plan: literal views in, the hook's exact effect list out.

Each row is one branch of ``StatsUserStep`` (the leader's stats user) or ``MetricsService``
(every unit's exporters), run through the hook's whole plan (``HookPlanner``), so the list is
what the applier receives, in order: the exporter work joins the peer routine's effects,
with one signal at most. No ops, no Pebble.
"""

import attrs
import pytest

from domain.effects import (
    Defer,
    Effect,
    EnsureExporters,
    PublishCfg,
    PublishProcesses,
    Reload,
    RememberApplied,
    RememberExporters,
    Report,
    RequestAcknowledgements,
    Restart,
    RetireExporters,
    StoreAuth,
    StoreStatsPassword,
    WriteAuth,
    WriteCfg,
    WritePassfile,
)
from domain.hook_plan import HookPlanner
from domain.hook_view import BackendView, EventKind, HookEvent, HookView, Memory
from domain.observability import ExporterSpec, ExporterState, MetricsView
from domain.peer_data import (
    Acknowledgement,
    AppPeerData,
    StoreContents,
    UnitPeerData,
    no_acknowledgement_wanted,
)
from domain.peer_sync import NOT_REACHABLE, PeerView, WorkloadFiles
from domain.status import Severity, StatusReason
from tests.unit.peer_fixtures import HOST0, HOST1
from tests.unit.relation_fixtures import (
    AUTH_LINE,
    BACKEND_ID,
    CFG_AUTH,
    CREDENTIALS,
    ENDPOINTS,
    SETUP_DIGEST,
)

UPDATE = HookEvent(EventKind.UPDATE_STATUS)
READY = HookEvent(EventKind.WORKLOAD_READY)
PEER = HookEvent(EventKind.PEER_CHANGED, 1)
PW = "0123456789abcdef0123456789abcdef"
FRESH_PW = "fedcba9876543210fedcba9876543210"
# The files with the stats user, written out by hand: stats_users in its sorted place, the
# stats user's line after the auth role's.
CFG_STATS = CFG_AUTH.replace(
    "pool_mode = session\n", "pool_mode = session\nstats_users = pgbouncer_stats\n"
)
AUTH_STATS = f'{AUTH_LINE}"pgbouncer_stats" "{PW}"\n'
AUTH_FRESH = f'{AUTH_LINE}"pgbouncer_stats" "{FRESH_PW}"\n'
# The same at another listen_port (a restart-only setting).
CFG_7432 = CFG_STATS.replace("listen_port = 6432", "listen_port = 7432")
CFG_9128 = CFG_STATS.replace("listen_port = 6432", "listen_port = 9128")
PGPASS = f"*:*:pgbouncer:pgbouncer_stats:{PW}\n"
PGPASS_FRESH = f"*:*:pgbouncer:pgbouncer_stats:{FRESH_PW}\n"
# One exporter per process: its socket folder, pgbouncer's port, its own metrics port.
SPECS_6432 = (
    ExporterSpec(0, 6432, 9127, "/var/lib/postgresql/pgbouncer"),
    ExporterSpec(1, 6432, 9128, "/var/lib/postgresql/pgbouncer"),
)
SPECS_7432 = (
    ExporterSpec(0, 7432, 9127, "/var/lib/postgresql/pgbouncer"),
    ExporterSpec(1, 7432, 9128, "/var/lib/postgresql/pgbouncer"),
)
# What the unit remembers of its exporters' set-up (one-way digests, as memory holds them).
SET_UP_2 = "838802539e0d102e"  # two processes, port 6432, PW
SET_UP_1 = "860b8af518a865a7"  # one process, port 6432, PW
SET_UP_7432 = "b6402690e3ba0c3c"  # two processes, port 7432, PW
SET_UP_FRESH = "a99b9cfeecf80bea"  # two processes, port 6432, FRESH_PW
UP = (ExporterState(0, True, True), ExporterState(1, True, True))
RETIRED = (ExporterState(0, False, False), ExporterState(1, False, False))
SETTLED_METRICS = MetricsView(
    related=True,
    stored_password=PW,
    exporters=UP,
    published_processes="2",
    set_up=SET_UP_2,
)


def ack(cfg: str | None, auth: str | None) -> Acknowledgement:
    return Acknowledgement.of(cfg, auth, True)


def blocked(message: str) -> Report:
    return Report(StatusReason(Severity.BLOCKED, message))


def waiting(message: str) -> Report:
    return Report(StatusReason(Severity.WAITING, message))


def leader(cfg: str, auth: str) -> PeerView:
    """A leader with two processes that published the files it runs and remembers running
    them, waiting for no acknowledgement."""
    return PeerView(
        is_leader=True,
        hostname=HOST0,
        app=AppPeerData(
            cfg_file=cfg, leader_hostname=HOST0, ack_wanted=no_acknowledgement_wanted(cfg)
        ),
        store=StoreContents(auth_file=auth),
        own=UnitPeerData(hostname=HOST0),
        applied=ack(cfg, auth),
        workload=WorkloadFiles(cfg, auth),
        backend_credentials=True,
        peer_hostnames=(HOST1,),
        processes=2,
    )


def follower(cfg: str, auth: str, published: str | None = None) -> PeerView:
    """A follower with two processes running ``cfg`` (and remembering it); the leader
    published ``published`` (``cfg`` when not given) and waits for no acknowledgement."""
    return PeerView(
        is_leader=False,
        hostname=HOST1,
        app=AppPeerData(
            cfg_file=published or cfg,
            leader_hostname=HOST0,
            ack_wanted=no_acknowledgement_wanted(published or cfg),
        ),
        store=StoreContents(auth_file=auth),
        own=UnitPeerData(hostname=HOST1),
        applied=ack(cfg, auth),
        workload=WorkloadFiles(cfg, auth),
        backend_credentials=True,
        peer_hostnames=(HOST0,),
        processes=2,
    )


LEADER = HookView(
    leader(CFG_STATS, AUTH_STATS),
    backend=BackendView(BACKEND_ID, "pgbouncer-k8s", endpoints=ENDPOINTS, credentials=CREDENTIALS),
    memory=Memory(backend_digest=SETUP_DIGEST),
    metrics=SETTLED_METRICS,
)
FOLLOWER = HookView(
    follower(CFG_STATS, AUTH_STATS),
    backend=BackendView(BACKEND_ID, "pgbouncer-k8s"),
    metrics=SETTLED_METRICS,
)


def metrics(**changes) -> MetricsView:
    return attrs.evolve(SETTLED_METRICS, **changes)


def view(base: HookView, **changes) -> HookView:
    return attrs.evolve(base, **changes)


def set_up(pgpass: str, specs: tuple[ExporterSpec, ...], digest: str) -> list[Effect]:
    return [WritePassfile(pgpass), EnsureExporters(specs), RememberExporters(digest)]


ROWS = [
    pytest.param(UPDATE, LEADER, [], id="settled leader, Prometheus related: nothing"),
    pytest.param(UPDATE, FOLLOWER, [], id="settled follower: nothing"),
    pytest.param(
        PEER,
        view(FOLLOWER, metrics=metrics(exporters=(), exporters_read=False)),
        [],
        id="quiet follower (nothing read from Pebble): trusts what it set up",
    ),
    pytest.param(
        PEER,
        view(FOLLOWER, metrics=metrics(exporters=(), related=False, exporters_read=False)),
        [],
        id="quiet follower, no Prometheus: retires nothing it did not read",
    ),
    pytest.param(
        PEER,
        view(FOLLOWER, metrics=metrics(exporters=RETIRED)),
        set_up(PGPASS, SPECS_6432, SET_UP_2),
        id="the same hook having read stopped exporters: set up again",
    ),
    pytest.param(
        UPDATE,
        view(FOLLOWER, metrics=MetricsView(exporters=RETIRED)),
        [],
        id="no Prometheus, exporters already retired: nothing",
    ),
    pytest.param(
        UPDATE,
        view(FOLLOWER, metrics=MetricsView(exporters=UP, set_up=SET_UP_2)),
        [RetireExporters((0, 1), (0, 1)), RememberExporters("")],
        id="Prometheus gone: every exporter stopped and disabled, set-up forgotten",
    ),
    pytest.param(
        UPDATE,
        view(FOLLOWER, metrics=MetricsView(exporters=(ExporterState(0, False, True),))),
        [RetireExporters((), (0,))],
        id="Prometheus gone, an exporter stopped but still enabled: disabled",
    ),
    pytest.param(
        UPDATE,
        view(FOLLOWER, metrics=metrics(exporters=(UP[0], ExporterState(1, False, True)))),
        set_up(PGPASS, SPECS_6432, SET_UP_2),
        id="one exporter not running: set up again (the start is the adapter's)",
    ),
    pytest.param(
        UPDATE,
        view(FOLLOWER, metrics=metrics(exporters=())),
        set_up(PGPASS, SPECS_6432, SET_UP_2),
        id="Prometheus just related: passfile, exporters, remembered",
    ),
    pytest.param(
        UPDATE,
        view(FOLLOWER, metrics=metrics(set_up="")),
        set_up(PGPASS, SPECS_6432, SET_UP_2),
        id="running, but nothing remembered (memory lost): set up again",
    ),
    pytest.param(
        UPDATE,
        view(FOLLOWER, metrics=metrics(published_processes=None)),
        [PublishProcesses(2)],
        id="process count not published yet",
    ),
    pytest.param(
        UPDATE,
        view(FOLLOWER, metrics=metrics(stored_password=None, exporters=(), set_up="")),
        [],
        id="follower before the leader made the password: waits",
    ),
    pytest.param(
        UPDATE,
        view(FOLLOWER, peer=attrs.evolve(FOLLOWER.peer, processes=1), metrics=metrics(
            published_processes="1", set_up=SET_UP_1)),
        [RetireExporters((1,), (1,))],
        id="process count shrank: the extra exporter is retired",
    ),
    pytest.param(
        UPDATE,
        view(FOLLOWER, peer=follower(CFG_STATS, AUTH_STATS, published=CFG_7432)),
        [
            WriteCfg(CFG_7432),
            Restart(),
            RememberApplied(ack(CFG_7432, AUTH_STATS)),
            *set_up(PGPASS, SPECS_7432, SET_UP_7432),
        ],
        id="a new listen_port adopted: the exporters follow it in the same hook",
    ),
    pytest.param(
        UPDATE,
        view(FOLLOWER, peer=follower(CFG_9128, AUTH_STATS)),
        [blocked("metrics: listen_port 9128 collides with the metrics ports 9127-9128")],
        id="listen_port on a metrics port: blocked, no exporter",
    ),
    pytest.param(
        READY,
        FOLLOWER,
        [Restart(), *set_up(PGPASS, SPECS_6432, SET_UP_2)],
        id="pebble-ready: set up again whatever memory says (a new layer)",
    ),
    pytest.param(
        UPDATE,
        # Gathering cannot read the services either.
        view(FOLLOWER, peer=attrs.evolve(FOLLOWER.peer, workload=None), metrics=metrics(
            exporters=())),
        [waiting(NOT_REACHABLE), Defer(NOT_REACHABLE)],
        id="container unreachable: no exporter work",
    ),
    pytest.param(
        UPDATE,
        view(
            LEADER,
            peer=leader(CFG_AUTH, AUTH_LINE),
            metrics=MetricsView(related=True, fresh_password=FRESH_PW),
        ),
        [
            PublishProcesses(2),
            WriteCfg(CFG_STATS),
            WriteAuth(AUTH_FRESH),
            Reload(),
            PublishCfg(CFG_STATS),
            RequestAcknowledgements(no_acknowledgement_wanted(CFG_STATS)),
            StoreStatsPassword(FRESH_PW),
            StoreAuth(AUTH_FRESH),
            RememberApplied(ack(CFG_STATS, AUTH_FRESH)),
            *set_up(PGPASS_FRESH, SPECS_6432, SET_UP_FRESH),
        ],
        id="leader, Prometheus related first: password, stats user, one reload, exporters",
    ),
    pytest.param(
        UPDATE,
        view(LEADER, peer=leader(CFG_AUTH, AUTH_LINE)),
        [
            WriteCfg(CFG_STATS),
            WriteAuth(AUTH_STATS),
            Reload(),
            PublishCfg(CFG_STATS),
            RequestAcknowledgements(no_acknowledgement_wanted(CFG_STATS)),
            StoreAuth(AUTH_STATS),
            RememberApplied(ack(CFG_STATS, AUTH_STATS)),
        ],
        id="leader files without the stats user (a new config): put back, one reload",
    ),
    pytest.param(
        UPDATE,
        view(
            LEADER,
            peer=leader(CFG_AUTH, AUTH_LINE),
            metrics=MetricsView(related=False, stored_password=PW),
        ),
        [],
        id="leader, no Prometheus: no stats user added, files left as they are",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("event", "hook_view", "expected"), ROWS)
def test_metrics_in_the_one_plan(event: HookEvent, hook_view: HookView, expected: list[Effect]):
    assert HookPlanner().plan(event, hook_view) == expected
