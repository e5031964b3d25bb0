"""Effects: the commands the domain's services return and the adapters carry out.

Each effect is a frozen value named in the imperative for what it makes happen. It validates
itself when built, so an effect that would write a pgbouncer.ini pgbouncer refuses, an auth
file with a bad line, or an empty hostname cannot exist: a wrong decision fails in the core,
loudly, instead of reaching a container. Effects that carry a credential hide it in their repr.

One hook returns one ordered list (``domain.hook_plan``), and the applier carries it out as
given, stopping at the first failure. The order is part of the contract (``RANK`` below):

1. this unit's databag (``SetHostname``) and the backend request (``RequestDatabase``);
2. the backend database (``InstallAuth``, ``CreateClientRole``): set up before any file
   names what it set up;
3. the container's files (``WriteCfg``, ``WriteAuth``, ``RemoveAuth``), then the processes
   (one ``Reload`` or ``Restart`` at most), so pgbouncer never re-reads a half-updated pair;
   TLS files that appear (``WriteClientTls``, ``WriteBackendCa``) before the config copies
   that name them, TLS files that go (``RemoveClientTls``, ``RemoveBackendCa``) after the
   copies stop naming them (``domain.tls``);
4. the peer data the leader publishes (``PublishCfg``, ``PublishLeaderHostname``) and the
   secret store (``StoreAuth``, ``StorePassword``...), after its own container has them;
5. ``Acknowledge`` (what this unit now runs), then the client applications' answers
   (``HandCredentials`` before ``AnswerClient``: a client seeing endpoints expects credentials);
6. the exporters (``WritePassfile``, ``EnsureExporters``, ``RetireExporters``): after the
   reload that gave pgbouncer the stats user, and after everything clients depend on, so an
   exporter that cannot start never holds back a publish or an answer;
7. this unit's memory (``Remember...``), then clean-up on the backend that may fail
   without harm (``RemoveAuthSetup``, ``DropClientRole``: ``best_effort``);
8. ``Report`` (why it is not simply active) and ``Defer`` last: the seed's "a deferral is
   always followed by a return".

The metrics effects (``PublishProcesses``, ``StoreStatsPassword``, the exporters',
``RememberExporters``) are decided by ``domain.metrics_service``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

import attrs

from domain.auth_file import parse_auth_file
from domain.backend import BackendAccess
from domain.errors import InvalidEffect, InvalidPeerData
from domain.observability import ExporterSpec, check_stats_password
from domain.peer_data import Acknowledgement, AppPeerData, is_valid_hostname
from domain.pgb_config import parse_pgb_ini
from domain.pgb_version import PgbVersion
from domain.status import StatusReason
from domain.tls import ClientTlsFiles, TlsInPlace, backend_ca_text
from domain.values import value_class


class _Effect:
    """What every effect shares; ``value_class`` gives each its eq, hash and repr (one shared
    implementation: every hook imports these classes to use a few of them)."""

    __slots__ = ()
    # A failure of a best-effort effect is reported, and the rest of the list still runs:
    # what it cleans up stays in memory and is tried again on a later hook.
    best_effort: ClassVar[bool] = False


def _as_tuple(value: Iterable[Any]) -> tuple[Any, ...]:
    # A Python function, not the builtin ``tuple``: attrs reads a converter's signature, and
    # a builtin's costs a tokenizer compile on import.
    return tuple(value)


def _valid_cfg(_instance: object, _attribute: attrs.Attribute[str], value: str) -> None:
    parse_pgb_ini(value)


def _valid_auth(_instance: object, _attribute: attrs.Attribute[str], value: str) -> None:
    parse_auth_file(value)


def _valid_ack_wanted(_instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    AppPeerData(ack_wanted=value)  # the databag's own check


def _valid_hostname(_instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not is_valid_hostname(value):
        raise InvalidPeerData(f"{attribute.name}: {value!r} is not a DNS hostname")


def _non_empty(_instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise InvalidEffect(f"{attribute.name} must not be empty")


def _relation_id(_instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidEffect(f"{attribute.name}: {value!r} is not a relation id")


def _positive(_instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidEffect(f"{attribute.name}: {value!r} is not an integer >= 1")


def _stats_password(_instance: object, _attribute: attrs.Attribute[str], value: str) -> None:
    check_stats_password(value)


def _indices(_instance: object, attribute: attrs.Attribute[tuple[int, ...]], value: tuple) -> None:
    if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in value):
        raise InvalidEffect(f"{attribute.name}: {value!r} are not process indices")


def _names(_instance: object, attribute: attrs.Attribute[tuple[str, ...]], value: tuple) -> None:
    if not value or not all(isinstance(name, str) and name for name in value):
        raise InvalidEffect(f"{attribute.name} must name at least one database")


# --- this unit and the backend request ------------------------------------------------------


@value_class
class SetHostname(_Effect):
    """Save this unit's hostname in its unit databag."""

    hostname: str = attrs.field(validator=_valid_hostname)


