"""The backend-database relation's decisions: literal views in, exact effect lists out.

Each row is one branch of ``BackendService`` (its table), run through the hook's whole plan
(``HookPlanner``), so the list is what the applier receives, in order. No PostgreSQL, no ops.
"""

import attrs
import pytest

from domain.backend import BackendAccess, BackendCredentials
from domain.backend_service import (
    DROP_BY_HAND,
    NO_BACKEND,
    NO_LEADER_CONFIG,
    RELATION_REMOVED,
    REMOVAL_PENDING,
    WAITING_FOR_CREDENTIALS,
)
from domain.effects import (
    Defer,
    Effect,
    InstallAuth,
    PublishCfg,
    Reload,
    RememberApplied,
    RememberBackendSetup,
    RemoveAuth,
    RemoveAuthSetup,
    RemoveStoredAuth,
    Report,
    RequestAcknowledgements,
    RequestDatabase,
    Restart,
    StoreAuth,
    WriteAuth,
    WriteCfg,
)
from domain.hook_plan import HookPlanner
from domain.hook_view import BackendView, EventKind, HookEvent, HookView, Memory
from domain.peer_data import (
    Acknowledgement,
    AppPeerData,
    StoreContents,
    UnitPeerData,
    content_digest,
    no_acknowledgement_wanted,
)
from domain.peer_sync import LEADER_CFG_INVALID, NO_CONFIG, NOT_REACHABLE, PeerView, WorkloadFiles
from domain.status import Severity, StatusReason
from tests.unit.peer_fixtures import HOST0, HOST1
from tests.unit.relation_fixtures import (
    ACCESS,
    AUTH_DATABASES,
    AUTH_LINE,
    AUTH_PASSWORD,
    AUTH_USER,
    BACKEND_ID,
    CFG_AUTH,
    CFG_PLAIN,
    CREDENTIALS,
    ENDPOINTS,
    SETUP_DIGEST,
)

planner = HookPlanner()
CHANGED = HookEvent(EventKind.BACKEND_CHANGED, BACKEND_ID)
CREATED = HookEvent(EventKind.BACKEND_CREATED, BACKEND_ID)
BROKEN = HookEvent(EventKind.BACKEND_BROKEN, BACKEND_ID)
UPDATE = HookEvent(EventKind.UPDATE_STATUS)
REQUEST = RequestDatabase("pgbouncer-k8s")
# A fresh password the gatherer drew; used only where none can be read back.
FRESH = "Fr3sh-Pw-9aB8cD7eF6gH5iJ4"
FRESH_LINE = f'"{AUTH_USER}" "{FRESH}"\n'
SECRET_GONE = "the backend's credentials secret is not readable (not granted yet, or gone)"
INVALID = "backend-database relation data: endpoints: 'db:port' is not host:port"


def ack(cfg: str | None, auth: str | None) -> Acknowledgement:
    return Acknowledgement.of(cfg, auth, True)


def waiting(message: str) -> Report:
    return Report(StatusReason(Severity.WAITING, message))


def blocked(message: str) -> Report:
    return Report(StatusReason(Severity.BLOCKED, message))


def leader(cfg: str | None, auth: str | None) -> PeerView:
    """A leader that published and acknowledged the files it runs."""
    return PeerView(
        is_leader=True,
        hostname=HOST0,
        app=AppPeerData(
            cfg_file=cfg,
            leader_hostname=HOST0,
            ack_wanted=no_acknowledgement_wanted(cfg) if cfg else None,
        ),
        store=StoreContents(auth_file=auth),
        own=UnitPeerData(hostname=HOST0),
        workload=WorkloadFiles(cfg, auth),
        backend_credentials=True,
        peer_hostnames=(HOST1,),
        applied=ack(cfg, auth) if cfg else None,
    )


ANSWERED = BackendView(BACKEND_ID, "pgbouncer-k8s", endpoints=ENDPOINTS, credentials=CREDENTIALS)
NOT_ANSWERED = BackendView(BACKEND_ID, "pgbouncer-k8s")
# Before the setup: pgbouncer.ini without auth_query, no auth file.
BEFORE = HookView(leader(CFG_PLAIN, None), backend=ANSWERED, fresh_secrets=(FRESH,))
# After it: both files use the auth role, and the leader remembers doing it.
AFTER = HookView(
    leader(CFG_AUTH, AUTH_LINE), backend=ANSWERED, memory=Memory(backend_digest=SETUP_DIGEST)
)


def view(base: HookView, **changes) -> HookView:
    return attrs.evolve(base, **changes)


def backend(**changes) -> BackendView:
    return attrs.evolve(ANSWERED, **changes)


