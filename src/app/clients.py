"""The ``database`` relation's hooks: serve client applications through pgbouncer.

Only the leader acts; followers receive the new pgbouncer.ini through ``pgb-peers`` like any
other change, and never touch a client relation. The leader:

- on ``relation-changed`` (the client wrote or changed its request), once the backend is ready
  (the ``backend-database`` relation delivered credentials and ``auth_query`` is set up in its
  container): creates on the backend the client's role ``relation_id_<N>`` with a random
  password and the extra roles asked for, and its database if missing
  (``adapters.postgres.clients.create_client``); installs the auth function in that database
  (``auth_setup.install_auth``: pgbouncer 1.18 runs ``auth_query`` in the client's database);
  keeps the password in the peer secret store under ``relation_id_<N>``; adds the client's two
  ``[databases]`` entries (``domain.clients.with_client``) to its pgbouncer.ini and reloads;
  writes ``database`` in the client's databag (what marks the relation as set up); publishes
  through the charm's peer logic at once. A repeat with the same inputs skips the backend: a
  digest of what was set up is kept in this unit's ``StoredState`` (never in a databag);
- hands the credentials only once every live unit acknowledged a published config holding the
  database (``domain.clients.ready_for_client``), together with ``endpoints``,
  ``read-only-endpoints`` and ``version``; until then its status says how many units it waits
  for. Handing happens in ``refresh``, which the charm runs for the ``RefreshClientRelations``
  effect of every peer hook (an acknowledgement arriving is one), and on ``update-status``
  and ``config-changed``. ``refresh`` reads databags only and writes only values that changed,
  so a quiet hook costs no write; it keeps endpoints current (peers joining and departing,
  a new leader, a new ``listen_port``) and, when the endpoints move, the ``uris`` too;
- on ``relation-broken``: removes the client's entries from pgbouncer.ini (unless another
  relation uses the same database) and reloads, removes ``relation_id_<N>`` from the store and
  the client's secret, then drops its role on the backend (its database and data stay). A
  drop that fails is retried on ``update-status``;
- on ``backend-database`` ``relation-changed`` (new credentials, a new primary) and on
  ``update-status``: re-serves every client relation, so entries follow the backend and a
  request whose deferred event was lost with a former leader is served.

Every fault (backend unreachable, SQL error, secret not writable, container unreachable) is a
waiting status and, in the relation's own hook, a deferral; a request that cannot be served
(``InvalidClientRequest``) is a blocked status naming the relation and the reason. No handler
raises, and no credential reaches a log line, a status or a plain databag.
"""

import logging
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs
import ops

from adapters.juju import converters
from adapters.juju.backend import (
    BackendSecretUnavailable,
    backend_relation,
    read_credentials,
    read_endpoints,
)
from adapters.juju.clients import (
    CLIENT_RELATION,
    ClientCredentials,
    ClientDatabag,
    ClientSecretUnavailable,
    read_request,
)
from adapters.juju.peer_relation import PEER_RELATION, PeerRelation, PeerRelationMissing
from adapters.juju.secret_store import StoreUnavailable
from adapters.postgres.errors import BackendUnavailable
from domain.backend import (
    BackendCredentials,
    BackendEndpoints,
    auth_password,
    is_auth_configured,
)
from domain.clients import (
    ClientRequest,
    InvalidClientRequest,
    client_answer,
    client_uri,
    ready_for_client,
    with_client,
    without_client,
)
from domain.errors import InvalidCharmConfig, InvalidInput, InvalidPeerData
from domain.peer_data import UnitPeerData, content_digest, relation_password_key
from domain.pgb_config import parse_pgb_ini, render_pgb_ini
from domain.ports import SecretStorePort, WorkloadUnavailable
from domain.status import Severity, StatusReason

if TYPE_CHECKING:
    from app.charm import PgBouncerK8sCharm

logger = logging.getLogger(__name__)

BACKEND_NOT_READY = "waiting for the backend database (its credentials and auth_query set up)"
NO_WORKLOAD = "waiting for the pgbouncer container (Pebble is not reachable)"
NO_LEADER_CONFIG = "no pgbouncer config yet"
DEFAULT_LISTEN_PORT = 6432

_LOCAL_FAULTS = (
    WorkloadUnavailable,
    StoreUnavailable,
    ClientSecretUnavailable,
    PeerRelationMissing,
    ops.ModelError,
)


