"""PeerSyncService against the seed's flowcharts: literal views in, exact effect lists out.

Each table row is one branch of a flowchart (or of the contract's other events); the ids name
the branch. A row gives the view a unit sees and the whole list of effects expected, in order.
"""

import pytest

from domain.auth_file import parse_auth_file
from domain.charm_config import CharmConfig
from domain.effects import (
    Acknowledge,
    Defer,
    Effect,
    PublishCfg,
    PublishLeaderHostname,
    Reload,
    RememberApplied,
    RemoveAuth,
    Report,
    RequestAcknowledgements,
    Restart,
    SetHostname,
    SetPgbouncerVersion,
    StoreAuth,
    WriteAuth,
    WriteCfg,
)
from domain.errors import InvalidInput
from domain.peer_data import (
    Acknowledgement,
    AppPeerData,
    StoreContents,
    UnitPeerData,
    acknowledgements_wanted,
    no_acknowledgement_wanted,
)
from domain.peer_sync import (
    BACKEND_NOT_READY,
    NO_CONFIG,
    NOT_REACHABLE,
    WAITING_FOR_LEADER_CFG,
    PeerSyncService,
    PeerView,
    WorkloadFiles,
)
from domain.pgb_config import parse_pgb_ini
from domain.pgb_version import PgbVersion
from domain.status import Severity, StatusReason
from tests.unit.peer_fixtures import (
    AUTH_A,
    AUTH_B,
    AUTH_BAD,
    CFG_A,
    CFG_AUTH_USER,
    CFG_B,
    CFG_BAD,
    CFG_PORT,
    HOST0,
    HOST1,
    HOST2,
)

service = PeerSyncService()


def ack(cfg: str | None, auth: str | None, ok: bool = True) -> Acknowledgement:
    return Acknowledgement.of(cfg, auth, ok)


def waiting(message: str) -> Report:
    return Report(StatusReason(Severity.WAITING, message))


def reason_of(parse, text: str) -> str:
    with pytest.raises(InvalidInput) as caught:
        parse(text)
    return str(caught.value)


BAD_CFG_REASON = f"invalid cfg_file from the leader: {reason_of(parse_pgb_ini, CFG_BAD)}"
BAD_AUTH_REASON = f"invalid auth file from the leader: {reason_of(parse_auth_file, AUTH_BAD)}"

# A leader that has published everything and acknowledged it: the quiet steady state.
LEADER_SETTLED = PeerView(
    is_leader=True,
    hostname=HOST0,
    app=AppPeerData(
        cfg_file=CFG_A, leader_hostname=HOST0, ack_wanted=no_acknowledgement_wanted(CFG_A)
    ),
    store=StoreContents(auth_file=AUTH_A),
    own=UnitPeerData(hostname=HOST0),
    workload=WorkloadFiles(cfg=CFG_A, auth=AUTH_A),
    backend_credentials=True,
    peer_hostnames=(HOST1,),
    applied=ack(CFG_A, AUTH_A),
)
# A follower running exactly what that leader published.
FOLLOWER_SETTLED = PeerView(
    is_leader=False,
    hostname=HOST1,
    app=AppPeerData(
        cfg_file=CFG_A, leader_hostname=HOST0, ack_wanted=no_acknowledgement_wanted(CFG_A)
    ),
    store=StoreContents(auth_file=AUTH_A),
    own=UnitPeerData(hostname=HOST1),
    workload=WorkloadFiles(cfg=CFG_A, auth=AUTH_A),
    peer_hostnames=(HOST0,),
    applied=ack(CFG_A, AUTH_A),
)
FRESH_LEADER = PeerView(is_leader=True, hostname=HOST0)
FRESH_FOLLOWER = PeerView(is_leader=False, hostname=HOST1)


# What a leader of this revision publishes while a client waits for CFG_A.
REQUESTED_A = AppPeerData(
    cfg_file=CFG_A, leader_hostname=HOST0, ack_wanted=acknowledgements_wanted(CFG_A)
)


def evolve(view: PeerView, **changes) -> PeerView:
    import attrs

    return attrs.evolve(view, **changes)


# --- Peer Relation Created Hook ---------------------------------------------------------------

