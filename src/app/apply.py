"""Carrying out the domain's effects, in the order given, through the adapters.

An effect that fails (Pebble gone, a secret unreadable, a databag refusing a write) stops the
list there: what comes after it (publishing, acknowledging) would claim something that did
not happen. The failure becomes a waiting reason and the event is deferred, so the next hook
tries again; the domain's effects are idempotent, so repeating them is safe.
"""

import logging
from collections.abc import Callable, Iterable

import attrs
import ops

from adapters.juju.peer_relation import PeerRelation, PeerRelationMissing
from adapters.juju.secret_store import StoreUnavailable
from domain.effects import (
    Acknowledge,
    Defer,
    Effect,
    PublishCfg,
    PublishLeaderHostname,
    RefreshClientRelations,
    Reload,
    RemoveAuth,
    Report,
    Restart,
    SetHostname,
    StoreAuth,
    WriteAuth,
    WriteCfg,
)
from domain.peer_data import AUTH_FILE_KEY
from domain.ports import SecretStorePort, WorkloadPort, WorkloadUnavailable
from domain.status import Severity, StatusReason

logger = logging.getLogger(__name__)

_FAILURES = (WorkloadUnavailable, StoreUnavailable, PeerRelationMissing, ops.ModelError)


@attrs.define
class EffectApplier:
    peers: PeerRelation
    workload: WorkloadPort
    store: Callable[[], SecretStorePort]
    refresh_clients: Callable[[], None]
    reasons: list[StatusReason]

    def apply(self, effects: Iterable[Effect], event: ops.EventBase) -> None:
        for effect in effects:
            try:
                self._apply(effect, event)
            except _FAILURES as err:
                message = f"{_describe(effect)} failed: {_first_line(err)}"
                logger.warning("%s; deferring %s", message, type(event).__name__)
                self.reasons.append(StatusReason(Severity.WAITING, message))
                event.defer()
                return

    def _apply(self, effect: Effect, event: ops.EventBase) -> None:
        match effect:
            case SetHostname(hostname):
                self.peers.set_hostname(hostname)
            case RefreshClientRelations():
                self.refresh_clients()
            case WriteCfg(content):
                self.workload.write_cfg(content)
            case WriteAuth(content):
                self.workload.write_auth(content)
            case RemoveAuth():
                self.workload.remove_auth()
            case Reload():
                self.workload.reload()
            case Restart():
                self.workload.restart()
            case PublishCfg(content):
                self.peers.publish_cfg(content)
            case PublishLeaderHostname(hostname):
                self.peers.publish_leader_hostname(hostname)
            case StoreAuth(content):
                self.store().update({AUTH_FILE_KEY: content})
            case Acknowledge(ack):
                self.peers.acknowledge(ack)
            case Report(reason):
                logger.info("status reason: %s", reason.message)
                self.reasons.append(reason)
            case Defer(reason):
                logger.info("deferring %s: %s", type(event).__name__, reason)
                event.defer()
        if not isinstance(effect, Report | Defer):
            logger.debug("applied %s", _describe(effect))


def _describe(effect: Effect) -> str:
    # Effects hide file contents in their repr; the class name says what was attempted.
    return type(effect).__name__


def _first_line(err: Exception) -> str:
    text = str(err)
    return text.splitlines()[0] if text else type(err).__name__
