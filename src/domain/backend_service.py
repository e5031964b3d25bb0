"""BackendService: the ``backend-database`` relation's decisions, as a step of the leader's plan.

Only the leader acts; followers receive both files through ``pgb-peers`` like any other
change. In every leader hook the service looks at the relation (``BackendView``) and at the
leader's files as the plan has them so far, and:

| the relation                               | what the leader's plan gets                    |
|--------------------------------------------|------------------------------------------------|
| absent                                     | nothing (the plan reports ``NO_BACKEND``)      |
| its own hook (created, changed, or its     | ``RequestDatabase`` first, whatever follows    |
| credentials secret changed: a rotation)    |                                                |
| unusable data                              | blocked, the reason; no retry helps            |
| credentials secret not readable            | waiting; its own hook defers                   |
| no endpoints or credentials yet            | its own hook: waiting for credentials          |
| no container, or no pgbouncer.ini          | its own hook: waiting, and defers              |
| set up already for these credentials       | nothing: the files say so, and the memory too  |
|                                            | (nothing remembered: trusted but in its hook)  |
| otherwise                                  | ``InstallAuth``, then the files with auth_query|
|                                            | (``with_auth_query``), ``RememberBackendSetup``|
| broken                                     | files without auth_query and the auth file,    |
|                                            | ``RemoveStoredAuth``, ``RemoveAuthSetup``      |
|                                            | (best effort), forget the setup; blocked       |

The auth role keeps its password across leaders and retries: it is read back from the auth
file when there is one, else a fresh one from the view. The setup comes before the files that
name it (the effects' order); the reload or restart is the plan's one signal, decided by
``pgb_config.change_kind`` (taking ``auth_user`` out needs a restart).
"""

import attrs

from domain.backend import (
    BackendAccess,
    auth_databases,
    auth_password,
    is_auth_configured,
    with_auth_query,
    without_auth_query,
)
from domain.effects import (
    InstallAuth,
    RememberBackendSetup,
    RemoveAuthSetup,
    RemoveStoredAuth,
    RequestDatabase,
)
from domain.errors import InvalidInput
from domain.hook_view import BackendView, EventKind, HookEvent, HookView, SecretSupply
from domain.peer_data import content_digest
from domain.peer_sync import LEADER_CFG_INVALID, NOT_REACHABLE, Plan, WorkloadFiles
from domain.status import Severity

NO_BACKEND = "add a backend-database relation to a PostgreSQL charm"
WAITING_FOR_CREDENTIALS = "waiting for the backend database to send its credentials"
NO_LEADER_CONFIG = "no pgbouncer config yet to add the backend's auth_query to"
RELATION_REMOVED = "backend-database relation removed: auth_query and auth file taken out"
# Blocked, not waiting: without the relation the unit is blocked anyway (NO_BACKEND), and this
# says what is still to be done.
REMOVAL_PENDING = "backend-database relation removed; taking auth_query out is pending"
DROP_BY_HAND = "drop the pgbouncer_auth_* role on the backend by hand if it is still there"

# The relation's own hooks, and a new revision of the credentials secret it granted: the
# setup runs again with what they bring (the memory's digest covers the credentials), and a
# failure defers them.
_OWN_EVENTS = (
    EventKind.BACKEND_CREATED,
    EventKind.BACKEND_CHANGED,
    EventKind.BACKEND_SECRET_CHANGED,
)


def setup_digest(relation_id: int, access: BackendAccess, databases: tuple[str, ...]) -> str:
    # One-way and kept in this unit's memory only: it tells "already done" apart from
    # "credentials changed" without storing the password.
    return content_digest(f"{relation_id}\n{access.fingerprint()}\n{','.join(databases)}")


