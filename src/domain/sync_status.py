"""How many units run what the leader published: the leader's application status.

Each unit acknowledges in its databag the digests of the two files it applied and whether the
apply worked (``peer_data.Acknowledgement``). A unit is *in sync* when its acknowledgement is
ok and names the digests of the published ``cfg_file`` and auth file. The leader shows the
count, and names the units that are behind or refused, so an operator sees a stuck rollout
without reading any databag.
"""

from collections.abc import Mapping

from domain.peer_data import UnitPeerData
from domain.status import Severity, StatusReason

_NAMES_SHOWN = 3


def sync_summary(
    cfg_file: str | None, auth_file: str | None, units: Mapping[str, UnitPeerData]
) -> StatusReason:
    """The application status for the leader, from every live unit's databag (itself included).

    ``units`` maps unit names to their databags; the summary lists names in sorted order.
    """
    if cfg_file is None:
        return StatusReason(Severity.WAITING, "no pgbouncer config published yet")
    behind: list[str] = []
    refused: list[str] = []
    for name in sorted(units):
        ack = units[name].ack
        if ack is not None and ack.matches(cfg_file, auth_file):
            continue
        (refused if ack is not None and not ack.ok else behind).append(name)
    in_sync = len(units) - len(behind) - len(refused)
    message = f"{in_sync}/{len(units)} units in sync"
    if not behind and not refused:
        return StatusReason(Severity.ACTIVE, message)
    parts = [message]
    if refused:
        parts.append(f"refused: {_names(refused)}")
    if behind:
        parts.append(f"behind: {_names(behind)}")
    # Waiting, not blocked: a unit behind catches up by itself, and a unit that refused peer
    # data recovers when the leader publishes valid data; no operator action fixes either.
    return StatusReason(Severity.WAITING, "; ".join(parts))


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:_NAMES_SHOWN])
    more = len(names) - _NAMES_SHOWN
    return f"{shown} and {more} more" if more > 0 else shown
