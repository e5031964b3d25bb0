"""This unit's memory between hooks: Juju's StoredState, read as ``hook_view.Memory``.

It holds one-way digests of what the leader set up on the backend (so a repeat skips the
backend) and of what this unit's exporters run with (so a quiet hook asks Pebble nothing
more), the ids of client relations whose role is still to be dropped, and the digests of
the two files this unit's pgbouncer runs and what it last saw of its processes. Never a
credential, never shared: a new leader, or lost state, just runs the idempotent setup again.
"""

from typing import Any

from domain.errors import InvalidPeerData
from domain.hook_view import Memory, RefusedClient, ServedClient
from domain.peer_data import Acknowledgement
from domain.tls import TlsInPlace


class UnitMemory:
    """Reads and updates the charm's ``StoredState`` (passed in: it is the charm's attribute)."""

    def __init__(self, stored: Any):
        self._stored = stored
        stored.set_default(
            backend_digest="",
            served={},
            roles_to_drop=[],
            refused={},
            exporters_digest="",
            applied_cfg="",
            applied_auth="",
            processes_reason="",
            tls_served="",
        )

    def read(self) -> Memory:
        served = tuple(
            sorted(
                (int(key), ServedClient(str(value["digest"]), str(value["database"])))
                for key, value in self._stored.served.items()
            )
        )
        refused = tuple(
            sorted(
                (
                    int(key),
                    RefusedClient(
                        str(value["database"]),
                        tuple(str(role) for role in value["roles"]),
                        str(value["reason"]),
                    ),
                )
                for key, value in self._stored.refused.items()
            )
        )
        return Memory(
            backend_digest=self._stored.backend_digest,
            served=served,
            roles_to_drop=tuple(int(rid) for rid in self._stored.roles_to_drop),
            refused=refused,
            applied=self.applied(),
            processes_reason=str(self._stored.processes_reason),
            tls_served=_tls_served(str(self._stored.tls_served)),
        )

    def exporters_digest(self) -> str:
        """What the exporters were last set up with (``RememberExporters``)."""
        return str(self._stored.exporters_digest)

    def remember_exporters(self, digest: str) -> None:
        self._stored.exporters_digest = digest

    def applied(self) -> Acknowledgement | None:
        cfg, auth = self._stored.applied_cfg, self._stored.applied_auth
        if not cfg or not auth:
            return None
        try:
            return Acknowledgement(cfg, auth, ok=True)
        except InvalidPeerData:
            return None  # not digests: as if nothing was recorded (the files are re-read)

    def remember_applied(self, applied: Acknowledgement) -> None:
        self._stored.applied_cfg = applied.cfg_digest
        self._stored.applied_auth = applied.auth_digest

    def remember_processes(self, reason: str) -> None:
        self._stored.processes_reason = reason

    def remember_tls_served(self, served: TlsInPlace) -> None:
        self._stored.tls_served = ",".join(
            name
            for name, on in (("client", served.client), ("backend_ca", served.backend_ca))
            if on
        )

    def remember_backend(self, digest: str) -> None:
        self._stored.backend_digest = digest

    def remember_client(self, relation_id: int, digest: str, database: str) -> None:
        self._stored.served[str(relation_id)] = {"digest": digest, "database": database}
        self._stored.refused.pop(str(relation_id), None)

    def remember_refusal(
        self, relation_id: int, database: str, roles: tuple[str, ...], reason: str
    ) -> None:
        self._stored.refused[str(relation_id)] = {
            "database": database,
            "roles": list(roles),
            "reason": reason,
        }

    def forget_client(self, relation_id: int, drop_role: bool) -> None:
        self._stored.served.pop(str(relation_id), None)
        self._stored.refused.pop(str(relation_id), None)
        if drop_role and relation_id not in self._stored.roles_to_drop:
            self._stored.roles_to_drop.append(relation_id)

    def role_dropped(self, relation_id: int) -> None:
        if relation_id in self._stored.roles_to_drop:
            self._stored.roles_to_drop.remove(relation_id)

    def give_up_role_drops(self) -> None:
        self._stored.roles_to_drop = []


def _tls_served(text: str) -> TlsInPlace:
    """``remember_tls_served``'s text back ("": nothing served, also what an older revision
    left: upgrade-charm reads the copies again)."""
    names = set(text.split(","))
    return TlsInPlace(client="client" in names, backend_ca="backend_ca" in names)
