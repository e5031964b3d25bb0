"""The pgbouncer container behind the ``WorkloadPort``, through Pebble.

What the real Pebble does (``platform-facts.md``) decides the shape of each operation:

- **Files.** Pushed whole and atomically, owned by the workload user, mode 0600. Pebble gives
  owner and mode only to folders it creates and leaves existing ones as they are, so before
  writing pgbouncer.ini the workload folder and each ``instance_<i>/`` are checked (one
  ``list_files`` for the folder, one for its instances; the parent only when the folder is
  missing or unusable) and made ``0700``, owned by the workload user, when missing or
  unusable (a folder nothing but this charm writes is emptied and made again; the workload
  folder keeps its files: config, auth file and the unit's TLS files). No push makes folders
  (Pebble would make them 0755). The per-process copies are written first and the main file
  last: the unit compares against the main file, so it must not claim a version the copies do
  not have yet. The TLS files (key, certificate, CAs) are pushed like the others: 0600, the
  workload user's, in the workload folder.
- **Plan.** A layer cannot delete a service, so services beyond the current process count
  are replaced by disabled ones and stopped. The layer's checks depend on ``listen_port`` and
  ``listen_addr``, read from the config this adapter wrote or read in this hook.
- **Reload.** ``send_signal`` signals the running services and *then* fails with
  ``APIError`` 500 when one is not running, whatever the cause; so the reload signals every
  service (SIGHUP: pgbouncer re-reads its files and keeps its clients) and, when that fails,
  asks which run (``get_services``) and starts the others. A running process is never
  restarted by a reload.
- **Failures.** A failed start is a ``ChangeError`` whose first line says nothing; the error
  becomes ``WorkloadUnavailable`` whose first line names the process and pgbouncer's own
  reason (its ERROR or FATAL line), and the whole text is logged.

Nothing but ``WorkloadUnavailable`` escapes.
"""

import logging
import re
from collections.abc import Mapping
from typing import Any

import ops
from ops import pebble

from adapters.errors import first_line
from adapters.pebble.layer import (
    LAYER_LABEL,
    WORKLOAD_USER,
    check_name,
    pgbouncer_layer,
    process_index,
    service_name,
)
from domain.errors import InvalidInput
from domain.observability import EXPORTER_SERVICE_PREFIX, ExporterState
from domain.pgb_config import (
    AUTH_PATH,
    BACKEND_TLS_CA_PATH,
    CFG_PATH,
    CLIENT_TLS_CA_PATH,
    CLIENT_TLS_CERT_PATH,
    CLIENT_TLS_KEY_PATH,
    PGB_DIR,
    PgbConfig,
    parse_pgb_ini,
    per_process_config,
    per_process_dir,
    render_pgb_ini,
)
from domain.ports import WorkloadUnavailable
from domain.processes import ProcessCondition, ProcessState
from domain.tls import (
    NOTHING_IN_PLACE,
    ClientTlsFiles,
    InvalidTlsMaterial,
    TlsInPlace,
    effective_config,
    served_by,
)

logger = logging.getLogger(__name__)

FILE_MODE = 0o600
FOLDER_MODE = 0o700
# What a remade workload folder gets back: the files the unit wrote there itself.
_KEPT_FILES = (
    CFG_PATH,
    AUTH_PATH,
    CLIENT_TLS_KEY_PATH,
    CLIENT_TLS_CERT_PATH,
    CLIENT_TLS_CA_PATH,
    BACKEND_TLS_CA_PATH,
)
_PEBBLE_ERRORS = (pebble.ConnectionError, pebble.APIError, pebble.ChangeError, pebble.PathError)
_STARTED_SERVICE = re.compile(r'Start service "([^"]+)"')
# pgbouncer's lines: "<date> <time> <zone> [<pid>] ERROR|FATAL <reason>".
_PGBOUNCER_REASON = re.compile(r"\[\d+\] (?:ERROR|FATAL) (.+)$")


def _unavailable(action: str, err: Exception) -> WorkloadUnavailable:
    return WorkloadUnavailable(f"cannot {action}: {first_line(err)}")


def start_failure(action: str, err: pebble.ChangeError) -> WorkloadUnavailable:
    """``WorkloadUnavailable`` whose first line names the failed processes and pgbouncer's
    reason, and whose following lines are Pebble's whole text."""
    text = str(err)
    services = list(dict.fromkeys(_STARTED_SERVICE.findall(text)))
    indices = [str(i) for name in services if (i := process_index(name)) is not None]
    reasons = list(
        dict.fromkeys(
            m.group(1).strip()
            for line in text.splitlines()
            if (m := _PGBOUNCER_REASON.search(line))
        )
    )
    if indices:
        who = "pgbouncer process" + ("es " if len(indices) > 1 else " ") + ", ".join(indices)
    else:
        who = "pgbouncer"
    why = "; ".join(reasons) if reasons else first_line(err)
    logger.error("cannot %s: %s", action, text)
    return WorkloadUnavailable(f"{who} did not start: {why}\n{text}")


