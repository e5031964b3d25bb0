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

from domain.effects import Effect, Reload, Report, Restart, StartStopped, in_contract_order
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


def with_processes_looked_after(
    planned: list[Effect], states: tuple[ProcessState, ...], has_config: bool
) -> list[Effect]:
    """``planned`` with what the processes' states ask for, in the contract's order: a status
    reason naming those that do not serve, and a start of those that are not running.

    Nothing when the unit has no config yet (nothing should run), or when the plan already
    reloads or restarts (both start every stopped process, and report their own failure). A
    process that runs but does not serve is only reported: Pebble restarts it (its check's
    ``on-check-failure``); restarting it here too would cut its clients twice.
    """
    if not has_config or any(isinstance(e, Reload | Restart) for e in planned):
        return planned
    reason = processes_reason(states)
    if reason is None:
        return planned
    # The start goes with the process effects, before what the unit publishes or
    # acknowledges; the reason after it: if the start fails, the applier reports that instead.
    added: list[Effect] = [StartStopped()] if stopped_processes(states) else []
    return in_contract_order([*planned, *added, Report(reason)])