@value_class
class SetPgbouncerVersion(_Effect):
    """Save the pgbouncer version this unit's image ships in its unit databag (the leader
    renders nothing the oldest of them cannot run)."""

    version: PgbVersion


@value_class
class RequestDatabase(_Effect):
    """Leader: ask the backend-database relation for this database (and a superuser)."""

    database: str = attrs.field(validator=_non_empty)


@value_class
class PublishProcesses(_Effect):
    """Write this unit's process count in its unit databag (the leader's scrape jobs list
    one target per process of every unit)."""

    processes: int = attrs.field(validator=_positive)


# --- the backend database -------------------------------------------------------------------


@value_class
class InstallAuth(_Effect):
    """Create or update the auth role and its ``auth_query`` function in these databases."""

    access: BackendAccess = attrs.field(repr=False)
    auth_user: str = attrs.field(validator=_non_empty)
    password: str = attrs.field(validator=_non_empty, repr=False)
    databases: tuple[str, ...] = attrs.field(converter=_as_tuple, validator=_names)


@value_class
class CreateClientRole(_Effect):
    """Create or reset a client relation's role, and its database if missing."""

    access: BackendAccess = attrs.field(repr=False)
    relation_id: int = attrs.field(validator=_relation_id)
    user: str = attrs.field(validator=_non_empty)
    password: str = attrs.field(validator=_non_empty, repr=False)
    database: str = attrs.field(validator=_non_empty)
    extra_user_roles: tuple[str, ...] = attrs.field(default=(), converter=_as_tuple)
    # The client application (in this model) the database is for: only it may have it.
    app_name: str = attrs.field(default="", validator=_non_empty)


@value_class
class RestrictClientRole(_Effect):
    """Take every attribute and foreign membership back from a served client's role whose
    request is now refused (an earlier version granted what is refused now)."""

    access: BackendAccess = attrs.field(repr=False)
    relation_id: int = attrs.field(validator=_relation_id)
    user: str = attrs.field(validator=_non_empty)
    database: str = attrs.field(validator=_non_empty)


@value_class
class RemoveAuthSetup(_Effect):
    """Drop the auth role and, where no other role uses them, its function and schema."""

    best_effort: ClassVar[bool] = True

    access: BackendAccess = attrs.field(repr=False)
    auth_user: str = attrs.field(validator=_non_empty)
    databases: tuple[str, ...] = attrs.field(converter=_as_tuple, validator=_names)


@value_class
class DropClientRole(_Effect):
    """Drop a removed client relation's role, keeping its data; forget it once dropped."""

    best_effort: ClassVar[bool] = True

    access: BackendAccess = attrs.field(repr=False)
    relation_id: int = attrs.field(validator=_relation_id)
    user: str = attrs.field(validator=_non_empty)


# --- the container --------------------------------------------------------------------------


@value_class
class WriteCfg(_Effect):
    """Write pgbouncer.ini (and its per-process copies) into this unit's container.

    The copies are ``domain.tls.effective_config`` of the content with ``tls``: the TLS
    settings whose files this unit has in place (none by default: never a missing file).
    """

    content: str = attrs.field(validator=_valid_cfg, repr=False)
    tls: TlsInPlace = TlsInPlace()


@attrs.frozen(repr=False)
class WriteClientTls(_Effect):
    """Write this unit's private key, certificate and CA into its container (0600)."""

    files: ClientTlsFiles = attrs.field(repr=False)


@attrs.frozen(repr=False)
class RemoveClientTls(_Effect):
    """Remove this unit's client TLS files (the certificates relation is gone)."""


@attrs.frozen(repr=False)
class WriteBackendCa(_Effect):
    """Write the backend's CA, which pgbouncer verifies the backend with."""

    ca: str = attrs.field(converter=backend_ca_text, repr=False)


@attrs.frozen(repr=False)
class RemoveBackendCa(_Effect):
    """Remove the backend's CA file (the backend no longer publishes one)."""


@value_class
class WriteAuth(_Effect):
    """Write the auth file into this unit's container."""

    content: str = attrs.field(validator=_valid_auth, repr=False)


