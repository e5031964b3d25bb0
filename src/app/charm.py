"""PgBouncerK8sCharm: observe, gather, decide, apply, report.

Every handler does the same three steps: gather a ``PeerView`` from the adapters, ask
``PeerSyncService`` for the effects of its event, and hand them to ``EffectApplier``. Status is
computed once per hook, in the collect-status handlers, from the reasons gathered on the way.
The workload adapter is made by ``make_workload``, which tests and the local demonstration
override to run the same charm against real pgbouncer processes.
"""

import logging
from collections.abc import Callable

import ops

from adapters.juju import converters
from adapters.juju.backend import BACKEND_RELATION, backend_relation, has_credentials
from adapters.juju.clients import CLIENT_RELATION
from adapters.juju.hostname import unit_hostname
from adapters.juju.peer_relation import PEER_RELATION, PeerRelation
from adapters.juju.secret_store import SECRET_LABEL, StoreUnavailable, open_store
from adapters.pebble.layer import default_processes
from adapters.pebble.workload import PebbleWorkload
from app.apply import EffectApplier
from app.backend import BackendHandlers
from app.clients import ClientHandlers
from domain.charm_config import CharmConfig
from domain.effects import Effect
from domain.errors import InvalidCharmConfig, InvalidPeerData
from domain.peer_data import StoreContents
from domain.peer_sync import PeerSyncService, PeerView, WorkloadFiles
from domain.ports import SecretStorePort, WorkloadPort, WorkloadUnavailable
from domain.status import Severity, StatusReason, most_severe
from domain.sync_status import sync_summary

logger = logging.getLogger(__name__)

CONTAINER = "pgbouncer"
NO_BACKEND = "add a backend-database relation to a PostgreSQL charm"

_STATUS_TYPES: dict[Severity, Callable[[str], ops.StatusBase]] = {
    Severity.ACTIVE: ops.ActiveStatus,
    Severity.MAINTENANCE: ops.MaintenanceStatus,
    Severity.WAITING: ops.WaitingStatus,
    Severity.BLOCKED: ops.BlockedStatus,
}