class _Retry(Exception):
    """Serving a client must wait: the message says why; the caller defers or not."""


class ClientHandlers(ops.Object):
    """The leader's side of ``database``; the charm observes its handlers."""

    _stored = ops.StoredState()

    def __init__(self, charm: "PgBouncerK8sCharm"):
        super().__init__(charm, CLIENT_RELATION)
        self._charm = charm
        # served: relation id -> digest of what was set up; databases: relation id -> its
        # database (relation-broken may run when the databag can no longer be read);
        # to_drop: relation ids whose role is still to be dropped on the backend.
        self._stored.set_default(served={}, databases={}, to_drop=[])

    # --- handlers ------------------------------------------------------------------------

    def on_changed(self, event: ops.RelationChangedEvent) -> None:
        if not self._charm.unit.is_leader():
            return
        try:
            self._serve(event.relation, event)
        except _Retry as err:
            self._retry(event, str(err))
        self.refresh()

    def on_backend_changed(self, event: ops.RelationChangedEvent) -> None:
        """New backend credentials or endpoints: every client's entries follow them."""
        if not self._charm.unit.is_leader():
            return
        if self._serve_all(event):
            event.defer()
        self.refresh()

    def on_update_status(self, event: ops.EventBase) -> None:
        """Retry what may have been lost: role drops, requests not served, answers."""
        if not self._charm.unit.is_leader():
            return
        self._drop_pending()
        self._serve_all(event)
        self.refresh()

    def on_config_changed(self, _event: ops.ConfigChangedEvent) -> None:
        """After the charm re-rendered pgbouncer.ini: endpoints carry the new listen_port."""
        self.refresh()

    def on_broken(self, event: ops.RelationBrokenEvent) -> None:
        if not self._charm.unit.is_leader():
            return
        relation = event.relation
        key = str(relation.id)
        where = _where(relation)
        database = self._stored.databases.get(key) or _served_database(self.model, relation)
        workload = self._charm.make_workload()
        try:
            if not workload.is_reachable():
                self._retry(event, f"{where} removed; taking it out is pending: {NO_WORKLOAD}")
                return
            cfg = workload.read_cfg()
            if database is not None and cfg is not None and not self._in_use(database, relation):
                new = render_pgb_ini(without_client(parse_pgb_ini(cfg), database))
                if new != cfg:
                    workload.write_cfg(new)
                    workload.reload()
            self._charm._store().update({relation_password_key(relation.id): None})
            ClientCredentials(self.model, ClientDatabag(self.model, relation)).remove()
        except InvalidInput as err:
            self._reason(Severity.BLOCKED, f"pgbouncer.ini on the leader is invalid: {err}")
            return
        except _LOCAL_FAULTS as err:
            self._retry(event, f"{where} removed; taking it out is pending: {_first_line(err)}")
            return
        # A relation never served has no role to drop (its request never reached the backend).
        set_up = database is not None or key in self._stored.served
        self._stored.served.pop(key, None)
        self._stored.databases.pop(key, None)
        if set_up and relation.id not in self._stored.to_drop:
            self._stored.to_drop.append(relation.id)
        self._drop_pending()
        logger.info("%s removed: its pgbouncer entries and password are gone", where)
        self._publish(event)

    # --- serving a request -----------------------------------------------------------------

    def _serve_all(self, event: ops.EventBase) -> bool:
        """Serve every client relation; whether one of them must be retried."""
        retry = False
        for relation in self.model.relations[CLIENT_RELATION]:
            try:
                self._serve(relation, event)
            except _Retry as err:
                logger.warning("%s; will retry", err)
                self._reason(Severity.WAITING, str(err))
                retry = True
        return retry

    def _serve(self, relation: ops.Relation, event: ops.EventBase) -> None:
        """Set up what ``relation``'s client asked for; raises ``_Retry`` when it must wait."""
        where = _where(relation)
        try:
            request = read_request(relation)
        except InvalidClientRequest as err:
            logger.error("%s: cannot serve the request: %s", where, err)
            self._reason(Severity.BLOCKED, f"{where}: {err}")
            return
        except ops.ModelError as err:
            raise _Retry(f"{where}: cannot read the request: {_first_line(err)}") from None
        if request is None:
            return  # nothing asked yet: the client's next relation-changed brings it
        databag = ClientDatabag(self.model, relation)
        served = databag.database
        if served is not None and served != request.database:
            self._reason(
                Severity.BLOCKED,
                f"{where}: the database cannot change from {served} to {request.database};"
                " remove the relation and add it again",
            )
            return
        endpoints, credentials = self._backend(where)
        workload = self._charm.make_workload()
        try:
            if not workload.is_reachable():
                raise _Retry(f"{where}: {NO_WORKLOAD}")
            cfg, auth = workload.read_cfg(), workload.read_auth()
            store = self._charm._store()
            stored_password = converters.read_store(store.read()).password(relation.id)
        except _LOCAL_FAULTS as err:
            raise _Retry(f"{where}: {_first_line(err)}") from None
        if cfg is None:
            raise _Retry(f"{where}: {NO_LEADER_CONFIG}")
        auth_user = credentials.auth_user
        auth_pw = auth_password(auth, auth_user)
        if auth_pw is None or not is_auth_configured(cfg, auth, auth_user):
            raise _Retry(f"{where}: {BACKEND_NOT_READY}")
        if request.user == credentials.username:
            self._reason(
                Severity.BLOCKED,
                f"{where}: its role {request.user} is the backend's own user; relate again",
            )
            return
        try:
            new_cfg = render_pgb_ini(
                with_client(parse_pgb_ini(cfg), request, endpoints, auth_user)
            )
        except InvalidInput as err:
            self._reason(Severity.BLOCKED, f"pgbouncer.ini on the leader is invalid: {err}")
            return
        password = stored_password or secrets.token_urlsafe(24)
        digest = _serve_digest(request, password, credentials, endpoints)
        key = str(relation.id)
        # A fresh password makes a fresh digest: the backend is then always set up.
        if self._stored.served.get(key) != digest:
            self._set_up_on_backend(where, request, password, credentials, endpoints, auth_pw)
        try:
            if stored_password != password:
                store.update({request.user: password})
            if new_cfg != cfg:
                workload.write_cfg(new_cfg)
                workload.reload()
            databag.update({"database": request.database})
        except _LOCAL_FAULTS as err:
            message = f"serving database {request.database} failed: {_first_line(err)}"
            raise _Retry(f"{where}: {message}") from None
        self._stored.served[key] = digest
        self._stored.databases[key] = request.database
        if served is None:
            logger.info("%s: database %s set up", where, request.database)
        if new_cfg != cfg:
            self._publish(event)

    def _backend(self, where: str) -> tuple[BackendEndpoints, BackendCredentials]:
        relation = backend_relation(self.model)
        if relation is None:
            raise _Retry(f"{where}: {BACKEND_NOT_READY}")
        try:
            endpoints = read_endpoints(relation)
            credentials = read_credentials(self.model, relation)
        except (BackendSecretUnavailable, InvalidInput) as err:
            # The backend handler reports what is wrong with the backend's data.
            raise _Retry(f"{where}: {BACKEND_NOT_READY}: {err}") from None
        except ops.ModelError as err:
            raise _Retry(f"{where}: {BACKEND_NOT_READY}: {_first_line(err)}") from None
        if endpoints is None or credentials is None:
            raise _Retry(f"{where}: {BACKEND_NOT_READY}")
        return endpoints, credentials

    def _set_up_on_backend(
        self,
        where: str,
        request: ClientRequest,
        password: str,
        credentials: BackendCredentials,
        endpoints: BackendEndpoints,
        auth_pw: str,
    ) -> None:
        # psycopg loads here, in the hooks that reach the backend, not in every hook.
        from adapters.postgres.auth_setup import install_auth, make_dsn
        from adapters.postgres.clients import create_client

        primary = endpoints.primary
        dsn = make_dsn(primary.address, primary.port, credentials.username, credentials.password)
        try:
            create_client(
                dsn,
                request.user,
                password,
                request.database,
                request.extra_user_roles,
                self._mark(request.relation_id),
            )
            # Re-asserts the auth role with the password it already has, and installs the
            # function in the client's database, where pgbouncer 1.18 runs auth_query.
            install_auth(dsn, credentials.auth_user, auth_pw, [request.database])
        except BackendUnavailable as err:
            raise _Retry(
                f"{where}: cannot set up database {request.database} on the backend: {err}"
            ) from None

    # --- keeping answers current -------------------------------------------------------------

    def refresh(self) -> None:
        """Bring every client's answer up to date; hand credentials that are due. Leader only.

        Runs in every peer hook: it reads databags (cached by ops for the hook) and writes only
        the values that changed.
        """
        if not self._charm.unit.is_leader():
            return
        relations = self.model.relations[CLIENT_RELATION]
        if not relations:
            return
        peers = PeerRelation(self.model)
        try:
            app = peers.app_data()
            units = peers.units_data()
        except InvalidPeerData as err:
            logger.warning("client answers not refreshed: %s", err)
            return
        own = self.model.unit.name
        context = _AnswerContext(
            leader_hostname=peers.hostname,
            listen_port=self._listen_port(app.cfg_file),
            peer_hostnames=tuple(
                data.hostname for name, data in units.items() if name != own and data.hostname
            ),
            version=self._backend_version(),
            cfg_file=app.cfg_file,
            units=units,
        )
        passwords = _Passwords(self._charm._store)
        for relation in relations:
            try:
                self._refresh_one(relation, context, passwords)
            except _LOCAL_FAULTS as err:
                message = f"{_where(relation)}: cannot update the answer: {_first_line(err)}"
                logger.warning(message)
                self._reason(Severity.WAITING, message)

    def _refresh_one(
        self, relation: ops.Relation, context: "_AnswerContext", passwords: "_Passwords"
    ) -> None:
        databag = ClientDatabag(self.model, relation)
        database = databag.database
        if database is None:
            return  # not set up yet: relation-changed or update-status does that
        request = _request_of(relation.id, database)
        if request is None:
            return
        answer = client_answer(
            request,
            context.leader_hostname,
            context.listen_port,
            context.peer_hostnames,
            context.version,
        )
        credentials = ClientCredentials(self.model, databag)
        handed = databag.credentials_handed
        if not handed and not ready_for_client(request, context.cfg_file, context.units):
            waiting = _lagging(context.cfg_file, database, context.units)
            units = "unit" if waiting == 1 else "units"
            self._reason(
                Severity.WAITING,
                f"waiting for {waiting} {units} to apply database {database}"
                if waiting
                else f"waiting for the {PEER_RELATION} relation to apply database {database}",
            )
            return
        if not handed or databag.get("endpoints") != answer.endpoints:
            password = passwords.get(relation.id)
            if password is None:
                self._reason(
                    Severity.WAITING,
                    f"{_where(relation)}: its password is not in the peer secret store yet",
                )
                return
            uris = client_uri(request.user, password, answer.endpoints, database)
            # The credentials first: a client seeing endpoints expects credentials with them.
            credentials.put(request.user, password, uris)
            if not handed:
                logger.info("%s: credentials handed for database %s", _where(relation), database)
        databag.update(answer.fields())

    def _listen_port(self, cfg_file: str | None) -> int:
        try:
            return converters.read_charm_config(self._charm.config).listen_port
        except InvalidCharmConfig:
            pass  # the charm reports it; the units still run the published port
        try:
            port = parse_pgb_ini(cfg_file).setting("listen_port") if cfg_file else None
        except InvalidInput:
            port = None
        return int(port) if port else DEFAULT_LISTEN_PORT

    def _backend_version(self) -> str | None:
        relation = backend_relation(self.model)
        if relation is None:
            return None
        try:
            endpoints = read_endpoints(relation)
        except (InvalidInput, ops.ModelError):
            return None
        return endpoints.version if endpoints else None

    # --- relation-broken ---------------------------------------------------------------------

    def _in_use(self, database: str, gone: ops.Relation) -> bool:
        """Whether another live client relation is served the same database."""
        for relation in self.model.relations[CLIENT_RELATION]:
            if relation.id == gone.id:
                continue
            other = self._stored.databases.get(str(relation.id)) or _served_database(
                self.model, relation
            )
            if other == database:
                return True
        return False

    def _drop_pending(self) -> None:
        """Drop the roles of removed relations on the backend; keep those that failed."""
        pending = list(self._stored.to_drop)
        if not pending:
            return
        relation = backend_relation(self.model)
        if relation is None:
            # The roles were on a backend this charm is no longer related to: nobody here can
            # reach it again (a new backend-database relation may be another cluster).
            users = ", ".join(relation_password_key(rid) for rid in pending)
            logger.warning("backend-database relation gone: drop the role(s) %s by hand", users)
            self._stored.to_drop = []
            return
        try:
            endpoints = read_endpoints(relation)
            credentials = read_credentials(self.model, relation)
        except (BackendSecretUnavailable, InvalidInput, ops.ModelError) as err:
            logger.warning("cannot read the backend's credentials to drop client roles: %s", err)
            endpoints = credentials = None
        if endpoints is None or credentials is None:
            users = ", ".join(relation_password_key(rid) for rid in pending)
            self._reason(
                Severity.WAITING, f"waiting for the backend database to drop the role(s) {users}"
            )
            return
        from adapters.postgres.auth_setup import make_dsn
        from adapters.postgres.clients import drop_client

        primary = endpoints.primary
        dsn = make_dsn(primary.address, primary.port, credentials.username, credentials.password)
        for relation_id in pending:
            user = relation_password_key(relation_id)
            try:
                drop_client(dsn, user, self._mark(relation_id))
            except BackendUnavailable as err:
                logger.warning("cannot drop the client role %s: %s", user, err)
                self._reason(Severity.WAITING, f"dropping role {user} on the backend: {err}")
                continue
            self._stored.to_drop.remove(relation_id)

    # --- helpers -------------------------------------------------------------------------------

    def _mark(self, relation_id: int) -> str:
        from adapters.postgres.clients import role_mark

        return role_mark(self.model.uuid, self.model.app.name, relation_id)

    def _publish(self, event: ops.EventBase) -> None:
        """Let the charm's peer logic publish the leader's config now, not on the next hook."""
        self._charm._run(event, self._charm._sync.on_update_status)

    def _reason(self, severity: Severity, message: str) -> None:
        self._charm._reasons.append(StatusReason(severity, " ".join(message.split())))

    def _retry(self, event: ops.EventBase, message: str) -> None:
        logger.warning("%s; deferring %s", message, type(event).__name__)
        self._reason(Severity.WAITING, message)
        event.defer()