@value_class
class RemoveAuth(_Effect):
    """Remove the auth file from this unit's container (the leader withdrew it)."""


@value_class
class Reload(_Effect):
    """Make every pgbouncer process re-read its files without dropping a client (SIGHUP)."""


@value_class
class Restart(_Effect):
    """Stop and start every pgbouncer process: a restart-only setting changed, or none runs."""


@value_class
class StartStopped(_Effect):
    """Start the pgbouncer processes that are not running; leave the running ones alone."""


# --- the peer relation and the secret store ---------------------------------------------------


@value_class
class PublishCfg(_Effect):
    """Leader: put this pgbouncer.ini in the application databag as ``cfg_file``."""

    content: str = attrs.field(validator=_valid_cfg, repr=False)


@value_class
class PublishLeaderHostname(_Effect):
    """Leader: put its hostname in the application databag as ``leader_hostname``."""

    hostname: str = attrs.field(validator=_valid_hostname)


@value_class
class StoreAuth(_Effect):
    """Leader: put the auth file in the peer secret store."""

    content: str = attrs.field(validator=_valid_auth, repr=False)


@value_class
class RemoveStoredAuth(_Effect):
    """Leader: take the auth file out of the peer secret store (the backend is gone)."""


@value_class
class StorePassword(_Effect):
    """Leader: keep a client relation's password in the peer secret store."""

    relation_id: int = attrs.field(validator=_relation_id)
    password: str = attrs.field(validator=_non_empty, repr=False)


@value_class
class RemovePassword(_Effect):
    """Leader: take a removed client relation's password out of the peer secret store."""

    relation_id: int = attrs.field(validator=_relation_id)


@value_class
class StoreStatsPassword(_Effect):
    """Leader: keep the exporters' stats user's new password in the peer secret store."""

    password: str = attrs.field(validator=_stats_password, repr=False)


@value_class
class Acknowledge(_Effect):
    """Record in the unit databag what this unit has applied and whether that worked."""

    ack: Acknowledgement


@value_class
class RequestAcknowledgements(_Effect):
    """Leader: put ``ack_wanted`` in the application databag (a cfg digest, or ``none``)."""

    digest: str = attrs.field(validator=_valid_ack_wanted)


@value_class
class RememberApplied(_Effect):
    """Keep in this unit's memory what its pgbouncer now runs (never shared: no hook)."""

    applied: Acknowledgement


@value_class
class RememberTlsServed(_Effect):
    """Keep in this unit's memory which TLS files its per-process copies now name, so a quiet
    follower's hook need not read a copy back to know."""

    served: TlsInPlace


# --- client applications ----------------------------------------------------------------------


@value_class
class HandCredentials(_Effect):
    """Leader: give a client its user, password and URI: in a Juju secret granted to the
    relation (``in_secret``), else as plain fields of the databag (a client that did not ask
    for secrets, or a Juju without them)."""

    relation_id: int = attrs.field(validator=_relation_id)
    username: str = attrs.field(validator=_non_empty)
    password: str = attrs.field(validator=_non_empty, repr=False)
    uris: str = attrs.field(validator=_non_empty, repr=False)
    in_secret: bool = True


@value_class
class AnswerClient(_Effect):
    """Leader: set these keys in the client relation's databag (a value of None removes it)."""

    relation_id: int = attrs.field(validator=_relation_id)
    fields: tuple[tuple[str, str | None], ...] = attrs.field(converter=_as_tuple)


@value_class
class RevokeCredentials(_Effect):
    """Leader: remove a removed client relation's credentials secret."""

    relation_id: int = attrs.field(validator=_relation_id)


# --- the exporters (domain.observability) ---------------------------------------------------


@value_class
class WritePassfile(_Effect):
    """Write the exporters' .pgpass file (0600, the workload user's) into the container."""

    content: str = attrs.field(validator=_non_empty, repr=False)


@value_class
class EnsureExporters(_Effect):
    """Make these exporter services be in the plan as given, and running."""

    specs: tuple[ExporterSpec, ...] = attrs.field(converter=tuple)


@value_class
class RetireExporters(_Effect):
    """Stop the ``running`` exporters and mark the ``enabled`` ones disabled (a layer cannot
    delete a service): no Prometheus is related, or the process count shrank."""

    running: tuple[int, ...] = attrs.field(converter=tuple, validator=_indices)
    enabled: tuple[int, ...] = attrs.field(converter=tuple, validator=_indices)


# --- this unit's memory -----------------------------------------------------------------------


