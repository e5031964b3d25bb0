"""HookPlanner: one plan per hook, for every relation at once.

Each hook, the application layer gathers one ``HookView`` and names the event in a
``HookEvent``; ``HookPlanner.plan`` returns the one ordered list of effects (``domain.effects``)
that the applier carries out, stopping at the first failure. The plan is built by:

- ``PeerSyncService``, the method named for the event (the relations' own events run the
  leader's or follower's routine, as update-status does): it restores, renders, adopts,
  publishes and acknowledges the files;
- on the leader, the other relations' services as steps of that routine
  (``BackendService``, ``ClientService``, then ``StatsUserStep`` for the metrics): they change the
  leader's files before they are written and published, add their effects on the backend and the
  clients, and answer the clients once the files are acknowledged;
- the reasons every unit shows whatever the event: an invalid charm config (blocked), peer
  data that cannot be read (waiting), no backend relation (blocked);
- the services every unit runs for itself (``UnitService``; by default ``MetricsService``:
  the exporters, one per process, while a Prometheus is related);
- the unit's processes (``domain.processes``): a status naming those that do not serve, and
  a start of those not running, unless the plan reloads or restarts anyway.

Every reason is a ``Report`` in the list; ``unit_status`` and ``app_status`` pick what to show.

Extending it. A new input is one more field of ``HookView`` (``app.gather`` fills it). A new
relation whose decisions change the leader's pgbouncer.ini or answer clients is one more
``LeaderStep`` in ``plan`` (see ``peer_sync.LeaderStep``). A service that every unit runs for
itself (its exporters, its own certificate files) is a ``UnitService`` given to ``HookPlanner``,
which sees the effects planned before it: its effects join the same list, in the contract's order
(give a new effect class its rank in ``effects.RANK``), and the plan still sends at most one signal
(a ``Restart`` wins over a ``Reload``) and one ``Defer``.
"""

from collections.abc import Callable, Sequence
from typing import Protocol

from domain.backend_service import NO_BACKEND, BackendService
from domain.client_service import ClientService
from domain.effects import (
    Defer,
    Effect,
    Reload,
    RememberProcesses,
    Report,
    Restart,
    in_contract_order,
)
from domain.hook_view import EventKind, HookEvent, HookView, SecretSupply
from domain.metrics_service import MetricsService, StatsUserStep
from domain.peer_data import Acknowledgement, AppPeerData, UnitPeerData
from domain.peer_sync import LeaderStep, PeerSyncService, PeerView
from domain.processes import with_processes_looked_after
from domain.status import Severity, StatusReason, most_severe
from domain.sync_status import sync_summary

_Method = Callable[[PeerSyncService, PeerView, Sequence[LeaderStep], HookEvent], list[Effect]]

# Which PeerSyncService routine each event runs. The other relations' events run the
# update-status routine: the leader publishes what its steps changed, a follower follows.
_ROUTINES: dict[EventKind, _Method] = {
    EventKind.PEER_CREATED: lambda s, v, steps, e: s.on_relation_created(v, steps),
    EventKind.PEER_CHANGED: lambda s, v, steps, e: s.on_relation_changed(v, steps),
    EventKind.PEER_DEPARTED: lambda s, v, steps, e: s.on_relation_departed(
        v, e.departing_hostname, steps
    ),
    EventKind.SECRET_CHANGED: lambda s, v, steps, e: s.on_secret_changed(v, steps),
    EventKind.LEADER_ELECTED: lambda s, v, steps, e: s.on_leader_elected(v, steps),
    EventKind.WORKLOAD_READY: lambda s, v, steps, e: s.on_workload_ready(v, steps),
    EventKind.CONFIG_CHANGED: lambda s, v, steps, e: s.on_config_changed(v, steps),
    EventKind.UPGRADE_CHARM: lambda s, v, steps, e: s.on_upgrade_charm(v, steps),
}


def _update_status(
    service: PeerSyncService, view: PeerView, steps: Sequence[LeaderStep], _event: HookEvent
) -> list[Effect]:
    return service.on_update_status(view, steps)


class UnitService(Protocol):
    """A service every unit runs for itself, beside the peer routine. ``planned``: the
    effects decided before it (the files it will find: ``metrics_service.files_after``)."""

    def plan(
        self, event: HookEvent, view: HookView, planned: Sequence[Effect]
    ) -> list[Effect]: ...


