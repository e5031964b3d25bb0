"""The Pebble layer: one pgbouncer service per process, all on one port.

pgbouncer is single-threaded, so a unit runs one process per CPU core (bounded by
``MAX_PROCESSES``: past a few processes the pooler is rarely the bottleneck and each process
holds its own server connections). The processes share ``listen_port`` through
``so_reuseport``; each reads its own copy of pgbouncer.ini from ``instance_<i>/``, which
differs from the main file only in its pidfile, logfile and unix socket folder. Command lines
carry only the ini path: no password ever appears in a process list.
"""

import os

from domain.pgb_config import per_process_dir

LAYER_LABEL = "pgbouncer"
SERVICE_PREFIX = "pgbouncer_"
WORKLOAD_USER = "postgres"
MAX_PROCESSES = 4


def default_processes() -> int:
    return max(1, min(os.cpu_count() or 1, MAX_PROCESSES))


def service_names(processes: int) -> list[str]:
    return [f"{SERVICE_PREFIX}{index}" for index in range(processes)]


def pgbouncer_layer(processes: int) -> dict[str, object]:
    services = {
        name: {
            "override": "replace",
            "summary": f"pgbouncer process {index}",
            "command": f"pgbouncer {per_process_dir(index)}/pgbouncer.ini",
            "startup": "enabled",
            "user": WORKLOAD_USER,
            "group": WORKLOAD_USER,
        }
        for index, name in enumerate(service_names(processes))
    }
    return {"summary": "pgbouncer processes sharing one port", "services": services}
