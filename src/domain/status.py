"""Status reasons: why a unit is not simply active, as values the domain can return.

The domain never sets a Juju status itself. It returns ``StatusReason`` values (inside
``Report`` effects, or from the status functions); the application layer gathers them during a
hook and shows the most severe one in its single collect-status handler. Messages are short,
single-line, secret-free and say what the operator (or the unit) is waiting for.
"""

from __future__ import annotations

import enum

import attrs


class Severity(enum.IntEnum):
    """Ordered so that ``max()`` picks the status to show."""

    ACTIVE = 0
    MAINTENANCE = 1
    WAITING = 2
    BLOCKED = 3


def _one_line(_instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not value.strip():
        raise ValueError(f"{attribute.name} must not be empty")
    if "\n" in value or "\r" in value:
        raise ValueError(f"{attribute.name} must be a single line")


@attrs.frozen
class StatusReason:
    severity: Severity
    message: str = attrs.field(validator=_one_line)


def most_severe(reasons: list[StatusReason] | tuple[StatusReason, ...]) -> StatusReason | None:
    """The reason to show: the most severe, the first of equals (handlers add in priority)."""
    best: StatusReason | None = None
    for reason in reasons:
        if best is None or reason.severity > best.severity:
            best = reason
    return best