# The PostgreSQL charm rotated the backend user's password (a new revision of its secret).
ROTATED = BackendCredentials(CREDENTIALS.username, "R0tated-Pw-4kLm9nBv2cXz")
ROTATED_ACCESS = BackendAccess(ACCESS.primary, ROTATED)
ROTATED_DIGEST = content_digest(
    "2\nrelation_id_7\nR0tated-Pw-4kLm9nBv2cXz\n10.1.1.1:5432\npgbouncer-k8s,postgres"
)
SECRET_CHANGED = HookEvent(EventKind.BACKEND_SECRET_CHANGED, BACKEND_ID)

ROWS = [
    pytest.param(
        SECRET_CHANGED,
        view(AFTER, backend=backend(credentials=ROTATED)),
        [
            REQUEST,
            InstallAuth(ROTATED_ACCESS, AUTH_USER, AUTH_PASSWORD, AUTH_DATABASES),
            RememberBackendSetup(ROTATED_DIGEST),
        ],
        id="credentials rotated: the setup runs again with them, files and password kept",
    ),
    pytest.param(
        SECRET_CHANGED,
        view(AFTER, backend=backend(credentials=None, unavailable=SECRET_GONE)),
        [REQUEST, waiting(SECRET_GONE), Defer(SECRET_GONE)],
        id="credentials rotated but not readable: wait, defer",
    ),
    pytest.param(
        UPDATE,
        view(AFTER, backend=backend(credentials=ROTATED)),
        [
            InstallAuth(ROTATED_ACCESS, AUTH_USER, AUTH_PASSWORD, AUTH_DATABASES),
            RememberBackendSetup(ROTATED_DIGEST),
        ],
        id="rotated credentials read in another hook: used from then on",
    ),
    pytest.param(
        HookEvent(EventKind.UPDATE_STATUS),
        view(AFTER, backend=None),
        [blocked(NO_BACKEND)],
        id="no relation: blocked, nothing done",
    ),
    pytest.param(
        CHANGED,
        view(
            BEFORE,
            peer=attrs.evolve(
                leader(CFG_PLAIN, None),
                is_leader=False,
                hostname=HOST1,
                own=UnitPeerData(hostname=HOST1, ack=ack(CFG_PLAIN, None)),
                peer_hostnames=(HOST0,),
            ),
        ),
        [],
        id="follower: nothing",
    ),
    pytest.param(
        CREATED,
        view(BEFORE, backend=NOT_ANSWERED),
        [REQUEST, waiting(WAITING_FOR_CREDENTIALS)],
        id="created: request, wait for credentials",
    ),
    pytest.param(
        CHANGED,
        view(BEFORE, backend=backend(endpoints=None, credentials=None, invalid=INVALID)),
        [REQUEST, blocked(INVALID)],
        id="unusable data: blocked, no retry",
    ),
    pytest.param(
        CHANGED,
        view(BEFORE, backend=backend(credentials=None, unavailable=SECRET_GONE)),
        [REQUEST, waiting(SECRET_GONE), Defer(SECRET_GONE)],
        id="secret not readable in its own hook: wait, defer",
    ),
    pytest.param(
        UPDATE,
        view(BEFORE, backend=backend(credentials=None, unavailable=SECRET_GONE)),
        [waiting(SECRET_GONE)],
        id="secret not readable in another hook: wait",
    ),
    pytest.param(
        CHANGED,
        view(BEFORE, peer=attrs.evolve(leader(CFG_PLAIN, None), workload=None)),
        [REQUEST, waiting(NOT_REACHABLE), Defer(NOT_REACHABLE)],
        id="no container: wait, defer",
    ),
    pytest.param(
        CHANGED,
        view(BEFORE, peer=leader(None, None)),
        [REQUEST, waiting(NO_LEADER_CONFIG), waiting(NO_CONFIG), Defer(NO_LEADER_CONFIG)],
        id="no pgbouncer.ini: wait, defer",
    ),
    pytest.param(
        CHANGED,
        BEFORE,
        [
            REQUEST,
            InstallAuth(ACCESS, AUTH_USER, FRESH, AUTH_DATABASES),
            WriteCfg(CFG_AUTH),
            WriteAuth(FRESH_LINE),
            Reload(),
            PublishCfg(CFG_AUTH),
            RequestAcknowledgements(no_acknowledgement_wanted(CFG_AUTH)),
            StoreAuth(FRESH_LINE),
            RememberApplied(ack(CFG_AUTH, FRESH_LINE)),
            RememberBackendSetup(SETUP_DIGEST),
        ],
        id="credentials: set up first, then both files, one reload, publish, remember",
    ),
    pytest.param(
        UPDATE,
        BEFORE,
        [
            InstallAuth(ACCESS, AUTH_USER, FRESH, AUTH_DATABASES),
            WriteCfg(CFG_AUTH),
            WriteAuth(FRESH_LINE),
            Reload(),
            PublishCfg(CFG_AUTH),
            RequestAcknowledgements(no_acknowledgement_wanted(CFG_AUTH)),
            StoreAuth(FRESH_LINE),
            RememberApplied(ack(CFG_AUTH, FRESH_LINE)),
            RememberBackendSetup(SETUP_DIGEST),
        ],
        id="credentials read in another hook, files without auth_query: set up",
    ),
    pytest.param(CHANGED, AFTER, [REQUEST], id="done for these credentials: nothing"),
    pytest.param(
        CHANGED,
        view(AFTER, memory=Memory()),
        [
            REQUEST,
            InstallAuth(ACCESS, AUTH_USER, AUTH_PASSWORD, AUTH_DATABASES),
            RememberBackendSetup(SETUP_DIGEST),
        ],
        id="nothing remembered (new leader), its own hook: set up again, same password",
    ),
    pytest.param(
        UPDATE,
        view(AFTER, memory=Memory()),
        [],
        id="nothing remembered, another hook: the files are trusted",
    ),
    pytest.param(
        CHANGED,
        view(AFTER, memory=Memory(backend_digest="0123456789abcdef")),
        [
            REQUEST,
            InstallAuth(ACCESS, AUTH_USER, AUTH_PASSWORD, AUTH_DATABASES),
            RememberBackendSetup(SETUP_DIGEST),
        ],
        id="credentials changed: set up again, same password, files unchanged",
    ),
    pytest.param(
        CHANGED,
        view(BEFORE, peer=leader(CFG_PLAIN.replace("6432", "70000"), None)),
        [
            REQUEST,
            blocked(
                f"{LEADER_CFG_INVALID}: [pgbouncer] listen_port: 70000 is not a port from 1024 "
                "to 65535 (pgbouncer runs unprivileged)"
            ),
        ],
        id="leader's pgbouncer.ini invalid: blocked, nothing set up",
    ),
    pytest.param(
        BROKEN,
        view(AFTER, backend=backend(gone=True)),
        [
            WriteCfg(CFG_PLAIN),
            RemoveAuth(),
            Restart(),
            PublishCfg(CFG_PLAIN),
            RequestAcknowledgements(no_acknowledgement_wanted(CFG_PLAIN)),
            RemoveStoredAuth(),
            RememberApplied(ack(CFG_PLAIN, None)),
            RememberBackendSetup(""),
            RemoveAuthSetup(ACCESS, AUTH_USER, AUTH_DATABASES),
            blocked(RELATION_REMOVED),
            blocked(NO_BACKEND),
        ],
        id="broken: files without auth, one restart (auth_user), store, backend best effort",
    ),
    pytest.param(
        BROKEN,
        view(AFTER, backend=backend(gone=True, endpoints=None, credentials=None)),
        [
            WriteCfg(CFG_PLAIN),
            RemoveAuth(),
            Restart(),
            PublishCfg(CFG_PLAIN),
            RequestAcknowledgements(no_acknowledgement_wanted(CFG_PLAIN)),
            RemoveStoredAuth(),
            RememberApplied(ack(CFG_PLAIN, None)),
            RememberBackendSetup(""),
            blocked(f"{RELATION_REMOVED}; {DROP_BY_HAND}"),
            blocked(NO_BACKEND),
        ],
        id="broken, credentials gone with it: say what to drop by hand",
    ),
    pytest.param(
        BROKEN,
        view(AFTER, backend=backend(gone=True), peer=attrs.evolve(AFTER.peer, workload=None)),
        [
            blocked(f"{REMOVAL_PENDING}: {NOT_REACHABLE}"),
            waiting(NOT_REACHABLE),
            blocked(NO_BACKEND),
            Defer(f"{REMOVAL_PENDING}: {NOT_REACHABLE}"),
        ],
        id="broken, no container: blocked, defer",
    ),
]