class PebbleWorkload:
    def __init__(self, container: ops.Container, processes: int):
        self._container = container
        self._processes = processes
        # The main config this hook read or wrote: the layer's checks need its port.
        self._cfg_text: str | None = None
        # The plan's services as gathering read them (``_services_now``).
        self._services: Mapping[str, pebble.ServiceInfo] | None = None

    def is_reachable(self) -> bool:
        return self._container.can_connect()

    # -- files -------------------------------------------------------------------------------

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
        text = self._pull(CFG_PATH)
        self._cfg_text = text
        return text

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
        # No make_dirs: Pebble would make missing folders 0755; _ensure_folders makes them
        # the workload user's, 0700, when a folder is missing.
        try:
            try:
                self._push_file(path, content)
            except pebble.PathError as err:
                if err.kind != "not-found":
                    raise
                self._ensure_folders()
                self._push_file(path, content)
        except _PEBBLE_ERRORS as err:
            raise _unavailable(f"write {path}", err) from None

    def _push_file(self, path: str, content: str) -> None:
        self._container.push(
            path, content, permissions=FILE_MODE, user=WORKLOAD_USER, group=WORKLOAD_USER
        )

    def write_cfg(self, content: str, tls: TlsInPlace = NOTHING_IN_PLACE) -> None:
        try:
            cfg = parse_pgb_ini(content)
        except InvalidInput as err:
            # The domain never asks for this; refuse rather than write a file pgbouncer rejects.
            raise WorkloadUnavailable(
                f"refusing to write an invalid pgbouncer.ini: {err}"
            ) from None
        try:
            self._ensure_folders()
        except _PEBBLE_ERRORS as err:
            raise _unavailable(f"prepare {PGB_DIR}", err) from None
        cfg = effective_config(cfg, tls)
        for index in range(self._processes):
            folder = per_process_dir(index)
            self._push(f"{folder}/pgbouncer.ini", render_pgb_ini(per_process_config(cfg, index)))
        # The main file last: it is what the unit compares against.
        self._push(CFG_PATH, content)
        self._cfg_text = content

    def write_auth(self, content: str) -> None:
        self._push(AUTH_PATH, content)

    def _remove(self, path: str) -> None:
        try:
            self._container.remove_path(path)
        except pebble.PathError as err:
            if err.kind != "not-found":
                raise _unavailable(f"remove {path}", err) from None
        except _PEBBLE_ERRORS as err:
            raise _unavailable(f"remove {path}", err) from None

    def remove_auth(self) -> None:
        self._remove(AUTH_PATH)

    # --- TLS files (domain.tls): read only in the hooks that need them ----------------------

    def read_served_tls(self) -> TlsInPlace:
        return served_by(self._pull(f"{per_process_dir(0)}/pgbouncer.ini"))

    def read_client_tls(self) -> ClientTlsFiles | None:
        key, cert, ca = (
            self._pull(path)
            for path in (CLIENT_TLS_KEY_PATH, CLIENT_TLS_CERT_PATH, CLIENT_TLS_CA_PATH)
        )
        if key is None or cert is None or ca is None:
            return None
        try:
            return ClientTlsFiles(key=key, cert=cert, ca=ca)
        except InvalidTlsMaterial:
            return None  # damaged: the unit writes them again

    def write_client_tls(self, files: ClientTlsFiles) -> None:
        # The key first: a certificate never sits next to a key it does not match for longer
        # than the next push, and the copies name none of them until all three are there.
        self._push(CLIENT_TLS_KEY_PATH, files.key)
        self._push(CLIENT_TLS_CERT_PATH, files.cert)
        self._push(CLIENT_TLS_CA_PATH, files.ca)

    def remove_client_tls(self) -> None:
        for path in (CLIENT_TLS_KEY_PATH, CLIENT_TLS_CERT_PATH, CLIENT_TLS_CA_PATH):
            self._remove(path)

    def read_backend_ca(self) -> str | None:
        return self._pull(BACKEND_TLS_CA_PATH)

    def write_backend_ca(self, ca: str) -> None:
        self._push(BACKEND_TLS_CA_PATH, ca)

    def remove_backend_ca(self) -> None:
        self._remove(BACKEND_TLS_CA_PATH)

    # -- folders -------------------------------------------------------------------------

    def _ensure_folders(self) -> None:
        parent, name = PGB_DIR.rsplit("/", 1)
        base = self._entry(parent, name)
        if base is None or (base.type != pebble.FileType.SYMLINK and not _usable(base, "rwx")):
            # Pebble leaves an existing parent as it is: the workload user must enter it.
            parent_info = self._stat(parent)
            if parent_info is not None and not _usable(parent_info, "--x"):
                raise WorkloadUnavailable(
                    f"the workload user {WORKLOAD_USER} cannot enter {parent} "
                    f"({_describe(parent_info)}); the image must let it"
                )
        if base is None:
            self._make_dir(PGB_DIR)
        elif base.type == pebble.FileType.SYMLINK:
            pass  # the image points the folder elsewhere (a volume, say): its owner decides
        elif not _usable(base, "rwx"):
            self._remake_workload_folder(base)
        instances = {
            info.name: info for info in self._container.list_files(PGB_DIR, pattern="instance_*")
        }
        for index in range(self._processes):
            folder = per_process_dir(index)
            info = instances.get(folder.rsplit("/", 1)[1])
            if info is not None and _usable(info, "rwx"):
                continue
            if info is not None:
                # Only pgbouncer's derived files live there (ini copy, pidfile, socket).
                logger.warning("remaking %s (%s)", folder, _describe(info))
                self._container.remove_path(folder, recursive=True)
            self._make_dir(folder)

    def _remake_workload_folder(self, info: pebble.FileInfo) -> None:
        logger.warning(
            "remaking %s (%s): the workload user %s cannot use it",
            PGB_DIR,
            _describe(info),
            WORKLOAD_USER,
        )
        kept = {path: self._pull(path) for path in _KEPT_FILES}
        self._container.remove_path(PGB_DIR, recursive=True)
        self._make_dir(PGB_DIR)
        for path, text in kept.items():
            if text is not None:
                self._push(path, text)

    def _make_dir(self, path: str) -> None:
        self._container.make_dir(
            path,
            make_parents=True,
            permissions=FOLDER_MODE,
            user=WORKLOAD_USER,
            group=WORKLOAD_USER,
        )

    def _entry(self, folder: str, name: str) -> pebble.FileInfo | None:
        """``folder/name`` as its folder lists it, or None when it or the folder is missing."""
        found = self._list(folder, pattern=name)
        return next((info for info in found or () if info.name == name), None)

    def _stat(self, path: str) -> pebble.FileInfo | None:
        found = self._list(path, itself=True)
        return found[0] if found else None

    def _list(self, path: str, **options: Any) -> list[pebble.FileInfo] | None:
        """Pebble's listing of ``path``; None when the path is missing (Pebble says so with
        a 404 or a ``not-found`` path error)."""
        try:
            return self._container.list_files(path, **options)
        except pebble.APIError as err:
            if err.code == 404:
                return None
            raise
        except pebble.PathError as err:
            if err.kind == "not-found":
                return None
            raise

    # -- processes -----------------------------------------------------------------------

    def _services_now(self) -> Mapping[str, pebble.ServiceInfo]:
        """Every service of the plan, asked once per hook: the processes and the exporters
        are read from the same answer (the effects that start or stop them ask again)."""
        if self._services is None:
            self._services = self._container.get_services()
        return self._services

    def process_states(self) -> tuple[ProcessState, ...]:
        """Each process's state: its service's status and its check's (``domain.processes``)."""
        names = [service_name(i) for i in range(self._processes)]
        try:
            services = self._services_now()
            checks = self._container.get_checks(*[check_name(i) for i in range(self._processes)])
        except _PEBBLE_ERRORS as err:
            raise _unavailable("read the pgbouncer services", err) from None
        states = []
        for index, name in enumerate(names):
            info = services.get(name)
            check = checks.get(check_name(index))
            if info is None or not info.is_running():
                current = (
                    "not in the plan"
                    if info is None
                    else str(getattr(info.current, "value", info.current))
                )
                states.append(ProcessState(index, ProcessCondition.STOPPED, current))
            elif check is not None and check.status == pebble.CheckStatus.DOWN:
                states.append(ProcessState(index, ProcessCondition.NOT_SERVING, "check down"))
            else:
                states.append(ProcessState(index, ProcessCondition.SERVING))
        return tuple(states)

    def exporter_states(self) -> tuple[ExporterState, ...]:
        """The exporter services in the plan (``domain.observability``), from the answer the
        processes were read from."""
        try:
            services = self._services_now()
        except _PEBBLE_ERRORS as err:
            raise _unavailable("read the exporter services", err) from None
        states = []
        for name, info in services.items():
            index = name.removeprefix(EXPORTER_SERVICE_PREFIX)
            if name.startswith(EXPORTER_SERVICE_PREFIX) and index.isascii() and index.isdigit():
                enabled = info.startup == pebble.ServiceStartup.ENABLED
                states.append(ExporterState(int(index), info.is_running(), enabled))
        return tuple(sorted(states, key=lambda state: state.index))

    def reload(self) -> None:
        """SIGHUP the running processes, start the others; restart none."""
        try:
            self._ensure_plan()
            names = [service_name(i) for i in range(self._processes)]
            try:
                self._container.send_signal("SIGHUP", *names)
                return
            except pebble.APIError as err:
                # Real Pebble has signalled every running service, and fails for the others
                # with code 500 whatever the cause: ask which run, start the others.
                logger.info("SIGHUP not delivered everywhere: %s", first_line(err))
            self._start_the_stopped(names)
        except pebble.ChangeError as err:
            raise start_failure("reload pgbouncer", err) from None
        except _PEBBLE_ERRORS as err:
            raise _unavailable("reload pgbouncer", err) from None

    def start_stopped(self) -> None:
        """Start the processes that are not running (the plan put back first if lost)."""
        try:
            self._ensure_plan()
            self._start_the_stopped([service_name(i) for i in range(self._processes)])
        except pebble.ChangeError as err:
            raise start_failure("start pgbouncer", err) from None
        except _PEBBLE_ERRORS as err:
            raise _unavailable("start pgbouncer", err) from None

    def _start_the_stopped(self, names: list[str]) -> None:
        running = self._running(names)
        stopped = [name for name in names if name not in running]
        if stopped:
            logger.info("starting stopped pgbouncer services: %s", ", ".join(stopped))
            self._container.start(*stopped)

    def restart(self) -> None:
        """Stop and start every process (for settings pgbouncer cannot change online)."""
        try:
            self._ensure_plan()
            self._container.restart(*[service_name(i) for i in range(self._processes)])
        except pebble.ChangeError as err:
            raise start_failure("restart pgbouncer", err) from None
        except _PEBBLE_ERRORS as err:
            raise _unavailable("restart pgbouncer", err) from None

    def _running(self, names: list[str]) -> list[str]:
        services = self._container.get_services(*names)
        return [name for name in names if name in services and services[name].is_running()]

    def _ensure_plan(self) -> None:
        """Put the layer for the current process count in the plan if it is not there, and
        stop and disable the services of processes beyond that count."""
        port, tcp = self._listen_settings()
        plan = self._container.get_plan()
        ours = {i for name in plan.services if (i := process_index(name)) is not None}
        retired = sorted(i for i in ours if i >= self._processes)
        layer = pebble.Layer(pgbouncer_layer(self._processes, port, tcp, retired))  # type: ignore[arg-type]
        if not _plan_has(plan, layer):
            self._container.add_layer(LAYER_LABEL, layer, combine=True)
        if retired:
            names = [service_name(i) for i in retired]
            running = [
                n
                for n, info in self._container.get_services(*names).items()
                if info.current != pebble.ServiceStatus.INACTIVE
            ]
            if running:
                logger.info("stopping retired pgbouncer services: %s", ", ".join(running))
                self._container.stop(*running)

    def _listen_settings(self) -> tuple[int, bool]:
        text = self._cfg_text if self._cfg_text is not None else self.read_cfg()
        if text is None:
            raise WorkloadUnavailable(f"cannot start pgbouncer: {CFG_PATH} is not there")
        try:
            cfg: PgbConfig = parse_pgb_ini(text)
        except InvalidInput as err:
            raise WorkloadUnavailable(f"cannot start pgbouncer: {CFG_PATH}: {err}") from None
        return int(cfg.setting("listen_port") or "6432"), bool(cfg.setting("listen_addr"))


