"""The database relation's decisions: literal views in, exact effect lists out.

Each row is one branch of ``ClientService`` (its table), run through the hook's whole plan
(``HookPlanner``), so the list is what the applier receives, in order. No PostgreSQL, no ops.
The leader (unit 0) runs with the backend set up; unit 1 follows.
"""

import attrs
import pytest

from domain.backend_service import NO_BACKEND
from domain.client_service import BACKEND_NOT_READY
from domain.clients import ClientRequest
from domain.effects import (
    AnswerClient,
    CreateClientRole,
    Defer,
    DropClientRole,
    Effect,
    ForgetClient,
    GiveUpRoleDrops,
    HandCredentials,
    InstallAuth,
    PublishCfg,
    Reload,
    RememberApplied,
    RememberBackendSetup,
    RememberClient,
    RemovePassword,
    Report,
    RequestAcknowledgements,
    RequestDatabase,
    RestrictClientRole,
    RevokeCredentials,
    StorePassword,
    WriteCfg,
)
from domain.hook_plan import HookPlanner
from domain.hook_view import (
    BackendView,
    ClientView,
    EventKind,
    HookEvent,
    HookView,
    Memory,
    RefusedClient,
    ServedClient,
)
from domain.peer_data import (
    Acknowledgement,
    AppPeerData,
    StoreContents,
    UnitPeerData,
    content_digest,
    no_acknowledgement_wanted,
)
from domain.peer_sync import PeerView, WorkloadFiles
from domain.status import Severity, StatusReason
from tests.unit.peer_fixtures import HOST0, HOST1, HOST2
from tests.unit.relation_fixtures import (
    ACCESS,
    AUTH_DATABASES,
    AUTH_LINE,
    AUTH_PASSWORD,
    AUTH_USER,
    BACKEND_ID,
    CFG_AUTH,
    CFG_SERVED,
    CFG_SERVED_MOVED,
    CLIENT_ID,
    CLIENT_PASSWORD,
    CLIENT_USER,
    CREDENTIALS,
    ENDPOINTS,
    MOVED,
    MOVED_ACCESS,
    MOVED_SERVE_DIGEST,
    MOVED_SETUP_DIGEST,
    OTHER_ID,
    SERVE_DIGEST,
    SETUP_DIGEST,
)

planner = HookPlanner()
UNIT0, UNIT1 = "pgbouncer-k8s/0", "pgbouncer-k8s/1"
WHERE = "database relation 5 (client-app)"
OWN = HookEvent(EventKind.CLIENT_CHANGED, CLIENT_ID)
UPDATE = HookEvent(EventKind.UPDATE_STATUS)
PEERS = HookEvent(EventKind.PEER_CHANGED, 1)
BROKEN = HookEvent(EventKind.CLIENT_BROKEN, CLIENT_ID)
URI = f"postgresql://relation_id_5:{CLIENT_PASSWORD}@{HOST0}:6432/app"
APP = ClientRequest(CLIENT_ID, "app", ("CREATEDB",))
ANSWER = (
    ("database", "app"),
    ("endpoints", f"{HOST0}:6432"),
    ("read-only-endpoints", f"{HOST1}:6432"),
    ("version", "16.4"),
)
SUPERUSER_REFUSED = (
    "extra-user-roles 'SUPERUSER' refused: it bypasses every permission check;"
    " allowed: CREATEDB, LOGIN"
)


def ack(cfg: str | None, auth: str | None = AUTH_LINE) -> Acknowledgement:
    return Acknowledgement.of(cfg, auth, True)


def waiting(message: str) -> Report:
    return Report(StatusReason(Severity.WAITING, message))


def blocked(message: str) -> Report:
    return Report(StatusReason(Severity.BLOCKED, message))