CREATED = [
    pytest.param(FRESH_FOLLOWER, [SetHostname(HOST1)], id="follower: save hostname, return"),
    pytest.param(FOLLOWER_SETTLED, [], id="follower: hostname already saved"),
    pytest.param(
        evolve(FRESH_FOLLOWER, workload=None),
        [SetHostname(HOST1)],
        id="follower: returns even with no container",
    ),
    pytest.param(
        FRESH_LEADER,
        [SetHostname(HOST0), waiting(NO_CONFIG), Defer(NO_CONFIG)],
        id="leader: no config -> defer",
    ),
    pytest.param(
        evolve(FRESH_LEADER, workload=None),
        [SetHostname(HOST0), waiting(NOT_REACHABLE), Defer(NOT_REACHABLE)],
        id="leader: container unreachable -> defer",
    ),
    pytest.param(
        evolve(FRESH_LEADER, workload=WorkloadFiles(cfg=CFG_A)),
        [
            SetHostname(HOST0),
            PublishCfg(CFG_A),
            RequestAcknowledgements(no_acknowledgement_wanted(CFG_A)),
            RememberApplied(ack(CFG_A, None)),
            waiting(BACKEND_NOT_READY),
            Defer(BACKEND_NOT_READY),
        ],
        id="leader: config, backend not ready -> publish, defer",
    ),
    pytest.param(
        evolve(FRESH_LEADER, workload=WorkloadFiles(cfg=CFG_A), backend_credentials=True),
        [
            SetHostname(HOST0),
            PublishCfg(CFG_A),
            RequestAcknowledgements(no_acknowledgement_wanted(CFG_A)),
            RememberApplied(ack(CFG_A, None)),
            waiting(BACKEND_NOT_READY),
            Defer(BACKEND_NOT_READY),
        ],
        id="leader: credentials but no auth file yet -> defer",
    ),
    pytest.param(
        evolve(
            FRESH_LEADER,
            workload=WorkloadFiles(cfg=CFG_A, auth=AUTH_A),
            backend_credentials=True,
        ),
        [
            SetHostname(HOST0),
            PublishCfg(CFG_A),
            RequestAcknowledgements(no_acknowledgement_wanted(CFG_A)),
            StoreAuth(AUTH_A),
            RememberApplied(ack(CFG_A, AUTH_A)),
        ],
        id="leader: config, backend ready -> publish, store auth",
    ),
    pytest.param(LEADER_SETTLED, [], id="leader: everything already published"),
]


@pytest.mark.parametrize(("view", "expected"), CREATED)
def test_relation_created(view: PeerView, expected: list[Effect]):
    assert service.on_relation_created(view) == expected


# --- Peer Relation Changed Hook ---------------------------------------------------------------

