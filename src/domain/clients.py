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
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from urllib.parse import quote

import attrs

from domain.backend import BackendEndpoints
from domain.errors import InvalidInput
from domain.peer_data import UnitPeerData, content_digest, relation_password_key
from domain.pgb_config import ConnString, PgbConfig, parse_pgb_ini

READONLY_SUFFIX = "_readonly"
# PostgreSQL identifiers: the database and role names the charm creates are plain words, so
# neither SQL nor pgbouncer.ini ever needs quoting for them.
_DATABASE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,62}")
_ROLE_RE = re.compile(r"[A-Z]+")
_RESERVED_DATABASES = frozenset({"pgbouncer", "postgres", "template0", "template1"})
# Roles a client may ask for; SUPERUSER and REPLICATION would let it around pgbouncer's
# auth_query (which never returns such roles) and into every other client's data.
ALLOWED_EXTRA_ROLES = frozenset({"CREATEDB", "CREATEROLE", "LOGIN"})


class InvalidClientRequest(InvalidInput):
    """What a client asked for cannot be served (the reason says why)."""


def _check_database(_instance: object, _attribute: object, value: str) -> None:
    if not isinstance(value, str) or not _DATABASE_RE.fullmatch(value):
        raise InvalidClientRequest(
            f"database {value!r}: use 1-63 letters, digits, '_' or '-', starting with a letter"
        )
    if value in _RESERVED_DATABASES or value.endswith(READONLY_SUFFIX):
        raise InvalidClientRequest(f"database {value!r} is reserved")


def _check_roles(_instance: object, _attribute: object, value: tuple[str, ...]) -> None:
    for role in value:
        if not _ROLE_RE.fullmatch(role) or role not in ALLOWED_EXTRA_ROLES:
            allowed = ", ".join(sorted(ALLOWED_EXTRA_ROLES))
            raise InvalidClientRequest(f"extra-user-roles {role!r} is not one of {allowed}")


def parse_extra_roles(text: str | None) -> tuple[str, ...]:
    """``extra-user-roles`` as sent: comma-separated, any case; empty for none."""
    if not text:
        return ()
    return tuple(sorted({part.strip().upper() for part in text.split(",") if part.strip()}))


@attrs.frozen
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


@attrs.frozen
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
