"""Client applications on the ``database`` relation, as values and pure decisions.

The model
---------
A client application relates to this charm's ``database`` endpoint (``postgresql_client`` v0,
this charm on the provider side) and asks for a database by name (``ClientRequest``). The
leader answers it as PostgreSQL would, but pointing at pgbouncer:

- the client's login role on the backend is ``relation_id_<N>`` (N: the relation's id), with a
  random password kept in the peer secret store under the same key;
- pgbouncer gets two ``[databases]`` entries: ``<db>`` to the backend's primary and
  ``<db>_readonly`` to its first read-only endpoint (the primary when it has none), each with
  the charm's ``auth_user`` so no client password is ever written into pgbouncer's files;
- the answer (``ClientAnswer``) gives ``endpoints`` = the leader's hostname and pgbouncer's
  port, ``read-only-endpoints`` = the other units' hostnames with that port, the backend's
  version, and the database name. Credentials travel apart (a Juju secret).

Beyond the seed, a client is handed its credentials only once every live unit runs a config
that holds its database (``ready_for_client``): the units acknowledge the digest of the
pgbouncer.ini they applied, so no client can reach a unit that does not know its database.

Isolation on the shared backend
-------------------------------
The backend is one PostgreSQL shared by every client application; the charm is the gate:

- ``extra-user-roles`` may grant nothing that acts beyond the client's own database. Only
  ``CREATEDB`` (and ``LOGIN``, which every client role has anyway) is allowed: a database the
  client creates itself is never served by pgbouncer (no ``[databases]`` entry names it) and
  is reached by no other client. Everything else (``SUPERUSER``, ``REPLICATION``,
  ``BYPASSRLS``, ``CREATEROLE``, which on PostgreSQL 15 can grant itself any non-superuser
  role, ``ADMIN``, any ``pg_*`` role, any role at all, any other spelling) is refused before
  anything is created (``check_extra_roles``);
- each client database belongs to one application (``ClientApp``: the model's uuid and the
  application's name), recorded on the backend when the charm creates it; ``database_claim``
  decides, from what the backend holds, whether a request creates the database, takes back
  its own, adopts one an earlier version of this charm created for the same relation, or is
  refused;
- the objects of a client database belong to its owner role (``owner_role``), a role without
  login that owns the database; relation users are members of it, so an application related
  again works on its earlier data at once.
"""

from __future__ import annotations

import enum
import hashlib
import re
from collections.abc import Iterable, Mapping
from urllib.parse import quote

import attrs

from domain.backend import BackendEndpoints
from domain.errors import InvalidInput
from domain.peer_data import UnitPeerData, content_digest, relation_password_key
from domain.pgb_config import ConnString, PgbConfig, parse_pgb_ini
from domain.values import value_class

READONLY_SUFFIX = "_readonly"
# PostgreSQL identifiers: the database and role names the charm creates are plain words, so
# neither SQL nor pgbouncer.ini ever needs quoting for them.
_DATABASE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,62}")
_ROLE_RE = re.compile(r"[A-Z]+")
_RESERVED_DATABASES = frozenset({"pgbouncer", "postgres", "template0", "template1"})
# What a client may ask for in extra-user-roles. CREATEDB reaches no other client: a database
# it creates is owned by it and served by no pgbouncer entry. LOGIN every client role has.
ALLOWED_EXTRA_ROLES = frozenset({"CREATEDB", "LOGIN"})
# Why the usual requests beyond the allow-list are refused, for a status an operator can act on.
_REFUSAL_REASONS = {
    "SUPERUSER": "it bypasses every permission check",
    "REPLICATION": "it streams every database's data",
    "BYPASSRLS": "it bypasses row security",
    "CREATEROLE": "it can grant itself any non-superuser role and change other roles",
    "ADMIN": "it can grant its roles to others",
}
_IDENTIFIER_MAX = 63  # PostgreSQL's NAMEDATALEN - 1: longer names are silently cut
_OWNER_SUFFIX = "_owner"


class InvalidClientRequest(InvalidInput):
    """What a client asked for cannot be served (the reason says why)."""


