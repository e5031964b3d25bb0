"""The ``backend-database`` relation's hooks: ask for a database, set up ``auth_query``.

Only the leader acts; followers receive both files through ``pgb-peers`` like any other
change. The leader:

- on ``relation-created``, writes the request (``adapters.juju.backend.request_database``).
  The database asked for is this application's name, so two pgbouncer applications in front
  of one PostgreSQL each get their own database; the provider's ``database`` answer wins if it
  differs;
- on ``relation-changed``, once endpoints and credentials are there and the setup has not
  been done for them yet: installs the auth role and function on the primary
  (``adapters.postgres.auth_setup.install_auth``, in the delivered database and in
  ``postgres``), then writes the auth file, then pgbouncer.ini with ``auth_user`` /
  ``auth_query``, reloads pgbouncer, puts the auth file in the peer secret store and publishes
  through the charm's peer logic at once. The auth role keeps its password across leaders and
  retries: it is read back from the auth file when there is one;
- on ``relation-broken``, removes the role and function from the backend where it still can,
  takes ``auth_user`` / ``auth_query`` out of pgbouncer.ini, removes the auth file, restarts
  pgbouncer (a reload would keep the old ``auth_user``: pgbouncer 1.18 does not reset it),
  clears the auth file from the store and publishes, and says so in its status.

Every fault (backend unreachable, credentials refused, SQL error, secret not readable,
container unreachable, store unwritable) becomes a status reason and a deferral, never an
uncaught exception. Files are written only after the backend setup succeeded, the auth file
before the config that names it. "Done for these credentials" is a digest of the relation,
the credentials, the primary and the databases kept in this unit's ``StoredState`` (never in a
databag): a new leader, or lost state, just runs the idempotent setup once more.
"""

import logging
import secrets
from typing import TYPE_CHECKING

import ops

from adapters.juju.backend import (
    BackendSecretUnavailable,
    read_credentials,
    read_endpoints,
    request_database,
)
from adapters.juju.secret_store import StoreUnavailable
from adapters.postgres.errors import BackendUnavailable
from domain.backend import (
    BackendCredentials,
    BackendEndpoints,
    auth_databases,
    auth_password,
    is_auth_configured,
    with_auth_query,
    without_auth_query,
)
from domain.errors import InvalidInput
from domain.peer_data import AUTH_FILE_KEY, content_digest
from domain.ports import WorkloadPort, WorkloadUnavailable
from domain.status import Severity, StatusReason

if TYPE_CHECKING:
    from app.charm import PgBouncerK8sCharm

logger = logging.getLogger(__name__)

WAITING_FOR_CREDENTIALS = "waiting for the backend database to send its credentials"
NO_WORKLOAD = "waiting for the pgbouncer container (Pebble is not reachable)"
NO_LEADER_CONFIG = "no pgbouncer config yet to add the backend's auth_query to"
RELATION_REMOVED = "backend-database relation removed: auth_query and auth file taken out"
# Blocked, not waiting: without the relation the unit is blocked anyway (the charm says
# "add a backend-database relation"), and this says what is still to be done.
REMOVAL_PENDING = "backend-database relation removed; taking auth_query out is pending"

_LOCAL_FAULTS = (WorkloadUnavailable, StoreUnavailable, ops.ModelError)


