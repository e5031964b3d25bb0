"""``domain.processes``: which processes to start, and the status line for the ones down."""

import pytest

from domain.errors import InvalidInput
from domain.processes import (
    ProcessCondition,
    ProcessState,
    processes_reason,
    stopped_processes,
)
from domain.status import Severity, StatusReason

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
