"""The unit's pgbouncer processes as the workload reports them, and what a down one means.

A unit runs one pgbouncer process per core. Each is, at the time of the hook, one of:

- ``SERVING``: running and answering (the Pebble check ``pgbouncer_<i>_up`` passes);
- ``NOT_SERVING``: running but its check fails (a hung process, or one whose TCP port is
  taken: pgbouncer then runs on without listening); Pebble restarts it by itself;
- ``STOPPED``: not running (killed from outside, refused its config, in Pebble's backoff).

The workload adapter reports these as plain values; the domain turns any process that is not
serving into a status reason that names it, and into the wish to start the stopped ones (a
start, never a restart of a running process). ``detail`` is the adapter's own word for the
state (``backoff``, ``inactive``, ``check down``) and is shown as is.
"""

from __future__ import annotations

import enum

import attrs

from domain.errors import InvalidInput
from domain.status import Severity, StatusReason


class ProcessCondition(enum.Enum):
    SERVING = "serving"
    NOT_SERVING = "not serving"
    STOPPED = "stopped"


def _index(_instance: object, _attribute: object, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInput(f"process index must be an integer >= 0, not {value!r}")


@attrs.frozen
class ProcessState:
    index: int = attrs.field(validator=_index)
    condition: ProcessCondition
    detail: str = ""


def stopped_processes(states: tuple[ProcessState, ...]) -> tuple[int, ...]:
    """The indices of the processes that are not running: the ones to start."""
    return tuple(s.index for s in states if s.condition is ProcessCondition.STOPPED)


def processes_reason(states: tuple[ProcessState, ...]) -> StatusReason | None:
    """One status line naming every process that does not serve, or None when all serve."""
    down = [s for s in states if s.condition is not ProcessCondition.SERVING]
    if not down:
        return None
    parts = [f"{s.index} ({s.detail or s.condition.value})" for s in sorted(down, key=_by_index)]
    noun = "process" if len(down) == 1 else "processes"
    return StatusReason(
        Severity.WAITING, f"pgbouncer {noun} {', '.join(parts)} not serving; restarting"
    )


def _by_index(state: ProcessState) -> int:
    return state.index
