"""Gathering: the adapters read into one ``HookView``, and the ops event named as a ``HookEvent``.

``Adapters`` holds the adapters of one hook (each reads at most once: the peer secret store
keeps what it read, ops caches the databags, the workload asks Pebble for the services once).
``gather`` reads, in this order, the charm config, the peer databags and store, the
container's two files, the processes and the exporters (one answer), the metrics, and, on
the leader, the client relations, the memory and the backend relation. It decides nothing:
what it cannot read becomes a problem field of the view, and the domain says what that means.

Reading costs the same however many clients there are: the files are pulled once, the peer
secret is read once, the backend's credentials secret once (and only when a hook may reach
the backend: its own events, or a client or a role drop to look after); the client
relations cost their databags, which ops reads once per hook.
"""

import logging
import os
import secrets
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import attrs
import ops

from adapters.juju import converters
from adapters.juju.backend import (
    BACKEND_RELATION,
    backend_secret_relation,
    has_credentials,
    read_backend_view,
)
from adapters.juju.backend_tls import BackendCaUnavailable, read_backend_ca
from adapters.juju.clients import CLIENT_RELATION, ClientRelations, read_client_view
from adapters.juju.cos import metrics_related
from adapters.juju.hostname import unit_hostname
from adapters.juju.memory import UnitMemory
from adapters.juju.peer_relation import PEER_RELATION, PeerRelation
from adapters.juju.secret_store import StoreUnavailable, open_store
from adapters.pebble.exporters import PebbleExporters
from adapters.postgres.backend import PostgresBackend
from domain.errors import InvalidCharmConfig, InvalidPeerData
from domain.hook_view import BackendView, ClientView, EventKind, HookEvent, HookView, Memory
from domain.observability import PROCESSES_KEY, STATS_PASSWORD_KEY, ExporterState, MetricsView
from domain.peer_data import Acknowledgement, AppPeerData, StoreContents, UnitPeerData
from domain.peer_sync import PeerView, WorkloadFiles
from domain.pgb_version import InvalidPgbVersion, PgbVersion, parse_version_output
from domain.ports import SecretStorePort, WorkloadPort, WorkloadUnavailable
from domain.processes import ProcessState
from domain.tls import BackendCaState, ClientTlsState, InvalidTlsMaterial, TlsInPlace, TlsView

if TYPE_CHECKING:
    from adapters.juju.certificates import Certificates

logger = logging.getLogger(__name__)

CERTIFICATES_RELATION = "certificates"
# The hooks the TLS library handles itself: it must be there, observing, before they run.
_LIBRARY_HOOKS = (f"{CERTIFICATES_RELATION}-relation-", "secret-expired", "secret-remove")
_TLS_SETTING_NAMES = ("client_tls_sslmode", "server_tls_ca_file")


def needs_library() -> bool:
    """Whether the hook being run is one the TLS library handles."""
    hook = os.environ.get("JUJU_DISPATCH_PATH", "").removeprefix("hooks/")
    return hook.startswith(_LIBRARY_HOOKS)


_FRESH_SECRET_BYTES = 24