CHANGED = [
    pytest.param(
        FRESH_LEADER,
        [SetHostname(HOST0), waiting(NO_CONFIG), Defer(NO_CONFIG)],
        id="leader: no local config -> defer",
    ),
    pytest.param(
        evolve(FRESH_LEADER, workload=None),
        [
            SetHostname(HOST0),
            waiting(NOT_REACHABLE),
            Defer(NOT_REACHABLE),
        ],
        id="leader: container unreachable -> defer",
    ),
    pytest.param(
        evolve(FRESH_LEADER, workload=WorkloadFiles(cfg=CFG_A)),
        [
            SetHostname(HOST0),
            PublishCfg(CFG_A),
            # A leader asks for acknowledgements only while a client waits (none here); it
            # says so with every config it publishes (a follower acknowledges a config whose
            # request does not name it: an older leader published it).
            RequestAcknowledgements(no_acknowledgement_wanted(CFG_A)),
            PublishLeaderHostname(HOST0),
            RememberApplied(ack(CFG_A, None)),
        ],
        id="leader: publish config and leader hostname, never acknowledge to itself",
    ),
    pytest.param(
        evolve(LEADER_SETTLED, workload=WorkloadFiles(cfg=CFG_B, auth=AUTH_A)),
        [
            Reload(),
            PublishCfg(CFG_B),
            RequestAcknowledgements(no_acknowledgement_wanted(CFG_B)),
            RememberApplied(ack(CFG_B, AUTH_A)),
        ],
        id="leader: config edited by a handler whose reload was lost -> reload, publish",
    ),
    pytest.param(
        evolve(
            LEADER_SETTLED,
            app=REQUESTED_A,
            workload=WorkloadFiles(cfg=CFG_B, auth=AUTH_A),
        ),
        [
            Reload(),
            PublishCfg(CFG_B),
            RequestAcknowledgements(no_acknowledgement_wanted(CFG_B)),
            RememberApplied(ack(CFG_B, AUTH_A)),
        ],
        id="leader: a request no client needs any more goes with the next publication",
    ),
    pytest.param(
        evolve(
            LEADER_SETTLED,
            app=REQUESTED_A,
        ),
        [],
        id="leader: ... and never on its own (that write alone would wake every follower)",
    ),
    pytest.param(LEADER_SETTLED, [], id="leader: nothing to publish"),
    pytest.param(
        evolve(LEADER_SETTLED, workload=WorkloadFiles()),
        [WriteCfg(CFG_A), WriteAuth(AUTH_A), Restart()],
        id="leader: rescheduled pod -> restore both files first",
    ),
    pytest.param(
        evolve(FRESH_FOLLOWER, workload=WorkloadFiles()),
        [SetHostname(HOST1), waiting(WAITING_FOR_LEADER_CFG)],
        id="follower: nothing published yet",
    ),
    pytest.param(
        evolve(FRESH_FOLLOWER, workload=None),
        [
            SetHostname(HOST1),
            waiting(NOT_REACHABLE),
            Defer(NOT_REACHABLE),
        ],
        id="follower: container unreachable -> defer",
    ),
    pytest.param(
        evolve(FOLLOWER_SETTLED, workload=WorkloadFiles(), applied=None),
        [
            WriteCfg(CFG_A),
            WriteAuth(AUTH_A),
            Restart(),
            RememberApplied(ack(CFG_A, AUTH_A)),
        ],
        id="follower: valid cfg and auth, empty container -> write both, start",
    ),
    pytest.param(
        evolve(
            FOLLOWER_SETTLED,
            app=AppPeerData(
                cfg_file=CFG_B, leader_hostname=HOST0, ack_wanted=no_acknowledgement_wanted(CFG_B)
            ),
        ),
        [WriteCfg(CFG_B), Reload(), RememberApplied(ack(CFG_B, AUTH_A))],
        id="follower: new valid cfg -> save, reload, remember (no acknowledgement asked)",
    ),
    pytest.param(
        evolve(
            FOLLOWER_SETTLED,
            app=AppPeerData(
                cfg_file=CFG_B, leader_hostname=HOST0, ack_wanted=ack(CFG_B, None).cfg_digest
            ),
        ),
        [
            WriteCfg(CFG_B),
            Reload(),
            Acknowledge(ack(CFG_B, AUTH_A)),
            RememberApplied(ack(CFG_B, AUTH_A)),
        ],
        id="follower: new valid cfg, the leader waits for it -> save, reload, acknowledge",
    ),
    pytest.param(
        evolve(
            FOLLOWER_SETTLED,
            app=AppPeerData(
                cfg_file=CFG_B, leader_hostname=HOST0, ack_wanted=no_acknowledgement_wanted(CFG_B)
            ),
        ),
        [WriteCfg(CFG_B), Reload(), RememberApplied(ack(CFG_B, AUTH_A))],
        id="follower: new valid cfg, the leader waits for nothing -> no acknowledgement",
    ),
    # ack_wanted naming another config than the published one was left by an earlier leader:
    # the one that published this config is of an older revision and reads every unit's
    # acknowledgement (leadership moved to a unit not yet refreshed, or a rollback).
    pytest.param(
        evolve(
            FOLLOWER_SETTLED,
            app=AppPeerData(
                cfg_file=CFG_B, leader_hostname=HOST0, ack_wanted=no_acknowledgement_wanted(CFG_A)
            ),
        ),
        [
            WriteCfg(CFG_B),
            Reload(),
            Acknowledge(ack(CFG_B, AUTH_A)),
            RememberApplied(ack(CFG_B, AUTH_A)),
        ],
        id="follower: a 'none' left for an older cfg -> an older leader: acknowledge",
    ),
    pytest.param(
        evolve(
            FOLLOWER_SETTLED,
            app=AppPeerData(
                cfg_file=CFG_B, leader_hostname=HOST0, ack_wanted=acknowledgements_wanted(CFG_A)
            ),
        ),
        [
            WriteCfg(CFG_B),
            Reload(),
            Acknowledge(ack(CFG_B, AUTH_A)),
            RememberApplied(ack(CFG_B, AUTH_A)),
        ],
        id="follower: a request left for an older cfg -> an older leader: acknowledge",
    ),
    pytest.param(
        evolve(FOLLOWER_SETTLED, app=AppPeerData(cfg_file=CFG_B, leader_hostname=HOST0)),
        [
            WriteCfg(CFG_B),
            Reload(),
            Acknowledge(ack(CFG_B, AUTH_A)),
            RememberApplied(ack(CFG_B, AUTH_A)),
        ],
        id="follower: a leader of an older revision (no request key) -> acknowledge",
    ),
    pytest.param(
        evolve(FOLLOWER_SETTLED, store=StoreContents(auth_file=AUTH_B)),
        [WriteAuth(AUTH_B), Reload(), RememberApplied(ack(CFG_A, AUTH_B))],
        id="follower: cfg unchanged, new valid auth -> save auth, reload",
    ),
    pytest.param(
        evolve(
            FOLLOWER_SETTLED,
            app=AppPeerData(
                cfg_file=CFG_B, leader_hostname=HOST0, ack_wanted=no_acknowledgement_wanted(CFG_B)
            ),
            store=StoreContents(auth_file=AUTH_B),
        ),
        [
            WriteCfg(CFG_B),
            WriteAuth(AUTH_B),
            Reload(),
            RememberApplied(ack(CFG_B, AUTH_B)),
        ],
        id="follower: both new -> save both, one reload",
    ),
    pytest.param(
        evolve(
            FOLLOWER_SETTLED,
            app=AppPeerData(
                cfg_file=CFG_PORT,
                leader_hostname=HOST0,
                ack_wanted=no_acknowledgement_wanted(CFG_PORT),
            ),
        ),
        [WriteCfg(CFG_PORT), Restart(), RememberApplied(ack(CFG_PORT, AUTH_A))],
        id="follower: restart-only setting changed -> restart",
    ),
    pytest.param(
        evolve(
            FOLLOWER_SETTLED,
            app=AppPeerData(cfg_file=CFG_BAD, leader_hostname=HOST0),
            store=StoreContents(auth_file=AUTH_B),
        ),
        [
            WriteAuth(AUTH_B),
            Reload(),
            Acknowledge(ack(CFG_A, AUTH_B, ok=False)),
            RememberApplied(ack(CFG_A, AUTH_B)),
            waiting(BAD_CFG_REASON),
        ],
        id="follower: invalid cfg, valid auth -> keep cfg, save auth, reload",
    ),
    pytest.param(
        evolve(
            FOLLOWER_SETTLED,
            app=AppPeerData(cfg_file=CFG_B, leader_hostname=HOST0),
            store=StoreContents(auth_file=AUTH_BAD),
        ),
        [
            WriteCfg(CFG_B),
            Reload(),
            Acknowledge(ack(CFG_B, AUTH_A, ok=False)),
            RememberApplied(ack(CFG_B, AUTH_A)),
            waiting(BAD_AUTH_REASON),
        ],
        id="follower: valid cfg, invalid auth -> save cfg, keep auth, reload",
    ),
    pytest.param(
        evolve(
            FOLLOWER_SETTLED,
            app=AppPeerData(cfg_file=CFG_BAD, leader_hostname=HOST0),
            store=StoreContents(auth_file=AUTH_BAD),
        ),
        [
            Acknowledge(ack(CFG_A, AUTH_A, ok=False)),
            waiting(BAD_CFG_REASON),
            waiting(BAD_AUTH_REASON),
        ],
        id="follower: neither valid -> write nothing, no reload",
    ),
    pytest.param(FOLLOWER_SETTLED, [], id="follower: no change"),
    pytest.param(
        evolve(FOLLOWER_SETTLED, store=StoreContents()),
        [RemoveAuth(), Reload(), RememberApplied(ack(CFG_A, None))],
        id="follower: leader withdrew the auth file, config names no auth user -> remove",
    ),
    pytest.param(
        evolve(
            FOLLOWER_SETTLED,
            app=AppPeerData(
                cfg_file=CFG_AUTH_USER,
                leader_hostname=HOST0,
                ack_wanted=no_acknowledgement_wanted(CFG_AUTH_USER),
            ),
            workload=WorkloadFiles(cfg=CFG_AUTH_USER, auth=AUTH_A),
            applied=ack(CFG_AUTH_USER, AUTH_A),
            store=StoreContents(),
        ),
        [],
        id="follower: store empty but config still names an auth user -> keep the file",
    ),
    pytest.param(
        evolve(FOLLOWER_SETTLED, workload=WorkloadFiles(cfg=CFG_B, auth=AUTH_A)),
        [WriteCfg(CFG_A), Reload()],
        id="follower: container drifted from the published cfg -> rewrite, reload",
    ),
    pytest.param(
        evolve(FOLLOWER_SETTLED, applied=ack(CFG_B, AUTH_A)),
        [Reload(), RememberApplied(ack(CFG_A, AUTH_A))],
        id="follower: files written but reload lost -> reload now",
    ),
    pytest.param(
        evolve(
            FOLLOWER_SETTLED,
            applied=None,
            own=UnitPeerData(hostname=HOST1, ack=ack(CFG_B, AUTH_A)),
        ),
        [Reload(), RememberApplied(ack(CFG_A, AUTH_A))],
        id="follower: no memory yet, an older revision's acknowledgement says reload lost",
    ),
]


