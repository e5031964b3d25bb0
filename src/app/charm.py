"""PgBouncerK8sCharm: observe, gather, plan, apply, report.

Every observed event runs the same three steps (``_reconcile``): gather one ``HookView`` from
the adapters (``app.gather``), ask ``HookPlanner`` for the one ordered list of effects of the
hook, and hand it to ``EffectApplier``. Where a Prometheus is related, a second, smaller
plan follows on the files as they now are (``gather_metrics``, ``plan_metrics``: the stats
user and one exporter per process) through the same applier; ``CosRelations`` holds the COS
libraries' providers. Status is computed once per hook, in the collect-status
handlers, from the reasons the plan and the applier returned. The workload adapter is made by
``make_workload``, which tests and the local environment override to run the same charm
against real pgbouncer processes.
"""

import logging
from collections.abc import Callable

import ops

from adapters.errors import first_line
from adapters.juju import converters
from adapters.juju.backend import BACKEND_RELATION
from adapters.juju.clients import CLIENT_RELATION
from adapters.juju.cos import CosRelations
from adapters.juju.memory import UnitMemory
from adapters.juju.peer_relation import PEER_RELATION
from adapters.juju.refresh_steps import RefreshSteps
from adapters.juju.secret_store import StoreUnavailable
from adapters.pebble.layer import default_processes
from adapters.pebble.workload import PebbleWorkload
from app.apply import EffectApplier
from app.gather import Adapters, gather, gather_metrics, hook_event
from domain.errors import InvalidCharmConfig, InvalidInput, InvalidPeerData
from domain.hook_plan import HookPlanner, app_status, unit_status
from domain.observability import GenerateStatsPassword, plan_metrics
from domain.ports import WorkloadPort, WorkloadUnavailable
from domain.status import Severity, StatusReason

logger = logging.getLogger(__name__)

CONTAINER = "pgbouncer"

_STATUS_TYPES: dict[Severity, Callable[[str], ops.StatusBase]] = {
    Severity.ACTIVE: ops.ActiveStatus,
    Severity.MAINTENANCE: ops.MaintenanceStatus,
    Severity.WAITING: ops.WaitingStatus,
    Severity.BLOCKED: ops.BlockedStatus,
}


def _status(reason: StatusReason) -> ops.StatusBase:
    return _STATUS_TYPES[reason.severity](reason.message)


class PgBouncerK8sCharm(ops.CharmBase):
    processes: int = default_processes()
    _stored = ops.StoredState()

    def __init__(self, framework: ops.Framework):
        super().__init__(framework)
        # The reasons of this hook's reconciles (a deferred event re-run, then the event);
        # None: nothing ran, and the status is left as it was.
        self._reasons: list[StatusReason] | None = None
        self._adapters: Adapters | None = None
        # The peer schema check and the move out of the seed's layout, first in every hook.
        self._refresh = RefreshSteps(self.model)
        observe = framework.observe
        for event in (
            self.on[CONTAINER].pebble_ready,
            self.on.config_changed,
            self.on.leader_elected,
            self.on.update_status,
            self.on.upgrade_charm,
            self.on.secret_changed,
            self.on[PEER_RELATION].relation_created,
            self.on[PEER_RELATION].relation_joined,
            self.on[PEER_RELATION].relation_changed,
            self.on[PEER_RELATION].relation_departed,
            self.on[BACKEND_RELATION].relation_created,
            self.on[BACKEND_RELATION].relation_changed,
            self.on[BACKEND_RELATION].relation_broken,
            self.on[CLIENT_RELATION].relation_changed,
            self.on[CLIENT_RELATION].relation_broken,
        ):
            observe(event, self._reconcile)
        observe(self.on.collect_unit_status, self._on_collect_unit_status)
        observe(self.on.collect_app_status, self._on_collect_app_status)
        # The COS relations (their libraries load only where related).
        self._cos = CosRelations(self, self.processes)

    def make_workload(self) -> WorkloadPort:
        return PebbleWorkload(self.unit.get_container(CONTAINER), self.processes)

    def _reconcile(self, event: ops.EventBase) -> None:
        broken = event.relation if isinstance(event, ops.RelationBrokenEvent) else None
        adapters = Adapters(
            self.model,
            self.config,
            self.make_workload(),
            UnitMemory(self._stored),
            self.processes,
            broken=broken,
        )
        self._adapters = adapters
        schema = self._refresh.run(adapters.store)
        if not schema.readable:
            # Peer data of a newer schema: keep serving the files as they are (the reason says
            # why); the backend and client relations wait with the rest.
            self._reasons = list(self._refresh.reasons)
            return
        hook = hook_event(event, self.model)
        effects = HookPlanner().plan(hook, gather(adapters, hook))
        reasons = EffectApplier(adapters).apply(effects, event)
        # Then the metrics plan (exporters, stats user) on the files as they now are.
        reasons += self._metrics(adapters, event)
        earlier = self._reasons if self._reasons is not None else self._refresh.reasons
        self._reasons = [*earlier, *reasons]

    def _metrics(self, adapters: Adapters, event: ops.EventBase) -> list[StatusReason]:
        """Gather, plan, apply for the exporters; a second pass plans with a new password."""
        reasons: list[StatusReason] = []
        for _ in range(2):
            try:
                view = gather_metrics(adapters)
                effects = plan_metrics(view) if view is not None else []
            except InvalidInput as err:
                # listen_port on a metrics port: no retry fixes it, the operator must act.
                logger.error("metrics: %s", err)
                return [*reasons, StatusReason(Severity.BLOCKED, f"metrics: {first_line(err)}")]
            except (WorkloadUnavailable, StoreUnavailable, ops.ModelError) as err:
                logger.warning("metrics: %s; deferring", err)
                event.defer()
                return [*reasons, StatusReason(Severity.WAITING, f"metrics: {first_line(err)}")]
            reasons += EffectApplier(adapters).apply(effects, event)
            if GenerateStatsPassword() not in effects:
                break
        return reasons

    # --- status ------------------------------------------------------------------------------

    def _on_collect_unit_status(self, event: ops.CollectStatusEvent) -> None:
        if self._reasons is None:
            return
        try:
            port = converters.read_charm_config(self.config).listen_port
        except InvalidCharmConfig:
            port = None
        event.add_status(_status(unit_status(self._reasons, port, self.processes)))

    def _on_collect_app_status(self, event: ops.CollectStatusEvent) -> None:
        if not self.unit.is_leader() or self._reasons is None or self._adapters is None:
            return
        adapters = self._adapters
        try:
            app = adapters.peers.app_data()
            store = (
                converters.read_store(adapters.store().read()) if adapters.peers.relation else None
            )
        except (InvalidPeerData, StoreUnavailable) as err:
            event.add_status(ops.WaitingStatus(f"cannot read peer data: {err}"))
            return
        units = adapters.peers.units_data()
        reason = app_status(self._reasons, app.cfg_file, store.auth_file if store else None, units)
        event.add_status(_status(reason))
