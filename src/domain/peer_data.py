"""What the ``pgb-peers`` relation holds, as typed values.

The relation has three places (the seed's "Expected Interface", made exact by the contract):

- the application databag, written by the leader only: ``cfg_file`` (the leader's whole
  rendered pgbouncer.ini) and ``leader_hostname``;
- the secret store, written by the leader only: ``auth_file`` and one ``relation_id_<N>``
  password per client relation. It is a Juju secret where Juju has them, else the application
  databag under the same keys; ``StoreContents`` is what either one holds;
- each unit's databag: its ``hostname`` and its apply acknowledgement (the digests of the
  config and auth file it has applied, and whether the apply succeeded).

The Juju adapter reads these from string maps with cattrs; here they are plain values. A value
that is absent is ``None``, never an empty string, so "not published yet" cannot be confused
with "published empty".
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping

import attrs

from domain.errors import InvalidPeerData
from domain.pgb_version import PgbVersion
from domain.values import value_class

CFG_FILE_KEY = "cfg_file"
LEADER_HOSTNAME_KEY = "leader_hostname"
AUTH_FILE_KEY = "auth_file"
RELATION_PASSWORD_PREFIX = "relation_id_"
HOSTNAME_KEY = "hostname"
APPLIED_CFG_KEY = "applied_cfg_digest"
APPLIED_AUTH_KEY = "applied_auth_digest"
APPLY_OK_KEY = "apply_ok"
# Additive (older revisions ignore it): the pgbouncer version this unit's image ships.
PGBOUNCER_VERSION_KEY = "pgbouncer_version"
# The exporters' stats user's password (domain.observability), kept in the store too.
STATS_PASSWORD_KEY = "stats_password"
# Additive: whether the leader waits for acknowledgements of the cfg_file it published,
# and of which (see AppPeerData); an older leader leaves it out.
ACK_WANTED_KEY = "ack_wanted"
NOT_WANTED_PREFIX = "none:"

NO_FILE_DIGEST = "none"
_HOSTNAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.\-]{0,251}[A-Za-z0-9])?")
_DIGEST = re.compile(r"none|[0-9a-f]{16}")


def content_digest(text: str | None) -> str:
    """A short, stable fingerprint of a file's content (``none`` when there is no file).

    SHA-256 truncated to 64 bits: enough to tell versions apart, and one-way, so publishing
    the auth file's digest in a plain databag reveals nothing of its secrets.
    """
    if text is None:
        return NO_FILE_DIGEST
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def short_digest(text: str | None) -> str:
    """The first 8 characters of ``content_digest``: what a status shows of a config."""
    return content_digest(text)[:8]


def relation_password_key(relation_id: int) -> str:
    return f"{RELATION_PASSWORD_PREFIX}{relation_id}"


def password_relation_id(key: str) -> int | None:
    """N for a ``relation_id_<N>`` key, None for any other key."""
    number = key.removeprefix(RELATION_PASSWORD_PREFIX)
    if number != key and number.isascii() and number.isdigit():
        return int(number)
    return None


def is_store_key(key: str) -> bool:
    """Whether ``key`` is one of the secret store's (the contract's key names)."""
    return key in (AUTH_FILE_KEY, STATS_PASSWORD_KEY) or password_relation_id(key) is not None


def plain_credentials(databag: Mapping[str, str]) -> dict[str, str]:
    """The store's keys found in the application databag (an empty value counts as absent)."""
    return {key: value for key, value in databag.items() if is_store_key(key) and value}


def merge_store(plain: Mapping[str, str], secret: Mapping[str, str] | None) -> dict[str, str]:
    """What the store holds: the secret's values, and plain ones for keys the secret lacks."""
    merged = {key: value for key, value in plain.items() if is_store_key(key) and value}
    merged.update(secret or {})
    return merged


def is_valid_hostname(value: str) -> bool:
    return _HOSTNAME.fullmatch(value) is not None