class BackendHandlers(ops.Object):
    """The leader's side of ``backend-database``; the charm observes its three handlers."""

    _stored = ops.StoredState()

    def __init__(self, charm: "PgBouncerK8sCharm"):
        super().__init__(charm, "backend-database")
        self._charm = charm
        self._stored.set_default(setup_digest="")

    @property
    def requested_database(self) -> str:
        return self._charm.app.name

    # --- handlers ------------------------------------------------------------------------

    def on_created(self, event: ops.RelationCreatedEvent) -> None:
        if not self._charm.unit.is_leader():
            return
        request_database(self.model, event.relation, self.requested_database)
        self._reason(Severity.WAITING, WAITING_FOR_CREDENTIALS)

    def on_changed(self, event: ops.RelationChangedEvent) -> None:
        if not self._charm.unit.is_leader():
            return
        relation = event.relation
        try:
            # Also here: a leader elected after relation-created may not have written it.
            request_database(self.model, relation, self.requested_database)
            endpoints = read_endpoints(relation)
            credentials = read_credentials(self.model, relation)
        except BackendSecretUnavailable as err:
            self._retry(event, str(err))
            return
        except InvalidInput as err:
            # The provider's next relation-changed brings the fix; retrying this one cannot.
            logger.error("unusable backend-database data: %s", err)
            self._reason(Severity.BLOCKED, str(err))
            return
        except ops.ModelError as err:
            self._retry(event, f"cannot read the backend-database relation: {_first_line(err)}")
            return
        if endpoints is None or credentials is None:
            self._reason(Severity.WAITING, WAITING_FOR_CREDENTIALS)
            return
        self._set_up(event, endpoints, credentials)

    def on_broken(self, event: ops.RelationBrokenEvent) -> None:
        if not self._charm.unit.is_leader():
            return
        backend_note = self._remove_on_backend(event)
        workload = self._charm.make_workload()
        try:
            if not workload.is_reachable():
                self._retry(event, f"{REMOVAL_PENDING}: {NO_WORKLOAD}", Severity.BLOCKED)
                return
            self._remove_from_workload(workload)
            self._charm._store().update({AUTH_FILE_KEY: None})
        except InvalidInput as err:
            self._reason(Severity.BLOCKED, f"pgbouncer.ini on the leader is invalid: {err}")
            return
        except _LOCAL_FAULTS as err:
            self._retry(event, f"{REMOVAL_PENDING}: {_first_line(err)}", Severity.BLOCKED)
            return
        self._stored.setup_digest = ""
        message = RELATION_REMOVED + (f"; {backend_note}" if backend_note else "")
        self._reason(Severity.BLOCKED, message)
        self._publish(event)

    # --- relation-changed --------------------------------------------------------------------

    def _set_up(
        self,
        event: ops.RelationChangedEvent,
        endpoints: BackendEndpoints,
        credentials: BackendCredentials,
    ) -> None:
        workload = self._charm.make_workload()
        try:
            if not workload.is_reachable():
                self._retry(event, NO_WORKLOAD)
                return
            cfg, auth = workload.read_cfg(), workload.read_auth()
        except WorkloadUnavailable as err:
            self._retry(event, str(err))
            return
        if cfg is None:
            self._retry(event, NO_LEADER_CONFIG)
            return
        auth_user = credentials.auth_user
        databases = auth_databases(self.requested_database, endpoints.database)
        digest = _setup_digest(event.relation.id, credentials, endpoints, databases)
        if self._stored.setup_digest == digest and is_auth_configured(cfg, auth, auth_user):
            logger.debug("backend auth setup already done for these credentials")
            return
        password = auth_password(auth, auth_user) or secrets.token_urlsafe(24)
        try:
            files = with_auth_query(cfg, auth_user, password)
        except InvalidInput as err:
            self._reason(Severity.BLOCKED, f"pgbouncer.ini on the leader is invalid: {err}")
            return
        # psycopg loads here, in the hooks that reach the backend, not in every hook.
        from adapters.postgres.auth_setup import install_auth, make_dsn

        primary = endpoints.primary
        dsn = make_dsn(primary.address, primary.port, credentials.username, credentials.password)
        try:
            install_auth(dsn, auth_user, password, databases)
        except BackendUnavailable as err:
            self._retry(event, f"cannot set up auth_query on the backend: {err}")
            return
        try:
            # The auth file first: the config naming auth_user must find its line there.
            changed = False
            if files.auth != auth:
                workload.write_auth(files.auth)
                changed = True
            if files.cfg != cfg:
                workload.write_cfg(files.cfg)
                changed = True
            if changed:
                workload.reload()
            self._charm._store().update({AUTH_FILE_KEY: files.auth})
        except _LOCAL_FAULTS as err:
            self._retry(event, f"applying the backend's auth setup failed: {_first_line(err)}")
            return
        self._stored.setup_digest = digest
        logger.info("backend auth_query set up in %d database(s)", len(databases))
        self._publish(event)

    # --- relation-broken ---------------------------------------------------------------------

    def _remove_on_backend(self, event: ops.RelationBrokenEvent) -> str | None:
        """Drop the auth role and function while the credentials still work; a note if not."""
        try:
            relation = event.relation
            endpoints = read_endpoints(relation)
            credentials = read_credentials(self.model, relation)
        except (BackendSecretUnavailable, InvalidInput, ops.ModelError) as err:
            logger.warning("cannot read the departed backend's credentials: %s", err)
            endpoints = credentials = None
        if endpoints is None or credentials is None:
            return "drop the pgbouncer_auth_* role on the backend by hand if it is still there"
        from adapters.postgres.auth_setup import make_dsn, remove_auth

        primary = endpoints.primary
        dsn = make_dsn(primary.address, primary.port, credentials.username, credentials.password)
        databases = auth_databases(self.requested_database, endpoints.database)
        try:
            remove_auth(dsn, credentials.auth_user, databases)
        except BackendUnavailable as err:
            logger.warning("cannot remove the auth setup from the backend: %s", err)
            return f"the backend's auth role was not dropped ({err})"
        return None

    @staticmethod
    def _remove_from_workload(workload: WorkloadPort) -> None:
        cfg = workload.read_cfg()
        had_auth = workload.read_auth() is not None
        removal = without_auth_query(cfg) if cfg is not None else None
        if removal is not None and removal.cfg != cfg:
            workload.write_cfg(removal.cfg)
        workload.remove_auth()
        if removal is None:
            return  # no config: no pgbouncer runs
        if removal.restart:
            # A reload would keep auth_user: pgbouncer would go on asking the old backend.
            workload.restart()
        elif removal.cfg != cfg or had_auth:
            workload.reload()

    # --- helpers -------------------------------------------------------------------------------

    def _publish(self, event: ops.EventBase) -> None:
        """Let the charm's peer logic publish the leader's files now, not on the next hook."""
        self._charm._run(event, self._charm._sync.on_update_status)

    def _reason(self, severity: Severity, message: str) -> None:
        self._charm._reasons.append(StatusReason(severity, " ".join(message.split())))

    def _retry(
        self, event: ops.EventBase, message: str, severity: Severity = Severity.WAITING
    ) -> None:
        logger.warning("%s; deferring %s", message, type(event).__name__)
        self._reason(severity, message)
        event.defer()


def _setup_digest(
    relation_id: int,
    credentials: BackendCredentials,
    endpoints: BackendEndpoints,
    databases: tuple[str, ...],
) -> str:
    # One-way and kept in this unit's StoredState only: it tells "already done" apart from
    # "credentials changed" without storing the password.
    return content_digest(
        "\n".join(
            (
                str(relation_id),
                credentials.username,
                credentials.password,
                endpoints.primary.render(),
                ",".join(databases),
            )
        )
    )


def _first_line(err: Exception) -> str:
    text = str(err)
    return text.splitlines()[0] if text else type(err).__name__