@attrs.define
class Adapters:
    """The adapters of one hook; the applier writes through the same ones."""

    model: ops.Model
    config: ops.ConfigData
    workload: WorkloadPort
    memory: UnitMemory
    processes: int
    peers: PeerRelation = attrs.field(init=False)
    # The relation of a relation-broken event: ops leaves it out of model.relations.
    broken: ops.Relation | None = None
    # The TLS library's requirer, loaded on first use (it brings cryptography).
    certificates: "Callable[[], Certificates] | None" = None
    _store: SecretStorePort | None = attrs.field(default=None, init=False)

    def __attrs_post_init__(self) -> None:
        self.peers = PeerRelation(self.model)

    def store(self) -> SecretStorePort:
        """The peer secret store, one per hook, so every reader shares one read."""
        if self._store is None:
            if self.peers.relation is None:
                raise StoreUnavailable(f"the {PEER_RELATION} relation does not exist yet")
            self._store = open_store(self.model, self.peers.relation, self.model.unit.is_leader())
        return self._store

    def exporters(self) -> PebbleExporters:
        """The exporters in the pgbouncer container (their .pgpass file and services)."""
        return PebbleExporters(self.model.unit.get_container("pgbouncer"))

    def backend_relation(self) -> ops.Relation | None:
        if self.broken is not None and self.broken.name == BACKEND_RELATION:
            return self.broken
        return self.model.get_relation(BACKEND_RELATION)

    def client_relations(self) -> list[ops.Relation]:
        relations = list(self.model.relations[CLIENT_RELATION])
        if self.broken is not None and self.broken.name == CLIENT_RELATION:
            relations.append(self.broken)
        return relations

    def clients(self) -> ClientRelations:
        return ClientRelations(self.model, self.client_relations())

    def postgres(self) -> PostgresBackend:
        return PostgresBackend(self.model.uuid, self.model.app.name)


# --- the event -------------------------------------------------------------------------------

_RELATION_EVENTS: dict[tuple[str, type], EventKind] = {
    (PEER_RELATION, ops.RelationCreatedEvent): EventKind.PEER_CREATED,
    (PEER_RELATION, ops.RelationJoinedEvent): EventKind.PEER_CHANGED,
    (PEER_RELATION, ops.RelationChangedEvent): EventKind.PEER_CHANGED,
    (PEER_RELATION, ops.RelationDepartedEvent): EventKind.PEER_DEPARTED,
    (BACKEND_RELATION, ops.RelationCreatedEvent): EventKind.BACKEND_CREATED,
    (BACKEND_RELATION, ops.RelationChangedEvent): EventKind.BACKEND_CHANGED,
    (BACKEND_RELATION, ops.RelationBrokenEvent): EventKind.BACKEND_BROKEN,
    (CLIENT_RELATION, ops.RelationChangedEvent): EventKind.CLIENT_CHANGED,
    (CLIENT_RELATION, ops.RelationBrokenEvent): EventKind.CLIENT_BROKEN,
    (CERTIFICATES_RELATION, ops.RelationCreatedEvent): EventKind.CERTIFICATES_CHANGED,
    (CERTIFICATES_RELATION, ops.RelationChangedEvent): EventKind.CERTIFICATES_CHANGED,
    (CERTIFICATES_RELATION, ops.RelationBrokenEvent): EventKind.CERTIFICATES_BROKEN,
}
_OTHER_EVENTS: dict[type, EventKind] = {
    ops.PebbleReadyEvent: EventKind.WORKLOAD_READY,
    ops.ConfigChangedEvent: EventKind.CONFIG_CHANGED,
    ops.LeaderElectedEvent: EventKind.LEADER_ELECTED,
    ops.SecretChangedEvent: EventKind.SECRET_CHANGED,
    ops.UpdateStatusEvent: EventKind.UPDATE_STATUS,
    ops.UpgradeCharmEvent: EventKind.UPGRADE_CHARM,
}


def hook_event(event: ops.EventBase, model: ops.Model) -> HookEvent:
    """The ops event as the domain names it (anything else: an update-status)."""
    if isinstance(event, ops.SecretChangedEvent):
        relation_id = backend_secret_relation(model, event.secret)
        if relation_id is not None:
            return HookEvent(EventKind.BACKEND_SECRET_CHANGED, relation_id)
    if isinstance(event, ops.RelationEvent):
        kind = _RELATION_EVENTS.get((event.relation.name, type(event)), EventKind.UPDATE_STATUS)
        departing = None
        if isinstance(event, ops.RelationDepartedEvent) and event.departing_unit is not None:
            departing = unit_hostname(event.departing_unit.name, model.name)
        return HookEvent(kind, event.relation.id, departing)
    for event_type, kind in _OTHER_EVENTS.items():
        if isinstance(event, event_type):
            return HookEvent(kind)
    return HookEvent(EventKind.UPDATE_STATUS)