@pytest.mark.parametrize(("view", "expected"), CHANGED)
def test_relation_changed(view: PeerView, expected: list[Effect]):
    assert service.on_relation_changed(view) == expected


def test_relation_joined_follows_the_changed_flowchart():
    view = evolve(FOLLOWER_SETTLED, app=AppPeerData(cfg_file=CFG_B, leader_hostname=HOST0))
    assert service.on_relation_joined(view) == service.on_relation_changed(view)


# --- The contract's other events --------------------------------------------------------------


def test_secret_changed_follower_takes_the_new_auth_file():
    view = evolve(FOLLOWER_SETTLED, store=StoreContents(auth_file=AUTH_B))
    assert service.on_secret_changed(view) == [
        WriteAuth(AUTH_B),
        Reload(),
        RememberApplied(ack(CFG_A, AUTH_B)),
    ]


def test_secret_changed_on_the_settled_leader_does_nothing():
    assert service.on_secret_changed(LEADER_SETTLED) == []


def test_leader_elected_publishes_hostname_and_config():
    # A follower promoted: it runs the old leader's files, which name the old leader.
    # charm=None: the options are invalid, so the published config is kept as it is.
    view = evolve(FOLLOWER_SETTLED, is_leader=True, backend_credentials=True, charm=None)
    assert service.on_leader_elected(view) == [
        PublishLeaderHostname(HOST1),
    ]