def _check_database(_instance: object, _attribute: object, value: str) -> None:
    if not isinstance(value, str) or not _DATABASE_RE.fullmatch(value):
        raise InvalidClientRequest(
            f"database {value!r}: use 1-63 letters, digits, '_' or '-', starting with a letter"
        )
    if value in _RESERVED_DATABASES or value.endswith(READONLY_SUFFIX):
        raise InvalidClientRequest(f"database {value!r} is reserved")


def check_extra_roles(roles: Iterable[str]) -> None:
    """Refuse every extra role but the allow-list's, whatever its spelling; the reason names it.

    Only exact ASCII words of the allow-list pass: a quoted, spaced, non-ASCII or unknown entry
    is refused, never reinterpreted (the SQL the charm runs holds fixed keywords, never the
    client's text).
    """
    allowed = ", ".join(sorted(ALLOWED_EXTRA_ROLES))
    for role in roles:
        if isinstance(role, str) and role.isascii() and role in ALLOWED_EXTRA_ROLES:
            continue
        word = role.upper() if isinstance(role, str) and role.isascii() else None
        if word in _REFUSAL_REASONS:
            why = _REFUSAL_REASONS[word]
        elif word is not None and word.startswith("PG_"):
            why = "a pg_* role reaches beyond the client's own database"
        else:
            why = "not a role attribute this charm grants"
        raise InvalidClientRequest(f"extra-user-roles {role!r} refused: {why}; allowed: {allowed}")


def _check_roles(_instance: object, _attribute: object, value: tuple[str, ...]) -> None:
    check_extra_roles(value)


def parse_extra_roles(text: str | None) -> tuple[str, ...]:
    """``extra-user-roles`` as sent: comma-separated, any case; empty for none.

    Each entry is trimmed of surrounding whitespace and, when ASCII, upper-cased; anything else
    is kept as sent, for ``check_extra_roles`` to refuse.
    """
    if not text:
        return ()
    parts = (part.strip() for part in text.split(","))
    return tuple(sorted({part.upper() if part.isascii() else part for part in parts if part}))


def owner_role(database: str) -> str:
    """The role without login that owns client database ``database`` and all its objects.

    ``<database>_owner`` when that fits in a PostgreSQL identifier; a longer name is cut and
    made unique with a digest of the whole name, since PostgreSQL would cut it silently and
    two long database names could then share an owner.
    """
    name = database + _OWNER_SUFFIX
    if len(name.encode()) <= _IDENTIFIER_MAX:
        return name
    digest = hashlib.sha256(database.encode()).hexdigest()[:8]
    keep = _IDENTIFIER_MAX - len(_OWNER_SUFFIX) - len(digest) - 1
    return f"{database[:keep]}_{digest}{_OWNER_SUFFIX}"


@attrs.frozen
class ClientApp:
    """A client application as the backend records it: whose databases are whose."""

    model_uuid: str = attrs.field(validator=attrs.validators.min_len(1))
    name: str = attrs.field(validator=attrs.validators.min_len(1))

    def describe(self) -> str:
        return f"application {self.name} of model {self.model_uuid}"


@attrs.frozen
class DatabaseRecord:
    """The backend's record of a client database: its oid and the application it is for."""

    oid: int | None
    app: ClientApp


@attrs.frozen
class ExistingDatabase:
    """A database of that name on the backend: its oid and its owner's name."""

    oid: int
    owner: str


class ClaimAction(enum.Enum):
    CREATE = "create"  # no such database: create it, owned by its owner role, and record it
    REUSE = "reuse"  # the application's own database, recorded: serve it again
    ADOPT = "adopt"  # made by this charm for this relation before records existed: record it
    REFUSE = "refuse"


@attrs.frozen
class DatabaseClaim:
    action: ClaimAction
    reason: str = ""


