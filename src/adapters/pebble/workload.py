"""The pgbouncer container behind the ``WorkloadPort``, through Pebble.

Files are pushed whole, atomically (Pebble writes a temporary file and renames it), owned by
the workload user with mode 0600. Writing pgbouncer.ini also writes each process's derived
copy, so a reload can never find the main file and a copy disagreeing.

Reload is one ``send_signal("SIGHUP", ...)`` naming every service: pgbouncer re-reads its
files and keeps every client. Restart (a restart-only setting changed, or nothing runs yet)
adds the layer and restarts the services. Pebble's errors are translated into
``WorkloadUnavailable`` with a short message; nothing else escapes.
"""

import ops
from ops import pebble

from adapters.pebble.layer import LAYER_LABEL, WORKLOAD_USER, pgbouncer_layer, service_names
from domain.errors import InvalidInput
from domain.pgb_config import (
    AUTH_PATH,
    CFG_PATH,
    parse_pgb_ini,
    per_process_config,
    per_process_dir,
    render_pgb_ini,
)
from domain.ports import WorkloadUnavailable

_FILE_MODE = 0o600
_PEBBLE_ERRORS = (pebble.ConnectionError, pebble.APIError, pebble.ChangeError, pebble.PathError)


def _unavailable(action: str, err: Exception) -> WorkloadUnavailable:
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return WorkloadUnavailable(f"cannot {action}: {text}")


class PebbleWorkload:
    def __init__(self, container: ops.Container, processes: int):
        self._container = container
        self._processes = processes

    def is_reachable(self) -> bool:
        return self._container.can_connect()

    def _pull(self, path: str) -> str | None:
        try:
            return self._container.pull(path).read()
        except pebble.PathError as err:
            if err.kind == "not-found":
                return None
            raise _unavailable(f"read {path}", err) from None
        except _PEBBLE_ERRORS as err:
            raise _unavailable(f"read {path}", err) from None

    def read_cfg(self) -> str | None:
        return self._pull(CFG_PATH)

    def pgbouncer_version(self) -> str:
        """``pgbouncer --version`` run in the container: the image's own binary."""
        try:
            stdout, _stderr = self._container.exec(
                ["pgbouncer", "--version"], timeout=30
            ).wait_output()
        except (*_PEBBLE_ERRORS, pebble.ExecError, pebble.TimeoutError) as err:
            raise _unavailable("ask pgbouncer its version", err) from None
        return stdout

    def read_auth(self) -> str | None:
        return self._pull(AUTH_PATH)

    def _push(self, path: str, content: str) -> None:
        try:
            self._container.push(
                path,
                content,
                make_dirs=True,
                permissions=_FILE_MODE,
                user=WORKLOAD_USER,
                group=WORKLOAD_USER,
            )
        except _PEBBLE_ERRORS as err:
            raise _unavailable(f"write {path}", err) from None

    def write_cfg(self, content: str) -> None:
        try:
            cfg = parse_pgb_ini(content)
        except InvalidInput as err:
            # The domain never asks for this; refuse rather than write a file pgbouncer rejects.
            raise WorkloadUnavailable(
                f"refusing to write an invalid pgbouncer.ini: {err}"
            ) from None
        for index in range(self._processes):
            # make_dirs creates instance_<i>/ owned by the workload user, so pgbouncer can
            # write its pidfile, log and socket there.
            folder = per_process_dir(index)
            self._push(f"{folder}/pgbouncer.ini", render_pgb_ini(per_process_config(cfg, index)))
        # The main file last: it is what the unit compares against, so it must not claim a
        # version the per-process copies do not have yet.
        self._push(CFG_PATH, content)

    def write_auth(self, content: str) -> None:
        self._push(AUTH_PATH, content)

    def remove_auth(self) -> None:
        try:
            self._container.remove_path(AUTH_PATH)
        except pebble.PathError as err:
            if err.kind != "not-found":
                raise _unavailable(f"remove {AUTH_PATH}", err) from None
        except _PEBBLE_ERRORS as err:
            raise _unavailable(f"remove {AUTH_PATH}", err) from None

    def reload(self) -> None:
        names = service_names(self._processes)
        try:
            self._container.send_signal("SIGHUP", *names)
        except pebble.APIError:
            # A service that is not running cannot be signalled: start them all instead.
            self.restart()
        except _PEBBLE_ERRORS as err:
            raise _unavailable("reload pgbouncer", err) from None

    def restart(self) -> None:
        try:
            self._container.add_layer(LAYER_LABEL, pgbouncer_layer(self._processes), combine=True)  # type: ignore[arg-type]
            self._container.restart(*service_names(self._processes))
        except _PEBBLE_ERRORS as err:
            raise _unavailable("restart pgbouncer", err) from None