def test_leader_elected_takes_the_newer_published_config_then_applies_the_charm_config():
    # This unit had not applied CFG_B yet when it was elected; its charm config says
    # pool_mode=transaction, which CFG_B already has: CFG_B is written and published as is.
    view = evolve(
        FOLLOWER_SETTLED,
        is_leader=True,
        app=AppPeerData(cfg_file=CFG_B, leader_hostname=HOST0),
        charm=None,
    )
    assert service.on_leader_elected(view) == [
        WriteCfg(CFG_B),
        Reload(),
        # The old leader was of an older revision (no request key): say none is wanted.
        RequestAcknowledgements(no_acknowledgement_wanted(CFG_B)),
        PublishLeaderHostname(HOST1),
        RememberApplied(ack(CFG_B, AUTH_A)),
    ]


def test_leader_elected_applies_a_charm_config_change_the_old_leader_never_handled():
    view = evolve(
        FOLLOWER_SETTLED,
        is_leader=True,
        charm=CharmConfig(listen_port=6432, pool_mode="transaction", max_db_connections=100),
    )
    effects = service.on_leader_elected(view)
    written = [e for e in effects if isinstance(e, WriteCfg)]
    assert len(written) == 1
    assert "pool_mode = transaction" in written[0].content
    assert PublishCfg(written[0].content) in effects
    assert Reload() in effects


def test_leader_elected_with_no_config_anywhere_renders_the_initial_one():
    effects = service.on_leader_elected(evolve(FRESH_LEADER, workload=WorkloadFiles()))
    assert [type(e) for e in effects] == [
        SetHostname,
        WriteCfg,
        Restart,
        PublishCfg,
        RequestAcknowledgements,
        PublishLeaderHostname,
        RememberApplied,
    ]
    written = effects[1]
    assert isinstance(written, WriteCfg)
    assert effects[3] == PublishCfg(written.content)


def test_leader_elected_on_a_follower_is_ignored():
    assert service.on_leader_elected(FOLLOWER_SETTLED) == []


def test_departed_leader_refreshes_its_hostname():
    view = evolve(
        LEADER_SETTLED,
        app=AppPeerData(
            cfg_file=CFG_A, leader_hostname=HOST2, ack_wanted=no_acknowledgement_wanted(CFG_A)
        ),
    )
    assert service.on_relation_departed(view, departing_hostname=HOST2) == [
        PublishLeaderHostname(HOST0),
    ]


