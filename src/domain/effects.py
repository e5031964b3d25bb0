"""Effects: the commands ``PeerSyncService`` returns and the adapters carry out.

Each effect is a frozen value named in the imperative for what it makes happen. It validates
itself when built, so an effect that would write a pgbouncer.ini pgbouncer refuses, an auth
file with a bad line, or an empty hostname cannot exist: a wrong decision fails in the core,
loudly, instead of reaching a container.

The order of a returned list is part of the contract, and adapters apply it as given:

1. unit databag (``SetHostname``), then client relation databags (``RefreshClientRelations``);
2. the container's files (``WriteCfg``, ``WriteAuth``, ``RemoveAuth``), then the processes
   (``Reload`` or ``Restart``), so pgbouncer never re-reads a half-updated pair;
3. the peer data the leader publishes (``PublishCfg``, ``PublishLeaderHostname``,
   ``StoreAuth``), after its own container has the same files;
4. ``Acknowledge`` (what this unit now runs), ``Report`` (why it is not simply active);
5. ``Defer`` last: the seed's "a deferral is always followed by a return".
"""

from __future__ import annotations

import attrs

from domain.auth_file import parse_auth_file
from domain.errors import InvalidPeerData
from domain.peer_data import Acknowledgement, is_valid_hostname
from domain.pgb_config import parse_pgb_ini
from domain.status import StatusReason


def _valid_cfg(_instance: object, _attribute: attrs.Attribute[str], value: str) -> None:
    parse_pgb_ini(value)


def _valid_auth(_instance: object, _attribute: attrs.Attribute[str], value: str) -> None:
    parse_auth_file(value)


def _valid_hostname(_instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not is_valid_hostname(value):
        raise InvalidPeerData(f"{attribute.name}: {value!r} is not a DNS hostname")


def _non_empty(_instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not value.strip():
        raise ValueError(f"{attribute.name} must not be empty")


@attrs.frozen
class SetHostname:
    """Save this unit's hostname in its unit databag."""

    hostname: str = attrs.field(validator=_valid_hostname)


@attrs.frozen
class RefreshClientRelations:
    """Bring the client relations' databags up to date with the peers (endpoints)."""


@attrs.frozen
class WriteCfg:
    """Write pgbouncer.ini (and its per-process copies) into this unit's container."""

    content: str = attrs.field(validator=_valid_cfg, repr=False)


@attrs.frozen
class WriteAuth:
    """Write the auth file into this unit's container."""

    content: str = attrs.field(validator=_valid_auth, repr=False)


@attrs.frozen
class RemoveAuth:
    """Remove the auth file from this unit's container (the leader withdrew it)."""


@attrs.frozen
class Reload:
    """Make every pgbouncer process re-read its files without dropping a client (SIGHUP)."""


@attrs.frozen
class Restart:
    """Stop and start every pgbouncer process: a restart-only setting changed, or none runs."""


@attrs.frozen
class PublishCfg:
    """Leader: put this pgbouncer.ini in the application databag as ``cfg_file``."""

    content: str = attrs.field(validator=_valid_cfg, repr=False)


@attrs.frozen
class PublishLeaderHostname:
    """Leader: put its hostname in the application databag as ``leader_hostname``."""

    hostname: str = attrs.field(validator=_valid_hostname)


@attrs.frozen
class StoreAuth:
    """Leader: put the auth file in the peer secret store."""

    content: str = attrs.field(validator=_valid_auth, repr=False)


@attrs.frozen
class Acknowledge:
    """Record in the unit databag what this unit has applied and whether that worked."""

    ack: Acknowledgement


@attrs.frozen
class Report:
    """A reason this unit is not simply active; shown by the collect-status handler."""

    reason: StatusReason


@attrs.frozen
class Defer:
    """Defer the event: it is retried on the next hook. Always the last effect."""

    reason: str = attrs.field(validator=_non_empty)


Effect = (
    SetHostname
    | RefreshClientRelations
    | WriteCfg
    | WriteAuth
    | RemoveAuth
    | Reload
    | Restart
    | PublishCfg
    | PublishLeaderHostname
    | StoreAuth
    | Acknowledge
    | Report
    | Defer
)
