"""A leader and a follower, two real PeerSyncService cores wired through ``fake_world``.

The leader's effects become the follower's input, with no Juju: the follower must end with
byte-identical files after exactly one reload, and a repeat of the same data must do nothing.
"""

from domain.effects import Reload, Restart, WriteAuth, WriteCfg
from domain.peer_sync import PeerSyncService
from tests.unit.fake_world import Shared, Unit
from tests.unit.peer_fixtures import AUTH_A, AUTH_B, CFG_A, CFG_B, HOST0, HOST1

service = PeerSyncService()


def settled_pair() -> tuple[Unit, Unit, Shared]:
    shared = Shared()
    leader = Unit(HOST0, is_leader=True, cfg=CFG_A, auth=AUTH_A, backend_credentials=True)
    follower = Unit(HOST1)
    leader.apply(service.on_relation_created(leader.view(shared)), shared)
    leader.apply(service.on_relation_changed(leader.view(shared)), shared)
    follower.apply(service.on_relation_changed(follower.view(shared)), shared)
    return leader, follower, shared


def test_follower_takes_the_leaders_files_byte_for_byte_and_starts_once():
    leader, follower, shared = settled_pair()

    assert shared.app.cfg_file == CFG_A
    assert shared.app.leader_hostname == HOST0
    assert shared.store.auth_file == AUTH_A
    assert (follower.cfg, follower.auth) == (leader.cfg, leader.auth)
    assert (follower.restarts, follower.reloads) == (1, 0)


def test_a_change_on_the_leader_reaches_the_follower_with_one_reload():
    leader, follower, shared = settled_pair()
    leader.cfg, leader.auth = CFG_B, AUTH_B  # what a config or relation handler writes

    leader.apply(service.on_relation_created(leader.view(shared)), shared)
    effects = service.on_relation_changed(follower.view(shared))
    follower.apply(effects, shared)

    assert [e for e in effects if isinstance(e, WriteCfg | WriteAuth | Reload | Restart)] == [
        WriteCfg(CFG_B),
        WriteAuth(AUTH_B),
        Reload(),
    ]
    assert (follower.cfg, follower.auth) == (CFG_B, AUTH_B)
    assert (follower.restarts, follower.reloads) == (1, 1)


def test_a_repeat_of_the_same_data_does_nothing():
    _leader, follower, shared = settled_pair()
    writes, reloads, restarts = follower.writes, follower.reloads, follower.restarts

    for _ in range(3):
        follower.apply(service.on_relation_changed(follower.view(shared)), shared)
        follower.apply(service.on_secret_changed(follower.view(shared)), shared)
        follower.apply(service.on_update_status(follower.view(shared)), shared)

    assert (follower.writes, follower.reloads, follower.restarts) == (writes, reloads, restarts)