@attrs.define
class BackendService:
    """The leader's side of ``backend-database`` (a ``peer_sync.LeaderStep``)."""

    view: HookView
    event: HookEvent
    secrets: SecretSupply

    def shape(self, plan: Plan, files: WorkloadFiles | None) -> WorkloadFiles | None:
        backend = self.view.backend
        if backend is None:
            return files
        if backend.gone:
            return self._remove(plan, backend, files)
        own = self.event.is_about(backend.relation_id, *_OWN_EVENTS)
        if own:
            # Also on relation-changed: a leader elected after relation-created may not have
            # written it. The adapter writes only what differs.
            plan.add(RequestDatabase(backend.requested_database))
        access = self._access(plan, backend, own)
        if access is None or backend.endpoints is None:
            return files
        if files is None or files.cfg is None:
            if own:
                plan.defer_later(NOT_REACHABLE if files is None else NO_LEADER_CONFIG)
            return files
        databases = auth_databases(backend.requested_database, backend.endpoints.database)
        return self._set_up(plan, backend.relation_id, access, databases, files, files.cfg, own)

    def answer(self, plan: Plan) -> None:
        """Nothing waits for the backend's answer."""

    def _access(self, plan: Plan, backend: BackendView, own: bool) -> BackendAccess | None:
        if backend.invalid is not None:
            # The provider's next relation-changed brings the fix; retrying this one cannot.
            plan.report(Severity.BLOCKED, backend.invalid)
            return None
        if backend.unavailable is not None:
            if own:
                plan.defer_later(backend.unavailable)
            else:
                plan.report(Severity.WAITING, backend.unavailable)
            return None
        if backend.access is None and own:
            plan.report(Severity.WAITING, WAITING_FOR_CREDENTIALS)
        return backend.access

    def _set_up(
        self,
        plan: Plan,
        relation_id: int,
        access: BackendAccess,
        databases: tuple[str, ...],
        files: WorkloadFiles,
        cfg: str,
        own: bool,
    ) -> WorkloadFiles:
        auth_user = access.credentials.auth_user
        digest = setup_digest(relation_id, access, databases)
        remembered = self.view.memory.backend_digest
        # Done already: the files use the auth role, and the memory says it was set up for
        # these credentials. A unit that remembers nothing (a new leader) trusts its files
        # until the relation's own hook, which runs the idempotent setup once more.
        if is_auth_configured(cfg, files.auth, auth_user) and (
            remembered == digest or not (remembered or own)
        ):
            return files
        password = auth_password(files.auth, auth_user) or self.secrets.take()
        try:
            wanted = with_auth_query(cfg, auth_user, password)
        except InvalidInput as err:
            plan.report(Severity.BLOCKED, f"{LEADER_CFG_INVALID}: {err}")
            return files
        plan.add(InstallAuth(access, auth_user, password, databases))
        plan.add(RememberBackendSetup(digest))
        return WorkloadFiles(wanted.cfg, wanted.auth)

    def _remove(
        self, plan: Plan, backend: BackendView, files: WorkloadFiles | None
    ) -> WorkloadFiles | None:
        if files is None:
            plan.defer_later(f"{REMOVAL_PENDING}: {NOT_REACHABLE}", Severity.BLOCKED)
            return None
        cfg = files.cfg
        if cfg is not None:
            try:
                cfg = without_auth_query(cfg)
            except InvalidInput as err:
                plan.report(Severity.BLOCKED, f"{LEADER_CFG_INVALID}: {err}")
                return files
        access = backend.access
        if access is not None and backend.endpoints is not None:
            databases = auth_databases(backend.requested_database, backend.endpoints.database)
            plan.add(RemoveAuthSetup(access, access.credentials.auth_user, databases))
            plan.report(Severity.BLOCKED, RELATION_REMOVED)
        else:
            plan.report(Severity.BLOCKED, f"{RELATION_REMOVED}; {DROP_BY_HAND}")
        if self.view.peer is not None and self.view.peer.store.auth_file is not None:
            plan.add(RemoveStoredAuth())
        if self.view.memory.backend_digest:
            plan.add(RememberBackendSetup(""))
        return WorkloadFiles(cfg, None)