def test_departure_of_the_leader_is_reported_by_a_follower():
    assert service.on_relation_departed(
        evolve(FOLLOWER_SETTLED, peer_hostnames=(HOST2,)), departing_hostname=HOST0
    ) == [
        waiting(f"leader {HOST0} departed; waiting for a new leader"),
    ]


def test_departure_of_another_follower_is_quiet():
    assert service.on_relation_departed(FOLLOWER_SETTLED, departing_hostname=HOST2) == []


def test_workload_ready_follower_starts_with_the_published_files():
    view = evolve(FOLLOWER_SETTLED, workload=WorkloadFiles(), applied=None)
    assert service.on_workload_ready(view) == [
        WriteCfg(CFG_A),
        WriteAuth(AUTH_A),
        Restart(),
        RememberApplied(ack(CFG_A, AUTH_A)),
    ]


def test_workload_ready_settled_unit_only_starts_pgbouncer():
    assert service.on_workload_ready(FOLLOWER_SETTLED) == [Restart()]
    assert service.on_workload_ready(LEADER_SETTLED) == [Restart()]


def test_update_status_is_quiet_when_settled():
    assert service.on_update_status(FOLLOWER_SETTLED) == []
    assert service.on_update_status(LEADER_SETTLED) == []


def test_config_changed_on_a_follower_only_follows():
    assert service.on_config_changed(FOLLOWER_SETTLED) == []


# --- the pgbouncer version -------------------------------------------------------------------

# CFG_A with a setting pgbouncer 1.18 refuses to start on (peering arrived in 1.19).
CFG_PEERED = CFG_A.replace("user = postgres\n", "user = postgres\npeer_id = 1\n")
V1_18, V1_21 = PgbVersion(1, 18, 0), PgbVersion(1, 21, 0)


def test_follower_refuses_settings_newer_than_its_pgbouncer_and_names_them():
    view = evolve(
        FOLLOWER_SETTLED,
        app=AppPeerData(cfg_file=CFG_PEERED, leader_hostname=HOST0),
        pgbouncer_version=V1_18,
        own=UnitPeerData(hostname=HOST1, ack=ack(CFG_A, AUTH_A), pgbouncer_version=V1_18),
    )
    assert service.on_relation_changed(view) == [
        Acknowledge(ack(CFG_A, AUTH_A, ok=False)),
        Report(
            StatusReason(
                Severity.WAITING,
                "invalid cfg_file from the leader: peer_id: needs pgbouncer 1.19.0, "
                "this unit runs 1.18.0",
            )
        ),
    ]


def test_follower_whose_version_is_unknown_validates_as_the_oldest_supported():
    view = evolve(FOLLOWER_SETTLED, app=AppPeerData(cfg_file=CFG_PEERED, leader_hostname=HOST0))
    effects = service.on_relation_changed(view)
    assert WriteCfg(CFG_PEERED) not in effects


def test_follower_on_a_newer_pgbouncer_takes_what_it_runs_and_publishes_its_version():
    view = evolve(
        FOLLOWER_SETTLED,
        app=AppPeerData(cfg_file=CFG_PEERED, leader_hostname=HOST0),
        pgbouncer_version=V1_21,
    )
    assert service.on_relation_changed(view) == [
        SetPgbouncerVersion(V1_21),
        WriteCfg(CFG_PEERED),
        Restart(),  # peer_id is a restart-only setting
        # An older leader (no ack_wanted) reads every acknowledgement.
        Acknowledge(ack(CFG_PEERED, AUTH_A)),
        RememberApplied(ack(CFG_PEERED, AUTH_A)),
    ]


def test_leader_publishes_nothing_the_oldest_unit_cannot_run():
    view = evolve(
        LEADER_SETTLED,
        workload=WorkloadFiles(cfg=CFG_PEERED, auth=AUTH_A),
        own=UnitPeerData(hostname=HOST0, ack=ack(CFG_PEERED, AUTH_A), pgbouncer_version=V1_21),
        pgbouncer_version=V1_21,
        peer_versions=(V1_18,),
    )
    effects = service.on_update_status(view)
    assert [e for e in effects if isinstance(e, PublishCfg)] == []
    assert (
        Report(
            StatusReason(
                Severity.BLOCKED,
                "pgbouncer.ini uses peer_id: needs pgbouncer 1.19.0, a unit runs 1.18.0",
            )
        )
        in effects
    )
    # Once every unit runs 1.21, it publishes.
    upgraded = evolve(view, peer_versions=(V1_21,))
    assert PublishCfg(CFG_PEERED) in service.on_update_status(upgraded)