@pytest.mark.parametrize(("event", "hook_view", "expected"), ROWS)
def test_backend_service(event: HookEvent, hook_view: HookView, expected: list[Effect]):
    assert planner.plan(event, hook_view) == expected


class _CertificateFiles:
    """A stand-in for a service every unit runs (its own files): asks for a reload."""

    def plan(self, event: HookEvent, view: HookView, planned: object) -> list[Effect]:
        return [Reload(), waiting("certificate requested"), Defer("certificate requested")]


def test_a_unit_service_joins_the_plan_with_one_signal_and_one_deferral():
    # pebble-ready on a settled follower starts pgbouncer (Restart): the other service's
    # Reload is absorbed, its reason and deferral kept.
    follower = attrs.evolve(
        leader(CFG_AUTH, AUTH_LINE),
        is_leader=False,
        hostname=HOST1,
        own=UnitPeerData(hostname=HOST1, ack=ack(CFG_AUTH, AUTH_LINE)),
        peer_hostnames=(HOST0,),
    )
    planner = HookPlanner((_CertificateFiles(),))
    effects = planner.plan(HookEvent(EventKind.WORKLOAD_READY), view(AFTER, peer=follower))

    assert effects == [
        Restart(),
        waiting("certificate requested"),
        Defer("certificate requested"),
    ]
