"""ClientService: the ``database`` relation's decisions, as a step of the leader's plan.

Only the leader acts; followers receive the new pgbouncer.ini through ``pgb-peers`` like any
other change, and never touch a client relation. In every leader hook, for each client
relation (``ClientView``), one row decides:

| the client relation                          | what the leader's plan gets                 |
|----------------------------------------------|---------------------------------------------|
| its request cannot be served                 | blocked, naming the relation and the reason |
| nothing asked yet                            | nothing                                     |
| asks for another database than it was given  | blocked: the database cannot change         |
| asks with the backend's own user             | blocked                                     |
| backend not ready (no credentials, no        | waiting (its own hook defers); a client     |
| auth_query in the files), or no container    | already served keeps its entries            |
| set up already with these inputs (memory;    | its pgbouncer.ini entries, nothing else     |
| nothing remembered: answered before, and not |                                             |
| its own hook or the backend's)               |                                             |
| otherwise                                    | ``CreateClientRole``, ``InstallAuth`` in its|
|                                              | database, ``StorePassword`` when new, its   |
|                                              | two entries, ``RememberClient``             |
| broken                                       | its entries out unless another relation     |
|                                              | uses the database, ``RemovePassword``,      |
|                                              | ``RevokeCredentials``, ``ForgetClient``,    |
|                                              | ``DropClientRole`` (best effort)            |

Once the files are published and acknowledged, the answer: ``database`` as soon as it is set
up, and the credentials (``HandCredentials``) with ``endpoints``, ``read-only-endpoints`` and
``version`` only once every live unit acknowledged a published config holding the database
(``clients.units_lagging``: the one gate). Handed credentials follow the endpoints (a peer
joining or leaving, a new leader, a new ``listen_port``); unchanged values are not rewritten,
so a quiet hook writes nothing. Roles of removed relations whose drop failed are dropped on a
later hook, or given up when the backend relation is gone.
"""

import attrs

from domain.backend import BackendAccess, auth_password, is_auth_configured
from domain.clients import (
    ClientRequest,
    client_answer,
    client_uri,
    units_lagging,
    with_client,
    without_client,
)
from domain.effects import (
    AnswerClient,
    CreateClientRole,
    DropClientRole,
    ForgetClient,
    GiveUpRoleDrops,
    HandCredentials,
    InstallAuth,
    RememberClient,
    RemovePassword,
    RestrictClientRole,
    RevokeCredentials,
    StorePassword,
)
from domain.errors import InvalidInput
from domain.hook_view import ClientView, EventKind, HookEvent, HookView, SecretSupply
from domain.peer_data import UnitPeerData, content_digest, relation_password_key
from domain.peer_sync import NOT_REACHABLE, Plan, WorkloadFiles, parse_or_none
from domain.pgb_config import PgbConfig, render_pgb_ini
from domain.status import Severity
from domain.tls import client_tls_fields
from domain.values import value_class

BACKEND_NOT_READY = "waiting for the backend database (its credentials and auth_query set up)"
NO_LEADER_CONFIG = "no pgbouncer config yet"
DEFAULT_LISTEN_PORT = 6432
PEER_RELATION = "pgb-peers"


# What the backend setup of a client does; a new value sets every client up again once (a
# charm upgraded from a version without owner roles, records and closed databases).
CLIENT_SETUP_VERSION = "isolation-1"


def serve_digest(request: ClientRequest, password: str, access: BackendAccess) -> str:
    # One-way and kept in this unit's memory only: it tells "already set up" apart from
    # "something changed" without storing the password.
    fields = (CLIENT_SETUP_VERSION, request.database, ",".join(request.extra_user_roles), password)
    return content_digest(f"{request.relation_id}\n{chr(10).join(fields)}\n{access.fingerprint()}")


@value_class
class _Backend:
    """The backend as serving a client needs it: reachable, and auth_query set up."""

    access: BackendAccess
    auth_password: str


