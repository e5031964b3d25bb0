"""The COS relations and the exporters, wired into the charm's hooks.

In each hook of a unit related to Prometheus (``metrics-endpoint``), after the peer effects,
``Observability.reconcile`` gathers a ``MetricsView`` (the stats password from the peer
secret store, the container's files, the .pgpass file, this unit's process count as
published), asks ``domain.observability.plan_metrics`` and carries the effects out: the
pgbouncer file changes through the charm's ``EffectApplier``, the exporters' through
``PebbleExporters``. Without that relation no exporter runs and no stats user exists: no
port opens and no hook pays for metrics nobody reads.

The COS libraries are imported only by a unit that has the matching relation (or in that
relation's own hooks): they and ``cosl`` cost about as much to import as ops itself
(``bench/cos_imports.py``), and a unit not related to COS should not pay it on every hook.

- ``metrics-endpoint``: ``MetricsEndpointProvider`` with the jobs ``scrape_jobs`` builds from
  every unit's hostname and process count (the leader publishes them), plus the alert rules
  in ``src/prometheus_alert_rules``;
- ``grafana-dashboard``: ``GrafanaDashboardProvider`` with ``src/grafana_dashboards``;
- ``logging``: ``LogForwarder``, which points Pebble's log forwarding (every service:
  pgbouncer processes and exporters) at Loki. It needs Juju 3.4 or later.
"""

from __future__ import annotations

import logging
import os
import secrets
from typing import TYPE_CHECKING

import ops

from adapters.juju.backend import has_credentials
from adapters.juju.hostname import unit_hostname
from adapters.juju.peer_relation import PEER_RELATION
from adapters.juju.secret_store import StoreUnavailable
from adapters.pebble.exporters import PebbleExporters
from domain.errors import InvalidInput
from domain.observability import (
    PROCESSES_KEY,
    STATS_PASSWORD_KEY,
    EnsureExporters,
    GenerateStatsPassword,
    MetricsView,
    PublishProcesses,
    UnitTargets,
    WritePassfile,
    plan_metrics,
    scrape_jobs,
)
from domain.pgb_config import parse_pgb_ini
from domain.ports import WorkloadUnavailable
from domain.status import Severity, StatusReason

if TYPE_CHECKING:
    from app.charm import PgBouncerK8sCharm
    from app.gather import Adapters

logger = logging.getLogger(__name__)

METRICS_RELATION = "metrics-endpoint"
DASHBOARD_RELATION = "grafana-dashboard"
LOGGING_RELATION = "logging"


def _wanted(charm: ops.CharmBase, relation: str) -> bool:
    """Whether this hook needs the library of ``relation``: related, or its own hook."""
    hook = os.environ.get("JUJU_HOOK_NAME", "")
    return bool(charm.model.relations[relation]) or hook.startswith(f"{relation}-relation-")


