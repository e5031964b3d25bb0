"""The ports: what the application layer needs from the outside world, as protocols.

The domain decides; adapters behind these ports act. Each port has a Juju/Pebble adapter used
in the deployed charm and a local one (real processes on this machine, in localenv) or an
``ops.testing`` simulation used in tests, so the same ``PeerSyncService`` runs behind all of
them.
"""

from typing import Protocol

from domain.observability import ExporterState
from domain.processes import ProcessState
from domain.tls import NOTHING_IN_PLACE, ClientTlsFiles, TlsInPlace


class WorkloadUnavailable(Exception):
    """The workload (the pgbouncer container, or local processes) cannot be reached now.

    Adapters raise it instead of their framework's errors so the application layer can defer
    or report a status without knowing which adapter it talks to. The message is safe to show.
    """


class WorkloadPort(Protocol):
    """The pgbouncer workload of one unit: its two files and its processes."""

    def is_reachable(self) -> bool:
        """Whether the workload answers now (Pebble's can_connect)."""
        ...

    def read_cfg(self) -> str | None:
        """The main pgbouncer.ini text, or None when the file is not there."""
        ...

    def read_auth(self) -> str | None:
        """The auth file text, or None when the file is not there."""
        ...

    def write_cfg(self, content: str, tls: TlsInPlace = NOTHING_IN_PLACE) -> None:
        """Write pgbouncer.ini (and the per-process copies derived from it) atomically.

        The copies keep the TLS settings ``tls`` says are in place (``domain.tls``).
        """
        ...

    def read_served_tls(self) -> TlsInPlace:
        """Which TLS settings the per-process copies use now (none when there are none)."""
        ...

    def read_client_tls(self) -> ClientTlsFiles | None:
        """This unit's key, certificate and CA files, or None unless all three are there."""
        ...

    def write_client_tls(self, files: ClientTlsFiles) -> None:
        """Write the three client TLS files, owned by the pgbouncer user, mode 0600."""
        ...

    def remove_client_tls(self) -> None:
        """Remove the three client TLS files if they are there."""
        ...

    def read_backend_ca(self) -> str | None:
        """The backend CA file, or None when it is not there."""
        ...

    def write_backend_ca(self, ca: str) -> None:
        """Write the backend CA file, owned by the pgbouncer user, mode 0600."""
        ...

    def remove_backend_ca(self) -> None:
        """Remove the backend CA file if it is there."""
        ...

    def write_auth(self, content: str) -> None:
        """Write the auth file atomically, owned by the pgbouncer user, mode 0600."""
        ...

    def remove_auth(self) -> None:
        """Remove the auth file if it is there."""
        ...

    def reload(self) -> None:
        """Make every pgbouncer process re-read its files without dropping clients (SIGHUP).

        Processes that are not running yet are started instead.
        """
        ...

    def pgbouncer_version(self) -> str:
        """What the workload's ``pgbouncer --version`` prints (asked once per container start)."""
        ...

    def restart(self) -> None:
        """Stop and start every pgbouncer process (for restart-only settings)."""
        ...

    def process_states(self) -> tuple[ProcessState, ...]:
        """Whether each pgbouncer process runs and serves (``domain.processes``)."""
        ...

    def start_stopped(self) -> None:
        """Start the pgbouncer processes that are not running; leave the running ones be."""
        ...

    def exporter_states(self) -> tuple[ExporterState, ...]:
        """The metrics exporter services (``domain.observability``); none where the workload
        runs no exporter."""
        ...


class SecretStorePort(Protocol):
    """The peer secret store: the auth file and the client relations' passwords.

    Keys are the contract's: ``auth_file`` and ``relation_id_<N>``. One adapter keeps them in
    a Juju application secret, the other in the peer application databag (Juju without
    secrets).
    """

    def read(self) -> dict[str, str]:
        """Every key the store holds now (empty when the store does not exist yet)."""
        ...

    def plain(self) -> dict[str, str]:
        """The store's keys in plain text in the application databag (the whole store without
        Juju secrets; leftovers of the seed's layout with them)."""
        ...

    def secret_content(self) -> dict[str, str] | None:
        """The Juju secret's content; None without one (or on a Juju without secrets)."""
        ...

    def update(self, changes: dict[str, str | None]) -> None:
        """Set the given keys; a value of None removes the key. Leader only."""
        ...