@attrs.define(eq=False, repr=False)
class ClientService:
    """The leader's side of ``database`` (a ``peer_sync.LeaderStep``)."""

    view: HookView
    event: HookEvent
    secrets: SecretSupply
    # Filled by ``shape`` for ``answer``: the database each client is answered for, and the
    # passwords as they will be in the store.
    _to_answer: list[tuple[ClientView, str]] = attrs.Factory(list)
    _passwords: dict[int, str] = attrs.Factory(dict)

    # --- the files -------------------------------------------------------------------------

    def shape(self, plan: Plan, files: WorkloadFiles | None) -> WorkloadFiles | None:
        self._drop_pending(plan)
        live = [client for client in self.view.clients if not client.gone]
        for client in self.view.clients:
            if client.gone:
                files = self._remove(plan, client, live, files)
        # An invalid pgbouncer.ini is reported by the peer routine (it cannot publish it).
        cfg = parse_or_none(files.cfg) if files is not None else None
        backend = self._backend(files)
        before = cfg
        for client in live:
            cfg = self._serve(plan, client, files, cfg, backend)
        if any(not client.credentials_handed for client, _database in self._to_answer):
            # The gate waits for every unit's acknowledgement of what the leader publishes.
            plan.acknowledgements_wanted = True
        if files is None or cfg is None or cfg == before:
            return files
        return WorkloadFiles(render_pgb_ini(cfg), files.auth)

    def _backend(self, files: WorkloadFiles | None) -> _Backend | None:
        backend = self.view.backend
        if backend is None or backend.gone or backend.access is None or files is None:
            return None
        access = backend.access
        auth_user = access.credentials.auth_user
        password = auth_password(files.auth, auth_user)
        if password is None or not is_auth_configured(files.cfg, files.auth, auth_user):
            return None
        return _Backend(access, password)

    def _serve(
        self,
        plan: Plan,
        client: ClientView,
        files: WorkloadFiles | None,
        cfg: PgbConfig | None,
        backend: _Backend | None,
    ) -> PgbConfig | None:
        own = self.event.is_about(client.relation_id, EventKind.CLIENT_CHANGED)
        request, served = self._request(plan, client, own), client.served_database
        refused = self.view.memory.refusal(client.relation_id)
        if request is not None and refused is not None and refused.is_for(request):
            # The backend refused it (its database is another application's): no entries,
            # no answer, until the request changes.
            plan.report(Severity.BLOCKED, f"{client.where}: {refused.reason}")
            return cfg
        if served is not None:
            self._to_answer.append((client, served))
        if request is None or (served is not None and served != request.database):
            return cfg
        if files is None or cfg is None or backend is None:
            if served is None or own:
                self._wait(plan, own, f"{client.where}: {_not_ready(files, cfg)}")
            return cfg
        if request.user == backend.access.credentials.username:
            plan.report(
                Severity.BLOCKED,
                f"{client.where}: its role {request.user} is the backend's own user; relate again",
            )
            return cfg
        self._set_up(
            plan, request, client.app_name or "", backend, trusted=served is not None and not own
        )
        if served is None:
            self._to_answer.append((client, request.database))
        endpoints = self.view.backend.endpoints if self.view.backend else None
        if endpoints is None:
            return cfg
        return with_client(cfg, request, endpoints, backend.access.credentials.auth_user)

    def _request(self, plan: Plan, client: ClientView, own: bool) -> ClientRequest | None:
        """The request, unless it cannot be served as it is (then the reason is reported)."""
        where, served = client.where, client.served_database
        if client.refusal is not None:
            plan.report(Severity.BLOCKED, f"{where}: {client.refusal}")
            self._restrict(plan, client)
            return None
        if client.unreadable is not None:
            self._wait(plan, own, f"{where}: cannot read the request: {client.unreadable}")
            return None
        request = client.request
        if request is not None and served is not None and served != request.database:
            plan.report(
                Severity.BLOCKED,
                f"{where}: the database cannot change from {served} to {request.database};"
                " remove the relation and add it again",
            )
        return request

    def _set_up(
        self, plan: Plan, request: ClientRequest, app_name: str, backend: _Backend, trusted: bool
    ) -> None:
        """``trusted``: the client was answered before and this is not its own hook, so a unit
        that remembers nothing of it (a new leader) does not reach the backend for it."""
        stored = self.view.peer.store.password(request.relation_id) if self.view.peer else None
        password = stored or self.secrets.take()
        self._passwords[request.relation_id] = password
        digest = serve_digest(request, password, backend.access)
        remembered = self.view.memory.client(request.relation_id)
        backend_hook = self.event.kind is EventKind.BACKEND_CHANGED
        if remembered is None and trusted and not backend_hook and stored is not None:
            pass
        # A fresh password makes a fresh digest: the backend is then always set up.
        elif remembered is None or remembered.digest != digest:
            access, auth_user = backend.access, backend.access.credentials.auth_user
            plan.add(
                CreateClientRole(
                    access,
                    request.relation_id,
                    request.user,
                    password,
                    request.database,
                    request.extra_user_roles,
                    app_name,
                )
            )
            # The auth function in the client's database too: pgbouncer 1.18 runs auth_query
            # in the database the client asked for.
            plan.add(InstallAuth(access, auth_user, backend.auth_password, (request.database,)))
            plan.add(RememberClient(request.relation_id, digest, request.database))
        if stored != password:
            plan.add(StorePassword(request.relation_id, password))

    def _restrict(self, plan: Plan, client: ClientView) -> None:
        """A client set up before its request became one the charm refuses (an earlier
        version granted CREATEROLE): its role loses what it must not have, once."""
        remembered = self.view.memory.client(client.relation_id)
        backend = self.view.backend
        if remembered is None or backend is None or backend.gone or backend.access is None:
            return
        user = relation_password_key(client.relation_id)
        plan.add(RestrictClientRole(backend.access, client.relation_id, user, remembered.database))
        plan.add(ForgetClient(client.relation_id, drop_role=False))

    @staticmethod
    def _wait(plan: Plan, own: bool, message: str) -> None:
        if own:
            plan.defer_later(message)
        else:
            plan.report(Severity.WAITING, message)

    # --- removal ---------------------------------------------------------------------------

    def _remove(
        self, plan: Plan, client: ClientView, live: list[ClientView], files: WorkloadFiles | None
    ) -> WorkloadFiles | None:
        relation_id, where = client.relation_id, client.where
        remembered = self.view.memory.client(relation_id)
        database = remembered.database if remembered else client.served_database
        if files is None:
            plan.defer_later(f"{where} removed; taking it out is pending: {NOT_REACHABLE}")
            return None
        cfg = files.cfg
        if database is not None and cfg is not None and not self._in_use(database, live):
            parsed = parse_or_none(cfg)
            if parsed is None:
                return files  # the peer routine reports why
            cfg = render_pgb_ini(without_client(parsed, database))
        store = self.view.peer.store if self.view.peer else None
        if store is not None and store.password(relation_id) is not None:
            plan.add(RemovePassword(relation_id))
        plan.add(RevokeCredentials(relation_id))
        # A relation never set up has no role to drop (its request never reached the backend).
        set_up = database is not None or remembered is not None
        if set_up:
            plan.add(ForgetClient(relation_id, drop_role=True))
            backend = self.view.backend
            access = backend.access if backend is not None and not backend.gone else None
            if access is not None:
                plan.add(DropClientRole(access, relation_id, relation_password_key(relation_id)))
        return WorkloadFiles(cfg, files.auth)

    def _in_use(self, database: str, live: list[ClientView]) -> bool:
        """Whether another live client relation is served the same database."""
        for client in live:
            remembered = self.view.memory.client(client.relation_id)
            if database in (client.served_database, remembered and remembered.database):
                return True
        return False

    def _drop_pending(self, plan: Plan) -> None:
        """Drop the roles of relations removed earlier whose drop has not succeeded yet."""
        pending = self.view.memory.roles_to_drop
        if not pending:
            return
        users = tuple(relation_password_key(relation_id) for relation_id in pending)
        backend = self.view.backend
        if backend is None or backend.gone:
            # The roles were on a backend this charm is no longer related to: nobody here can
            # reach it again (a new backend-database relation may be another cluster).
            plan.add(GiveUpRoleDrops(users))
            return
        access = backend.access
        if access is None:
            plan.report(
                Severity.WAITING,
                f"waiting for the backend database to drop the role(s) {', '.join(users)}",
            )
            return
        for relation_id, user in zip(pending, users, strict=True):
            plan.add(DropClientRole(access, relation_id, user))

    # --- the answer --------------------------------------------------------------------------

    def answer(self, plan: Plan) -> None:
        if not self._to_answer:
            return
        units = dict(self.view.units)
        if plan.own_ack is not None and self.view.unit_name:
            units[self.view.unit_name] = attrs.evolve(
                units.get(self.view.unit_name, UnitPeerData()), ack=plan.own_ack
            )
        port = self._listen_port(plan)
        for client, database in self._to_answer:
            try:
                request = ClientRequest(relation_id=client.relation_id, database=database)
            except InvalidInput:
                continue  # not a database this charm would have set up: leave it alone
            self._answer_one(plan, client, request, units, port)

    def _answer_one(
        self,
        plan: Plan,
        client: ClientView,
        request: ClientRequest,
        units: dict[str, UnitPeerData],
        port: int,
    ) -> None:
        peer, backend = self.view.peer, self.view.backend
        if peer is None:
            return
        answered = dict(client.answered)
        version = backend.endpoints.version if backend and backend.endpoints else None
        answer = client_answer(request, peer.hostname, port, peer.peer_hostnames, version)
        lagging = units_lagging(request.database, plan.published_cfg, units)
        if not client.credentials_handed and (lagging or not units):
            self._set_fields(plan, client, {"database": request.database})
            noun = "unit" if lagging == 1 else "units"
            who = f"{lagging} {noun}" if lagging else f"the {PEER_RELATION} relation"
            plan.report(
                Severity.WAITING, f"waiting for {who} to apply database {request.database}"
            )
            return
        # As the interface's own provider does: a secret whenever the client asked for
        # secrets (and Juju has them), plain fields only when it did not.
        in_secret = self.view.juju_has_secrets and client.asked_for_secrets
        moved = client.credentials_handed and client.credentials_in_secret != in_secret
        if not client.credentials_handed or moved or answered.get("endpoints") != answer.endpoints:
            password = self._passwords.get(request.relation_id) or peer.store.password(
                request.relation_id
            )
            if password is None:
                plan.report(
                    Severity.WAITING,
                    f"{client.where}: its password is not in the peer secret store yet",
                )
                return
            uris = client_uri(request.user, password, answer.endpoints, request.database)
            plan.add(HandCredentials(request.relation_id, request.user, password, uris, in_secret))
        tls = client_tls_fields(parse_or_none(plan.published_cfg), peer.tls.ca, "tls" in answered)
        self._set_fields(plan, client, {**answer.fields(), **tls})

    @staticmethod
    def _set_fields(plan: Plan, client: ClientView, fields: dict[str, str | None]) -> None:
        answered = dict(client.answered)
        changed = tuple(
            (key, value) for key, value in fields.items() if answered.get(key) != value
        )
        if changed:
            plan.add(AnswerClient(client.relation_id, changed))

    @staticmethod
    def _listen_port(plan: Plan) -> int:
        """The port the leader's pgbouncer listens on, as its files will say."""
        for text in (plan.wanted.cfg if plan.wanted else None, plan.published_cfg):
            cfg = parse_or_none(text)
            port = cfg.setting("listen_port") if cfg is not None else None
            if port and port.isdigit():
                return int(port)
        return DEFAULT_LISTEN_PORT


def _not_ready(files: WorkloadFiles | None, cfg: PgbConfig | None) -> str:
    if files is None:
        return NOT_REACHABLE
    if cfg is None:
        return NO_LEADER_CONFIG
    return BACKEND_NOT_READY