class HookPlanner:
    """``plan(event, view)``: the effects of one hook, in the contract's order."""

    def __init__(self, unit_services: Sequence[UnitService] | None = None) -> None:
        self._peers = PeerSyncService()
        self._unit_services = (
            (MetricsService(),) if unit_services is None else tuple(unit_services)
        )

    def plan(self, event: HookEvent, view: HookView) -> list[Effect]:
        first: list[Effect] = []
        if view.charm_problem is not None:
            first.append(Report(StatusReason(Severity.BLOCKED, view.charm_problem)))
        last: list[Effect] = []
        if view.backend is None or view.backend.gone:
            last.append(Report(StatusReason(Severity.BLOCKED, NO_BACKEND)))
        if view.peer is None or view.peer_problem or view.store_problem:
            return _merged([*first, *_unreadable(view), *last])
        steps: tuple[LeaderStep, ...] = ()
        if view.peer.is_leader:
            # The auth role's password first, then the clients' in order.
            secrets = SecretSupply(view.fresh_secrets)
            steps = (
                BackendService(view, event, secrets),
                ClientService(view, event, secrets),
                StatsUserStep(view.metrics),
            )
        routine = _ROUTINES.get(event.kind, _update_status)
        effects = [*first, *routine(self._peers, view.peer, steps, event)]
        for service in self._unit_services:
            effects += service.plan(event, view, tuple(effects))
        files = view.peer.workload
        has_config = files is not None and files.cfg is not None
        return _with_processes(_merged([*effects, *last]), view, has_config)


def _with_processes(planned: list[Effect], view: HookView, has_config: bool) -> list[Effect]:
    """``planned`` with what the processes ask for (``domain.processes``), and what was seen
    of them remembered; a hook that did not read them (a quiet follower's) shows them as the
    last one that did (the unit status is rebuilt by every hook)."""
    seen_before = view.memory.processes_reason
    if not view.processes_read:
        if not seen_before:
            return planned
        return _merged([*planned, Report(StatusReason(Severity.WAITING, seen_before))])
    looked = with_processes_looked_after(planned, view.processes, has_config)
    added = [e.reason.message for e in looked if isinstance(e, Report) and e not in planned]
    seen = added[0] if added else ""
    if seen == seen_before:
        return looked
    return in_contract_order([*looked, RememberProcesses(seen)])


def _merged(effects: list[Effect]) -> list[Effect]:
    """One list in the contract's order: the stronger signal only, one Defer, no reason twice."""
    restart = any(isinstance(effect, Restart) for effect in effects)
    signals: list[Effect] = [e for e in effects if isinstance(e, Reload | Restart)]
    deferrals = [effect for effect in effects if isinstance(effect, Defer)]
    reports = list(dict.fromkeys(e for e in effects if isinstance(e, Report)))
    actions = [e for e in effects if not isinstance(e, Reload | Restart | Defer | Report)]
    signal: list[Effect] = [Restart()] if restart else signals[:1]
    return in_contract_order([*actions, *signal, *reports, *deferrals[:1]])


def _unreadable(view: HookView) -> list[Effect]:
    if view.peer_problem is not None:
        # Nobody can fix a databag by hand: keep the last good files and wait.
        return [Report(StatusReason(Severity.WAITING, f"invalid peer data: {view.peer_problem}"))]
    if view.store_problem is not None:
        return [
            Report(StatusReason(Severity.WAITING, view.store_problem)),
            Defer(view.store_problem),
        ]
    return []


def unit_status(
    reasons: Sequence[StatusReason],
    listen_port: int | None,
    processes: int,
    applied: Acknowledgement | None = None,
) -> StatusReason:
    """What this unit shows: its most severe reason, else that it serves, and which config
    (the short digest of the pgbouncer.ini it runs: the leader's status names the one it
    published)."""
    reason = most_severe(tuple(reasons))
    if reason is not None:
        return reason
    serving = f"pgbouncer on port {listen_port}, {processes} processes"
    if applied is not None:
        serving += f", config {applied.cfg_digest[:8]}"
    return StatusReason(Severity.ACTIVE, serving)


def app_status(
    reasons: Sequence[StatusReason],
    app: AppPeerData,
    units: dict[str, UnitPeerData],
    leader: str,
) -> StatusReason:
    """What the leader shows for the application: the config it published (and, while a
    client waits, how many units acknowledged it), or what blocks it."""
    blocked = next((reason for reason in reasons if reason.severity is Severity.BLOCKED), None)
    return blocked or sync_summary(app.cfg_file, app.ack_wanted, units, leader)
