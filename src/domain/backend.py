"""The backend database as values: what it sends, and what pgbouncer needs to use it.

The model
---------
The ``backend-database`` relation (interface ``postgresql_client`` v0, this charm on the
requirer side) gives the charm a PostgreSQL superuser: ``BackendCredentials`` (user name and
password) and ``BackendEndpoints`` (the primary's ``host:port``, the read-only endpoints, the
server version and the database the provider actually created). Both are frozen and check
themselves; bad values raise ``InvalidBackendData`` with a reason that never holds a password.

pgbouncer does not get that superuser. With the superuser, the charm installs on the backend
(``adapters.postgres.auth_setup``) a login role named ``auth_user_for(backend user)``, a
``pgbouncer_auth`` schema and a ``SECURITY DEFINER`` function ``pgbouncer_auth.get_auth`` that
returns the password hash of ordinary login roles only. pgbouncer logs in as that role and runs
``AUTH_QUERY`` to check a client's password: no client user has to be listed in its auth file.
pgbouncer 1.18 runs ``auth_query`` in the database the client asked for (``auth_dbname``
arrives in 1.19), so the function is installed in every database pgbouncer serves.

``with_auth_query`` turns the leader's pgbouncer.ini text into the one that uses that role
(``auth_user``, ``auth_query`` and ``auth_file`` in ``[pgbouncer]``) and gives the auth file
with its single line, the auth role and its secret. The secret is the plain password by
default: pgbouncer must log in to the backend as that role, and against a server storing
SCRAM-SHA-256 verifiers (PostgreSQL's default since 14) it can only do so knowing the
password; an md5 secret works only against a server keeping md5 hashes. ``without_auth_query``
undoes the settings when the relation goes (``auth_file`` stays: the initial config has it);
``pgb_config.change_kind`` says that pgbouncer must restart for it.
No function here does I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

import attrs

from domain.auth_file import (
    AuthEntry,
    AuthFile,
    SecretKind,
    md5_secret,
    parse_auth_file,
    render_auth_file,
)
from domain.errors import InvalidInput
from domain.pgb_config import AUTH_PATH, parse_pgb_ini, render_pgb_ini
from domain.values import value_class

AUTH_USER_PREFIX = "pgbouncer_auth_"
AUTH_SCHEMA = "pgbouncer_auth"
AUTH_FUNCTION = "get_auth"
AUTH_QUERY = f"SELECT usename, passwd FROM {AUTH_SCHEMA}.{AUTH_FUNCTION}($1)"
# The [pgbouncer] settings with_auth_query sets; without_auth_query removes the first two.
AUTH_SETTINGS = ("auth_user", "auth_query", "auth_file")
DEFAULT_PORT = 5432
# PostgreSQL's NAMEDATALEN - 1: a longer role name is silently truncated by the server.
MAX_ROLE_NAME_BYTES = 63

# What a backend user name may hold: PostgreSQL charms name relation users relation_id_<N>
# or relation-<N>. Refusing the rest keeps the auth role's name plain in pgbouncer.ini, in
# the auth file and in SQL.
_USER_NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")
_HOST_RE = re.compile(r"[A-Za-z0-9_.-]+|\[[0-9A-Fa-f:.]+\]")


class InvalidBackendData(InvalidInput):
    """What the backend-database relation sent cannot be used (the reason says why)."""


def _non_empty_text(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise InvalidBackendData(f"{name}: expected a string, got {type(value).__name__}")
    if not value:
        raise InvalidBackendData(f"{name} is empty")
    if not value.isprintable():
        raise InvalidBackendData(f"{name} holds a control character")
    return value


def _validate_username(value: str) -> None:
    _non_empty_text("username", value)
    if not _USER_NAME_RE.fullmatch(value):
        raise InvalidBackendData("username may hold only A-Z a-z 0-9 _ . -")
    if len((AUTH_USER_PREFIX + value).encode()) > MAX_ROLE_NAME_BYTES:
        raise InvalidBackendData(
            f"username is too long: {AUTH_USER_PREFIX}<username> must fit PostgreSQL's"
            f" {MAX_ROLE_NAME_BYTES}-byte role names"
        )


def _check_username(_instance: object, _attribute: object, value: str) -> None:
    _validate_username(value)


def _check_password(_instance: object, _attribute: object, value: str) -> None:
    # The value is never quoted: it is a password.
    _non_empty_text("password", value)


@value_class
class BackendCredentials:
    """The backend superuser the relation delivered (a Juju secret, or plain fields)."""

    username: str = attrs.field(validator=_check_username)
    password: str = attrs.field(repr=False, validator=_check_password)

    @property
    def auth_user(self) -> str:
        return auth_user_for(self.username)


def _check_host(_instance: object, _attribute: object, value: str) -> None:
    _non_empty_text("host", value)
    if not _HOST_RE.fullmatch(value):
        raise InvalidBackendData(f"{value!r} is not a host name or address")


def _check_port(_instance: object, _attribute: object, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise InvalidBackendData(f"{value!r} is not a port (1-65535)")


@value_class
class HostPort:
    """One ``host:port`` endpoint; an IPv6 address keeps its brackets."""

    host: str = attrs.field(validator=_check_host)
    port: int = attrs.field(default=DEFAULT_PORT, validator=_check_port)

    @property
    def address(self) -> str:
        """The host as libpq wants it: an IPv6 address without its brackets."""
        return self.host[1:-1] if self.host.startswith("[") else self.host

    def render(self) -> str:
        return f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> HostPort:
        """``host``, ``host:port``, ``[v6]`` or ``[v6]:port``; the port defaults to 5432."""
        text = text.strip()
        if text.startswith("["):
            host, _, rest = text.partition("]")
            host += "]"
            if rest and not rest.startswith(":"):
                raise InvalidBackendData(f"{text!r} is not host:port")
            sep, port_text = rest[:1], rest[1:]
        else:
            host, sep, port_text = text.partition(":")
        if ":" in port_text:
            raise InvalidBackendData(f"{text!r} is not host:port (write IPv6 as [addr]:port)")
        if not sep:
            return cls(host)
        if not (port_text.isascii() and port_text.isdigit()):
            raise InvalidBackendData(f"{text!r} is not host:port")
        return cls(host, int(port_text))


def parse_endpoints(text: str) -> tuple[HostPort, ...]:
    """The comma-separated endpoints of the relation; at least one."""
    if not isinstance(text, str):
        raise InvalidBackendData(f"expected a string, got {type(text).__name__}")
    parts = [part for part in text.split(",") if part.strip()]
    if not parts:
        raise InvalidBackendData("no endpoint given")
    return tuple(HostPort.parse(part) for part in parts)


def _at_least_one(_instance: object, _attribute: object, value: tuple[HostPort, ...]) -> None:
    if not value:
        raise InvalidBackendData("no endpoint given")


def _optional_text(name: str) -> Callable[[object, object, str | None], None]:
    def check(_instance: object, _attribute: object, value: str | None) -> None:
        if value is not None:
            _non_empty_text(name, value)

    return check


def _as_tuple(value: Iterable[HostPort]) -> tuple[HostPort, ...]:
    # A Python function, not the builtin ``tuple``: attrs reads a converter's signature, and
    # a builtin's costs a tokenizer compile (some 30 M instructions) on every import.
    return tuple(value)


@value_class
class BackendEndpoints:
    """Where the backend is: ``endpoints`` first (the primary), then the read-only ones."""

    endpoints: tuple[HostPort, ...] = attrs.field(converter=_as_tuple, validator=_at_least_one)
    read_only_endpoints: tuple[HostPort, ...] = attrs.field(default=(), converter=_as_tuple)
    database: str | None = attrs.field(default=None, validator=_optional_text("database"))
    version: str | None = attrs.field(default=None, validator=_optional_text("version"))

    @property
    def primary(self) -> HostPort:
        return self.endpoints[0]


@value_class
class BackendAccess:
    """How to reach the backend as its superuser: the primary and the delivered user."""

    primary: HostPort
    credentials: BackendCredentials = attrs.field(repr=False)

    @classmethod
    def of(cls, endpoints: BackendEndpoints, credentials: BackendCredentials) -> BackendAccess:
        return cls(endpoints.primary, credentials)

    def fingerprint(self) -> str:
        """What "already done for these credentials" compares (the caller digests it)."""
        user = self.credentials
        return "\n".join((user.username, user.password, self.primary.render()))


def auth_user_for(backend_user: str) -> str:
    """The name of the login role pgbouncer's ``auth_query`` runs as."""
    _validate_username(backend_user)
    return AUTH_USER_PREFIX + backend_user


