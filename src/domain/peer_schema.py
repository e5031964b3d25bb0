"""The ``pgb-peers`` schema version, and the compatibility rule between revisions.

During ``juju refresh`` the pods are replaced one at a time, so units of two revisions share the
relation for a while and either can lead. The leader writes ``schema_version`` into the
application databag (an additive key: revisions before it ignore unknown keys); each unit
checks it before it adopts anything.

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
   case publishes nothing either (it never overwrites data it cannot read); the refresh (or
   the rollback) completing brings every unit to one revision again.
4. A leader raises the published version to its own, never lowers it.
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


def check_schema(published: str | None, is_leader: bool) -> SchemaCheck:
    """Apply the rule to the raw ``schema_version`` value (None: the key is absent)."""
    if published is None or published == "":
        version = UNVERSIONED
    elif published.isascii() and published.isdigit() and len(published) <= 6:
        version = int(published)
    else:
        return SchemaCheck(
            readable=False,
            reason=StatusReason(
                Severity.BLOCKED,
                f"peer data has schema_version {published[:20]!r}, not a number: "
                "keeping the current files",
            ),
        )
    if version > SCHEMA_VERSION:
        return SchemaCheck(
            readable=False,
            reason=StatusReason(
                Severity.WAITING,
                f"peer data is schema {version}, newer than this revision's {SCHEMA_VERSION}: "
                "keeping the current files until the refresh completes",
            ),
        )
    if version < OLDEST_READABLE:
        return SchemaCheck(
            readable=False,
            reason=StatusReason(
                Severity.BLOCKED,
                f"peer data is schema {version}, older than this revision reads "
                f"({OLDEST_READABLE}): keeping the current files",
            ),
        )
    wants_publish = is_leader and (published is None or version < SCHEMA_VERSION)
    return SchemaCheck(readable=True, publish=SCHEMA_VERSION if wants_publish else None)
