"""``domain.processes``: which processes to start, the status line for the ones down, and
where both go in a hook's plan."""

import pytest

from domain.effects import Acknowledge, Defer, Reload, Report, Restart, StartStopped, WriteCfg
from domain.errors import InvalidInput
from domain.peer_data import Acknowledgement
from domain.processes import (
    ProcessCondition,
    ProcessState,
    processes_reason,
    stopped_processes,
    with_processes_looked_after,
)
from domain.status import Severity, StatusReason
from tests.unit.peer_fixtures import AUTH_A, CFG_A

SERVING = ProcessCondition.SERVING
NOT_SERVING = ProcessCondition.NOT_SERVING
STOPPED = ProcessCondition.STOPPED


@pytest.mark.parametrize(
    ("states", "stopped", "reason"),
    [
        ((), (), None),
        (((0, SERVING, ""), (1, SERVING, "")), (), None),
        (
            ((0, SERVING, ""), (1, STOPPED, "backoff")),
            (1,),
            "pgbouncer process 1 (backoff) not serving; restarting",
        ),
        (
            ((0, NOT_SERVING, "check down"), (1, SERVING, "")),
            (),
            "pgbouncer process 0 (check down) not serving; restarting",
        ),
        (
            ((2, STOPPED, ""), (0, STOPPED, "inactive"), (1, NOT_SERVING, "check down")),
            (2, 0),
            "pgbouncer processes 0 (inactive), 1 (check down), 2 (stopped) not serving; "
            "restarting",
        ),
    ],
)
def test_processes(states, stopped, reason):
    values = tuple(ProcessState(i, condition, detail) for i, condition, detail in states)
    assert stopped_processes(values) == stopped
    expected = None if reason is None else StatusReason(Severity.WAITING, reason)
    assert processes_reason(values) == expected


@pytest.mark.parametrize("index", [-1, True, "0", 1.0])
def test_process_index_is_a_natural_number(index):
    with pytest.raises(InvalidInput, match="process index"):
        ProcessState(index, SERVING)


ACK = Acknowledge(Acknowledgement.of(CFG_A, AUTH_A, True))
DOWN = (ProcessState(0, SERVING), ProcessState(1, STOPPED, "backoff"))
HUNG = (ProcessState(0, NOT_SERVING, "check down"), ProcessState(1, SERVING))
ALL_SERVING = (ProcessState(0, SERVING), ProcessState(1, SERVING))
REPORT_DOWN = Report(
    StatusReason(Severity.WAITING, "pgbouncer process 1 (backoff) not serving; restarting")
)
REPORT_HUNG = Report(
    StatusReason(Severity.WAITING, "pgbouncer process 0 (check down) not serving; restarting")
)


@pytest.mark.parametrize(
    ("planned", "states", "has_config", "expected"),
    [
        pytest.param([ACK], ALL_SERVING, True, [ACK], id="all serving: nothing"),
        pytest.param([], DOWN, True, [StartStopped(), REPORT_DOWN], id="one stopped: start it"),
        pytest.param(
            [WriteCfg(CFG_A), ACK, Defer("x")],
            DOWN,
            True,
            [WriteCfg(CFG_A), StartStopped(), ACK, REPORT_DOWN, Defer("x")],
            id="in the contract's order: after the files, before the acknowledgement",
        ),
        pytest.param([ACK], HUNG, True, [ACK, REPORT_HUNG], id="running, not serving: report"),
        pytest.param([Reload(), ACK], DOWN, True, [Reload(), ACK], id="a reload starts it"),
        pytest.param([Restart()], DOWN, True, [Restart()], id="a restart starts it"),
        pytest.param([], DOWN, False, [], id="no config yet: nothing should run"),
    ],
)
def test_with_processes_looked_after(planned, states, has_config, expected):
    assert with_processes_looked_after(planned, states, has_config) == expected