@value_class
class RememberBackendSetup(_Effect):
    """The auth setup is done for these credentials (a one-way digest; empty forgets it)."""

    digest: str


@value_class
class RememberClient(_Effect):
    """A client relation is set up on the backend (a one-way digest of what) for a database."""

    relation_id: int = attrs.field(validator=_relation_id)
    digest: str = attrs.field(validator=_non_empty)
    database: str = attrs.field(validator=_non_empty)


@value_class
class ForgetClient(_Effect):
    """A client relation is gone; with ``drop_role``, its role is kept to be dropped."""

    relation_id: int = attrs.field(validator=_relation_id)
    drop_role: bool


@value_class
class RememberExporters(_Effect):
    """The exporters are set up with this .pgpass and these specs (a one-way digest; empty
    forgets it): a later hook whose digest matches and whose exporters run does nothing."""

    digest: str


@value_class
class RememberProcesses(_Effect):
    """What this hook saw of the unit's processes (a status reason; empty: all serve), shown
    by the hooks that do not look at them (a quiet follower's)."""

    reason: str


@value_class
class GiveUpRoleDrops(_Effect):
    """The backend these roles were on is gone: stop trying, and log what to drop by hand."""

    users: tuple[str, ...] = attrs.field(converter=_as_tuple)


# --- status and deferral ----------------------------------------------------------------------


@value_class
class Report(_Effect):
    """A reason this unit is not simply active; shown by the collect-status handler."""

    reason: StatusReason


@value_class
class Defer(_Effect):
    """Defer the event: it is retried on the next hook. Always the last effect."""

    reason: str = attrs.field(validator=_non_empty)


Effect = (
    SetHostname
    | SetPgbouncerVersion
    | PublishProcesses
    | RequestDatabase
    | InstallAuth
    | CreateClientRole
    | RestrictClientRole
    | RemoveAuthSetup
    | DropClientRole
    | WriteCfg
    | WriteClientTls
    | RemoveClientTls
    | WriteBackendCa
    | RemoveBackendCa
    | WriteAuth
    | RemoveAuth
    | Reload
    | Restart
    | StartStopped
    | PublishCfg
    | PublishLeaderHostname
    | StoreAuth
    | RemoveStoredAuth
    | StorePassword
    | RemovePassword
    | StoreStatsPassword
    | Acknowledge
    | RequestAcknowledgements
    | RememberApplied
    | RememberTlsServed
    | HandCredentials
    | AnswerClient
    | RevokeCredentials
    | WritePassfile
    | EnsureExporters
    | RetireExporters
    | RememberBackendSetup
    | RememberClient
    | ForgetClient
    | RememberExporters
    | RememberProcesses
    | GiveUpRoleDrops
    | Report
    | Defer
)

# The contract's order (see the module docstring). Sorting is stable: effects of one rank
# keep the order they were decided in.
RANK: dict[type, float] = {
    SetHostname: 0,
    SetPgbouncerVersion: 0,
    PublishProcesses: 0,
    RequestDatabase: 1,
    InstallAuth: 2,
    CreateClientRole: 2,
    RestrictClientRole: 2,
    WriteClientTls: 2.5,
    WriteBackendCa: 2.5,
    WriteCfg: 3,
    WriteAuth: 4,
    RemoveAuth: 4,
    RemoveClientTls: 4.5,
    RemoveBackendCa: 4.5,
    Reload: 5,
    Restart: 5,
    StartStopped: 5,
    PublishCfg: 6,
    PublishLeaderHostname: 7,
    RequestAcknowledgements: 7,
    StoreAuth: 8,
    RemoveStoredAuth: 8,
    StorePassword: 8,
    RemovePassword: 8,
    StoreStatsPassword: 8,
    Acknowledge: 9,
    RememberApplied: 9,
    RememberTlsServed: 9,
    HandCredentials: 10,
    RevokeCredentials: 10,
    AnswerClient: 11,
    # The .pgpass file before the exporters that read it.
    WritePassfile: 12,
    RetireExporters: 13,
    EnsureExporters: 13,
    # Memory before the best-effort clean-up: a role to drop is remembered first, and
    # forgotten by the drop that succeeds.
    RememberBackendSetup: 14,
    RememberClient: 14,
    ForgetClient: 14,
    RememberExporters: 14,
    RememberProcesses: 14,
    GiveUpRoleDrops: 14,
    RemoveAuthSetup: 15,
    DropClientRole: 15,
    Report: 16,
    Defer: 17,
}


def in_contract_order(effects: list[Effect]) -> list[Effect]:
    return sorted(effects, key=lambda effect: RANK[type(effect)])
