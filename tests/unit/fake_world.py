"""An in-memory world for PeerSyncService: what Juju and the container would hold.

``Shared`` is the peer relation's application side (databag and secret store); ``Unit`` is
one unit's container files, unit databag, memory (what it remembers running) and process
counters. ``Unit.apply`` carries out a
list of effects the way the adapters do, so two real ``PeerSyncService`` cores can be wired
together (a leader's effects become a follower's input) with no Juju at all.
"""

import attrs

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
    StoreAuth,
    WriteAuth,
    WriteCfg,
)
from domain.peer_data import Acknowledgement, AppPeerData, StoreContents, UnitPeerData
from domain.peer_sync import PeerView, WorkloadFiles


@attrs.define
class Shared:
    app: AppPeerData = AppPeerData()
    store: StoreContents = StoreContents()


@attrs.define
class Unit:
    hostname: str
    is_leader: bool = False
    cfg: str | None = None
    auth: str | None = None
    own: UnitPeerData = UnitPeerData()
    applied: Acknowledgement | None = None
    reloads: int = 0
    restarts: int = 0
    writes: int = 0
    deferred: int = 0
    backend_credentials: bool = False

    def view(self, shared: Shared, peers: tuple[str, ...] = ()) -> PeerView:
        return PeerView(
            is_leader=self.is_leader,
            hostname=self.hostname,
            app=shared.app,
            store=shared.store,
            own=self.own,
            workload=WorkloadFiles(self.cfg, self.auth),
            backend_credentials=self.backend_credentials,
            peer_hostnames=peers,
            applied=self.applied,
        )

    def apply(self, effects: list[Effect], shared: Shared) -> None:
        for effect in effects:
            match effect:
                case SetHostname(hostname):
                    self.own = attrs.evolve(self.own, hostname=hostname)
                case WriteCfg(content):
                    self.cfg = content
                    self.writes += 1
                case WriteAuth(content):
                    self.auth = content
                    self.writes += 1
                case RemoveAuth():
                    self.auth = None
                    self.writes += 1
                case Reload():
                    self.reloads += 1
                case Restart():
                    self.restarts += 1
                case PublishCfg(content):
                    shared.app = attrs.evolve(shared.app, cfg_file=content)
                case PublishLeaderHostname(hostname):
                    shared.app = attrs.evolve(shared.app, leader_hostname=hostname)
                case StoreAuth(content):
                    shared.store = attrs.evolve(shared.store, auth_file=content)
                case Acknowledge(ack):
                    self.own = attrs.evolve(self.own, ack=ack)
                case RequestAcknowledgements(digest):
                    shared.app = attrs.evolve(shared.app, ack_wanted=digest)
                case RememberApplied(applied):
                    self.applied = applied
                case Defer():
                    self.deferred += 1
                case Report():
                    pass
