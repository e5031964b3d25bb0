"""The ``pgb-peers`` schema version, and the compatibility rule between revisions.

During ``juju refresh`` the pods are replaced one at a time, so units of two revisions share the
relation for a while and either can lead. The leader writes ``schema_version`` into the
application databag, and every unit writes the version its revision speaks into its own unit
databag under the same key (additive keys: revisions before them ignore unknown keys). Each
unit checks the application's version before it adopts anything.

Versions:

- **1** (no ``schema_version`` key): every revision up to 9b624b0. The keys of the contract
  (``cfg_file``, ``leader_hostname``, the store's ``auth_file`` and ``relation_id_<N>``,
  ``secret_id``, ``store_digest``; in unit databags ``hostname`` and the acknowledgement). The
  store's keys may sit in plain text in the application databag: the seed's layout, which a
  revision may have left behind even where Juju has secrets.
- **2** (this revision): the same keys with the same meanings and value formats. Where Juju has
  secrets no databag holds a credential: the leader has moved any plain ones into the secret
  (``domain.store_migration``). A version-1 reader reads version-2 data as it is.

The rule:

1. A unit reads every version from ``OLDEST_READABLE`` up to its own ``SCHEMA_VERSION``.
2. A change that an older revision reads correctly (a new key it can ignore, a value it never
   looks at) does not change the version. Only a change an older revision would misread
   (a key renamed, a value's format or meaning changed) raises it, and the new revision must
   still read everything from ``OLDEST_READABLE``.
3. A unit that finds a newer version (or a value that is not a version) adopts nothing: it keeps
   serving the files it has, says so in its status, and never fails the hook. A leader in that
   case publishes nothing either while another unit speaks that newer version (it never
   overwrites data a live unit of a newer revision wrote): the refresh completing brings every
   unit to the newer revision.
4. A leader raises the published version to its own. It lowers it only after a rollback has
   completed, that is when no other unit's databag names a version above the leader's own: it
   then takes over from the files it serves and publishes its own version (a unit databag
   without the key is a revision from before the version, so version 1).
"""

from __future__ import annotations

import attrs

from domain.status import Severity, StatusReason

SCHEMA_VERSION_KEY = "schema_version"
SCHEMA_VERSION = 2
OLDEST_READABLE = 1
# What an absent key means: written by a revision from before the version existed.
UNVERSIONED = 1


@attrs.frozen
class SchemaCheck:
    """What this revision makes of the version published in the application databag."""

    readable: bool
    # The version to publish (leader), or None when nothing is to be written.
    publish: int | None = None
    reason: StatusReason | None = None


def _parse(value: str | None) -> int | None:
    """A version number; None for a value that is not one. An absent key is ``UNVERSIONED``."""
    if value is None or value == "":
        return UNVERSIONED
    if value.isascii() and value.isdigit() and len(value) <= 6:
        return int(value)
    return None


def check_schema(
    published: str | None, is_leader: bool, peer_versions: tuple[str | None, ...] = ()
) -> SchemaCheck:
    """Apply the rule to the raw ``schema_version`` of the application databag (None: the key
    is absent), with the values the other units' databags hold (for a leader's rollback)."""
    version = _parse(published)
    if version is not None and OLDEST_READABLE <= version <= SCHEMA_VERSION:
        wants_publish = is_leader and (published is None or version < SCHEMA_VERSION)
        return SchemaCheck(readable=True, publish=SCHEMA_VERSION if wants_publish else None)
    peers = [_parse(value) for value in peer_versions]
    if is_leader and all(peer is not None and peer <= SCHEMA_VERSION for peer in peers):
        # A rollback completed: nobody speaks the published version any more.
        return SchemaCheck(
            readable=True,
            publish=SCHEMA_VERSION,
            reason=StatusReason(
                Severity.MAINTENANCE,
                f"peer data of schema {(published or '')[:20]} has no "
                f"unit left that reads it: publishing schema {SCHEMA_VERSION} from this unit's "
                "files",
            ),
        )
    if version is None:
        reason = StatusReason(
            Severity.BLOCKED,
            f"peer data has schema_version {(published or '')[:20]!r}, not a number: "
            "keeping the current files",
        )
    elif version > SCHEMA_VERSION:
        reason = StatusReason(
            Severity.WAITING,
            f"peer data is schema {version}, newer than this revision's {SCHEMA_VERSION}: "
            "keeping the current files until the refresh completes",
        )
    else:
        reason = StatusReason(
            Severity.BLOCKED,
            f"peer data is schema {version}, older than this revision reads "
            f"({OLDEST_READABLE}): keeping the current files",
        )
    return SchemaCheck(readable=False, reason=reason)
