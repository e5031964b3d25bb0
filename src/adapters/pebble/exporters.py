"""The exporters' Pebble layer and files: one ``pgbouncer_exporter`` service per process.

The domain (``domain.observability``) decides which exporters run and with which settings;
this module only writes them the way Pebble and the Go ``pgbouncer_exporter`` read them. The
services live in their own layer (``LAYER_LABEL``) beside the pgbouncer layer, so either can
change without rewriting the other. Each service:

- runs as the workload user, after its pgbouncer process;
- gets its listen address and metrics path as flags, and its pgbouncer process's pidfile
  (the exporter then also reports that process's CPU, memory and start time);
- gets the connection string in ``PGBOUNCER_EXPORTER_CONNECTION_STRING``, which names the
  process's socket folder, the port, the ``pgbouncer`` admin database and the stats user, and
  no password: the driver reads it from the 0600 file ``PGPASSFILE`` names. Nothing secret is
  in the plan, so ``pebble plan`` and the process list show none.
"""

from collections.abc import Iterable

from adapters.pebble.layer import SERVICE_PREFIX, WORKLOAD_USER
from domain.observability import METRICS_PATH, PASSFILE_PATH, ExporterSpec

LAYER_LABEL = "pgbouncer-exporters"
EXPORTER_COMMAND = "pgbouncer_exporter"


def exporter_layer(specs: Iterable[ExporterSpec]) -> dict[str, object]:
    services = {
        spec.service_name: {
            "override": "replace",
            "summary": f"metrics of pgbouncer process {spec.index}",
            "command": (
                f"{EXPORTER_COMMAND} --web.listen-address={spec.listen_address}"
                f" --web.telemetry-path={METRICS_PATH}"
                f" --pgBouncer.pid-file={spec.socket_dir}/pgbouncer.pid"
            ),
            "startup": "enabled",
            "after": [f"{SERVICE_PREFIX}{spec.index}"],
            "user": WORKLOAD_USER,
            "group": WORKLOAD_USER,
            "environment": {
                "PGBOUNCER_EXPORTER_CONNECTION_STRING": spec.connection_string,
                "PGPASSFILE": PASSFILE_PATH,
            },
        }
        for spec in specs
    }
    return {"summary": "one pgbouncer_exporter per pgbouncer process", "services": services}