def leader(cfg: str, passwords: tuple[tuple[int, str], ...] = ((CLIENT_ID, CLIENT_PASSWORD),)):
    return PeerView(
        is_leader=True,
        hostname=HOST0,
        app=AppPeerData(
            cfg_file=cfg, leader_hostname=HOST0, ack_wanted=no_acknowledgement_wanted(cfg)
        ),
        store=StoreContents(auth_file=AUTH_LINE, passwords=passwords),
        own=UnitPeerData(hostname=HOST0),
        workload=WorkloadFiles(cfg, AUTH_LINE),
        backend_credentials=True,
        peer_hostnames=(HOST1,),
        applied=ack(cfg),
    )


def units(leader_cfg: str, follower_cfg: str) -> tuple[tuple[str, UnitPeerData], ...]:
    return (
        (UNIT0, UnitPeerData(hostname=HOST0, ack=ack(leader_cfg))),
        (UNIT1, UnitPeerData(hostname=HOST1, ack=ack(follower_cfg))),
    )


BACKEND = BackendView(BACKEND_ID, "pgbouncer-k8s", endpoints=ENDPOINTS, credentials=CREDENTIALS)
CLIENT = ClientView(CLIENT_ID, "client-app", request=APP, answered=ANSWER, credentials_handed=True)
# Served, answered and handed; both units run the config that serves it: the quiet state.
SETTLED = HookView(
    leader(CFG_SERVED),
    unit_name=UNIT0,
    units=units(CFG_SERVED, CFG_SERVED),
    backend=BACKEND,
    clients=(CLIENT,),
    memory=Memory(SETUP_DIGEST, served=((CLIENT_ID, ServedClient(SERVE_DIGEST, "app")),)),
)
# The client has just asked; nothing of it exists yet.
NEW = attrs.evolve(
    SETTLED,
    peer=leader(CFG_AUTH, passwords=()),
    units=units(CFG_AUTH, CFG_AUTH),
    clients=(ClientView(CLIENT_ID, "client-app", request=APP),),
    memory=Memory(SETUP_DIGEST),
    fresh_secrets=(CLIENT_PASSWORD,),
)
# Served in an earlier hook; unit 1 has applied it since; no credentials handed yet.
SERVED = attrs.evolve(
    SETTLED,
    # That hook asked the followers to acknowledge the config serving it.
    peer=attrs.evolve(
        leader(CFG_SERVED),
        app=AppPeerData(
            cfg_file=CFG_SERVED, leader_hostname=HOST0, ack_wanted=content_digest(CFG_SERVED)
        ),
    ),
    clients=(attrs.evolve(CLIENT, answered=ANSWER[:1], credentials_handed=False),),
)


def view(base: HookView, **changes) -> HookView:
    return attrs.evolve(base, **changes)


def client(**changes) -> tuple[ClientView, ...]:
    return (attrs.evolve(CLIENT, **changes),)


OTHER = ClientView(
    OTHER_ID,
    "second-app",
    request=ClientRequest(OTHER_ID, "app"),
    answered=ANSWER,
    credentials_handed=True,
)