# --- the view --------------------------------------------------------------------------------


def gather(adapters: Adapters, event: HookEvent) -> HookView:
    model = adapters.model
    charm, charm_problem = None, None
    try:
        charm = converters.read_charm_config(adapters.config)
    except InvalidCharmConfig as err:
        logger.error("invalid charm config: %s", err)
        charm_problem = str(err)
    backend_relation = adapters.backend_relation()
    unreadable = HookView(
        None, backend=_presence(model, backend_relation, event), charm_problem=charm_problem
    )
    peers = adapters.peers
    try:
        app, own, units = peers.app_data(), peers.own_data(), peers.units_data()
        raw_store = adapters.store().read() if peers.relation else {}
        store = converters.read_store(raw_store) if peers.relation else None
    except InvalidPeerData as err:
        logger.warning("invalid peer data: %s", err)
        return attrs.evolve(unreadable, peer_problem=str(err))
    except StoreUnavailable as err:
        logger.warning("peer secret store unavailable: %s; deferring", err)
        return attrs.evolve(unreadable, store_problem=str(err))
    others = (data.hostname for name, data in units.items() if name != model.unit.name)
    is_leader = model.unit.is_leader()
    store = store or StoreContents()
    memory = adapters.memory.read()
    remembered = _files_as_remembered(is_leader, event, memory, app, store)
    files = remembered or _files(adapters.workload)
    peer = PeerView(
        is_leader=is_leader,
        hostname=peers.hostname,
        app=app,
        store=store,
        own=own,
        workload=files,
        backend_credentials=has_credentials(model),
        peer_hostnames=tuple(sorted(hostname for hostname in others if hostname)),
        charm=charm,
        processes=adapters.processes,
        tls=_tls_view(adapters, event, files, app.cfg_file, memory, remembered is not None),
        pgbouncer_version=_pgbouncer_version(adapters.workload, own, event),
        peer_versions=tuple(
            sorted(
                data.pgbouncer_version
                for name, data in units.items()
                if name != model.unit.name and data.pgbouncer_version is not None
            )
        ),
        applied=memory.applied,
    )
    # A quiet follower asks Pebble nothing: neither its files nor its processes and exporters
    # (those are looked at on the events of _RECHECK, and on any hook that reads the files).
    looked = peer.workload is not None and remembered is None
    view = attrs.evolve(
        unreadable,
        peer=peer,
        unit_name=model.unit.name,
        units=tuple(sorted(units.items())),
        juju_has_secrets=model.juju_version.has_secrets,
        processes=_process_states(adapters.workload) if looked else (),
        processes_read=remembered is None,
        metrics=_metrics(adapters, raw_store, looked),
        memory=memory,
    )
    if not peer.is_leader:
        return view
    return _leader_view(adapters, event, view, backend_relation)


def _presence(
    model: ops.Model, relation: ops.Relation | None, event: HookEvent
) -> BackendView | None:
    if relation is None:
        return None
    gone = event.kind is EventKind.BACKEND_BROKEN and event.relation_id == relation.id
    return BackendView(relation_id=relation.id, requested_database=model.app.name, gone=gone)


def _leader_view(
    adapters: Adapters, event: HookEvent, view: HookView, relation: ops.Relation | None
) -> HookView:
    model = adapters.model
    clients = tuple(
        read_client_view(
            model,
            relation,
            gone=event.kind is EventKind.CLIENT_BROKEN and event.relation_id == relation.id,
        )
        for relation in adapters.client_relations()
    )
    memory = view.memory
    backend = view.backend
    if relation is not None and backend is not None:
        reaches_backend = event.kind in (
            EventKind.BACKEND_CREATED,
            EventKind.BACKEND_CHANGED,
            EventKind.BACKEND_BROKEN,
            EventKind.BACKEND_SECRET_CHANGED,
        )
        backend = read_backend_view(
            model,
            relation,
            credentials=reaches_backend or bool(clients) or bool(memory.roles_to_drop),
            gone=backend.gone,
        )
    return attrs.evolve(
        view,
        backend=backend,
        clients=clients,
        memory=memory,
        fresh_secrets=_fresh_secrets(clients),
    )