def _plan_has(plan: pebble.Plan, layer: pebble.Layer) -> bool:
    """Whether every service and check of ``layer`` is in ``plan`` with the fields the layer
    gives it (the plan may add defaults of its own)."""
    entries = [(plan.services, name, s.to_dict()) for name, s in layer.services.items()]
    entries += [(plan.checks, name, c.to_dict()) for name, c in layer.checks.items()]
    for planned, name, wanted in entries:
        if name not in planned:
            return False
        have: dict[str, Any] = dict(planned[name].to_dict())
        if any(have.get(key) != value for key, value in wanted.items() if key != "override"):
            return False
    return True


def _usable(info: pebble.FileInfo, needed: str) -> bool:
    """Whether the workload user has the ``needed`` rights (``"rwx"``, ``"--x"``) on a folder,
    judged by owner, group and mode as the kernel would (supplementary groups ignored)."""
    if info.type != pebble.FileType.DIRECTORY:
        return False
    mode = info.permissions
    if info.user == WORKLOAD_USER:
        bits = mode >> 6
    elif info.group == WORKLOAD_USER:
        bits = mode >> 3
    else:
        bits = mode
    want = sum(bit for char, bit in zip(needed, (4, 2, 1), strict=True) if char != "-")
    return (bits & want) == want


def _describe(info: pebble.FileInfo) -> str:
    kind = getattr(info.type, "value", info.type)
    return f"{kind} {info.user}:{info.group} {info.permissions:04o}"
