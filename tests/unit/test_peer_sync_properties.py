"""Properties of PeerSyncService over generated views, valid and hostile.

Whatever a unit sees (published text that is valid, subtly broken or arbitrary; a container
with any files or none; any acknowledgement, any memory of what it applied, any request for
acknowledgements; leader or not), every event handler must return effects and never raise;
the effects must keep the contract's order with at most one signal and Defer last; and a
second run on the world the first run produced must change nothing.
"""

import attrs
from hypothesis import given
from hypothesis import strategies as st

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
    RequestAcknowledgements,
    Restart,
    SetHostname,
    StoreAuth,
    WriteAuth,
    WriteCfg,
)
from domain.peer_data import (
    Acknowledgement,
    AppPeerData,
    StoreContents,
    UnitPeerData,
    acknowledgements_wanted,
    no_acknowledgement_wanted,
)
from domain.peer_sync import PeerSyncService, PeerView, WorkloadFiles
from tests.unit.fake_world import Shared, Unit
from tests.unit.peer_fixtures import (
    AUTH_A,
    AUTH_B,
    AUTH_BAD,
    CFG_A,
    CFG_B,
    CFG_BAD,
    CFG_PORT,
    HOST0,
    HOST1,
    HOST2,
)

service = PeerSyncService()


def mutated(text: str) -> st.SearchStrategy[str]:
    """``text`` with one slice replaced by arbitrary characters (often still almost valid)."""
    return st.tuples(st.integers(0, len(text)), st.integers(0, 8), st.text(max_size=8)).map(
        lambda cut: text[: cut[0]] + cut[2] + text[cut[0] + cut[1] :]
    )


cfg_texts = st.one_of(
    st.sampled_from([CFG_A, CFG_B, CFG_PORT, CFG_BAD]),
    mutated(CFG_A),
    st.text(max_size=200),
)
auth_texts = st.one_of(st.sampled_from([AUTH_A, AUTH_B, AUTH_BAD]), mutated(AUTH_B), st.text())
maybe_cfg = st.none() | cfg_texts
maybe_auth = st.none() | auth_texts
hostnames = st.sampled_from([HOST0, HOST1, HOST2])
acks = st.none() | st.builds(
    Acknowledgement.of, st.none() | st.sampled_from([CFG_A, CFG_B]), maybe_auth, st.booleans()
)
# What a unit remembers running: always something it applied (ok).
remembered = st.none() | st.builds(
    Acknowledgement.of, st.sampled_from([CFG_A, CFG_B]), maybe_auth, st.just(True)
)
# An older leader's (absent), wanted or not, for one config or another (a stale one).
ack_wanted = st.sampled_from(
    [None]
    + [
        want(cfg)
        for want in (acknowledgements_wanted, no_acknowledgement_wanted)
        for cfg in (CFG_A, CFG_B)
    ]
)
views = st.builds(
    PeerView,
    is_leader=st.booleans(),
    hostname=hostnames,
    app=st.builds(
        AppPeerData,
        cfg_file=maybe_cfg,
        leader_hostname=st.none() | hostnames,
        ack_wanted=ack_wanted,
    ),
    store=st.builds(StoreContents, auth_file=maybe_auth),
    own=st.builds(UnitPeerData, hostname=st.none() | hostnames, ack=acks),
    workload=st.none() | st.builds(WorkloadFiles, cfg=maybe_cfg, auth=maybe_auth),
    backend_credentials=st.booleans(),
    peer_hostnames=st.lists(hostnames, max_size=2).map(tuple),
    charm=st.none()
    | st.builds(
        CharmConfig,
        listen_port=st.integers(1024, 65535),  # CharmConfig refuses ports below 1024
        pool_mode=st.sampled_from(["session", "transaction", "statement"]),
        max_db_connections=st.integers(0, 10_000),
    ),
    processes=st.integers(1, 4),
    applied=remembered,
)
EVENTS = {
    "created": service.on_relation_created,
    "changed": service.on_relation_changed,
    "secret-changed": service.on_secret_changed,
    "departed": lambda view: service.on_relation_departed(view, HOST2),
    "leader-elected": service.on_leader_elected,
    "pebble-ready": service.on_workload_ready,
    "config-changed": service.on_config_changed,
    "update-status": service.on_update_status,
}
events = st.sampled_from(sorted(EVENTS))
_CHANGES = (
    WriteCfg,
    WriteAuth,
    RemoveAuth,
    Reload,
    Restart,
    PublishCfg,
    PublishLeaderHostname,
    StoreAuth,
    RequestAcknowledgements,
    Acknowledge,
    RememberApplied,
)


def _check_shape(effects: list[Effect]) -> None:
    assert sum(isinstance(e, Reload | Restart) for e in effects) <= 1
    defers = [i for i, e in enumerate(effects) if isinstance(e, Defer)]
    assert defers in ([], [len(effects) - 1])
    writes = [i for i, e in enumerate(effects) if isinstance(e, WriteCfg | WriteAuth)]
    signals = [i for i, e in enumerate(effects) if isinstance(e, Reload | Restart)]
    assert all(w < s for w in writes for s in signals)


@given(view=views, event=events)
def test_any_view_gives_well_formed_effects(view: PeerView, event: str):
    _check_shape(EVENTS[event](view))


@given(view=views, event=events)
def test_a_second_run_on_the_resulting_world_changes_nothing(view: PeerView, event: str):
    shared = Shared(app=view.app, store=view.store)
    files = view.workload or WorkloadFiles()
    unit = Unit(
        view.hostname,
        view.is_leader,
        files.cfg,
        files.auth,
        view.own,
        applied=view.applied,
        backend_credentials=view.backend_credentials,
    )

    def run() -> list[Effect]:
        again = attrs.evolve(
            unit.view(shared, view.peer_hostnames),
            workload=None if view.workload is None else WorkloadFiles(unit.cfg, unit.auth),
            charm=view.charm,
            processes=view.processes,
        )
        return EVENTS[event](again)

    unit.apply(run(), shared)
    second = run()

    changes = [e for e in second if isinstance(e, (*_CHANGES, SetHostname))]
    if event == "pebble-ready":
        # The container just started: starting pgbouncer is always part of it.
        changes = [e for e in changes if not isinstance(e, Restart)]
    assert changes == []
