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


class _Effect:
    """The repr attrs would write, from one function instead of one generated per class.

    attrs compiles a ``__repr__`` for each class it decorates, nearly half of what building
    the class costs, and every hook imports these thirteen classes to use a few of them.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        shown = []
        for field in attrs.fields(type(self)):
            if field.repr:
                show = repr if field.repr is True else field.repr
                shown.append(f"{field.name}={show(getattr(self, field.name))}")
        return f"{type(self).__qualname__}({', '.join(shown)})"


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


@attrs.frozen(repr=False)
class SetHostname(_Effect):
    """Save this unit's hostname in its unit databag."""

    hostname: str = attrs.field(validator=_valid_hostname)


@attrs.frozen(repr=False)
class RefreshClientRelations(_Effect):
    """Bring the client relations' databags up to date with the peers (endpoints)."""


@attrs.frozen(repr=False)
class WriteCfg(_Effect):
    """Write pgbouncer.ini (and its per-process copies) into this unit's container."""

    content: str = attrs.field(validator=_valid_cfg, repr=False)


@attrs.frozen(repr=False)
class WriteAuth(_Effect):
    """Write the auth file into this unit's container."""

    content: str = attrs.field(validator=_valid_auth, repr=False)


@attrs.frozen(repr=False)
class RemoveAuth(_Effect):
    """Remove the auth file from this unit's container (the leader withdrew it)."""


@attrs.frozen(repr=False)
class Reload(_Effect):
    """Make every pgbouncer process re-read its files without dropping a client (SIGHUP)."""


@attrs.frozen(repr=False)
class Restart(_Effect):
    """Stop and start every pgbouncer process: a restart-only setting changed, or none runs."""


@attrs.frozen(repr=False)
class PublishCfg(_Effect):
    """Leader: put this pgbouncer.ini in the application databag as ``cfg_file``."""

    content: str = attrs.field(validator=_valid_cfg, repr=False)


@attrs.frozen(repr=False)
class PublishLeaderHostname(_Effect):
    """Leader: put its hostname in the application databag as ``leader_hostname``."""

    hostname: str = attrs.field(validator=_valid_hostname)


@attrs.frozen(repr=False)
class StoreAuth(_Effect):
    """Leader: put the auth file in the peer secret store."""

    content: str = attrs.field(validator=_valid_auth, repr=False)


@attrs.frozen(repr=False)
class Acknowledge(_Effect):
    """Record in the unit databag what this unit has applied and whether that worked."""

    ack: Acknowledgement


@attrs.frozen(repr=False)
class Report(_Effect):
    """A reason this unit is not simply active; shown by the collect-status handler."""

    reason: StatusReason


@attrs.frozen(repr=False)
class Defer(_Effect):
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
