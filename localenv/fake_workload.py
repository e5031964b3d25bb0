"""A recording fake of the workload port: files in memory, processes as counters.

``FakeWorkload`` implements ``domain.ports.WorkloadPort`` the way ``LocalWorkload`` behaves,
without starting anything, so the multi-unit model can run hundreds of event orders (or 50
units) in seconds:

- ``write_cfg`` validates the text as ``LocalWorkload`` does (``InvalidPgbConfig`` writes
  nothing) and keeps it; ``write_auth`` keeps the text;
- the "processes" are one flag: ``restart()`` needs a config (as a real start does: it raises
  ``WorkloadUnavailable`` otherwise), starts them and counts a restart; ``reload()`` counts a
  reload (SIGHUP) when they run and starts them when they do not, as ``LocalWorkload`` does;
- ``loaded`` is the pair of files the processes last read (at a start or a reload), so a test
  can tell files written but never applied from files running;
- ``process_states()`` says every process serves while the flag is up, else that every one is
  stopped; ``start_stopped()`` starts them (and counts a start), as a real start would;
- ``set_reachable(False)`` makes every port method fail as an unreachable container does, and
  ``wipe()`` is a rescheduled pod: empty folder, nothing running.
"""

from typing import Any

from domain.observability import ExporterState
from domain.pgb_config import parse_pgb_ini
from domain.ports import WorkloadUnavailable
from domain.processes import ProcessCondition, ProcessState
from domain.tls import NOTHING_IN_PLACE, ClientTlsFiles, TlsInPlace, asked_by, effective_config


class FakeWorkload:
    """``domain.ports.WorkloadPort`` in memory, counting writes, reloads and restarts."""

    def __init__(self, name: str = "fake", processes: int = 2) -> None:
        self.name = name
        self.processes = processes
        self.cfg: str | None = None
        self.auth: str | None = None
        # TLS: the files, and what the per-process copies serve (domain.tls).
        self.client_tls: ClientTlsFiles | None = None
        self.backend_ca: str | None = None
        self.served = TlsInPlace()
        self.running = False
        self.loaded: tuple[str | None, str | None] | None = None
        self.cfg_writes = 0
        self.auth_writes = 0
        self.reloads = 0
        self.restarts = 0
        self.starts = 0
        # What its `pgbouncer --version` prints: the tests' Debian 1.18 unless set.
        self.version_output = "PgBouncer 1.18.0\nlibevent 2.1.12-stable\n"
        self._reachable = True

    # -- crossing to another revision ---------------------------------------------------------

    # ``localenv.revision_runner`` pickles the workload into a worker running another revision
    # of the charm, which may predate ``domain.tls``: the TLS state crosses as plain values
    # (that revision's class takes them as they are and sends them back), and comes back here
    # as domain values.
    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        state["served"] = (self.served.client, self.served.backend_ca)
        files = self.client_tls
        state["client_tls"] = None if files is None else (files.key, files.cert, files.ca)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        client, backend_ca = state.get("served", (False, False))
        self.served = TlsInPlace(client=client, backend_ca=backend_ca)
        files = state.get("client_tls")
        self.client_tls = None if files is None else ClientTlsFiles(*files)
        self.backend_ca = state.get("backend_ca")

    # -- reachability -----------------------------------------------------------------------

    def is_reachable(self) -> bool:
        return self._reachable

    def set_reachable(self, reachable: bool) -> None:
        self._reachable = reachable

    def _check(self) -> None:
        if not self._reachable:
            raise WorkloadUnavailable(f"the fake workload {self.name} is unreachable")

    # -- files -------------------------------------------------------------------------------

    def read_cfg(self) -> str | None:
        self._check()
        return self.cfg

    def read_auth(self) -> str | None:
        self._check()
        return self.auth

    def write_cfg(self, content: str, tls: TlsInPlace = NOTHING_IN_PLACE) -> None:
        self._check()
        effective = effective_config(parse_pgb_ini(content), tls)
        served = asked_by(effective)
        # What a real pgbouncer would refuse: a copy naming a TLS file that is not there.
        if (served.client and self.client_tls is None) or (
            served.backend_ca and self.backend_ca is None
        ):
            raise AssertionError(f"{self.name}: a config copy names a TLS file that is missing")
        self.cfg = content
        self.served = served
        self.cfg_writes += 1

    def read_served_tls(self) -> TlsInPlace:
        self._check()
        return self.served if self.cfg is not None else TlsInPlace()

    def read_client_tls(self) -> ClientTlsFiles | None:
        self._check()
        return self.client_tls

    def write_client_tls(self, files: ClientTlsFiles) -> None:
        self._check()
        self.client_tls = files

    def remove_client_tls(self) -> None:
        self._check()
        if self.served.client:
            raise AssertionError(f"{self.name}: removing TLS files the config copies name")
        self.client_tls = None

    def read_backend_ca(self) -> str | None:
        self._check()
        return self.backend_ca

    def write_backend_ca(self, ca: str) -> None:
        self._check()
        self.backend_ca = ca

    def remove_backend_ca(self) -> None:
        self._check()
        if self.served.backend_ca:
            raise AssertionError(f"{self.name}: removing the CA file the config copies name")
        self.backend_ca = None

    def write_auth(self, content: str) -> None:
        self._check()
        self.auth = content
        self.auth_writes += 1

    def remove_auth(self) -> None:
        self._check()
        self.auth = None

    # -- processes ---------------------------------------------------------------------------

    def reload(self) -> None:
        self._check()
        if not self.running:
            self._start()
            return
        self.reloads += 1
        self.loaded = (self.cfg, self.auth)

    def restart(self) -> None:
        self._check()
        self._start()
        self.restarts += 1

    def pgbouncer_version(self) -> str:
        self._check()
        return self.version_output

    def _start(self) -> None:
        if self.cfg is None:
            raise WorkloadUnavailable(f"the fake workload {self.name} has no pgbouncer.ini")
        self.running = True
        self.starts += 1
        self.loaded = (self.cfg, self.auth)

    def start_stopped(self) -> None:
        self._check()
        if not self.running:
            self._start()

    def exporter_states(self) -> tuple[ExporterState, ...]:
        """No metrics exporter runs here."""
        return ()

    def process_states(self) -> tuple[ProcessState, ...]:
        """Every process serving while the flag says running, else every one stopped."""
        self._check()
        if self.running:
            return tuple(ProcessState(i, ProcessCondition.SERVING) for i in range(self.processes))
        return tuple(
            ProcessState(i, ProcessCondition.STOPPED, "not started") for i in range(self.processes)
        )

    def stop(self) -> None:
        self.running = False
        self.loaded = None

    def wipe(self) -> None:
        """A rescheduled pod: the container's folder is empty and nothing runs."""
        self.stop()
        self.cfg = None
        self.auth = None
        self.client_tls = None
        self.backend_ca = None
        self.served = TlsInPlace()

    def counters(self) -> dict[str, int]:
        return {
            "reloads": self.reloads,
            "restarts": self.restarts,
            "starts": self.starts,
            "cfg_writes": self.cfg_writes,
            "auth_writes": self.auth_writes,
        }
