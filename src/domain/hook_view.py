"""What one hook sees, as plain values: the view every service of the plan reads.

The application layer gathers one ``HookView`` per hook from the adapters (``app.gather``)
and names the event in a ``HookEvent``; ``domain.hook_plan`` turns both into one ordered list
of effects. The view has one part per relation and per kind of input:

- ``peer``: the ``pgb-peers`` relation and this unit's container (``peer_sync.PeerView``);
- ``units``: every live unit's peer databag, this unit's included (the leader's gate and
  status read their acknowledgements);
- ``backend``: the ``backend-database`` relation (``BackendView``), None when there is none;
- ``clients``: one ``ClientView`` per ``database`` relation;
- ``memory``: what this unit remembers between hooks (``Memory``: what it already set up on
  the backend, and the client roles still to drop), never shared, never a credential;
- ``metrics``: the exporters and the stats user's password (``observability.MetricsView``);
- ``fresh_secrets``: random passwords the gatherer drew for this hook, used only where a new
  one is needed (the domain does no I/O, randomness included);
- the problems met while gathering (an invalid charm config, unreadable peer data, a store
  that cannot be read), which the plan turns into reasons.

A new input is one more field here; a new relation is one more view and one more service.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator

import attrs

from domain.backend import BackendAccess, BackendCredentials, BackendEndpoints
from domain.clients import ClientRequest
from domain.errors import InvalidInput
from domain.observability import MetricsView
from domain.peer_data import Acknowledgement, UnitPeerData
from domain.peer_sync import PeerView
from domain.processes import ProcessState
from domain.tls import TlsInPlace
from domain.values import value_class


class EventKind(enum.Enum):
    PEER_CREATED = "pgb-peers-relation-created"
    PEER_CHANGED = "pgb-peers-relation-changed"
    PEER_DEPARTED = "pgb-peers-relation-departed"
    SECRET_CHANGED = "secret-changed"
    LEADER_ELECTED = "leader-elected"
    WORKLOAD_READY = "pebble-ready"
    CONFIG_CHANGED = "config-changed"
    UPDATE_STATUS = "update-status"
    UPGRADE_CHARM = "upgrade-charm"
    BACKEND_CREATED = "backend-database-relation-created"
    BACKEND_CHANGED = "backend-database-relation-changed"
    BACKEND_BROKEN = "backend-database-relation-broken"
    # secret-changed for the credentials secret the PostgreSQL charm granted (a rotation).
    BACKEND_SECRET_CHANGED = "backend-database-secret-changed"
    CLIENT_CHANGED = "database-relation-changed"
    CLIENT_BROKEN = "database-relation-broken"
    CERTIFICATES_CHANGED = "certificates-relation-changed"
    CERTIFICATES_BROKEN = "certificates-relation-broken"


@value_class
class HookEvent:
    kind: EventKind
    # The relation a relation event is about.
    relation_id: int | None = None
    # pgb-peers-relation-departed: the departing unit's hostname.
    departing_hostname: str | None = None

    def is_about(self, relation_id: int, *kinds: EventKind) -> bool:
        return self.relation_id == relation_id and self.kind in kinds


@value_class
class BackendView:
    """The ``backend-database`` relation as the leader reads it (followers: its presence)."""

    relation_id: int
    # What this application asks for: its own name, so two pgbouncer applications in front of
    # one PostgreSQL each get their own database.
    requested_database: str
    endpoints: BackendEndpoints | None = None
    # None until delivered, and when not read this hook (nothing needs the backend).
    credentials: BackendCredentials | None = None
    # What the provider sent cannot be used: only its next change can fix it (blocked).
    invalid: str | None = None
    # The credentials cannot be read now (a secret not granted yet): a retry may (waiting).
    unavailable: str | None = None
    # relation-broken: the relation is going away.
    gone: bool = False

    @property
    def access(self) -> BackendAccess | None:
        if self.endpoints is None or self.credentials is None:
            return None
        return BackendAccess.of(self.endpoints, self.credentials)


@value_class
class ClientView:
    """One ``database`` relation as the leader reads it."""

    relation_id: int
    app_name: str | None = None
    request: ClientRequest | None = None
    # The request cannot be served; the reason names the key.
    refusal: str | None = None
    # The client's databag cannot be read now.
    unreadable: str | None = None
    # This charm's side of the relation: the answer keys as they are now.
    answered: tuple[tuple[str, str], ...] = ()
    credentials_handed: bool = False
    # Where the handed credentials are: a Juju secret (``secret-user``) or plain fields.
    credentials_in_secret: bool = True
    # The client sent ``requested-secrets``: it reads credentials from a secret. A client
    # whose library predates secrets sends only ``database`` and reads plain fields.
    asked_for_secrets: bool = True
    # relation-broken: the relation is going away.
    gone: bool = False

    @property
    def served_database(self) -> str | None:
        """The database this charm set up for the client (written once it was set up)."""
        return dict(self.answered).get("database")

    @property
    def where(self) -> str:
        app = f" ({self.app_name})" if self.app_name else ""
        return f"database relation {self.relation_id}{app}"


@value_class
class ServedClient:
    """A client relation set up on the backend: a digest of what, and for which database."""

    digest: str
    database: str


@value_class
class RefusedClient:
    """A request the backend refused (its database or a role is another's): the request as it
    was, and why. It stays refused until the request changes."""

    database: str
    extra_user_roles: tuple[str, ...]
    reason: str

    def is_for(self, request: ClientRequest) -> bool:
        return (self.database, self.extra_user_roles) == (
            request.database,
            request.extra_user_roles,
        )


@value_class
class Memory:
    """What this unit remembers between hooks (Juju's StoredState): one-way digests of what
    it set up, so a repeat skips the backend, the client roles still to drop, and the
    requests the backend refused; and the digests of the two files its pgbouncer runs
    (``applied``, written once they are written and signalled), so a follower knows it is up
    to date without asking Pebble, and what it last saw of its processes."""

    backend_digest: str = ""
    served: tuple[tuple[int, ServedClient], ...] = ()
    roles_to_drop: tuple[int, ...] = ()
    refused: tuple[tuple[int, RefusedClient], ...] = ()
    applied: Acknowledgement | None = None
    # What the last hook that read the processes reported of them ("": all served).
    processes_reason: str = ""
    # Which TLS files the per-process copies name, as last written or read (RememberTlsServed).
    tls_served: TlsInPlace = TlsInPlace()

    def client(self, relation_id: int) -> ServedClient | None:
        return dict(self.served).get(relation_id)

    def refusal(self, relation_id: int) -> RefusedClient | None:
        return dict(self.refused).get(relation_id)


@value_class
class HookView:
    """Everything one unit sees in one hook. ``peer`` is None when it could not be read."""

    peer: PeerView | None
    unit_name: str = ""
    units: tuple[tuple[str, UnitPeerData], ...] = ()
    backend: BackendView | None = None
    clients: tuple[ClientView, ...] = ()
    memory: Memory = Memory()
    fresh_secrets: tuple[str, ...] = attrs.field(default=(), repr=False)
    charm_problem: str | None = None
    peer_problem: str | None = None
    store_problem: str | None = None
    # The model's Juju has secrets (3.x): credentials travel in one wherever the client can
    # read it.
    juju_has_secrets: bool = True
    # The unit's pgbouncer processes as the workload reports them (empty when unreachable).
    processes: tuple[ProcessState, ...] = ()
    # False when they were not read: a quiet follower's hook asks Pebble nothing, and shows
    # the processes as the last hook that read them saw them (``Memory.processes_reason``).
    processes_read: bool = True
    # Prometheus, the exporters and the stats user (``domain.metrics_service`` plans them).
    metrics: MetricsView = MetricsView()


class OutOfSecrets(InvalidInput):
    """The plan needed more fresh passwords than the gatherer drew (a gathering bug)."""


class SecretSupply:
    """The view's fresh passwords, handed out one at a time during one plan."""

    def __init__(self, secrets: tuple[str, ...]):
        self._secrets: Iterator[str] = iter(secrets)

    def take(self) -> str:
        try:
            return next(self._secrets)
        except StopIteration:
            raise OutOfSecrets("no fresh password left for this hook") from None
