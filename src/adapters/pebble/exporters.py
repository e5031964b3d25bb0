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

from collections.abc import Iterable, Mapping

import ops
from ops import pebble

from adapters.errors import first_line
from adapters.pebble.layer import SERVICE_PREFIX, WORKLOAD_USER
from domain.observability import (
    EXPORTER_SERVICE_PREFIX,
    METRICS_PATH,
    PASSFILE_PATH,
    ExporterSpec,
)
from domain.ports import WorkloadUnavailable

_PEBBLE_ERRORS = (pebble.ConnectionError, pebble.APIError, pebble.ChangeError, pebble.PathError)

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


class PebbleExporters:
    """The exporters in the pgbouncer container: their .pgpass file and their services."""

    def __init__(self, container: ops.Container):
        self._container = container

    def read_passfile(self) -> str | None:
        try:
            return self._container.pull(PASSFILE_PATH).read()
        except pebble.PathError as err:
            if err.kind == "not-found":
                return None
            raise _unavailable(f"read {PASSFILE_PATH}", err) from None
        except _PEBBLE_ERRORS as err:
            raise _unavailable(f"read {PASSFILE_PATH}", err) from None

    def write_passfile(self, content: str) -> None:
        try:
            self._container.push(
                PASSFILE_PATH, content, make_dirs=True, permissions=0o600,
                user=WORKLOAD_USER, group=WORKLOAD_USER,
            )  # fmt: skip
        except _PEBBLE_ERRORS as err:
            raise _unavailable(f"write {PASSFILE_PATH}", err) from None

    def retire(self, running: Iterable[int], enabled: Iterable[int]) -> None:
        """Stop the ``running`` exporters and mark the ``enabled`` ones disabled (a layer
        cannot delete a service); the domain read which are which from the services."""
        stop = [f"{EXPORTER_SERVICE_PREFIX}{index}" for index in running]
        disable = [f"{EXPORTER_SERVICE_PREFIX}{index}" for index in enabled]
        try:
            if stop:
                self._container.stop(*stop)
            if disable:
                self._container.add_layer(LAYER_LABEL, _retired(disable), combine=True)  # type: ignore[arg-type]
        except _PEBBLE_ERRORS as err:
            raise _unavailable("stop the exporters", err) from None

    def ensure(self, specs: tuple[ExporterSpec, ...]) -> None:
        """Add the layer where the plan differs, then start what is not running.

        Only the exporter services are touched; a changed one (a new listen port) restarts.
        """
        layer = exporter_layer(specs)
        wanted = layer["services"]
        assert isinstance(wanted, dict)
        try:
            planned = self._container.get_plan().services
            changed = [
                name for name, service in wanted.items()
                if name not in planned or _settings(planned[name].to_dict()) != _settings(service)
            ]  # fmt: skip
            if changed:
                self._container.add_layer(LAYER_LABEL, layer, combine=True)  # type: ignore[arg-type]
            current = self._container.get_services(*wanted)
            stopped = [
                name for name in wanted if name not in current or not current[name].is_running()
            ]
            if changed:
                self._container.restart(*changed)
            rest = [name for name in stopped if name not in changed]
            if rest:
                self._container.start(*rest)
        except _PEBBLE_ERRORS as err:
            raise _unavailable("start the exporters", err) from None


def _unavailable(action: str, err: Exception) -> WorkloadUnavailable:
    return WorkloadUnavailable(f"cannot {action}: {first_line(err)}")


def _settings(service: Mapping[str, object]) -> dict[str, object]:
    """What a service runs, without ``override``: a layer's merge instruction, which a plan
    need not echo back. Comparing it would restart the exporters on every hook."""
    return {key: value for key, value in service.items() if key != "override"}


def _retired(names: Iterable[str]) -> dict[str, object]:
    services = {name: {"override": "merge", "startup": "disabled"} for name in names}
    return {"summary": "exporters retired (no Prometheus related)", "services": services}