def _fresh_secrets(clients: tuple[ClientView, ...]) -> tuple[str, ...]:
    # One for the auth role and one per client: more than a hook can use.
    return tuple(secrets.token_urlsafe(_FRESH_SECRET_BYTES) for _ in range(len(clients) + 1))


def _metrics(adapters: Adapters, store: Mapping[str, str], looked: bool) -> MetricsView:
    """The metrics part of the view, from what this gathering read anyway: the relations,
    the store, this unit's databag, the services read with the processes, the memory."""
    model, relation = adapters.model, adapters.peers.relation
    # The exporters wait for the peer relation: their password lives in its store, and the
    # unit's process count in its databag.
    related = relation is not None and metrics_related(model)
    stored = store.get(STATS_PASSWORD_KEY)
    fresh = None
    if related and stored is None and model.unit.is_leader():
        # Letters and digits only (check_stats_password): 48 hex digits.
        fresh = secrets.token_hex(_FRESH_SECRET_BYTES)
    return MetricsView(
        related=related,
        stored_password=stored,
        fresh_password=fresh,
        exporters=_exporter_states(adapters.workload) if looked else (),
        exporters_read=looked,
        published_processes=relation.data[model.unit].get(PROCESSES_KEY) if relation else None,
        set_up=adapters.memory.exporters_digest(),
    )


def _exporter_states(workload: WorkloadPort) -> tuple[ExporterState, ...]:
    try:
        return workload.exporter_states()
    except WorkloadUnavailable as err:
        logger.warning("cannot read the exporters: %s", err)
        return ()


def _pgbouncer_version(
    workload: WorkloadPort, own: UnitPeerData, event: HookEvent
) -> PgbVersion | None:
    """The version of the image's pgbouncer: asked on pebble-ready (the container started,
    perhaps from a new image) and while it is unknown, otherwise the one this unit published
    when it last asked."""
    if event.kind is not EventKind.WORKLOAD_READY and own.pgbouncer_version is not None:
        return own.pgbouncer_version
    try:
        return parse_version_output(workload.pgbouncer_version())
    except (WorkloadUnavailable, InvalidPgbVersion) as err:
        logger.warning("cannot learn the pgbouncer version: %s", err)
        return own.pgbouncer_version


def _process_states(workload: WorkloadPort) -> tuple[ProcessState, ...]:
    try:
        return workload.process_states()
    except WorkloadUnavailable as err:
        logger.warning("cannot read the pgbouncer processes: %s", err)
        return ()


# The events on which a follower looks at its files whatever it remembers: the container
# restarted (pebble-ready), the charm changed (upgrade-charm), and the periodic check.
_RECHECK = frozenset({EventKind.WORKLOAD_READY, EventKind.UPGRADE_CHARM, EventKind.UPDATE_STATUS})


def _files_as_remembered(
    is_leader: bool, event: HookEvent, memory: Memory, app: AppPeerData, store: StoreContents
) -> WorkloadFiles | None:
    """A follower's files without asking Pebble, when it remembers running exactly what the
    leader publishes: then they are those texts. None: read them.

    The leader always reads its own (they are the source of truth), and every unit reads them
    on the events that may have changed them behind its back (``_RECHECK``).
    """
    if is_leader or event.kind in _RECHECK or memory.applied is None or app.cfg_file is None:
        return None
    published = Acknowledgement.of(app.cfg_file, store.auth_file, ok=True)
    if (memory.applied.cfg_digest, memory.applied.auth_digest) != (
        published.cfg_digest,
        published.auth_digest,
    ):
        return None
    return WorkloadFiles(cfg=app.cfg_file, auth=store.auth_file)


