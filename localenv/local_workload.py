"""The workload port with real pgbouncer processes on this machine.

The model
---------
In the deployed charm the workload is the ``pgbouncer`` container: its files live under
``/var/lib/postgresql/pgbouncer`` (``domain.pgb_config.PGB_DIR``) and Pebble runs one pgbouncer
process per CPU core. ``LocalWorkload`` is that container on this machine:

- the container folder maps to a local ``base_dir``: ``pgbouncer.ini`` and ``userlist.txt`` are
  ``base_dir/pgbouncer.ini`` and ``base_dir/userlist.txt``, written atomically (a temporary file
  in the same folder, owned by the workload user, mode 0600, renamed over the old one), so a
  pgbouncer reading at any moment sees the old file or the new one, never half of one;
- one pgbouncer process per instance ``i`` (``processes`` of them) runs in the foreground from
  its own copy of the config, ``per_process_dir(i, base_dir)/pgbouncer.ini``, derived from the
  main file by ``per_process_config``: the copies differ only in their pidfile, logfile and
  unix socket folder, and all share ``listen_port`` through ``so_reuseport``;
- ``reload()`` is SIGHUP to every running process (pgbouncer re-reads its config and auth file
  and keeps its clients); a process that is not running is started instead;
- ``restart()`` is what Pebble does to restart a service: SIGTERM (pgbouncer's immediate
  shutdown), a wait for the process to exit (SIGKILL after ``stop_timeout``), then a new start.
  Settings pgbouncer cannot change online, such as ``listen_port``, need it.

``base_dir`` is created if missing and, like the instance folders, given mode 0700. When this
process is root, files and folders are owned by ``owner`` (the contract's ``postgres``), who
must be able to reach ``base_dir`` (checked up front: pgbouncer re-reads its files as that
user), and pgbouncer runs as that user from the start, as Pebble runs it (the layer's
``user``): its files, and its own ``/proc/<pid>/fd`` that the serving check reads, are that
user's. When not root, files keep the current user as owner, and the per-process copies name
the current user as ``user`` (pgbouncer cannot switch users and refuses to start otherwise),
so the demo and the tests run as any user.

A start waits until the process accepts connections on its unix socket and, when the config
has a ``listen_addr``, holds a listening TCP socket on ``listen_port`` (looked up in /proc for
that very process: pgbouncer only warns when it cannot bind an address and runs on without
it). A process that exits, comes up without listening, or does not listen within
``start_timeout`` is stopped, and ``PgbouncerStartFailed`` carries the end of its log; it is a
``WorkloadUnavailable``, so the application layer treats it as a workload it cannot use now.
Each start truncates ``instance_<i>/console.log``, the process's own stdout and stderr (the
same lines as its logfile, plus errors from before the logfile is open).

The counters ``signals_sent`` (every signal sent to a pgbouncer process: SIGHUP, SIGTERM,
SIGKILL) and ``starts`` (processes started) let tests and benchmarks tell a reload from a
restart. Processes still running when the object is garbage collected or the interpreter
exits are terminated, so a failed test leaves no pgbouncer behind.
"""

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from collections.abc import Iterator
from types import TracebackType

