"""The COS relations: the Charmhub libraries' providers, wired to this charm.

- ``metrics-endpoint``: ``MetricsEndpointProvider`` with the jobs ``scrape_jobs`` builds from
  every unit's hostname and process count (the leader publishes them), plus the alert rules
  in ``src/prometheus_alert_rules``;
- ``grafana-dashboard``: ``GrafanaDashboardProvider`` with ``src/grafana_dashboards``;
- ``logging``: ``LogForwarder``, which points Pebble's log forwarding (every service:
  pgbouncer processes and exporters) at Loki (Juju 3.4 or later), with the Loki rules in
  ``src/loki_alert_rules``; forwarding stops when the last Loki leaves.

The libraries are imported only by a unit that has the matching relation (or in that
relation's own hooks): they and ``cosl`` cost about as much to import as ops itself
(``bench/library_imports.py``), and a unit not related to COS should not pay it on every hook.
The exporters themselves are planned with everything else in each hook
(``domain.metrics_service``): they run while a Prometheus is related, and stop when the last
one leaves.
"""

from __future__ import annotations

import logging
import os

import ops

from adapters.juju.hostname import unit_hostname
from adapters.juju.peer_relation import PEER_RELATION
from domain.errors import InvalidInput
from domain.observability import PROCESSES_KEY, UnitTargets, scrape_jobs

logger = logging.getLogger(__name__)

METRICS_RELATION = "metrics-endpoint"
DASHBOARD_RELATION = "grafana-dashboard"
LOGGING_RELATION = "logging"
CONTAINER = "pgbouncer"


def metrics_related(model: ops.Model) -> bool:
    """Whether a Prometheus scrapes this application (then the exporters run)."""
    return bool(model.relations[METRICS_RELATION])


def _wanted(charm: ops.CharmBase, relation: str) -> bool:
    """Whether this hook needs the library of ``relation``: related, or its own hook."""
    hook = os.environ.get("JUJU_HOOK_NAME", "")
    return bool(charm.model.relations[relation]) or hook.startswith(f"{relation}-relation-")


class CosRelations(ops.Object):
    """The COS libraries' providers, made only where their relation exists."""

    def __init__(self, charm: ops.CharmBase, processes: int):
        super().__init__(charm, "cos-relations")
        self._charm = charm
        self._processes = processes
        self.metrics = None
        if _wanted(charm, METRICS_RELATION):
            from charms.prometheus_k8s.v0.prometheus_scrape import MetricsEndpointProvider

            peers = charm.on[PEER_RELATION]
            self.metrics = MetricsEndpointProvider(
                charm,
                relation_name=METRICS_RELATION,
                jobs=[],
                lookaside_jobs_callable=self.scrape_jobs,
                refresh_event=[
                    charm.on[CONTAINER].pebble_ready,
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
                             self._processes)]  # fmt: skip
        relation = charm.model.get_relation(PEER_RELATION)
        for unit in relation.units if relation else ():
            data = relation.data[unit] if relation else {}
            count = data.get(PROCESSES_KEY, "")
            try:
                if not (count.isascii() and count.isdigit()):
                    raise InvalidInput(f"{PROCESSES_KEY}: {count!r} is not a process count")
                units.append(UnitTargets(unit.name, data.get("hostname", ""), int(count)))
            except InvalidInput as err:
                logger.debug("no scrape targets for %s yet: %s", unit.name, err)
        return scrape_jobs(units)
