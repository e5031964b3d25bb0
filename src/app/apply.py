"""Carrying out one hook's plan, in the order given, through the adapters.

An effect that fails (Pebble gone, a secret unreadable, a databag refusing a write, the
backend unreachable) stops the list there: what comes after it (writing the files that name
a setup, publishing, acknowledging, answering a client) would claim something that did not
happen. The failure becomes a waiting reason and the event is deferred, so the next hook tries
again; the effects are idempotent, so repeating them is safe. A ``best_effort`` effect (a
clean-up on the backend) is the exception: its failure is reported and the list goes on,
and the unit's memory keeps what is left to do for a later hook.

Consecutive changes to the peer secret store are written together: one secret revision per
hook.
"""

import logging
from collections.abc import Iterable, Iterator

import ops

from adapters.errors import first_line
from adapters.juju.backend import request_database
from adapters.juju.clients import ClientSecretUnavailable
from adapters.juju.peer_relation import PeerRelationMissing
from adapters.juju.secret_store import StoreUnavailable
from adapters.postgres.errors import BackendUnavailable, ClientRefused
from app.gather import Adapters
from domain.effects import (
    Acknowledge,
    AnswerClient,
    CreateClientRole,
    Defer,
    DropClientRole,
    Effect,
    EnsureExporters,
    ForgetClient,
    GiveUpRoleDrops,
    HandCredentials,
    InstallAuth,
    PublishCfg,
    PublishLeaderHostname,
    PublishProcesses,
    Reload,
    RememberApplied,
    RememberBackendSetup,
    RememberClient,
    RememberExporters,
    RememberProcesses,
    RememberTlsServed,
    RemoveAuth,
    RemoveAuthSetup,
    RemoveBackendCa,
    RemoveClientTls,
    RemovePassword,
    RemoveStoredAuth,
    Report,
    RequestAcknowledgements,
    RequestDatabase,
    Restart,
    RestrictClientRole,
    RetireExporters,
    RevokeCredentials,
    SetHostname,
    SetPgbouncerVersion,
    StartStopped,
    StoreAuth,
    StorePassword,
    StoreStatsPassword,
    WriteAuth,
    WriteBackendCa,
    WriteCfg,
    WriteClientTls,
    WritePassfile,
)
from domain.observability import PROCESSES_KEY
from domain.peer_data import AUTH_FILE_KEY, STATS_PASSWORD_KEY, relation_password_key
from domain.ports import WorkloadUnavailable
from domain.status import Severity, StatusReason

logger = logging.getLogger(__name__)

_FAILURES = (
    WorkloadUnavailable,
    StoreUnavailable,
    PeerRelationMissing,
    BackendUnavailable,
    ClientSecretUnavailable,
    ops.ModelError,
)
_STORE_EFFECTS = (StoreAuth, RemoveStoredAuth, StorePassword, RemovePassword, StoreStatsPassword)