def database_claim(
    database: str,
    app: ClientApp,
    existing: ExistingDatabase | None,
    record: DatabaseRecord | None,
    relation_user: str,
    relation_user_is_ours: bool,
) -> DatabaseClaim:
    """Whether ``app`` may have ``database``, given what the backend holds.

    ``record`` is the record of that database: found by the database's oid when it exists,
    by name otherwise. A database is handed only to the application recorded for it. A
    record whose database no longer exists guards nothing and is replaced. An existing
    database without a record is refused, except one owned by this relation's own role,
    marked as this charm's: an earlier version of the charm created it for this relation.
    """
    if existing is None:
        return DatabaseClaim(ClaimAction.CREATE)
    if record is not None:
        if record.app != app:
            return DatabaseClaim(
                ClaimAction.REFUSE,
                f"database {database} belongs to another application ({record.app.name})",
            )
        if record.oid is None and existing.owner != owner_role(database):
            # Recorded before the database was created, then made by someone else.
            return DatabaseClaim(
                ClaimAction.REFUSE,
                f"database {database} was not created by this charm (owner {existing.owner})",
            )
        return DatabaseClaim(ClaimAction.REUSE)
    if relation_user_is_ours and existing.owner == relation_user:
        return DatabaseClaim(ClaimAction.ADOPT)
    return DatabaseClaim(
        ClaimAction.REFUSE,
        f"database {database} already exists and was not created by this charm for"
        f" {app.name}; not granting it",
    )


@value_class
class ClientRequest:
    relation_id: int = attrs.field(validator=attrs.validators.ge(0))
    database: str = attrs.field(validator=_check_database)
    extra_user_roles: tuple[str, ...] = attrs.field(default=(), validator=_check_roles)

    @property
    def user(self) -> str:
        return relation_password_key(self.relation_id)

    @property
    def readonly_database(self) -> str:
        return self.database + READONLY_SUFFIX

    @property
    def owner(self) -> str:
        """The role that owns the database and everything in it."""
        return owner_role(self.database)


def with_client(
    cfg: PgbConfig, request: ClientRequest, backend: BackendEndpoints, auth_user: str
) -> PgbConfig:
    """The leader's config serving ``request``: its two ``[databases]`` entries."""
    replica = backend.read_only_endpoints[0] if backend.read_only_endpoints else backend.primary

    def entry(host: str, port: int) -> ConnString:
        return ConnString(
            {"host": host, "port": str(port), "dbname": request.database, "auth_user": auth_user}
        )

    primary = backend.primary
    return cfg.with_database(request.database, entry(primary.address, primary.port)).with_database(
        request.readonly_database, entry(replica.address, replica.port)
    )


def without_client(cfg: PgbConfig, database: str) -> PgbConfig:
    return cfg.without_database(database).without_database(database + READONLY_SUFFIX)


@value_class
class ClientAnswer:
    """The plain part of the answer in the client's relation databag."""

    database: str
    endpoints: str
    read_only_endpoints: str
    version: str | None = None

    def fields(self) -> dict[str, str]:
        fields = {
            "database": self.database,
            "endpoints": self.endpoints,
            "read-only-endpoints": self.read_only_endpoints,
        }
        if self.version:
            fields["version"] = self.version
        return fields


def client_answer(
    request: ClientRequest,
    leader_hostname: str,
    listen_port: int,
    peer_hostnames: Iterable[str],
    version: str | None,
) -> ClientAnswer:
    others = sorted(set(peer_hostnames) - {leader_hostname})
    return ClientAnswer(
        database=request.database,
        endpoints=f"{leader_hostname}:{listen_port}",
        # With a single unit the leader serves reads too.
        read_only_endpoints=",".join(f"{host}:{listen_port}" for host in others)
        or f"{leader_hostname}:{listen_port}",
        version=version,
    )


def client_uri(user: str, password: str, host_port: str, database: str) -> str:
    """``postgresql://user:password@host:port/db``; the password is URL-quoted."""
    return f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}@{host_port}/{database}"


def units_lagging(
    database: str, published_cfg: str | None, units: Mapping[str, UnitPeerData]
) -> int:
    """How many live units do not run a published config that serves ``database`` yet.

    Every unit lags while no published config holds the database. The one rule behind the
    credential gate (``ready_for_client``) and the waiting status that names the count.
    """
    if published_cfg is None:
        return len(units)
    try:
        if parse_pgb_ini(published_cfg).database(database) is None:
            return len(units)
    except InvalidInput:
        return len(units)
    digest = content_digest(published_cfg)
    return sum(
        1
        for data in units.values()
        if data.ack is None or not data.ack.ok or data.ack.cfg_digest != digest
    )


def ready_for_client(
    request: ClientRequest, published_cfg: str | None, units: Mapping[str, UnitPeerData]
) -> bool:
    """Whether every live unit runs a published config that serves ``request``'s database."""
    return bool(units) and units_lagging(request.database, published_cfg, units) == 0