def _hostname(
    _instance: object, attribute: attrs.Attribute[str | None], value: str | None
) -> None:
    if value is not None and not is_valid_hostname(value):
        raise InvalidPeerData(f"{attribute.name}: {value!r} is not a DNS hostname")


def _digest(_instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if _DIGEST.fullmatch(value) is None:
        raise InvalidPeerData(f"{attribute.name}: not a content digest")


_ACK_WANTED = re.compile(f"(?:{NOT_WANTED_PREFIX})?[0-9a-f]{{16}}")


def _ack_wanted(
    _instance: object, attribute: attrs.Attribute[str | None], value: str | None
) -> None:
    if value is not None and _ACK_WANTED.fullmatch(value) is None:
        raise InvalidPeerData(f"{attribute.name}: not a content digest, with or without 'none:'")


def acknowledgements_wanted(cfg_file: str) -> str:
    """``ack_wanted`` for ``cfg_file`` when the leader waits for its acknowledgements."""
    return content_digest(cfg_file)


def no_acknowledgement_wanted(cfg_file: str) -> str:
    """``ack_wanted`` for ``cfg_file`` when the leader waits for none."""
    return NOT_WANTED_PREFIX + content_digest(cfg_file)


@value_class
class AppPeerData:
    """The plain part of the application databag.

    ``ack_wanted`` says whether the leader waits for the units' acknowledgements of the
    ``cfg_file`` it published (a client waits for its credentials): that config's digest
    when it does, ``none:`` and the digest when it does not. A unit databag write wakes
    every other unit, so units acknowledge only what the leader asks for. The leader writes
    the key with every ``cfg_file`` it publishes, so a key naming another config than the
    one published was left by an earlier leader, and the one publishing now is of an older
    revision, as when the key is absent: such a leader reads every unit's acknowledgement
    (during a refresh or a rollback, when leadership moves to a unit not yet replaced).
    """

    cfg_file: str | None = None
    leader_hostname: str | None = attrs.field(default=None, validator=_hostname)
    ack_wanted: str | None = attrs.field(default=None, validator=_ack_wanted)

    def acknowledgement_wanted(self) -> bool:
        """Whether a follower should acknowledge what it runs of this publication."""
        if self.cfg_file is None or self.ack_wanted is None:
            return True  # nothing to acknowledge yet, or a leader of an older revision
        # Wanted for this config, or a stale key (an older leader published this config).
        return self.ack_wanted != no_acknowledgement_wanted(self.cfg_file)


@value_class
class StoreContents:
    """What the peer secret store holds: the auth file and the client relations' passwords."""

    auth_file: str | None = attrs.field(default=None, repr=False)
    passwords: tuple[tuple[int, str], ...] = attrs.field(default=(), repr=False)

    def password(self, relation_id: int) -> str | None:
        return dict(self.passwords).get(relation_id)


@value_class
class Acknowledgement:
    """What a unit has applied: the digests of its two files, and whether the apply worked.

    ``ok`` is False when the unit refused what the leader published (invalid peer data) or
    could not write it; the digests then name the files it still runs with.
    """

    cfg_digest: str = attrs.field(validator=_digest)
    auth_digest: str = attrs.field(validator=_digest)
    ok: bool

    @classmethod
    def of(cls, cfg: str | None, auth: str | None, ok: bool) -> Acknowledgement:
        return cls(content_digest(cfg), content_digest(auth), ok)

    def matches(self, cfg: str | None, auth: str | None) -> bool:
        return self.ok and (self.cfg_digest, self.auth_digest) == (
            content_digest(cfg),
            content_digest(auth),
        )


@value_class
class UnitPeerData:
    """One unit's databag."""

    hostname: str | None = attrs.field(default=None, validator=_hostname)
    ack: Acknowledgement | None = None
    # The pgbouncer version the unit learnt from its image (None: not known yet).
    pgbouncer_version: PgbVersion | None = None
