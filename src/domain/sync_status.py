"""What the application runs: the leader's application status.

Units acknowledge what they apply only while the leader waits for it (a client waits for
its credentials, ``AppPeerData.ack_wanted``): a unit's databag write wakes every other unit,
so acknowledging every config change would cost N^2 hooks. So the application status says
what the leader published, by its short digest, and each unit's own status says which config
it runs (``hook_plan.unit_status``): ``juju status`` shows a unit behind or one that refused
(its status says why). While the leader waits for acknowledgements, the application status
counts them and names the units it still waits for.
"""

from collections.abc import Mapping

from domain.peer_data import UnitPeerData, content_digest, short_digest
from domain.status import Severity, StatusReason

_NAMES_SHOWN = 3


def sync_summary(
    cfg_file: str | None,
    ack_wanted: str | None,
    units: Mapping[str, UnitPeerData],
    leader: str,
) -> StatusReason:
    """The application status for the leader ``leader``, from every live unit's databag.

    ``units`` maps unit names to their databags, the leader's included; the leader counts as
    running what it published (it does not acknowledge to itself).
    """
    if cfg_file is None:
        return StatusReason(Severity.WAITING, "no pgbouncer config published yet")
    digest = content_digest(cfg_file)
    published = f"config {short_digest(cfg_file)} published"
    if ack_wanted != digest:
        return StatusReason(
            Severity.ACTIVE, f"{published}; each unit's status shows the config it runs"
        )
    behind: list[str] = []
    refused: list[str] = []
    for name in sorted(units):
        ack = units[name].ack
        if name == leader or (ack is not None and ack.ok and ack.cfg_digest == digest):
            continue
        (refused if ack is not None and not ack.ok else behind).append(name)
    count = len(set(units) | {leader})
    in_sync = count - len(behind) - len(refused)
    message = f"{published}; {in_sync}/{count} units acknowledged it"
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