class Observability(ops.Object):
    def __init__(self, charm: PgBouncerK8sCharm):
        super().__init__(charm, "observability")
        self._charm = charm
        self.metrics = None
        if _wanted(charm, METRICS_RELATION):
            from charms.prometheus_k8s.v0.prometheus_scrape import MetricsEndpointProvider

            peers = charm.on[PEER_RELATION]
            self.framework.observe(
                charm.on[METRICS_RELATION].relation_broken, self._on_metrics_broken
            )
            self.metrics = MetricsEndpointProvider(
                charm,
                relation_name=METRICS_RELATION,
                jobs=[],
                lookaside_jobs_callable=self.scrape_jobs,
                refresh_event=[
                    charm.on["pgbouncer"].pebble_ready,
                    charm.on.update_status,
                    charm.on.leader_elected,
                    charm.on.upgrade_charm,
                    peers.relation_changed,
                    peers.relation_departed,
                ],
            )
        if _wanted(charm, DASHBOARD_RELATION):
            from charms.grafana_k8s.v0.grafana_dashboard import GrafanaDashboardProvider

            self.dashboards = GrafanaDashboardProvider(charm, relation_name=DASHBOARD_RELATION)
        if _wanted(charm, LOGGING_RELATION):
            from charms.loki_k8s.v1.loki_push_api import LogForwarder

            self.logs = LogForwarder(charm, relation_name=LOGGING_RELATION)
            self.framework.observe(
                charm.on[LOGGING_RELATION].relation_broken, self._on_logging_broken
            )

    def _on_metrics_broken(self, _event: ops.RelationBrokenEvent) -> None:
        """The last Prometheus left: stop the exporters (and keep them from starting again)."""
        if any(self._charm.model.relations[METRICS_RELATION]):
            return
        container = self._charm.unit.get_container("pgbouncer")
        if not container.can_connect():
            return
        try:
            PebbleExporters(container).retire()
        except WorkloadUnavailable as err:
            logger.warning("metrics: %s", err)

    def _on_logging_broken(self, _event: ops.RelationBrokenEvent) -> None:
        """Stop forwarding once no Loki is left.

        LogForwarder (loki_push_api 1.22) returns early when no endpoint remains, so the
        last Loki's target would stay enabled in Pebble's plan and Pebble would keep pushing
        to it; its own helper disables every target no longer related.
        """
        from charms.loki_k8s.v1.loki_push_api import _PebbleLogClient

        if any(self._charm.model.relations[LOGGING_RELATION]):
            return
        for container in self._charm.unit.containers.values():
            if container.can_connect():
                _PebbleLogClient.disable_inactive_endpoints(container, {}, self.logs.topology)

    # --- scrape jobs -------------------------------------------------------------------------

    def scrape_jobs(self) -> list[dict[str, object]]:
        """Every process of every unit that has published its hostname and process count."""
        charm = self._charm
        units = [UnitTargets(charm.unit.name, unit_hostname(charm.unit.name, charm.model.name),
                             charm.processes)]  # fmt: skip
        relation = charm.model.get_relation(PEER_RELATION)
        for unit in relation.units if relation else ():
            data = relation.data[unit] if relation else {}
            try:
                units.append(UnitTargets(unit.name, data["hostname"], int(data[PROCESSES_KEY])))
            except (KeyError, ValueError) as err:
                logger.debug("no scrape targets for %s yet: %s", unit.name, err)
        return scrape_jobs(units)

    # --- the exporters -----------------------------------------------------------------------

    def reconcile(self, adapters: Adapters, event: ops.EventBase) -> list[StatusReason]:
        """Plan and apply this hook's metrics work; the reasons to show."""
        charm = self._charm
        relation = adapters.peers.relation
        # No Prometheus, no exporters: no stats user, no metrics port open, no extra work.
        if relation is None or not charm.model.relations[METRICS_RELATION]:
            return []
        container = charm.unit.get_container("pgbouncer")
        if not container.can_connect():
            return []
        workload = adapters.workload
        exporters = PebbleExporters(container)
        try:
            store = adapters.store()
            view = self._view(store.read().get(STATS_PASSWORD_KEY), workload, exporters, relation)
            effects = plan_metrics(view)
            if GenerateStatsPassword() in effects:
                store.update({STATS_PASSWORD_KEY: secrets.token_hex(24)})
                password = store.read().get(STATS_PASSWORD_KEY)
                view = self._view(password, workload, exporters, relation)
                effects = plan_metrics(view)
        except InvalidInput as err:
            # Nothing a retry fixes (listen_port on a metrics port): the operator must act.
            logger.error("metrics: %s", err)
            charm.add_reason(StatusReason(Severity.BLOCKED, f"metrics: {_first_line(err)}"))
            return
        except (WorkloadUnavailable, StoreUnavailable, ops.ModelError) as err:
            self._fail(f"metrics: {_first_line(err)}", event)
            return
        standard = [e for e in effects if not isinstance(e, _OWN)]
        if standard:
            charm.apply_effects(standard, workload, event)
        try:
            for effect in effects:
                match effect:
                    case WritePassfile(content):
                        exporters.write_passfile(content)
                    case EnsureExporters(specs):
                        exporters.ensure(specs)
                    case PublishProcesses(processes):
                        relation.data[charm.unit][PROCESSES_KEY] = str(processes)
        except (WorkloadUnavailable, ops.ModelError) as err:
            reasons.append(self._fail(f"metrics: {_first_line(err)}", event))
        return reasons

    def _view(
        self,
        password: str | None,
        workload: WorkloadPort,
        exporters: PebbleExporters,
        relation: ops.Relation,
    ) -> MetricsView:
        charm = self._charm
        cfg_text = workload.read_cfg()
        try:
            cfg = parse_pgb_ini(cfg_text) if cfg_text is not None else None
        except InvalidInput:
            cfg = None  # the peer flow reports an invalid file
        return MetricsView(
            is_leader=charm.unit.is_leader(),
            processes=charm.processes,
            stats_password=password,
            cfg=cfg,
            auth=workload.read_auth(),
            passfile=exporters.read_passfile(),
            backend_credentials=has_credentials(charm.model),
            published_processes=relation.data[charm.unit].get(PROCESSES_KEY),
        )

    @staticmethod
    def _fail(message: str, event: ops.EventBase) -> StatusReason:
        logger.warning("%s; deferring", message)
        event.defer()
        return StatusReason(Severity.WAITING, message)


_OWN = (GenerateStatsPassword, WritePassfile, EnsureExporters, PublishProcesses)


def _first_line(err: BaseException) -> str:
    text = str(err)
    return text.splitlines()[0] if text else type(err).__name__