from adapters.pebble.workload import FOLDER_MODE  # the same folder mode in both adapters
from domain.observability import ExporterState
from domain.pgb_config import (
    BACKEND_TLS_CA_PATH,
    CLIENT_TLS_CA_PATH,
    CLIENT_TLS_CERT_PATH,
    CLIENT_TLS_KEY_PATH,
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

CFG_NAME = "pgbouncer.ini"
AUTH_NAME = "userlist.txt"
# What the process writes to stdout/stderr (the log lines, and errors from before the logfile
# is open), truncated at each start of that instance.
CONSOLE_NAME = "console.log"


class PgbouncerStartFailed(WorkloadUnavailable):
    """A pgbouncer process exited or did not listen in time; the message ends with its log."""


def find_pgbouncer() -> str:
    """The path of the pgbouncer program, with a clear message when it is not installed."""
    found = shutil.which("pgbouncer")
    if found is None and os.access("/usr/sbin/pgbouncer", os.X_OK):
        found = "/usr/sbin/pgbouncer"
    if found is None:
        raise FileNotFoundError(
            "pgbouncer is not installed: install it with `apt-get install pgbouncer` "
            "(or run scripts/setup.sh)"
        )
    return found


class _Instance:
    """Where one pgbouncer process keeps its config, socket and logs."""

    def __init__(self, index: int, base_dir: str) -> None:
        self.index = index
        self.dir = per_process_dir(index, base_dir)
        self.cfg_path = os.path.join(self.dir, CFG_NAME)
        self.console_path = os.path.join(self.dir, CONSOLE_NAME)


class LocalWorkload:
    """``domain.ports.WorkloadPort`` with real pgbouncer processes under ``base_dir``."""

    def __init__(
        self,
        base_dir: str,
        processes: int = 2,
        owner: str = "postgres",
        *,
        pgbouncer_bin: str | None = None,
        start_timeout: float = 10.0,
        stop_timeout: float = 10.0,
        listen_addr: str | None = None,
    ) -> None:
        if processes < 1:
            raise ValueError(f"processes must be at least 1, not {processes}")
        self.base_dir = os.path.abspath(base_dir)
        self.processes = processes
        self.owner = owner
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        # This "pod's" own address: the copies listen there instead of the config's
        # listen_addr, so several local units can share a port and still be told apart.
        self.listen_addr = listen_addr
        self.signals_sent = 0
        self.starts = 0
        self._bin = pgbouncer_bin or find_pgbouncer()
        self._ids = _owner_ids(owner)
        self._reachable = True
        self._instances = [_Instance(i, self.base_dir) for i in range(processes)]
        self._procs: dict[int, subprocess.Popen[bytes]] = {}
        self._finalizer = weakref.finalize(self, _terminate, self._procs)
        os.makedirs(self.base_dir, exist_ok=True)
        self._own(self.base_dir, FOLDER_MODE)
        if self._ids is not None:
            _check_reachable_by(self._ids, owner, os.path.dirname(self.base_dir))

    # -- reachability -----------------------------------------------------------------------

    def is_reachable(self) -> bool:
        return self._reachable

    def set_reachable(self, reachable: bool) -> None:
        """Make every port method but ``is_reachable`` fail as an unreachable container would."""
        self._reachable = reachable

    def _check_reachable(self) -> None:
        if not self._reachable:
            raise WorkloadUnavailable(f"the local workload in {self.base_dir} is unreachable")

    # -- files -------------------------------------------------------------------------------

    @property
    def cfg_path(self) -> str:
        return os.path.join(self.base_dir, CFG_NAME)

    @property
    def auth_path(self) -> str:
        return os.path.join(self.base_dir, AUTH_NAME)

    def instance_dir(self, index: int) -> str:
        """The folder of process ``index``: its config copy, pidfile, log and unix socket."""
        return self._instances[index].dir

    def read_cfg(self) -> str | None:
        self._check_reachable()
        return _read(self.cfg_path)

    def read_auth(self) -> str | None:
        self._check_reachable()
        return _read(self.auth_path)

    def write_cfg(self, content: str, tls: TlsInPlace = NOTHING_IN_PLACE) -> None:
        """Write every per-process copy, then pgbouncer.ini (what the unit compares against,
        so it must not claim a version the copies do not have); InvalidPgbConfig writes
        nothing, and a folder that cannot be written raises ``WorkloadUnavailable``.

        The copies keep the TLS settings ``tls`` says are in place, with the TLS paths moved
        into ``base_dir`` as the other per-process paths are.
        """
        self._check_reachable()
        cfg = effective_config(parse_pgb_ini(content), tls, self.base_dir)
        if self._ids is None:
            # Not root: pgbouncer cannot switch users, so its copies name the current one.
            cfg = cfg.with_settings({"user": pwd.getpwuid(os.getuid()).pw_name})
        if self.listen_addr is not None and cfg.setting("listen_addr") is not None:
            cfg = cfg.with_settings({"listen_addr": self.listen_addr})
        copies = [
            render_pgb_ini(per_process_config(cfg, instance.index, self.base_dir))
            for instance in self._instances
        ]
        with _io_errors("write pgbouncer.ini"):
            for instance in self._instances:
                os.makedirs(instance.dir, exist_ok=True)
                self._own(instance.dir, FOLDER_MODE)
            writes = [(i.cfg_path, text) for i, text in zip(self._instances, copies, strict=True)]
            self._write_all([*writes, (self.cfg_path, content)])

    def write_auth(self, content: str) -> None:
        self._check_reachable()
        with _io_errors("write the auth file"):
            self._write(self.auth_path, content)

    def remove_auth(self) -> None:
        self._check_reachable()
        with _io_errors("remove the auth file"), contextlib.suppress(FileNotFoundError):
            os.unlink(self.auth_path)

    # -- TLS files (domain.tls) --------------------------------------------------------------

    def tls_path(self, container_path: str) -> str:
        """Where one of the charm's TLS files (a container path) is on this machine."""
        return os.path.join(self.base_dir, os.path.basename(container_path))

    def read_served_tls(self) -> TlsInPlace:
        self._check_reachable()
        return served_by(_read(self._instances[0].cfg_path))

    def read_client_tls(self) -> ClientTlsFiles | None:
        self._check_reachable()
        key, cert, ca = (
            _read(self.tls_path(path))
            for path in (CLIENT_TLS_KEY_PATH, CLIENT_TLS_CERT_PATH, CLIENT_TLS_CA_PATH)
        )
        if key is None or cert is None or ca is None:
            return None
        try:
            return ClientTlsFiles(key=key, cert=cert, ca=ca)
        except InvalidTlsMaterial:
            return None

    def write_client_tls(self, files: ClientTlsFiles) -> None:
        self._check_reachable()
        with _io_errors("write the TLS files"):
            self._write_all(
                [
                    (self.tls_path(CLIENT_TLS_KEY_PATH), files.key),
                    (self.tls_path(CLIENT_TLS_CERT_PATH), files.cert),
                    (self.tls_path(CLIENT_TLS_CA_PATH), files.ca),
                ]
            )

    def remove_client_tls(self) -> None:
        self._check_reachable()
        with _io_errors("remove the TLS files"):
            for path in (CLIENT_TLS_KEY_PATH, CLIENT_TLS_CERT_PATH, CLIENT_TLS_CA_PATH):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.tls_path(path))

    def read_backend_ca(self) -> str | None:
        self._check_reachable()
        return _read(self.tls_path(BACKEND_TLS_CA_PATH))

    def write_backend_ca(self, ca: str) -> None:
        self._check_reachable()
        with _io_errors("write the backend CA"):
            self._write(self.tls_path(BACKEND_TLS_CA_PATH), ca)

    def remove_backend_ca(self) -> None:
        self._check_reachable()
        with _io_errors("remove the backend CA"), contextlib.suppress(FileNotFoundError):
            os.unlink(self.tls_path(BACKEND_TLS_CA_PATH))

    def _write(self, path: str, content: str) -> None:
        self._write_all([(path, content)])

    def _write_all(self, files: list[tuple[str, str]]) -> None:
        """Write every file to a temporary one beside it, then rename them in order: a folder
        that refuses one file (read-only, full) leaves every file as it was."""
        staged: list[tuple[str, str]] = []
        try:
            for path, content in files:
                folder, name = os.path.split(path)
                fd, tmp_path = tempfile.mkstemp(prefix=f".{name}.", dir=folder)
                staged.append((tmp_path, path))
                with os.fdopen(fd, "w", encoding="utf-8") as file:
                    if self._ids is not None:
                        os.fchown(file.fileno(), *self._ids)
                    os.fchmod(file.fileno(), 0o600)
                    file.write(content)
            for tmp_path, path in staged:
                os.replace(tmp_path, path)
        except BaseException:
            for tmp_path, _ in staged:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp_path)
            raise

    def _own(self, path: str, mode: int) -> None:
        if self._ids is not None:
            os.chown(path, *self._ids)
        os.chmod(path, mode)

    # -- processes ---------------------------------------------------------------------------

    def pids(self) -> list[int | None]:
        """The pid of each instance's process, None where none is running."""
        return [
            proc.pid if (proc := self._procs.get(i)) is not None and proc.poll() is None else None
            for i in range(self.processes)
        ]

    def reload(self) -> None:
        """SIGHUP every running process; start those that are not running."""
        self._check_reachable()
        to_start = []
        for instance in self._instances:
            proc = self._procs.get(instance.index)
            if proc is not None and proc.poll() is None:
                self._signal(proc, signal.SIGHUP)
            else:
                to_start.append(instance)
        self._start(to_start)

    def pgbouncer_version(self) -> str:
        """What this machine's ``pgbouncer --version`` prints."""
        self._check_reachable()
        return subprocess.run(
            [self._bin, "--version"], capture_output=True, text=True, check=True
        ).stdout

    def start_stopped(self) -> None:
        """Start the processes that are not running; signal nothing."""
        self._check_reachable()
        self._start([i for i in self._instances if not self._is_running(i.index)])

    def exporter_states(self) -> tuple[ExporterState, ...]:
        """No metrics exporter runs here."""
        return ()

    def process_states(self) -> tuple[ProcessState, ...]:
        """Each process: stopped (never started, exited, killed), or running and then serving
        or not: answering on its unix socket and holding its TCP port, as the Pebble layer's
        check (``serving_check_command``, tested against real pgbouncer apart) asks."""
        self._check_reachable()
        states = []
        for instance in self._instances:
            proc = self._procs.get(instance.index)
            if proc is None or proc.poll() is not None:
                detail = "not started" if proc is None else f"exited with code {proc.returncode}"
                states.append(ProcessState(instance.index, ProcessCondition.STOPPED, detail))
                continue
            # The test the Pebble layer's check makes (its own unix socket, its own TCP
            # listener), in this process: Pebble runs its checks in the background, so reading
            # their state costs a hook nothing, and a subprocess per process per hook would.
            serving = _Settings(instance.cfg_path).listening(proc.pid)
            states.append(
                ProcessState(instance.index, ProcessCondition.SERVING)
                if serving
                else ProcessState(instance.index, ProcessCondition.NOT_SERVING, "check down")
            )
        return tuple(states)

    def _as_owner(self) -> tuple[int | None, int | None, list[int] | None]:
        """``subprocess``'s user, group and extra_groups that run a program as ``owner`` (when
        this one is root; else as itself)."""
        if self._ids is None:
            return None, None, None
        return self._ids[0], self._ids[1], []

    def _is_running(self, index: int) -> bool:
        proc = self._procs.get(index)
        return proc is not None and proc.poll() is None

    def restart(self) -> None:
        """Stop every process as Pebble does (SIGTERM, then SIGKILL) and start them again."""
        self._check_reachable()
        self._stop_all()
        self._start(self._instances)

    def stop(self) -> None:
        """Stop every process (works even when set unreachable: it is for cleanup)."""
        self._stop_all()

    def __enter__(self) -> "LocalWorkload":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _signal(self, proc: subprocess.Popen[bytes], signum: signal.Signals) -> None:
        proc.send_signal(signum)
        self.signals_sent += 1

    def _stop_all(self) -> None:
        running = [proc for proc in self._procs.values() if proc.poll() is None]
        for proc in running:
            self._signal(proc, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        for proc in running:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._signal(proc, signal.SIGKILL)
                proc.wait()
        self._procs.clear()

    def _start(self, instances: list[_Instance]) -> None:
        """Start the given instances together, then wait until each one listens."""
        for instance in instances:
            if not os.path.isfile(instance.cfg_path):
                raise PgbouncerStartFailed(
                    f"pgbouncer instance {instance.index} has no config "
                    f"({instance.cfg_path}): write pgbouncer.ini first"
                )
        waiting = []
        for instance in instances:
            settings = _Settings(instance.cfg_path)
            user, group, extra_groups = self._as_owner()
            with open(instance.console_path, "wb") as console:
                proc = subprocess.Popen(
                    [self._bin, instance.cfg_path],
                    stdin=subprocess.DEVNULL,
                    stdout=console,
                    stderr=subprocess.STDOUT,
                    cwd=instance.dir,
                    start_new_session=True,
                    user=user,
                    group=group,
                    extra_groups=extra_groups,
                )
            self._procs[instance.index] = proc
            self.starts += 1
            waiting.append((instance, settings, proc))
        deadline = time.monotonic() + self.start_timeout
        failures = [
            failure
            for instance, settings, proc in waiting
            if (failure := self._wait_listening(instance, settings, proc, deadline))
        ]
        if failures:
            raise PgbouncerStartFailed("\n".join(failures))

    def _wait_listening(
        self,
        instance: _Instance,
        settings: "_Settings",
        proc: subprocess.Popen[bytes],
        deadline: float,
    ) -> str | None:
        """None once the process listens where its config says; else stop it, say why.

        pgbouncer only warns when it cannot listen on one of its addresses (the TCP port is
        taken by a program without ``so_reuseport``, say) and runs on with the others, so the
        TCP listener is checked for this very process, not by connecting to the port.
        """
        while True:
            code = proc.poll()
            if code is not None:
                reason = f"exited with code {code}"
                break
            if settings.listening(proc.pid):
                return None
            if _is_up(instance.console_path) and not settings.listening(proc.pid):
                # pgbouncer logs "process up" after trying every address: it will not listen
                # (asked again: it may have come up since the first question).
                reason = f"started but does not listen on {settings.where()}"
                break
            if time.monotonic() >= deadline:
                reason = f"did not listen on {settings.where()} within {self.start_timeout:g}s"
                break
            time.sleep(0.01)
        if proc.poll() is None:
            self._signal(proc, signal.SIGKILL)
            proc.wait()
        self._procs.pop(instance.index, None)
        return f"pgbouncer instance {instance.index} ({instance.cfg_path}) {reason}\n" + _log_tail(
            settings.logfile, instance.console_path
        )


class _Settings:
    """The few settings of a per-process config that starting and waiting need."""

    def __init__(self, cfg_path: str) -> None:
        with open(cfg_path, encoding="utf-8") as file:
            cfg = parse_pgb_ini(file.read())
        self.port = int(cfg.setting("listen_port") or "6432")
        # pgbouncer's defaults: no TCP address, the unix socket in /tmp ("" disables it).
        self.listen_addr = cfg.setting("listen_addr") or ""
        socket_dir = cfg.setting("unix_socket_dir")
        self.socket_dir = "/tmp" if socket_dir is None else socket_dir
        self.logfile = cfg.setting("logfile") or ""

    @property
    def socket_path(self) -> str:
        return os.path.join(self.socket_dir, f".s.PGSQL.{self.port}")

    def where(self) -> str:
        places = []
        if self.listen_addr:
            places.append(f"TCP {self.listen_addr} port {self.port}")
        if self.socket_dir:
            places.append(self.socket_path)
        return " and ".join(places) or "no address (listen_addr and unix_socket_dir are empty)"

    def listening(self, pid: int) -> bool:
        """Whether process ``pid`` accepts on its unix socket and listens on its TCP port."""
        if self.socket_dir:
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                    sock.settimeout(0.5)
                    sock.connect(self.socket_path)
            except OSError:
                return False
        return not self.listen_addr or _listens_on_tcp(pid, self.port)


def _listens_on_tcp(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds a listening TCP socket on ``port`` (Linux /proc)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as file:
                next(file, None)
                for line in file:
                    fields = line.split()
                    # local_address is HEXIP:HEXPORT; state 0A is LISTEN.
                    if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(fields[9])
        except FileNotFoundError:
            continue
    if not inodes:
        return False
    fd_dir = f"/proc/{pid}/fd"
    try:
        links = [os.readlink(os.path.join(fd_dir, fd)) for fd in os.listdir(fd_dir)]
    except OSError:
        return False
    return any(link.startswith("socket:[") and link[8:-1] in inodes for link in links)


def _is_up(console_path: str) -> bool:
    try:
        with open(console_path, encoding="utf-8", errors="replace") as file:
            return " process up: " in file.read()
    except OSError:
        return False


def _owner_ids(owner: str) -> tuple[int, int] | None:
    """The uid and gid files get when this process can give them away (root), else None."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(owner)
    except KeyError:
        raise ValueError(f"the workload user {owner!r} does not exist on this machine") from None
    return entry.pw_uid, entry.pw_gid


def _check_reachable_by(ids: tuple[int, int], owner: str, folder: str) -> None:
    """Fail early when ``owner`` cannot get to ``folder``: pgbouncer, running as that user,
    could not re-read its files on SIGHUP (it would only log the error and keep the old
    config)."""
    uid, gid = ids
    groups = set(os.getgrouplist(owner, gid))
    path = folder
    while True:
        st = os.stat(path)
        if st.st_uid == uid:
            allowed = st.st_mode & 0o100
        elif st.st_gid in groups:
            allowed = st.st_mode & 0o010
        else:
            allowed = st.st_mode & 0o001
        if not allowed:
            raise ValueError(
                f"the workload user {owner!r} cannot enter {path}, so pgbouncer could not "
                f"read its files: choose a base_dir {owner!r} can reach (not under a "
                "private temporary folder)"
            )
        parent = os.path.dirname(path)
        if parent == path:
            return
        path = parent


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as file:
            return file.read()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise WorkloadUnavailable(f"cannot read {path}: {err.strerror or err}") from None


@contextlib.contextmanager
def _io_errors(action: str) -> Iterator[None]:
    """A full or read-only folder is a workload the unit cannot use now, as in Pebble."""
    try:
        yield
    except OSError as err:
        where = f" ({err.filename})" if err.filename else ""
        raise WorkloadUnavailable(f"cannot {action}{where}: {err.strerror or err}") from None


def _tail(path: str, lines: int) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            return "".join(file.readlines()[-lines:]).rstrip("\n")
    except OSError:
        return None


def _log_tail(logfile: str, console_path: str, lines: int = 8) -> str:
    parts = []
    if logfile and (text := _tail(logfile, lines)):
        parts.append(f"last lines of {logfile}:\n{text}")
    console = _tail(console_path, lines)
    if console and (not parts or console not in parts[0]):
        parts.append(f"its output ({console_path}):\n{console}")
    return "\n".join(parts) or "(pgbouncer wrote no log)"


def _terminate(procs: dict[int, "subprocess.Popen[bytes]"]) -> None:
    """Kill what a forgotten LocalWorkload left running (garbage collection, interpreter exit)."""
    running = [proc for proc in procs.values() if proc.poll() is None]
    for proc in running:
        proc.terminate()
    for proc in running:
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    procs.clear()
