"""Status reasons: why a unit is not simply active, as values the domain can return.

The domain never sets a Juju status itself. It returns ``StatusReason`` values (inside
``Report`` effects, or from the status functions); the application layer gathers them during a
hook and shows the most severe one in its single collect-status handler. Messages are short
(folded to one line and cut to ``MAX_MESSAGE``), secret-free, and say what the operator (or
the unit) is waiting for.
"""

from __future__ import annotations

import enum

import attrs

from domain.errors import InvalidStatus
from domain.values import value_class


class Severity(enum.IntEnum):
    """Ordered so that ``max()`` picks the status to show."""

    ACTIVE = 0
    MAINTENANCE = 1
    WAITING = 2
    BLOCKED = 3


MAX_MESSAGE = 240


def _status_text(value: str) -> str:
    """One short line: reasons quote input (a bad name, a parser's message), which may hold
    line breaks or be 100 kB long; neither belongs in a Juju status."""
    line = " ".join(str(value).split())
    return line if len(line) <= MAX_MESSAGE else line[: MAX_MESSAGE - 1] + "…"


def _non_empty(_instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not value:
        raise InvalidStatus(f"{attribute.name} must not be empty")


@value_class
class StatusReason:
    severity: Severity
    message: str = attrs.field(converter=_status_text, validator=_non_empty)


def most_severe(reasons: list[StatusReason] | tuple[StatusReason, ...]) -> StatusReason | None:
    """The reason to show: the most severe, the first of equals (handlers add in priority)."""
    best: StatusReason | None = None
    for reason in reasons:
        if best is None or reason.severity > best.severity:
            best = reason
    return best