def auth_databases(requested: str, delivered: str | None) -> tuple[str, ...]:
    """Where to install the auth function: the backend's database, then ``postgres``.

    The provider may create another database than the one requested; its answer wins.
    """
    first = delivered or requested
    return (first,) if first == "postgres" else (first, "postgres")


@value_class
class AuthSetupFiles:
    """The two files for the auth role: pgbouncer.ini and the auth file."""

    cfg: str = attrs.field(repr=False)
    auth: str = attrs.field(repr=False)


def with_auth_query(
    cfg_text: str, auth_user: str, password: str, *, md5: bool = False
) -> AuthSetupFiles:
    """The leader's pgbouncer.ini using ``auth_user``'s ``auth_query``, and its auth file.

    The auth file has one line, ``"auth_user" "secret"``: the plain password, or its md5
    secret with ``md5=True``. Raises ``InvalidPgbConfig`` when ``cfg_text`` does not parse,
    ``InvalidAuthFile`` when the name or the password cannot be written in an auth file.
    """
    cfg = parse_pgb_ini(cfg_text).with_settings(
        {"auth_user": auth_user, "auth_query": AUTH_QUERY, "auth_file": AUTH_PATH}
    )
    secret = md5_secret(auth_user, password) if md5 else password
    entry = AuthEntry(auth_user, secret)
    if not md5 and entry.kind is not SecretKind.PLAIN:
        # A password shaped like a hash would be taken for one by pgbouncer.
        raise InvalidBackendData("the auth password looks like an md5 or SCRAM secret")
    return AuthSetupFiles(cfg=render_pgb_ini(cfg), auth=render_auth_file(AuthFile((entry,))))


