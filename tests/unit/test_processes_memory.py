"""What a follower's status says of its processes when its hook does not look at them.

A quiet follower (nothing new for it, and it remembers running what the leader published)
asks Pebble nothing, its processes included; the unit status is rebuilt by every hook, so the
plan shows the processes as the last hook that read them saw them (``Memory``), and a hook
that reads them remembers what it saw. Literal views in, the hook's exact effects out.
"""

import pytest

from domain.effects import Effect, RememberProcesses, Report, StartStopped
from domain.hook_plan import HookPlanner
from domain.hook_view import BackendView, EventKind, HookEvent, HookView, Memory
from domain.peer_data import (
    Acknowledgement,
    AppPeerData,
    StoreContents,
    UnitPeerData,
    no_acknowledgement_wanted,
)
from domain.peer_sync import PeerView, WorkloadFiles
from domain.processes import ProcessCondition, ProcessState
from domain.status import Severity, StatusReason
from tests.unit.peer_fixtures import AUTH_A, CFG_A, HOST0, HOST1

PEER = HookEvent(EventKind.PEER_CHANGED, 1)
UPDATE = HookEvent(EventKind.UPDATE_STATUS)
SERVING = (
    ProcessState(0, ProcessCondition.SERVING),
    ProcessState(1, ProcessCondition.SERVING),
)
DOWN = (
    ProcessState(0, ProcessCondition.SERVING),
    ProcessState(1, ProcessCondition.STOPPED, "backoff"),
)
DOWN_REASON = "pgbouncer process 1 (backoff) not serving; restarting"

FOLLOWER = PeerView(
    is_leader=False,
    hostname=HOST1,
    app=AppPeerData(
        cfg_file=CFG_A, leader_hostname=HOST0, ack_wanted=no_acknowledgement_wanted(CFG_A)
    ),
    store=StoreContents(auth_file=AUTH_A),
    own=UnitPeerData(hostname=HOST1),
    workload=WorkloadFiles(CFG_A, AUTH_A),
    peer_hostnames=(HOST0,),
    processes=2,
    applied=Acknowledgement.of(CFG_A, AUTH_A, True),
)


def view(processes: tuple[ProcessState, ...], read: bool, remembered: str) -> HookView:
    return HookView(
        FOLLOWER,
        backend=BackendView(7, "pgbouncer-k8s"),
        processes=processes,
        processes_read=read,
        memory=Memory(applied=FOLLOWER.applied, processes_reason=remembered),
    )


def waiting(message: str) -> Report:
    return Report(StatusReason(Severity.WAITING, message))


ROWS = [
    pytest.param(PEER, view((), False, ""), [], id="quiet, all served last time: nothing"),
    pytest.param(
        PEER,
        view((), False, DOWN_REASON),
        [waiting(DOWN_REASON)],
        id="quiet, a process was down last time: still shown, nothing started",
    ),
    pytest.param(
        UPDATE,
        view(DOWN, True, ""),
        [StartStopped(), RememberProcesses(DOWN_REASON), waiting(DOWN_REASON)],
        id="read, one down: started, shown and remembered",
    ),
    pytest.param(
        UPDATE,
        view(DOWN, True, DOWN_REASON),
        [StartStopped(), waiting(DOWN_REASON)],
        id="read, still down: started and shown, the memory already says so",
    ),
    pytest.param(
        UPDATE,
        view(SERVING, True, DOWN_REASON),
        [RememberProcesses("")],
        id="read, all serve again: forgotten",
    ),
    pytest.param(UPDATE, view(SERVING, True, ""), [], id="read, all serve: nothing"),
]


@pytest.mark.parametrize(("event", "hook_view", "expected"), ROWS)
def test_processes_as_last_seen(event: HookEvent, hook_view: HookView, expected: list[Effect]):
    assert HookPlanner().plan(event, hook_view) == expected
