"""The metrics of one hook, as parts of the one plan: the stats user and the exporters.

Two services take part in ``HookPlanner``'s plan, each in the place the plan gives its kind:

- ``StatsUserStep``, a ``peer_sync.LeaderStep`` on the leader while a Prometheus is related.
  It makes the stats user's password once (``StoreStatsPassword``, a fresh one the gatherer
  drew), and shapes the leader's files like the backend's and the clients' steps do: the
  stats user in ``stats_users`` and, where there is an auth file, its line in it. The plan
  then writes each file once, signals pgbouncer once (both are re-read on SIGHUP), publishes
  the config and stores the auth file for the followers.
- ``MetricsService``, a ``hook_plan.UnitService`` every unit runs for itself. While a
  Prometheus is related: the unit's process count in its databag, then, once there is a
  password and a config, one exporter per process on the config's ``listen_port`` with the
  .pgpass file they read. When none is related: the exporters stopped and disabled.

Quiet hooks cost nothing: the exporters are set up (``WritePassfile``, ``EnsureExporters``)
only when one of them does not run, when what they run with changed (``MetricsView.set_up``,
a digest the unit remembers, against the .pgpass and specs wanted now), or when the
container started or the charm changed (pebble-ready, upgrade-charm: the Pebble layer itself
may differ). Exporters beyond the process count are retired.

The config an exporter reads is the one the unit will run once the hook's plan is carried out
(``files_after``), so a new ``listen_port`` and its exporters move in the same hook.
"""

from collections.abc import Sequence

from domain.effects import (
    Effect,
    EnsureExporters,
    PublishProcesses,
    RememberExporters,
    RemoveAuth,
    Report,
    RetireExporters,
    StoreStatsPassword,
    WriteAuth,
    WriteCfg,
    WritePassfile,
)
from domain.errors import InvalidInput
from domain.hook_view import EventKind, HookEvent, HookView
from domain.observability import (
    DEFAULT_LISTEN_PORT,
    ExporterSpec,
    ExporterState,
    MetricsView,
    exporters,
    exporters_digest,
    has_stats_user,
    pgpass_file,
    with_stats_user,
    with_stats_users,
)
from domain.peer_sync import Plan, WorkloadFiles, parse_or_none
from domain.pgb_config import render_pgb_ini
from domain.status import Severity, StatusReason

# The container started, or the charm changed: the layer may differ from what it was.
_SET_UP_AGAIN = (EventKind.WORKLOAD_READY, EventKind.UPGRADE_CHARM)


class StatsUserStep:
    """Leader: the stats user's password, and the stats user in the leader's files."""

    def __init__(self, view: MetricsView):
        self._view = view

    def shape(self, plan: Plan, files: WorkloadFiles | None) -> WorkloadFiles | None:
        view = self._view
        if not view.related or files is None or files.cfg is None:
            return files
        password = view.stored_password
        if password is None:
            if view.fresh_password is None:
                return files
            password = view.fresh_password
            plan.add(StoreStatsPassword(password))
        cfg = parse_or_none(files.cfg)
        if cfg is None:
            return files  # an invalid config is reported where it is published
        wanted = with_stats_users(cfg)
        new_cfg = files.cfg if wanted == cfg else render_pgb_ini(wanted)
        new_auth = files.auth
        try:
            if files.auth is not None and not has_stats_user(files.auth, password):
                new_auth = with_stats_user(files.auth, password)
        except InvalidInput as err:
            plan.report(Severity.BLOCKED, f"metrics: {err}")
            return files
        return WorkloadFiles(new_cfg, new_auth)

    def answer(self, plan: Plan) -> None:
        """Nobody waits for the stats user."""


class MetricsService:
    """Every unit: its process count published, one exporter per process, or none."""

    def plan(self, event: HookEvent, view: HookView, planned: Sequence[Effect]) -> list[Effect]:
        metrics, peer = view.metrics, view.peer
        if peer is None:
            return []
        if not metrics.related:
            return _retired(metrics, keep=0)
        effects: list[Effect] = []
        if metrics.published_processes != str(peer.processes):
            effects.append(PublishProcesses(peer.processes))
        password = metrics.stored_password or next(
            (e.password for e in planned if isinstance(e, StoreStatsPassword)), None
        )
        cfg = parse_or_none(files_after(peer.workload, planned).cfg)
        if password is None or cfg is None:
            return effects
        try:
            port = int(cfg.setting("listen_port") or DEFAULT_LISTEN_PORT)
            specs = exporters(peer.processes, port)
            pgpass = pgpass_file(password)
        except InvalidInput as err:
            # A listen_port on a metrics port, or a stored password of the wrong shape: no
            # retry fixes it, the operator must act.
            return [*effects, Report(StatusReason(Severity.BLOCKED, f"metrics: {err}"))]
        effects += _retired(metrics, keep=peer.processes)
        digest = exporters_digest(pgpass, specs)
        if (
            digest != metrics.set_up
            or event.kind in _SET_UP_AGAIN
            or (metrics.exporters_read and not _all_up(metrics, specs))
        ):
            effects += [WritePassfile(pgpass), EnsureExporters(specs), RememberExporters(digest)]
        return effects


def files_after(current: WorkloadFiles | None, planned: Sequence[Effect]) -> WorkloadFiles:
    """The container's files once ``planned`` is carried out (empty when unreachable)."""
    if current is None:
        return WorkloadFiles()
    cfg, auth = current.cfg, current.auth
    for effect in planned:
        match effect:
            case WriteCfg(content):
                cfg = content
            case WriteAuth(content):
                auth = content
            case RemoveAuth():
                auth = None
    return WorkloadFiles(cfg, auth)


def _all_up(view: MetricsView, specs: Sequence[ExporterSpec]) -> bool:
    up = {state.index for state in view.exporters if state.running and state.enabled}
    return up >= {spec.index for spec in specs}


def _retired(view: MetricsView, keep: int) -> list[Effect]:
    """Stop and disable the exporters from index ``keep`` on; forget them when none is kept.
    Nothing when the exporters were not read in this hook (a later one that reads does it)."""
    if not view.exporters_read:
        return []
    extra: list[ExporterState] = [s for s in view.exporters if s.index >= keep]
    running = tuple(s.index for s in extra if s.running)
    enabled = tuple(s.index for s in extra if s.enabled)
    effects: list[Effect] = []
    if running or enabled:
        effects.append(RetireExporters(running, enabled))
    if keep == 0 and view.set_up:
        effects.append(RememberExporters(""))
    return effects