ROWS = [
    pytest.param(UPDATE, SETTLED, [], id="settled: nothing at all"),
    pytest.param(
        PEERS,
        view(
            SETTLED,
            clients=client(request=None, refusal=SUPERUSER_REFUSED, answered=()),
            memory=Memory(SETUP_DIGEST),
        ),
        [blocked(f"{WHERE}: {SUPERUSER_REFUSED}")],
        id="refused request: blocked in every hook, nothing set up",
    ),
    pytest.param(
        OWN,
        view(NEW, clients=(ClientView(CLIENT_ID, "client-app"),)),
        [],
        id="nothing asked yet: nothing",
    ),
    pytest.param(
        OWN,
        view(SETTLED, clients=client(request=ClientRequest(CLIENT_ID, "shop"))),
        [
            blocked(
                f"{WHERE}: the database cannot change from app to shop;"
                " remove the relation and add it again"
            )
        ],
        id="another database asked: blocked, the served one kept",
    ),
    pytest.param(
        HookEvent(EventKind.CLIENT_CHANGED, 7),
        view(NEW, clients=(ClientView(7, "other-app", request=ClientRequest(7, "shop")),)),
        [
            blocked(
                "database relation 7 (other-app): its role relation_id_7 is the backend's own"
                " user; relate again"
            )
        ],
        id="the backend's own user: blocked",
    ),
    pytest.param(
        OWN,
        view(NEW, backend=attrs.evolve(BACKEND, credentials=None)),
        [waiting(f"{WHERE}: {BACKEND_NOT_READY}"), Defer(f"{WHERE}: {BACKEND_NOT_READY}")],
        id="backend not ready, its own hook: wait, defer",
    ),
    pytest.param(
        UPDATE,
        view(NEW, backend=attrs.evolve(BACKEND, credentials=None)),
        [waiting(f"{WHERE}: {BACKEND_NOT_READY}")],
        id="backend not ready, another hook: wait",
    ),
    pytest.param(
        UPDATE,
        view(SETTLED, backend=attrs.evolve(BACKEND, credentials=None)),
        [],
        id="backend not ready, client served before: it keeps its entries",
    ),
    pytest.param(
        OWN,
        NEW,
        [
            CreateClientRole(
                ACCESS, CLIENT_ID, CLIENT_USER, CLIENT_PASSWORD, "app", ("CREATEDB",), "client-app"
            ),
            InstallAuth(ACCESS, AUTH_USER, AUTH_PASSWORD, ("app",)),
            WriteCfg(CFG_SERVED),
            Reload(),
            PublishCfg(CFG_SERVED),
            # A client waits for this config: the followers are asked to acknowledge it.
            RequestAcknowledgements(content_digest(CFG_SERVED)),
            StorePassword(CLIENT_ID, CLIENT_PASSWORD),
            RememberApplied(ack(CFG_SERVED)),
            AnswerClient(CLIENT_ID, (("database", "app"),)),
            RememberClient(CLIENT_ID, SERVE_DIGEST, "app"),
            waiting("waiting for 1 unit to apply database app"),
        ],
        id="new request: role and database first, entries, password, database; no credentials",
    ),
    pytest.param(
        PEERS,
        view(SERVED, units=units(CFG_SERVED, CFG_AUTH)),
        [waiting("waiting for 1 unit to apply database app")],
        id="a unit has not applied it: credentials withheld",
    ),
    pytest.param(
        PEERS,
        SERVED,
        [
            HandCredentials(CLIENT_ID, CLIENT_USER, CLIENT_PASSWORD, URI),
            AnswerClient(CLIENT_ID, ANSWER[1:]),
        ],
        id="every unit applied it: credentials, then endpoints",
    ),
    pytest.param(
        PEERS,
        view(SERVED, clients=(attrs.evolve(SERVED.clients[0], asked_for_secrets=False),)),
        [
            HandCredentials(CLIENT_ID, CLIENT_USER, CLIENT_PASSWORD, URI, in_secret=False),
            AnswerClient(CLIENT_ID, ANSWER[1:]),
        ],
        id="a client that asked for no secrets: plain credentials",
    ),
    pytest.param(
        PEERS,
        view(SERVED, juju_has_secrets=False),
        [
            HandCredentials(CLIENT_ID, CLIENT_USER, CLIENT_PASSWORD, URI, in_secret=False),
            AnswerClient(CLIENT_ID, ANSWER[1:]),
        ],
        id="a Juju without secrets: plain credentials",
    ),
    pytest.param(
        UPDATE,
        view(SETTLED, clients=client(credentials_in_secret=False)),
        [HandCredentials(CLIENT_ID, CLIENT_USER, CLIENT_PASSWORD, URI)],
        id="handed in plain fields, now asking for secrets: moved into a secret",
    ),
    pytest.param(
        HookEvent(EventKind.PEER_CHANGED, 1),
        view(SETTLED, peer=attrs.evolve(SETTLED.peer, peer_hostnames=(HOST1, HOST2))),
        [AnswerClient(CLIENT_ID, (("read-only-endpoints", f"{HOST1}:6432,{HOST2}:6432"),))],
        id="a peer joined: its read-only endpoint, credentials kept",
    ),
    pytest.param(
        UPDATE,
        view(
            SETTLED,
            clients=client(
                answered=(
                    ("database", "app"),
                    ("endpoints", f"{HOST1}:6432"),
                    ("read-only-endpoints", f"{HOST0}:6432"),
                    ("version", "16.4"),
                )
            ),
        ),
        [
            HandCredentials(CLIENT_ID, CLIENT_USER, CLIENT_PASSWORD, URI),
            AnswerClient(
                CLIENT_ID,
                (("endpoints", f"{HOST0}:6432"), ("read-only-endpoints", f"{HOST1}:6432")),
            ),
        ],
        id="a new leader: the URI and endpoints point at it",
    ),
    pytest.param(
        UPDATE,
        view(SETTLED, memory=Memory(SETUP_DIGEST)),
        [],
        id="nothing remembered (new leader), another hook: the answered client is trusted",
    ),
    pytest.param(
        OWN,
        view(SETTLED, memory=Memory(SETUP_DIGEST)),
        [
            CreateClientRole(
                ACCESS, CLIENT_ID, CLIENT_USER, CLIENT_PASSWORD, "app", ("CREATEDB",), "client-app"
            ),
            InstallAuth(ACCESS, AUTH_USER, AUTH_PASSWORD, ("app",)),
            RememberClient(CLIENT_ID, SERVE_DIGEST, "app"),
        ],
        id="nothing remembered, its own hook: set up again with the stored password",
    ),
    pytest.param(
        HookEvent(EventKind.BACKEND_CHANGED, BACKEND_ID),
        view(SETTLED, backend=attrs.evolve(BACKEND, endpoints=MOVED)),
        [
            RequestDatabase("pgbouncer-k8s"),
            InstallAuth(MOVED_ACCESS, AUTH_USER, AUTH_PASSWORD, AUTH_DATABASES),
            CreateClientRole(
                MOVED_ACCESS,
                CLIENT_ID,
                CLIENT_USER,
                CLIENT_PASSWORD,
                "app",
                ("CREATEDB",),
                "client-app",
            ),
            InstallAuth(MOVED_ACCESS, AUTH_USER, AUTH_PASSWORD, ("app",)),
            WriteCfg(CFG_SERVED_MOVED),
            Reload(),
            PublishCfg(CFG_SERVED_MOVED),
            RequestAcknowledgements(no_acknowledgement_wanted(CFG_SERVED_MOVED)),
            RememberApplied(ack(CFG_SERVED_MOVED)),
            RememberBackendSetup(MOVED_SETUP_DIGEST),
            RememberClient(CLIENT_ID, MOVED_SERVE_DIGEST, "app"),
        ],
        id="the primary moved: backend and client set up again, one write, one reload",
    ),
    pytest.param(
        BROKEN,
        view(SETTLED, clients=client(gone=True)),
        [
            WriteCfg(CFG_AUTH),
            Reload(),
            PublishCfg(CFG_AUTH),
            RequestAcknowledgements(no_acknowledgement_wanted(CFG_AUTH)),
            RemovePassword(CLIENT_ID),
            RememberApplied(ack(CFG_AUTH)),
            RevokeCredentials(CLIENT_ID),
            ForgetClient(CLIENT_ID, drop_role=True),
            DropClientRole(ACCESS, CLIENT_ID, CLIENT_USER),
        ],
        id="broken: entries, password and credentials out; the role dropped, best effort",
    ),
    pytest.param(
        BROKEN,
        view(
            SETTLED,
            clients=(*client(gone=True), OTHER),
            peer=leader(CFG_SERVED, ((CLIENT_ID, CLIENT_PASSWORD), (OTHER_ID, "Other-Pw-7"))),
        ),
        [
            RemovePassword(CLIENT_ID),
            RevokeCredentials(CLIENT_ID),
            ForgetClient(CLIENT_ID, drop_role=True),
            DropClientRole(ACCESS, CLIENT_ID, CLIENT_USER),
        ],
        id="broken, another relation uses the database: its entries stay",
    ),
    pytest.param(
        BROKEN,
        view(
            SETTLED,
            clients=(*client(gone=True), OTHER),
            peer=leader(CFG_SERVED, ((CLIENT_ID, CLIENT_PASSWORD), (OTHER_ID, "Other-Pw-7"))),
            backend=attrs.evolve(BACKEND, credentials=None),
        ),
        [RemovePassword(CLIENT_ID), RevokeCredentials(CLIENT_ID), ForgetClient(CLIENT_ID, True)],
        id="broken, the database in use, backend not readable: entries stay, drop pending",
    ),
    pytest.param(
        BROKEN,
        view(
            NEW,
            clients=(ClientView(CLIENT_ID, "client-app", gone=True),),
            memory=Memory(SETUP_DIGEST),
        ),
        [RevokeCredentials(CLIENT_ID)],
        id="broken before it was set up: no role to drop",
    ),
    pytest.param(
        UPDATE,
        view(SETTLED, clients=(), memory=Memory(SETUP_DIGEST, roles_to_drop=(CLIENT_ID,))),
        [DropClientRole(ACCESS, CLIENT_ID, CLIENT_USER)],
        id="a role drop pending: tried again",
    ),
    pytest.param(
        UPDATE,
        view(
            SETTLED,
            clients=(),
            backend=attrs.evolve(BACKEND, credentials=None),
            memory=Memory(SETUP_DIGEST, roles_to_drop=(CLIENT_ID,)),
        ),
        [waiting("waiting for the backend database to drop the role(s) relation_id_5")],
        id="a role drop pending, no credentials: wait",
    ),
    pytest.param(
        UPDATE,
        view(SETTLED, clients=(), backend=None, memory=Memory(roles_to_drop=(CLIENT_ID,))),
        [GiveUpRoleDrops((CLIENT_USER,)), blocked(NO_BACKEND)],
        id="a role drop pending, backend relation gone: given up",
    ),
]