def _files(workload: WorkloadPort) -> WorkloadFiles | None:
    try:
        if not workload.is_reachable():
            return None
        return WorkloadFiles(cfg=workload.read_cfg(), auth=workload.read_auth())
    except WorkloadUnavailable as err:
        logger.warning("workload unreachable: %s", err)
        return None


# --- TLS -------------------------------------------------------------------------------------


def _tls_view(
    adapters: Adapters,
    event: HookEvent,
    files: WorkloadFiles | None,
    published: str | None,
    memory: Memory,
    quiet: bool,
) -> TlsView:
    """What this hook needs to know of TLS, reading only what may have changed (domain.tls):
    what the copies serve (one pull, only where the config names TLS files); this unit's
    wanted and current files where the relation's promise and what is served differ, or in
    the certificates hooks (the library is loaded only then); the backend's CA in the
    backend's hooks, a secret change, a new leader, or where it is named but not in place."""
    model = adapters.model
    relation = model.get_relation(CERTIFICATES_RELATION) is not None
    require = bool(adapters.config.get("client_tls_required", False))
    if files is None:
        return TlsView(relation=relation, require=require, served_remembered=memory.tls_served)
    workload = adapters.workload
    cfg = files.cfg or ""
    try:
        # A quiet follower (its files as remembered) trusts what it remembers of its copies.
        if quiet:
            served = memory.tls_served
        elif any(name in cfg for name in _TLS_SETTING_NAMES):
            served = workload.read_served_tls()
        else:
            served = TlsInPlace()
        tls_hook = needs_library() or event.kind in (
            EventKind.CERTIFICATES_CHANGED,
            EventKind.CERTIFICATES_BROKEN,
        )
        client = None
        if tls_hook or relation != served.client:
            client = _client_tls_state(adapters, relation)
        backend = None
        if (
            tls_hook
            or event.kind
            in (
                EventKind.BACKEND_CREATED,
                EventKind.BACKEND_CHANGED,
                EventKind.BACKEND_BROKEN,
                EventKind.SECRET_CHANGED,
                EventKind.LEADER_ELECTED,
            )
            or ("server_tls_ca_file" in cfg) != served.backend_ca
        ):
            backend = _backend_ca_state(adapters)
        ca = None
        if model.unit.is_leader() and (relation or "client_tls_sslmode" in (published or "")):
            # The files this hook leaves in place: with the certificates relation, the CA is
            # told to clients in the hook that writes it. No later leader hook is certain:
            # followers acknowledge only while a client waits for its credentials.
            if client is not None:
                own = client.current or client.wanted
            else:
                own = workload.read_client_tls()
            ca = own.ca if own is not None else None
    except WorkloadUnavailable as err:
        logger.warning("TLS files not readable: %s", err)
        return TlsView(relation=relation, require=require, served_remembered=memory.tls_served)
    return TlsView(
        relation=relation,
        require=require,
        served=served,
        served_remembered=memory.tls_served,
        client=client,
        backend=backend,
        ca=ca,
    )


def _client_tls_state(adapters: Adapters, relation: bool) -> ClientTlsState | None:
    try:
        wanted = None
        if relation and adapters.certificates is not None:
            wanted = adapters.certificates().wanted()
    except (InvalidTlsMaterial, ops.ModelError) as err:
        logger.warning("this unit's certificate is not usable: %s", err)
        return None
    return ClientTlsState(wanted=wanted, current=adapters.workload.read_client_tls())


def _backend_ca_state(adapters: Adapters) -> BackendCaState | None:
    try:
        wanted = read_backend_ca(adapters.model)
    except BackendCaUnavailable as err:
        logger.warning("%s", err)
        return None
    return BackendCaState(wanted=wanted, current=adapters.workload.read_backend_ca())
