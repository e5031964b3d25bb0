"""PgBouncerK8sCharm: observe, gather, plan, apply, report.

Every observed event runs the same three steps (``_reconcile``): gather one ``HookView`` from
the adapters (``app.gather``), ask ``HookPlanner`` for the one ordered list of effects of the
hook (the exporters and the stats user among them, while a Prometheus is related), and hand it
to ``EffectApplier``; ``CosRelations`` holds the COS libraries' providers. Status is computed
once per hook, in the collect-status handlers, from the reasons the plan and the applier
returned. The workload adapter is made by ``make_workload``, which tests and the local
environment override to run the same charm against real pgbouncer processes.

TLS (``domain.tls``) is part of the same view. The TLS library (which brings ``cryptography``)
is loaded in the hooks it handles itself and, lazily (``certificates``), where the unit does
not serve what its relation promises; every other hook runs without it.
"""

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import ops

from adapters.juju import converters
from adapters.juju.backend import BACKEND_RELATION
from adapters.juju.clients import CLIENT_RELATION
from adapters.juju.cos import METRICS_RELATION, CosRelations
from adapters.juju.memory import UnitMemory
from adapters.juju.peer_relation import PEER_RELATION
from adapters.juju.refresh_steps import RefreshSteps
from adapters.pebble.layer import default_processes
from adapters.pebble.workload import PebbleWorkload
from app.apply import EffectApplier
from app.gather import CERTIFICATES_RELATION, Adapters, gather, hook_event, needs_library
from domain.errors import InvalidCharmConfig, InvalidPeerData
from domain.hook_plan import HookPlanner, app_status, unit_status
from domain.ports import WorkloadPort
from domain.status import Severity, StatusReason

if TYPE_CHECKING:
    from adapters.juju.certificates import Certificates

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
        self._certificates: Certificates | None = None
        if needs_library():
            # The TLS library observes its own events (it sends the request, renews, cleans
            # up) before the charm's reconcile of the same events runs.
            self.certificates()
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
            # The exporters start with the first Prometheus and stop after the last one.
            self.on[METRICS_RELATION].relation_created,
            self.on[METRICS_RELATION].relation_joined,
            self.on[METRICS_RELATION].relation_broken,
            self.on[CERTIFICATES_RELATION].relation_created,
            self.on[CERTIFICATES_RELATION].relation_changed,
            self.on[CERTIFICATES_RELATION].relation_broken,
        ):
            observe(event, self._reconcile)
        observe(self.on.collect_unit_status, self._on_collect_unit_status)
        observe(self.on.collect_app_status, self._on_collect_app_status)
        # The COS relations (their libraries load only where related).
        self._cos = CosRelations(self, self.processes)

    def make_workload(self) -> WorkloadPort:
        return PebbleWorkload(self.unit.get_container(CONTAINER), self.processes)

    def certificates(self) -> "Certificates":
        """The TLS library's requirer, loaded on first use: most hooks never import it."""
        if self._certificates is None:
            from adapters.juju.certificates import Certificates

            self._certificates = Certificates(self)
        return self._certificates

    def _reconcile(self, event: ops.EventBase) -> None:
        broken = event.relation if isinstance(event, ops.RelationBrokenEvent) else None
        adapters = Adapters(
            self.model,
            self.config,
            self.make_workload(),
            UnitMemory(self._stored),
            self.processes,
            broken=broken,
            certificates=self.certificates,
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
        earlier = self._reasons if self._reasons is not None else self._refresh.reasons
        self._reasons = [*earlier, *reasons]

    # --- status ------------------------------------------------------------------------------

    def _on_collect_unit_status(self, event: ops.CollectStatusEvent) -> None:
        if self._reasons is None:
            return
        try:
            port = converters.read_charm_config(self.config).listen_port
        except InvalidCharmConfig:
            port = None
        applied = UnitMemory(self._stored).applied()
        event.add_status(_status(unit_status(self._reasons, port, self.processes, applied)))

    def _on_collect_app_status(self, event: ops.CollectStatusEvent) -> None:
        if not self.unit.is_leader() or self._reasons is None or self._adapters is None:
            return
        adapters = self._adapters
        try:
            app = adapters.peers.app_data()
        except InvalidPeerData as err:
            event.add_status(ops.WaitingStatus(f"cannot read peer data: {err}"))
            return
        units = adapters.peers.units_data()
        reason = app_status(self._reasons, app, units, self.unit.name)
        event.add_status(_status(reason))