@pytest.mark.parametrize(("event", "hook_view", "expected"), ROWS)
def test_client_service(event: HookEvent, hook_view: HookView, expected: list[Effect]):
    assert planner.plan(event, hook_view) == expected


# --- a request the backend refused (its database is another application's) -----------------

TAKEN = "database app belongs to another application (first-app)"


def test_a_request_the_backend_refused_is_blocked_and_not_served_until_it_changes():
    refused = view(
        NEW,
        memory=Memory(
            SETUP_DIGEST, refused=((CLIENT_ID, RefusedClient("app", ("CREATEDB",), TAKEN)),)
        ),
    )
    assert planner.plan(OWN, refused) == [blocked(f"{WHERE}: {TAKEN}")]
    assert planner.plan(UPDATE, refused) == [blocked(f"{WHERE}: {TAKEN}")]


def test_a_changed_request_is_tried_again_after_a_refusal():
    older = RefusedClient("app", (), TAKEN)  # refused when it asked without CREATEDB
    refused = view(NEW, memory=Memory(SETUP_DIGEST, refused=((CLIENT_ID, older),)))
    tried = planner.plan(OWN, refused)
    assert tried == planner.plan(OWN, NEW)
    assert any(isinstance(effect, CreateClientRole) for effect in tried)


def test_a_served_client_whose_request_is_now_refused_loses_what_it_must_not_have_once():
    """Served by an earlier version with CREATEROLE: refused now, its role is restricted."""
    createrole = "extra-user-roles 'CREATEROLE' refused: ..."
    refused = view(SETTLED, clients=client(request=None, refusal=createrole))
    assert planner.plan(UPDATE, refused) == [
        RestrictClientRole(ACCESS, CLIENT_ID, CLIENT_USER, "app"),
        ForgetClient(CLIENT_ID, drop_role=False),
        blocked(f"{WHERE}: {createrole}"),
    ]
    # Once done (nothing remembered any more): blocked only.
    once = attrs.evolve(refused, memory=Memory(SETUP_DIGEST))
    assert planner.plan(UPDATE, once) == [blocked(f"{WHERE}: {createrole}")]