class _Passwords:
    """The client passwords of the peer secret store, read once, and only when needed."""

    def __init__(self, store: Callable[[], SecretStorePort]):
        self._store = store
        self._passwords: dict[int, str] | None = None

    def get(self, relation_id: int) -> str | None:
        if self._passwords is None:
            self._passwords = dict(converters.read_store(self._store().read()).passwords)
        return self._passwords.get(relation_id)


@attrs.frozen
class _AnswerContext:
    """What every client's answer is computed from, read once per refresh."""

    leader_hostname: str
    listen_port: int
    peer_hostnames: tuple[str, ...]
    version: str | None
    cfg_file: str | None = attrs.field(repr=False)
    units: dict[str, UnitPeerData]


def _where(relation: ops.Relation) -> str:
    app = f" ({relation.app.name})" if relation.app is not None else ""
    return f"database relation {relation.id}{app}"


def _served_database(model: ops.Model, relation: ops.Relation) -> str | None:
    try:
        return ClientDatabag(model, relation).database
    except ops.ModelError:
        return None


def _request_of(relation_id: int, database: str) -> ClientRequest | None:
    """The request as served (its database from this charm's own databag)."""
    try:
        return ClientRequest(relation_id=relation_id, database=database)
    except InvalidClientRequest:
        return None


def _lagging(cfg_file: str | None, database: str, units: dict[str, UnitPeerData]) -> int:
    """How many live units do not run a published config holding ``database`` yet."""
    if cfg_file is None:
        return len(units)
    try:
        if parse_pgb_ini(cfg_file).database(database) is None:
            return len(units)
    except InvalidInput:
        return len(units)
    digest = content_digest(cfg_file)
    return sum(
        1
        for data in units.values()
        if data.ack is None or not data.ack.ok or data.ack.cfg_digest != digest
    )


def _serve_digest(
    request: ClientRequest,
    password: str,
    credentials: BackendCredentials,
    endpoints: BackendEndpoints,
) -> str:
    # One-way and kept in this unit's StoredState only: it tells "already set up" apart from
    # "something changed" without storing the password.
    return content_digest(
        "\n".join(
            (
                str(request.relation_id),
                request.database,
                ",".join(request.extra_user_roles),
                password,
                credentials.username,
                credentials.password,
                endpoints.primary.render(),
            )
        )
    )


def _first_line(err: Exception) -> str:
    text = str(err)
    return text.splitlines()[0] if text else type(err).__name__