class EffectApplier:
    def __init__(self, adapters: Adapters):
        self._adapters = adapters

    def apply(self, effects: Iterable[Effect], event: ops.EventBase) -> list[StatusReason]:
        """Carry out ``effects``; the reasons to show (the plan's and the failures')."""
        reasons: list[StatusReason] = []
        for batch in _batches(effects):
            effect = batch[0]
            try:
                self._apply(batch, event, reasons)
            except ClientRefused as err:
                # What the backend holds refuses this client: blocked until its request
                # changes. The rest of this plan serves it, so it stops here; the deferred
                # event plans again without it, and the other clients are served.
                assert isinstance(effect, CreateClientRole)
                where = f"database relation {effect.relation_id} ({effect.app_name})"
                reason = first_line(err)
                logger.error("%s: refused: %s", where, reason)
                self._adapters.memory.remember_refusal(
                    effect.relation_id, effect.database, effect.extra_user_roles, reason
                )
                reasons.append(StatusReason(Severity.BLOCKED, f"{where}: {reason}"))
                event.defer()
                return reasons
            except _FAILURES as err:
                message = f"{_describe(effect)}: {first_line(err)}"
                reasons.append(StatusReason(Severity.WAITING, message))
                if effect.best_effort:
                    logger.warning("%s; will retry on a later hook", message)
                    continue
                logger.warning("%s; deferring %s", message, type(event).__name__)
                event.defer()
                return reasons
        return reasons

    def _apply(
        self, batch: list[Effect], event: ops.EventBase, reasons: list[StatusReason]
    ) -> None:
        effect = batch[0]
        if isinstance(effect, _STORE_EFFECTS):
            self._adapters.store().update(_store_changes(batch))
        elif isinstance(effect, Report):
            logger.info("status reason: %s", effect.reason.message)
            reasons.append(effect.reason)
        elif isinstance(effect, Defer):
            logger.info("deferring %s: %s", type(event).__name__, effect.reason)
            event.defer()
        elif not (
            self._apply_local(effect)
            or self._apply_metrics(effect)
            or self._apply_backend(effect)
            or self._apply_memory(effect)
        ):
            self._apply_clients(effect)
        if not isinstance(effect, Report | Defer):
            logger.debug("applied %s", type(effect).__name__)

    def _apply_local(self, effect: Effect) -> bool:
        """This unit's container and peer databags."""
        workload, peers = self._adapters.workload, self._adapters.peers
        match effect:
            case SetHostname(hostname):
                peers.set_hostname(hostname)
            case SetPgbouncerVersion(version):
                peers.set_pgbouncer_version(str(version))
            case WriteCfg(content, tls):
                workload.write_cfg(content, tls)
            case WriteClientTls(files):
                workload.write_client_tls(files)
            case RemoveClientTls():
                workload.remove_client_tls()
            case WriteBackendCa(ca):
                workload.write_backend_ca(ca)
            case RemoveBackendCa():
                workload.remove_backend_ca()
            case WriteAuth(content):
                workload.write_auth(content)
            case RemoveAuth():
                workload.remove_auth()
            case Reload():
                workload.reload()
            case Restart():
                workload.restart()
            case StartStopped():
                workload.start_stopped()
            case PublishCfg(content):
                peers.publish_cfg(content)
            case PublishLeaderHostname(hostname):
                peers.publish_leader_hostname(hostname)
            case Acknowledge(ack):
                peers.acknowledge(ack)
            case RequestAcknowledgements(digest):
                peers.request_acknowledgements(digest)
            case _:
                return False
        return True

    def _apply_metrics(self, effect: Effect) -> bool:
        """The exporters and this unit's process count (``domain.metrics_service``)."""
        adapters = self._adapters
        match effect:
            case PublishProcesses(processes):
                relation = adapters.peers.relation
                if relation is None:
                    raise PeerRelationMissing("the pgb-peers relation does not exist yet")
                relation.data[adapters.model.unit][PROCESSES_KEY] = str(processes)
            case WritePassfile(content):
                adapters.exporters().write_passfile(content)
            case EnsureExporters(specs):
                adapters.exporters().ensure(specs)
            case RetireExporters(running, enabled):
                adapters.exporters().retire(running, enabled)
            case _:
                return False
        return True

    def _apply_backend(self, effect: Effect) -> bool:
        """The backend-database relation and the backend database."""
        adapters = self._adapters
        match effect:
            case RequestDatabase(database):
                relation = adapters.backend_relation()
                if relation is not None:
                    request_database(adapters.model, relation, database)
            case InstallAuth(access, auth_user, password, databases):
                adapters.postgres().install_auth(access, auth_user, password, databases)
            case CreateClientRole(access, relation_id, user, password, database, roles, app):
                adapters.postgres().create_client(
                    access, relation_id, user, password, database, roles, app
                )
            case RemoveAuthSetup(access, auth_user, databases):
                adapters.postgres().remove_auth(access, auth_user, databases)
            case RestrictClientRole(access, relation_id, user, database):
                adapters.postgres().restrict_client(access, relation_id, user, database)
            case DropClientRole(access, relation_id, user):
                adapters.postgres().drop_client(access, relation_id, user)
                adapters.memory.role_dropped(relation_id)
            case _:
                return False
        return True

    def _apply_memory(self, effect: Effect) -> bool:
        memory = self._adapters.memory
        match effect:
            case RememberBackendSetup(digest):
                memory.remember_backend(digest)
            case RememberApplied(applied):
                memory.remember_applied(applied)
            case RememberClient(relation_id, digest, database):
                memory.remember_client(relation_id, digest, database)
            case RememberExporters(digest):
                memory.remember_exporters(digest)
            case RememberProcesses(reason):
                memory.remember_processes(reason)
            case RememberTlsServed(served):
                memory.remember_tls_served(served)
            case ForgetClient(relation_id, drop_role):
                memory.forget_client(relation_id, drop_role)
            case GiveUpRoleDrops(users):
                # The roles were on a backend this charm is no longer related to.
                logger.warning(
                    "backend-database relation gone: drop the role(s) %s by hand", ", ".join(users)
                )
                memory.give_up_role_drops()
            case _:
                return False
        return True

    def _apply_clients(self, effect: Effect) -> None:
        clients = self._adapters.clients()
        match effect:
            case HandCredentials(relation_id, username, password, uris, in_secret):
                clients.hand(relation_id, username, password, uris, in_secret)
                logger.info("database relation %d: credentials handed", relation_id)
            case AnswerClient(relation_id, fields):
                clients.answer(relation_id, dict(fields))
            case RevokeCredentials(relation_id):
                clients.revoke(relation_id)


def _batches(effects: Iterable[Effect]) -> Iterator[list[Effect]]:
    """Each effect alone, except consecutive store changes, which make one batch."""
    batch: list[Effect] = []
    for effect in effects:
        if batch and not (
            isinstance(effect, _STORE_EFFECTS) and isinstance(batch[0], _STORE_EFFECTS)
        ):
            yield batch
            batch = []
        batch.append(effect)
    if batch:
        yield batch


def _store_changes(batch: list[Effect]) -> dict[str, str | None]:
    changes: dict[str, str | None] = {}
    for effect in batch:
        match effect:
            case StoreAuth(content):
                changes[AUTH_FILE_KEY] = content
            case RemoveStoredAuth():
                changes[AUTH_FILE_KEY] = None
            case StorePassword(relation_id, password):
                changes[relation_password_key(relation_id)] = password
            case RemovePassword(relation_id):
                changes[relation_password_key(relation_id)] = None
            case StoreStatsPassword(password):
                changes[STATS_PASSWORD_KEY] = password
    return changes


def _describe(effect: Effect) -> str:
    """What was attempted, for the status; never a file's content or a credential."""
    match effect:
        case InstallAuth(databases=databases) if len(databases) > 1:
            return "cannot set up auth_query on the backend"
        case InstallAuth(databases=databases):
            return f"cannot set up auth_query in database {databases[0]} on the backend"
        case CreateClientRole(relation_id=relation_id, database=database):
            where = f"database relation {relation_id}"
            return f"{where}: cannot set up database {database} on the backend"
        case RemoveAuthSetup():
            return "removing the auth setup from the backend"
        case RestrictClientRole(user=user):
            return f"restricting role {user} on the backend"
        case DropClientRole(user=user):
            return f"dropping role {user} on the backend"
        case WritePassfile() | EnsureExporters() | RetireExporters():
            return "metrics"
        case _:
            return f"{type(effect).__name__} failed"