def without_auth_query(cfg_text: str) -> str:
    """The leader's pgbouncer.ini without ``auth_user`` and ``auth_query``.

    Whether pgbouncer must restart for it is ``pgb_config.change_kind``'s one rule: 1.18
    resets ``auth_query`` on reload but keeps an ``auth_user`` whose line is gone.
    """
    cfg = parse_pgb_ini(cfg_text)
    return render_pgb_ini(cfg.with_settings({"auth_user": None, "auth_query": None}))


def auth_password(auth_text: str | None, auth_user: str) -> str | None:
    """The plain password of ``auth_user`` in an auth file, if it is there.

    A new leader reuses it, so re-running the setup does not change the role's password
    under the followers' feet. None when there is no file, no entry, an md5 or SCRAM
    secret, or a file that does not parse.
    """
    if auth_text is None:
        return None
    try:
        entry = parse_auth_file(auth_text).get(auth_user)
    except InvalidInput:
        return None
    if entry is None or entry.kind is not SecretKind.PLAIN:
        return None
    return entry.secret


def is_auth_configured(cfg_text: str | None, auth_text: str | None, auth_user: str) -> bool:
    """Whether the two files already use ``auth_user``'s ``auth_query``."""
    if cfg_text is None or auth_password(auth_text, auth_user) is None:
        return False
    try:
        cfg = parse_pgb_ini(cfg_text)
    except InvalidInput:
        return False
    return (
        cfg.setting("auth_user") == auth_user
        and cfg.setting("auth_query") == AUTH_QUERY
        and cfg.setting("auth_file") == AUTH_PATH
    )