class PgBouncerK8sCharm(ops.CharmBase):
    processes: int = default_processes()

    def __init__(self, framework: ops.Framework):
        super().__init__(framework)
        self._sync = PeerSyncService()
        self._reasons: list[StatusReason] = []
        self._charm_config: CharmConfig | None = None
        self._charm_config_read = False
        self._store_adapter: SecretStorePort | None = None
        peers = self.on[PEER_RELATION]
        observe = framework.observe
        observe(self.on[CONTAINER].pebble_ready, self._on_pebble_ready)
        observe(self.on.config_changed, self._on_config_changed)
        observe(self.on.leader_elected, self._on_leader_elected)
        observe(self.on.update_status, self._on_update_status)
        observe(self.on.upgrade_charm, self._on_update_status)
        observe(peers.relation_created, self._on_peer_created)
        observe(peers.relation_joined, self._on_peer_changed)
        observe(peers.relation_changed, self._on_peer_changed)
        observe(peers.relation_departed, self._on_peer_departed)
        observe(self.on.secret_changed, self._on_secret_changed)
        self._backend = BackendHandlers(self)
        backend = self.on[BACKEND_RELATION]
        observe(backend.relation_created, self._backend.on_created)
        observe(backend.relation_changed, self._backend.on_changed)
        observe(backend.relation_broken, self._backend.on_broken)
        # After the charm's and the backend's own observers of the same events.
        self._clients = ClientHandlers(self)
        clients = self.on[CLIENT_RELATION]
        observe(clients.relation_changed, self._clients.on_changed)
        observe(clients.relation_broken, self._clients.on_broken)
        observe(backend.relation_changed, self._clients.on_backend_changed)
        observe(self.on.config_changed, self._clients.on_config_changed)
        observe(self.on.update_status, self._clients.on_update_status)
        observe(self.on.collect_unit_status, self._on_collect_unit_status)
        observe(self.on.collect_app_status, self._on_collect_app_status)

    # --- adapters --------------------------------------------------------------------------

    def make_workload(self) -> WorkloadPort:
        return PebbleWorkload(self.unit.get_container(CONTAINER), self.processes)

    def _store(self) -> SecretStorePort:
        """The peer secret store, one per hook, so every reader shares one read."""
        if self._store_adapter is None:
            peers = PeerRelation(self.model)
            if peers.relation is None:
                raise StoreUnavailable(f"the {PEER_RELATION} relation does not exist yet")
            self._store_adapter = open_store(self.model, peers.relation, self.unit.is_leader())
        return self._store_adapter

    # --- handlers --------------------------------------------------------------------------

    def _on_pebble_ready(self, event: ops.PebbleReadyEvent) -> None:
        self._run(event, self._sync.on_workload_ready)

    def _on_config_changed(self, event: ops.ConfigChangedEvent) -> None:
        self._run(event, self._sync.on_config_changed)

    def _on_leader_elected(self, event: ops.LeaderElectedEvent) -> None:
        self._run(event, self._sync.on_leader_elected)

    def _on_update_status(self, event: ops.EventBase) -> None:
        self._run(event, self._sync.on_update_status)

    def _on_peer_created(self, event: ops.RelationCreatedEvent) -> None:
        self._run(event, self._sync.on_relation_created)

    def _on_peer_changed(self, event: ops.RelationEvent) -> None:
        self._run(event, self._sync.on_relation_changed)

    def _on_peer_departed(self, event: ops.RelationDepartedEvent) -> None:
        departing = event.departing_unit
        hostname = unit_hostname(departing.name, self.model.name) if departing else None
        self._run(event, lambda view: self._sync.on_relation_departed(view, hostname))

    def _on_secret_changed(self, event: ops.SecretChangedEvent) -> None:
        if event.secret.label != SECRET_LABEL:
            return
        self._run(event, self._sync.on_secret_changed)

    # --- the three steps -------------------------------------------------------------------

    def _run(self, event: ops.EventBase, decide: Callable[[PeerView], list[Effect]]) -> None:
        peers = PeerRelation(self.model)
        workload = self.make_workload()
        view = self._gather(peers, workload, event)
        if view is None:
            return
        effects = decide(view)
        EffectApplier(
            peers=peers,
            workload=workload,
            store=self._store,
            refresh_clients=self._refresh_clients,
            reasons=self._reasons,
        ).apply(effects, event)

    def _gather(
        self, peers: PeerRelation, workload: WorkloadPort, event: ops.EventBase
    ) -> PeerView | None:
        try:
            app, own = peers.app_data(), peers.own_data()
        except InvalidPeerData as err:
            # Nobody can fix a databag by hand: keep the last good files and wait.
            logger.warning("invalid peer data: %s", err)
            self._reasons.append(StatusReason(Severity.WAITING, f"invalid peer data: {err}"))
            return None
        try:
            store = converters.read_store(self._store().read()) if peers.relation else None
        except StoreUnavailable as err:
            logger.warning("peer secret store unavailable: %s; deferring", err)
            self._reasons.append(StatusReason(Severity.WAITING, str(err)))
            event.defer()
            return None
        return PeerView(
            is_leader=self.unit.is_leader(),
            hostname=peers.hostname,
            app=app,
            store=store or StoreContents(),
            own=own,
            workload=self._files(workload),
            backend_credentials=has_credentials(self.model),
            peer_hostnames=peers.peer_hostnames(),
            charm=self._read_charm_config(),
            processes=self.processes,
        )

    @staticmethod
    def _files(workload: WorkloadPort) -> WorkloadFiles | None:
        try:
            if not workload.is_reachable():
                return None
            return WorkloadFiles(cfg=workload.read_cfg(), auth=workload.read_auth())
        except WorkloadUnavailable as err:
            logger.warning("workload unreachable: %s", err)
            return None

    def _read_charm_config(self) -> CharmConfig | None:
        """The charm config, read once a hook; an invalid one is reported once."""
        if self._charm_config_read:
            return self._charm_config
        self._charm_config_read = True
        try:
            self._charm_config = converters.read_charm_config(self.config)
        except InvalidCharmConfig as err:
            logger.error("invalid charm config: %s", err)
            self._reasons.insert(0, StatusReason(Severity.BLOCKED, str(err)))
        return self._charm_config

    def _refresh_clients(self) -> None:
        self._clients.refresh()

    # --- status ------------------------------------------------------------------------------

    def _on_collect_unit_status(self, event: ops.CollectStatusEvent) -> None:
        self._read_charm_config()
        reasons = list(self._reasons)
        if backend_relation(self.model) is None:
            reasons.append(StatusReason(Severity.BLOCKED, NO_BACKEND))
        reason = most_severe(reasons)
        if reason is None:
            port = self._charm_config.listen_port if self._charm_config else None
            event.add_status(
                ops.ActiveStatus(f"pgbouncer on port {port}, {self.processes} processes")
            )
            return
        event.add_status(_STATUS_TYPES[reason.severity](reason.message))

    def _on_collect_app_status(self, event: ops.CollectStatusEvent) -> None:
        if not self.unit.is_leader():
            return
        if backend_relation(self.model) is None:
            # Units in sync serve nobody without a backend; ops shows the blocked one first.
            event.add_status(ops.BlockedStatus(NO_BACKEND))
        peers = PeerRelation(self.model)
        try:
            app = peers.app_data()
            store = converters.read_store(self._store().read()) if peers.relation else None
        except (InvalidPeerData, StoreUnavailable) as err:
            event.add_status(ops.WaitingStatus(f"cannot read peer data: {err}"))
            return
        summary = sync_summary(
            app.cfg_file, store.auth_file if store else None, peers.units_data()
        )
        event.add_status(_STATUS_TYPES[summary.severity](summary.message))
