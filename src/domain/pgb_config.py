"""pgbouncer.ini as a value: parsed, validated, changed and rendered without any I/O.

The model
---------
A ``PgbConfig`` is the whole ``pgbouncer.ini`` of a unit, held as four sorted tuples, one per
section pgbouncer reads:

- ``databases``: database name -> ``ConnString`` (``[databases]``);
- ``pgbouncer``: setting name -> raw value text (``[pgbouncer]``);
- ``users``: user name -> raw value text (``[users]``, per-user ``pool_mode`` and
  ``max_user_connections``);
- ``peers``: peer id -> ``ConnString`` (``[peers]``, pgbouncer >= 1.19 only, see below).

A ``ConnString`` is the ``key=value`` list of one ``[databases]`` or ``[peers]`` entry, sorted by
key. Both classes are frozen and validate themselves in their constructor, so a value that
exists is one pgbouncer accepts; their converters sort (and canonicalise the comma lists
``admin_users`` and ``stats_users``), so equal configurations compare equal and render to the
same bytes: ``parse_pgb_ini(render_pgb_ini(c)) == c`` for every ``c``.

What "pgbouncer accepts" means was checked against Debian's pgbouncer 1.18 binary, not only its
manual, and in places the binary is stricter than one would guess:

- Section names and setting names are case-sensitive (``[PGBOUNCER]`` and ``LISTEN_PORT`` make
  it refuse to start), so they are rejected here rather than lower-cased: a follower writes the
  leader's text verbatim, and a text that only validates after normalising would not start.
- An unknown ``[pgbouncer]`` setting, an unknown section or an unknown connection parameter stops
  pgbouncer from starting. ``SETTINGS`` is the list 1.18's ``SHOW CONFIG`` prints plus the
  settings of 1.19-1.21 (``domain.pgb_version`` says which release added each; whether the
  unit's own pgbouncer has them is ``domain.pgb_validation``'s question); the ``real`` tests
  compare it with the binary.
- The ini reader (libusual's ``cfparser``) has no quoting and no inline comments: a value is
  the rest of the line after ``=``, blanks trimmed, so ``logfile = "/x"`` names a file whose
  name holds the quotes (refused here), and ``1 ; comment`` is the whole value. A key is made
  of letters, digits and ``_ . - *`` only (``a@b = ...`` in ``[users]`` is a syntax error).
- Integers are read with C's ``strtol(value, &end, 0)`` into an ``int``: ``010`` is octal 8,
  ``08`` is refused, ``0x10`` is 16, a sign is allowed. Only plain decimals (no sign, no
  leading zero) are taken here, and the message says how pgbouncer would have read the text.
  Times are read with ``strtod`` (``1e3``, ``inf``, ``nan`` and hex too); only plain decimals
  below 10**9 seconds are taken. Choices (``pool_mode``...) are case-insensitive to pgbouncer;
  only the lower-case spelling is taken.
- Some values pgbouncer takes and then runs without serving, so their range here is the one
  that serves (the differential campaign, ``bench/pgb_differential.py``, found them):
  ``listen_port`` below 1024 (pgbouncer runs unprivileged), ``tcp_keepcnt`` above 127 and
  ``tcp_keepidle``/``tcp_keepintvl`` above 32767 (Linux's setsockopt limits: the listening
  socket is dropped), ``pkt_buf`` outside 512..1 MiB, ``max_packet_size`` below 10,000, and a
  ``listen_addr`` that is not ``*``, ``0.0.0.0``, a ``127.x.y.z`` address or ``localhost``
  (a name that does not resolve stops it; an address that is not the pod's binds nothing).
- TLS protocol lists, cipher strings, DH parameters and curves are refused at start when
  pgbouncer's TLS library does not know them (the server side is set up even when unused):
  only libtls's keywords are taken.
- Connection strings separate parameters by spaces only (a tab is part of a value), quote a value
  in single quotes with ``''`` for a literal quote (a backslash is an ordinary character, there is
  no backslash escape), and refuse an empty value, quoted or not.
- Settings that 1.18's ``SHOW CONFIG`` marks ``changeable = no`` are ignored by a reload;
  ``RESTART_ONLY_SETTINGS`` lists them, and ``change_kind`` turns a change to one of them into a
  restart.

This module is also stricter than pgbouncer where pgbouncer's leniency hides mistakes: booleans
are ``0`` or ``1``, ``%include`` and ``conffile`` are refused (a follower must never be steered
into reading another file), duplicated sections or keys are refused instead of "last one wins",
and database names are limited to ``[A-Za-z0-9_.*-]`` (pgbouncer's quoted names are not
supported) and, as in pgbouncer 1.18, to 63 characters (a longer one makes it refuse the whole
file).

``[peers]``, ``peer_id`` and ``auth_dbname`` exist from pgbouncer 1.19, ``track_extra_parameters``
from 1.20 and ``max_prepared_statements`` from 1.21; 1.18 refuses them. The model keeps them
because the workload image may be newer; ``domain.pgb_version`` tells which version a
configuration needs, and the charm itself never adds them to a configuration that lacks them.

Every error is an ``InvalidPgbConfig`` whose message names the line or the section and key and
the reason. Messages quote setting values only where a valid value is constrained (numbers,
choices); a connection-string value is never quoted, since it may be a password, and the repr
of a ``ConnString`` masks its ``password``.

Speed matters because every hook parses the file and a busy unit has one database per client
relation (``bench/bench_pgb_config.py`` times 1,000). The general parser works line by line with
``str`` methods, splits connection strings already in the rendered shape with one regex (a
character-by-character scanner, the reference for pgbouncer's grammar, takes every other text),
and a ``ConnString`` keeps its rendered text, so rendering what was just parsed costs nothing. A
large ``[databases]`` section exactly as ``render_pgb_ini`` writes it takes a faster path: one
regex pass over the whole section proves every line valid (known keys in sorted order, typed
values, canonical quoting), and the entries' parameters are then split out of their texts all
at once, by str methods (``_split_rendered``). Whatever that regex does not take goes the
general way, and the tests check that both ways accept, refuse and build alike. The last few
parses are kept (``parse_pgb_ini`` is cached: a ``PgbConfig`` never changes), since one hook
meets the same text in the domain, in the effect that validates itself and in the adapter.
"""

import enum
import functools
import itertools
import re
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from itertools import repeat
from operator import add as _add
from operator import itemgetter, lt, methodcaller
from typing import TypeVar, cast

import attrs

from domain.errors import InvalidPgbConfig
from domain.pgb_version import min_version
from domain.values import value_class

PGB_DIR = "/var/lib/postgresql/pgbouncer"
CFG_PATH = PGB_DIR + "/pgbouncer.ini"
AUTH_PATH = PGB_DIR + "/userlist.txt"
# The charm's own TLS files (domain.tls): the only TLS paths a published config may name.
CLIENT_TLS_KEY_PATH = PGB_DIR + "/client-tls.key"
CLIENT_TLS_CERT_PATH = PGB_DIR + "/client-tls.crt"
CLIENT_TLS_CA_PATH = PGB_DIR + "/client-tls-ca.crt"
BACKEND_TLS_CA_PATH = PGB_DIR + "/backend-ca.crt"

SECTIONS = ("databases", "pgbouncer", "users", "peers")
POOL_MODES = ("session", "transaction", "statement")

_MAX_INT = 2**31 - 1  # pgbouncer stores these settings in a C int
_MAX_PEER_ID = 16383  # pgbouncer >= 1.19 keeps the peer id in 14 bits of the cancel key


# ---------------------------------------------------------------------------------------------
# Value checks. Each returns None for a good value, else the reason (without the value when
# the value may be a secret).


# Patterns only rare paths use (error messages, settings the charm never writes, non-ASCII
# text) are plain strings, compiled by re's own cache on first use, not at every import.
_PLAIN_WORD = r"[A-Za-z0-9_.+-]{1,40}"


def _excerpt(value: str) -> str:
    # Typed settings are not secrets, but a stray line may be long or blank: keep it readable.
    if re.fullmatch(_PLAIN_WORD, value):
        return value
    return repr(value if len(value) <= 40 else value[:37] + "...")


def _c_int_reading(value: str) -> str:
    """How pgbouncer reads an integer setting that is not a plain decimal, for the message.

    pgbouncer takes integers with C's ``strtol(value, &end, 0)`` and refuses a value unless the
    whole of it is read: a leading ``0`` means octal (``010`` is 8, ``08`` is refused), ``0x``
    hexadecimal, a sign is allowed, and the result is cut to a C ``int``.
    """
    text = value.lower()
    sign = text[:1] if text[:1] in "+-" else ""
    digits = text[len(sign) :]
    try:
        if re.fullmatch(r"0x[0-9a-f]+", digits):
            read = int(digits, 16)
        elif re.fullmatch(r"0[0-7]+", digits):
            read = int(digits, 8)
        elif re.fullmatch(r"0[0-9]+", digits):
            return "a leading 0 means octal to pgbouncer, which refuses it"
        elif re.fullmatch(r"[0-9]+", digits):
            read = int(digits)
        else:
            return "pgbouncer refuses it"
    except ValueError:  # pragma: no cover - the patterns above only let valid digits through
        return "pgbouncer refuses it"
    return f"pgbouncer would read it as {-read if sign == '-' else read}"


def _int_range(low: int, high: int, what: str = "") -> Callable[[str], str | None]:
    """A check of plain decimals (no sign, no leading zero) from ``low`` to ``high``."""
    described = what or f"an integer from {low} to {high}"

    def check(value: str) -> str | None:
        if value.isascii() and value.isdigit() and (value[0] != "0" or value == "0"):
            if low <= int(value) <= high:
                return None
            return f"{_excerpt(value)} is not {described}"
        return f"{_excerpt(value)} is not a plain decimal integer ({_c_int_reading(value)})"

    return check


_check_count = _int_range(0, _MAX_INT)
# pgbouncer drops root (or runs as the workload user under Pebble) before it binds: ports
# below 1024 are refused by the kernel, and pgbouncer runs on without listening.
_check_listen_port = _int_range(
    1024, 65535, "a port from 1024 to 65535 (pgbouncer runs unprivileged)"
)
_check_port = _int_range(1, 65535, "a port (1-65535)")
# Linux refuses larger values in setsockopt (TCP_KEEPCNT <= 127, TCP_KEEPIDLE and
# TCP_KEEPINTVL <= 32767); pgbouncer then runs on without a listening socket.
_check_keepcnt = _int_range(0, 127)
# pgbouncer takes any pkt_buf, but with a tiny one it accepts clients and then drops them, and
# a huge one (16 MiB) leaves it unable to serve: the range is what was seen to serve.
_check_pkt_buf = _int_range(512, 1048576)
# Below PostgreSQL's own bound on a startup packet (10,000 bytes), some clients cannot log in.
_check_max_packet_size = _int_range(10000, _MAX_INT)
_check_keep_seconds = _int_range(0, 32767)


def _check_bool(value: str) -> str | None:
    return None if value in ("0", "1") else f"{_excerpt(value)} is not a boolean (0 or 1)"


# pgbouncer reads times with strtod (so also 1e3, inf, nan, hex): plain decimals are the part
# of that grammar with one meaning, bounded so that microseconds fit its 64-bit counter.
_SECONDS = r"(?:0|[1-9][0-9]{0,8})(?:\.[0-9]{1,6})?"


def _check_seconds(value: str) -> str | None:
    if re.fullmatch(_SECONDS, value):
        return None
    return f"{_excerpt(value)} is not a number of seconds (such as 15 or 0.5, below 10**9)"


_OCTAL = r"0[0-7]{1,4}"


def _check_octal_mode(value: str) -> str | None:
    # pgbouncer reads "777" as decimal 777 (mode 01411): require the unambiguous octal form.
    if re.fullmatch(_OCTAL, value):
        return None
    return f"{_excerpt(value)} is not an octal file mode (such as 0777)"


_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_LOOPBACK_V4 = rf"127\.{_OCTET}\.{_OCTET}\.{_OCTET}"


def _check_listen_addr(value: str) -> str | None:
    # pgbouncer resolves each comma-separated item and refuses to start on one that does not
    # resolve; an address that is not the pod's own binds to nothing and pgbouncer runs on
    # without listening. Only what listens in every pod is taken: "*" (all addresses),
    # 0.0.0.0, a 127.x.y.z loopback address, or localhost. IPv6 literals are refused: a pod
    # may have no IPv6.
    if value == "" or value == "*":
        return None
    for item in value.split(","):
        if item not in ("*", "0.0.0.0", "localhost") and not re.fullmatch(_LOOPBACK_V4, item):
            return (
                f"{_excerpt(item)} is not *, 0.0.0.0, a 127.x.y.z address or localhost "
                "(comma-separated, no blanks)"
            )
    return None


def _check_peer_id(value: str) -> str | None:
    if value.isascii() and value.isdigit() and int(value) <= _MAX_PEER_ID:
        return None
    return f"{_excerpt(value)} is not a peer id (0-{_MAX_PEER_ID}, 0 = no peering)"


def _choice(*choices: str) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        if value in choices:
            return None
        return f"{_excerpt(value)} is not one of {', '.join(choices)}"

    return check


def _check_text(value: str) -> str | None:
    return None


def _check_conffile(value: str) -> str | None:
    return "refused: it makes pgbouncer read another file on reload"


_TLS_PROTOCOL = r"!?(?:all|secure|legacy|default|tlsv1|tlsv1\.[0-3])"


def _check_tls_protocols(value: str) -> str | None:
    # The libtls grammar pgbouncer uses: names separated by commas or colons, "!" to exclude.
    # pgbouncer refuses to start on another word (server TLS is set up even when unused).
    if re.fullmatch(rf"{_TLS_PROTOCOL}(?:[,:]{_TLS_PROTOCOL})*", value):
        return None
    return f"{_excerpt(value)} is not a list of TLS protocols (such as secure or tlsv1.2,tlsv1.3)"


# OpenSSL cipher strings depend on the OpenSSL build: only libtls's keywords mean the same
# everywhere, and pgbouncer refuses to start on a cipher string its OpenSSL does not know.
_check_tls_ciphers = _choice("default", "secure", "fast", "normal", "compat", "legacy")
_check_dheparams = _choice("auto", "none", "legacy")
_check_ecdhcurve = _choice("auto", "none", "prime256v1", "secp384r1", "secp521r1")
_check_pool_mode = _choice(*POOL_MODES)
_check_sslmode = _choice("disable", "allow", "prefer", "require", "verify-ca", "verify-full")

# Every [pgbouncer] setting pgbouncer 1.18 knows (its SHOW CONFIG list), plus peer_id (1.19).
SETTINGS: Mapping[str, Callable[[str], str | None]] = {
    "admin_users": _check_text,
    "application_name_add_host": _check_bool,
    "auth_dbname": _check_text,  # pgbouncer >= 1.19 (domain.pgb_version)
    "auth_file": _check_text,
    "auth_hba_file": _check_text,
    "auth_query": _check_text,
    "auth_type": _choice("cert", "md5", "scram-sha-256", "plain", "trust", "any", "hba", "pam"),
    "auth_user": _check_text,
    "autodb_idle_timeout": _check_seconds,
    "client_idle_timeout": _check_seconds,
    "client_login_timeout": _check_seconds,
    "client_tls_ca_file": _check_text,
    "client_tls_cert_file": _check_text,
    "client_tls_ciphers": _check_tls_ciphers,
    "client_tls_dheparams": _check_dheparams,
    "client_tls_ecdhcurve": _check_ecdhcurve,
    "client_tls_key_file": _check_text,
    "client_tls_protocols": _check_tls_protocols,
    "client_tls_sslmode": _check_sslmode,
    "conffile": _check_conffile,
    "default_pool_size": _check_count,
    "disable_pqexec": _check_bool,
    "dns_max_ttl": _check_seconds,
    "dns_nxdomain_ttl": _check_seconds,
    "dns_zone_check_period": _check_seconds,
    "idle_transaction_timeout": _check_seconds,
    "ignore_startup_parameters": _check_text,
    "job_name": _check_text,
    "listen_addr": _check_listen_addr,
    "listen_backlog": _check_count,
    "listen_port": _check_listen_port,
    "log_connections": _check_bool,
    "log_disconnections": _check_bool,
    "log_pooler_errors": _check_bool,
    "log_stats": _check_bool,
    "logfile": _check_text,
    "max_client_conn": _check_count,
    "max_db_connections": _check_count,
    "max_packet_size": _check_max_packet_size,
    "max_prepared_statements": _check_count,  # pgbouncer >= 1.21
    "max_user_connections": _check_count,
    "min_pool_size": _check_count,
    "peer_id": _check_peer_id,
    "pidfile": _check_text,
    "pkt_buf": _check_pkt_buf,
    "pool_mode": _check_pool_mode,
    "query_timeout": _check_seconds,
    "query_wait_timeout": _check_seconds,
    "reserve_pool_size": _check_count,
    "reserve_pool_timeout": _check_seconds,
    "resolv_conf": _check_text,
    "sbuf_loopcnt": _check_count,
    "server_check_delay": _check_seconds,
    "server_check_query": _check_text,
    "server_connect_timeout": _check_seconds,
    "server_fast_close": _check_bool,
    "server_idle_timeout": _check_seconds,
    "server_lifetime": _check_seconds,
    "server_login_retry": _check_seconds,
    "server_reset_query": _check_text,
    "server_reset_query_always": _check_bool,
    "server_round_robin": _check_bool,
    "server_tls_ca_file": _check_text,
    "server_tls_cert_file": _check_text,
    "server_tls_ciphers": _check_tls_ciphers,
    "server_tls_key_file": _check_text,
    "server_tls_protocols": _check_tls_protocols,
    "server_tls_sslmode": _check_sslmode,
    "so_reuseport": _check_bool,
    "stats_period": _check_count,
    "stats_users": _check_text,
    "suspend_timeout": _check_seconds,
    "syslog": _check_bool,
    "syslog_facility": _check_text,
    "syslog_ident": _check_text,
    "tcp_defer_accept": _check_bool,
    "tcp_keepalive": _check_bool,
    "tcp_keepcnt": _check_keepcnt,
    "tcp_keepidle": _check_keep_seconds,
    "tcp_keepintvl": _check_keep_seconds,
    "tcp_socket_buffer": _check_count,
    "tcp_user_timeout": _check_count,
    "track_extra_parameters": _check_text,  # pgbouncer >= 1.20
    "unix_socket_dir": _check_text,
    "unix_socket_group": _check_text,
    "unix_socket_mode": _check_octal_mode,
    "user": _check_text,
    "verbose": _check_count,
}
REQUIRED_SETTINGS = frozenset({"logfile", "pidfile"})
# 1.18's SHOW CONFIG says "changeable = no" for these: a reload leaves the running value alone.
# peer_id cannot be checked against 1.18; a restart is the safe answer when it changes.
RESTART_ONLY_SETTINGS = frozenset(
    {
        "disable_pqexec",
        "job_name",
        "listen_addr",
        "listen_backlog",
        "listen_port",
        "peer_id",
        "pidfile",
        "pkt_buf",
        "resolv_conf",
        "so_reuseport",
        "track_extra_parameters",
        "unix_socket_dir",
        "unix_socket_group",
        "unix_socket_mode",
        "user",
    }
)
_USER_LIST_SETTINGS = ("admin_users", "stats_users")

DATABASE_PARAMS: Mapping[str, Callable[[str], str | None]] = {
    "application_name": _check_text,
    "auth_dbname": _check_text,  # pgbouncer >= 1.19
    "auth_user": _check_text,
    "client_encoding": _check_text,
    "connect_query": _check_text,
    "datestyle": _check_text,
    "dbname": _check_text,
    "host": _check_text,
    "max_db_connections": _check_count,
    "min_pool_size": _check_count,
    "password": _check_text,
    "pool_mode": _check_pool_mode,
    "pool_size": _check_count,
    "port": _check_port,
    "reserve_pool": _check_count,
    "timezone": _check_text,
    "user": _check_text,
}
USER_PARAMS: Mapping[str, Callable[[str], str | None]] = {
    "max_user_connections": _check_count,
    "pool_mode": _check_pool_mode,
}
PEER_PARAMS: Mapping[str, Callable[[str], str | None]] = {
    "host": _check_text,
    "pool_size": _check_count,
    "port": _check_port,
}
_KNOWN_PARAMS = frozenset({*DATABASE_PARAMS, *USER_PARAMS, *PEER_PARAMS})
# A parameter has the same type in every section that knows it, so a ConnString can check its
# typed values without knowing its section.
_PARAM_CHECKS: Mapping[str, Callable[[str], str | None]] = {
    key: check
    for params in (DATABASE_PARAMS, USER_PARAMS, PEER_PARAMS)
    for key, check in params.items()
    if check is not _check_text
}
_TYPED_PARAMS = frozenset(_PARAM_CHECKS)
_DATABASE_KEYS = frozenset(DATABASE_PARAMS)
_USER_KEYS = frozenset(USER_PARAMS)
_PEER_KEYS = frozenset(PEER_PARAMS)

_DB_NAME = r"[A-Za-z0-9_.*-]{1,63}"
# All names at once, joined by newlines: one C-level match instead of one per database.
_DB_NAMES_RE = re.compile(rf"{_DB_NAME}(?:\n{_DB_NAME})*")
# pgbouncer's ini reader takes a key of letters, digits and _ . - * only: "a@b = ..." is a
# syntax error that stops it from starting.
_USER_NAME = r"[A-Za-z0-9_.-]{1,63}"
_PARAM_KEY = r"[A-Za-z_][A-Za-z0-9_]*"
# The text may hold tabs and line feeds; every other C0/C1 control character (NUL, CR, ...)
# is refused, so a CRLF file or a binary blob fails loudly instead of being half-read.
_TEXT_CONTROL = r"[\x00-\x08\x0b-\x1f\x7f-\x9f]"
_VALUE_CONTROL = r"[\x00-\x1f\x7f-\x9f]"
# Every byte but the C0 controls (other than tab and line feed) and DEL: deleting these from an
# ASCII text leaves exactly its control characters, far faster than a regex search.
_NON_CONTROL_BYTES = bytes(b for b in range(256) if not (b < 9 or 10 < b < 32 or b == 127))

_first = itemgetter(0)
_lt = lt
# Frozen attrs classes are filled with object.__setattr__; local names save a lookup per call.
_new = object.__new__
_set = object.__setattr__
_K = TypeVar("_K")
_V = TypeVar("_V")


def _control_in_value(value: str) -> bool:
    # isprintable() is a cheap C-level pre-check; most values never reach the regex.
    return not value.isprintable() and re.search(_VALUE_CONTROL, value) is not None


def _sorted_items(value: Mapping[_K, _V] | Iterable[tuple[_K, _V]]) -> tuple[tuple[_K, _V], ...]:
    # Sorting by key alone: values (ConnString) have no order, and keys are unique once valid.
    if isinstance(value, (tuple, list)):
        items = cast("Iterable[tuple[_K, _V]]", value)
    elif isinstance(value, Mapping):
        items = cast("Mapping[_K, _V]", value).items()
    else:
        items = cast("Iterable[tuple[_K, _V]]", value)
    return tuple(sorted(items, key=_first))


# ---------------------------------------------------------------------------------------------
# Connection strings


def _conn_params(
    value: Mapping[str, str] | Iterable[tuple[str, str]],
) -> tuple[tuple[str, str], ...]:
    return _sorted_items(value)


def _check_params(params: tuple[tuple[str, str], ...], by_key: dict[str, str]) -> None:
    values = by_key.values()
    # C-level checks of the whole entry; the loop in _explain_params only names the culprit.
    if (
        len(by_key) != len(params)
        or not _KNOWN_PARAMS.issuperset(by_key)
        or not all(values)
        or not "".join(values).isprintable()
    ):
        _explain_params(params)
    _check_typed(by_key)


def _check_typed(by_key: dict[str, str]) -> None:
    if not _TYPED_PARAMS.isdisjoint(by_key):
        for key in _TYPED_PARAMS.intersection(by_key):
            if (reason := _PARAM_CHECKS[key](by_key[key])) is not None:
                raise InvalidPgbConfig(f"{key}: {reason}")


def _explain_params(params: tuple[tuple[str, str], ...]) -> None:
    previous = None
    for key, value in params:
        if key == previous:
            raise InvalidPgbConfig(f"parameter {key!r} is given more than once")
        previous = key
        if key not in _KNOWN_PARAMS and not re.fullmatch(_PARAM_KEY, key):
            raise InvalidPgbConfig(f"{key!r} is not a parameter name")
        if not value:
            raise InvalidPgbConfig(f"parameter {key!r} has an empty value")
        if _control_in_value(value):
            raise InvalidPgbConfig(
                f"the value of parameter {key!r} holds a control character or a tab"
            )
    # Otherwise only unknown identifiers or printable-but-unusual characters: both fine here.


def _masked_repr(params: tuple[tuple[str, str], ...]) -> str:
    # Values end up in logs and tracebacks through repr; a password must not.
    return repr(tuple((k, "***" if k == "password" else v) for k, v in params))


def _quote(value: str) -> str:
    if " " in value or "'" in value:
        return "'" + value.replace("'", "''") + "'"
    return value


@value_class
class ConnString:
    """One ``[databases]`` or ``[peers]`` entry: ``key=value`` pairs, sorted by key.

    Keys are identifiers, unique; values are non-empty and hold no control character (tab
    included: pgbouncer would silently make it part of the value); the values of typed
    parameters (``port``, ``pool_size``, ``pool_mode``...) are checked. Which keys a section
    accepts is checked by ``PgbConfig``, which knows the section.
    """

    params: tuple[tuple[str, str], ...] = attrs.field(converter=_conn_params, repr=_masked_repr)
    # Derived from params, so outside eq, hash and repr: a dict for lookups, and the rendered
    # text once known (parsing canonical text sets it, so a round trip never re-renders).
    _by_key: dict[str, str] = attrs.field(init=False, eq=False, hash=False, repr=False)
    _text: str | None = attrs.field(init=False, eq=False, hash=False, repr=False)

    def __attrs_post_init__(self) -> None:
        by_key = dict(self.params)
        _check_params(self.params, by_key)
        _set(self, "_by_key", by_key)
        _set(self, "_text", None)

    @classmethod
    def parse(cls, text: str) -> "ConnString":
        """The connection string in ``text``, split as pgbouncer 1.18 splits it."""
        return _conn_from_text(text)

    def render(self) -> str:
        """The connection string as pgbouncer reads it; values quoted only where needed."""
        text = self._text
        if text is None:
            text = " ".join([f"{key}={_quote(value)}" for key, value in self.params])
            _set(self, "_text", text)
        return text

    def get(self, key: str) -> str | None:
        """The value of ``key``, or None."""
        return self._by_key.get(key)

    def with_param(self, key: str, value: str) -> "ConnString":
        """This connection string with ``key`` set to ``value``."""
        return ConnString({**self._by_key, key: value})

    def without_param(self, key: str) -> "ConnString":
        """This connection string without ``key`` (unchanged if it has none)."""
        return ConnString([(k, v) for k, v in self.params if k != key])


# Texts in the shape render() produces (single spaces, no blank at either end, a value quoted
# only when it holds a space or a quote) are split by regexes, at C speed; any other text
# (blanks around '=', a word without '=', an empty value) goes through the scanner. Without a
# quote, a match is one whole space-separated word, so a match per word proves the shape.
_UNQUOTED_PAIR_RE = re.compile(r"(?:^| )([^ =']+)=([^ ']+)(?= |\Z)")
_QUOTED_CONN_RE = re.compile(
    r"[^ =']+=(?:'(?:[^']|'')+'|[^ ']+)(?: [^ =']+=(?:'(?:[^']|'')+'|[^ ']+))*"
)
_QUOTED_PAIR_RE = re.compile(r"(?:^| )([^ =']+)=(?:'((?:[^']|'')+)'|([^ ']+))")


def _split_rendered(texts: list[str]) -> list[ConnString]:
    """The ConnStrings of ``texts``, each of which ``_rendered_databases_re`` has matched.

    Such a text is proved valid and canonical, so only the splitting is left, and it is done
    for all of them at once, in C-level passes where it can: the texts without a quote
    (single spaces between ``key=value`` words, no key holding '=') are joined and split by
    str methods, cut back into entries by their word counts, and the slots of the new values
    are filled by ``map``; a text with a quoted value is split by its regex.
    """
    simple = [bool(text) and "'" not in text for text in texts]
    plain = list(itertools.compress(texts, simple))
    words = " ".join(plain).split(" ") if plain else []
    pairs = [(key, value) for key, _, value in map(str.partition, words, repeat("="))]
    ends = list(itertools.accumulate(map(_add, map(_count_spaces, plain), repeat(1))))
    params: list[tuple[tuple[str, str], ...]] = list(
        map(tuple, map(pairs.__getitem__, map(slice, [0, *ends[:-1]], ends)))
    )
    if len(plain) < len(texts):
        split = iter(params)
        params = [
            next(split)
            if is_simple
            else tuple(
                (key, plain_value or quoted.replace("''", "'"))
                for key, quoted, plain_value in _QUOTED_PAIR_RE.findall(text)
            )
            for text, is_simple in zip(texts, simple, strict=True)
        ]
    conns = list(map(_new, repeat(ConnString, len(texts))))
    by_key: list[dict[str, str]] = [dict(pairs) for pairs in params]
    for slot, values in (("params", params), ("_by_key", by_key), ("_text", texts)):
        deque(map(getattr(ConnString, slot).__set__, conns, values), maxlen=0)
    return conns


_count_spaces = methodcaller("count", " ")


# What render() writes for a value of each type of parameter, and nothing else: any other text
# (a port with a leading zero, a count of ten digits, quotes render() would not write...) takes
# the general path, which accepts or refuses it. The section holds no control character, tab
# included (the caller checks), and values end at a space or the end of the line.
_RENDERED_VALUES: Mapping[Callable[[str], str | None], str] = {
    # Unquoted: no blank, no quote. Quoted: holds a space or a quote (else render() would not
    # quote it), "''" is a quote; possessive, as pgbouncer reads it, so there is no backtracking.
    _check_text: r"(?:[^ '\n]++|'(?=[^ '\n]*+(?: |''))(?:[^'\n]|'')++')",
    _check_port: r"(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]"
    r"|6553[0-5])",
    _check_count: r"(?:0|[1-9][0-9]{0,8})",  # at most 999999999 < 2**31 - 1
    _check_pool_mode: "(?:" + "|".join(POOL_MODES) + ")",
}


@functools.cache
def _rendered_databases_re() -> re.Pattern[str]:
    """Matches a whole ``[databases]`` line in the shape render_pgb_ini writes it.

    The parameters a database accepts, each at most once and in sorted order, each after one
    space, up to the end of the line: so a match proves the keys known and unique, the values
    non-empty and valid, and the text exactly what render() would write. Group 2 is the
    connection string after a space, or empty. Compiling it takes a millisecond or two, hence
    on first use and only for large sections (``_FAST_PATH_MIN_DATABASES``).
    """
    pairs = "".join(
        rf"(?: {key}={_RENDERED_VALUES[check]})?+"
        for key, check in sorted(DATABASE_PARAMS.items())
        if check in _RENDERED_VALUES
    )
    return re.compile(rf"^({_DB_NAME}) =({pairs})$", re.MULTILINE)


def _conn_from_text(text: str, controls_checked: bool = False) -> ConnString:
    """``text`` as a ConnString; ``controls_checked``: the caller has refused every control
    character but tab in it (parse_pgb_ini does for the whole file at once)."""
    if "'" not in text:
        found = _UNQUOTED_PAIR_RE.findall(text)
        split = len(found) == text.count(" ") + 1
    elif _QUOTED_CONN_RE.fullmatch(text):
        found = [
            (key, plain or quoted.replace("''", "'"))
            for key, quoted, plain in _QUOTED_PAIR_RE.findall(text)
        ]
        split = True
    else:
        found, split = [], False
    if split and ("\t" not in text if controls_checked else text.isprintable()):
        by_key = dict(found)
        if len(by_key) == len(found) and _KNOWN_PARAMS.issuperset(by_key):
            # Known keys, unique, non-empty printable values: all of _check_params but the
            # typed values. This shortcut past attrs' __init__ matters for 1,000 databases.
            _check_typed(by_key)
            params = tuple(sorted(found))
            conn = _new(ConnString)
            _set(conn, "params", params)
            _set(conn, "_by_key", by_key)
            # Unquoted and sorted, the text is exactly what render() would produce: keep it.
            _set(conn, "_text", text if "'" not in text and list(params) == found else None)
            return conn
    # The general path also names the problem when there is one.
    return ConnString(_scan_conn(text))


def _scan_conn(text: str) -> list[tuple[str, str]]:
    # pgbouncer's grammar: spaces around '=' are allowed, a quoted value ends at a single quote
    # ("''" is a literal quote) and must be followed by a space or the end.
    pairs: list[tuple[str, str]] = []
    pos, end = 0, len(text)
    while True:
        while pos < end and text[pos] == " ":
            pos += 1
        if pos == end:
            return pairs
        start = pos
        while pos < end and text[pos] not in " =":
            pos += 1
        key = text[start:pos]
        while pos < end and text[pos] == " ":
            pos += 1
        if not key or pos == end or text[pos] != "=":
            # The word may be a stray password: say where, not what.
            raise InvalidPgbConfig(
                f"parameter {len(pairs) + 1} is not key=value"
                + (f" (after {pairs[-1][0]!r})" if pairs else "")
            )
        pos += 1
        while pos < end and text[pos] == " ":
            pos += 1
        if pos < end and text[pos] == "'":
            chunks: list[str] = []
            pos += 1
            while True:
                quote = text.find("'", pos)
                if quote < 0:
                    raise InvalidPgbConfig(f"the value of parameter {key!r} has no closing quote")
                chunks.append(text[pos:quote])
                if text.startswith("'", quote + 1):
                    chunks.append("'")
                    pos = quote + 2
                    continue
                pos = quote + 1
                break
            if pos < end and text[pos] != " ":
                raise InvalidPgbConfig(
                    f"the value of parameter {key!r} goes on after its closing quote"
                )
            value = "".join(chunks)
        else:
            start = pos
            while pos < end and text[pos] != " ":
                pos += 1
            value = text[start:pos]
        pairs.append((key, value))


# ---------------------------------------------------------------------------------------------
# The configuration


def _sorted_pairs(
    value: Mapping[str, _V] | Iterable[tuple[str, _V]],
) -> tuple[tuple[str, _V], ...]:
    return _sorted_items(value)


def _sorted_peers(
    value: Mapping[int, ConnString] | Iterable[tuple[int, ConnString]],
) -> tuple[tuple[int, ConnString], ...]:
    return _sorted_items(value)


def _user_list(value: str) -> str:
    return ",".join(sorted({name.strip(" \t") for name in value.split(",")} - {""}))


def _normalised_settings(
    value: Mapping[str, str] | Iterable[tuple[str, str]],
) -> tuple[tuple[str, str], ...]:
    settings = _sorted_pairs(value)
    if any(key in _USER_LIST_SETTINGS for key, _ in settings):
        settings = tuple(
            (key, _user_list(v) if key in _USER_LIST_SETTINGS else v) for key, v in settings
        )
    return settings


def _fail(section: str, key: object, reason: str) -> InvalidPgbConfig:
    # Keys come from the text being refused; a huge one must not become a huge status.
    name = key if not isinstance(key, str) or len(key) <= 80 else key[:77] + "..."
    return InvalidPgbConfig(f"[{section}] {name}: {reason}")


def _check_duplicates(section: str, pairs: tuple[tuple[object, object], ...]) -> None:
    if len({key for key, _ in pairs}) == len(pairs):
        return
    # Sorted input puts duplicates next to each other.
    for (a, _), (b, _) in itertools.pairwise(pairs):
        if a == b:
            raise _fail(section, a, "given more than once")


def _check_keys(section: str, name: object, conn: ConnString, known: frozenset[str]) -> None:
    if not known.issuperset(conn._by_key):
        unknown = min(conn._by_key.keys() - known)
        raise _fail(section, name, f"unknown parameter {unknown!r}")


def _check_setting_value(key: str, value: str) -> str | None:
    if value != value.strip(" \t"):
        return "the value starts or ends with blanks"
    if _control_in_value(value.replace("\t", " ")):
        return "the value holds a control character"
    if len(value) > 1 and value[0] == value[-1] and value[0] in "'\"":
        return "pgbouncer.ini has no quoting: the quotes would be part of the value"
    return SETTINGS[key](value)


@value_class
class PgbConfig:
    """A whole pgbouncer.ini: validated, normalised (sorted), comparable with ``==``."""

    databases: tuple[tuple[str, ConnString], ...] = attrs.field(converter=_sorted_pairs)
    pgbouncer: tuple[tuple[str, str], ...] = attrs.field(converter=_normalised_settings)
    users: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=_sorted_pairs)
    peers: tuple[tuple[int, ConnString], ...] = attrs.field(default=(), converter=_sorted_peers)

    def __attrs_post_init__(self) -> None:
        self._validate_databases()
        self._validate_settings()
        self._validate_users()
        self._validate_peers()

    def _validate_databases(self) -> None:
        _check_databases(self.databases)

    def _validate_settings(self) -> None:
        _check_duplicates("pgbouncer", self.pgbouncer)
        for key, value in self.pgbouncer:
            if key not in SETTINGS:
                if key.lower() in SETTINGS:
                    reason = (
                        f"pgbouncer matches setting names case-sensitively: write {key.lower()}"
                    )
                else:
                    reason = "unknown setting (pgbouncer refuses to start on it)"
                raise _fail("pgbouncer", key, reason)
            if (reason := _check_setting_value(key, value)) is not None:
                raise _fail("pgbouncer", key, reason)
        missing = sorted(REQUIRED_SETTINGS - {key for key, value in self.pgbouncer if value})
        if missing:
            raise _fail("pgbouncer", missing[0], "required and not empty")

    def _validate_users(self) -> None:
        _check_duplicates("users", self.users)
        for name, value in self.users:
            if not re.fullmatch(_USER_NAME, name):
                raise _fail("users", name, "a user name is 1-63 of A-Z a-z 0-9 _ . -")
            if value != value.strip(" \t"):
                raise _fail("users", name, "the value starts or ends with blanks")
            _check_keys("users", name, _parse_entry("users", name, value), _USER_KEYS)

    def _validate_peers(self) -> None:
        _check_duplicates("peers", self.peers)
        for peer_id, conn in self.peers:
            if isinstance(peer_id, bool) or not isinstance(peer_id, int):
                raise _fail("peers", peer_id, "a peer id is an integer")
            if not 1 <= peer_id <= _MAX_PEER_ID:
                raise _fail("peers", peer_id, f"a peer id is from 1 to {_MAX_PEER_ID}")
            _check_keys("peers", peer_id, conn, _PEER_KEYS)

    @functools.cached_property
    def _settings(self) -> dict[str, str]:
        return dict(self.pgbouncer)

    @functools.cached_property
    def _databases(self) -> dict[str, ConnString]:
        return dict(self.databases)

    def setting(self, key: str) -> str | None:
        """The value of a ``[pgbouncer]`` setting, or None when it is not set."""
        return self._settings.get(key)

    def with_settings(self, changes: Mapping[str, str | None]) -> "PgbConfig":
        """This configuration with ``[pgbouncer]`` settings set (``None`` removes one)."""
        settings = dict(self.pgbouncer)
        for key, value in changes.items():
            if value is None:
                settings.pop(key, None)
            else:
                settings[key] = value
        # The databases, users and peers are self's, checked when self was built.
        return _config_with_checked_databases(self.databases, settings, self.users, self.peers)

    def uses_database_param(self, key: str) -> bool:
        """Whether any ``[databases]`` entry sets parameter ``key``.

        An entry's rendered text, when it has one, answers first (a substring test is
        cheaper than a lookup per entry); only a text holding ``key=`` somewhere (perhaps
        inside a quoted value) is asked for the parameter to be sure.
        """
        needle = key + "="
        for _, conn in self.databases:
            text = conn._text
            if text is not None and needle not in text:
                continue
            if conn.get(key) is not None:
                return True
        return False

    def database(self, name: str) -> ConnString | None:
        """The connection string of database ``name``, or None."""
        return self._databases.get(name)

    def with_database(self, name: str, conn: ConnString) -> "PgbConfig":
        """This configuration with database ``name`` added or replaced."""
        _check_databases(((name, conn),))  # the others were checked when self was built
        databases = _sorted_pairs({**self._databases, name: conn})
        return _config_with_checked_databases(databases, self.pgbouncer, self.users, self.peers)

    def without_database(self, name: str) -> "PgbConfig":
        """This configuration without database ``name`` (itself if there is none)."""
        if name not in self._databases:
            return self
        databases = tuple(d for d in self.databases if d[0] != name)
        return _config_with_checked_databases(databases, self.pgbouncer, self.users, self.peers)


def _check_databases(databases: tuple[tuple[str, ConnString], ...]) -> None:
    _check_duplicates("databases", databases)
    names = [name for name, _ in databases]
    if names and not _DB_NAMES_RE.fullmatch("\n".join(names)):
        for name in names:
            if not re.fullmatch(_DB_NAME, name):
                raise _fail("databases", name, "a database name is 1-63 of A-Z a-z 0-9 _ . - *")
    if "pgbouncer" in names:
        raise _fail("databases", "pgbouncer", "reserved for pgbouncer's admin console")
    known = _DATABASE_KEYS.issuperset
    for name, conn in databases:
        if not known(conn._by_key):
            _check_keys("databases", name, conn, _DATABASE_KEYS)


def _config_with_checked_databases(
    databases: tuple[tuple[str, ConnString], ...],
    pgbouncer: Mapping[str, str] | Iterable[tuple[str, str]],
    users: Mapping[str, str] | Iterable[tuple[str, str]],
    peers: Iterable[tuple[int, ConnString]],
) -> PgbConfig:
    """``PgbConfig(...)`` for ``databases`` already sorted, unique and checked.

    Exactly what the constructor does (its converters, then its checks) but the databases
    check, which would repeat, for every database, what ``_parse_rendered`` proved or what
    building the PgbConfig they come from checked.
    """
    cfg = _new(PgbConfig)
    _set(cfg, "databases", databases)
    _set(cfg, "pgbouncer", _normalised_settings(pgbouncer))
    _set(cfg, "users", _sorted_pairs(users))
    _set(cfg, "peers", _sorted_peers(peers))
    cfg._validate_settings()
    cfg._validate_users()
    cfg._validate_peers()
    return cfg


# ---------------------------------------------------------------------------------------------
# Text


@functools.lru_cache(maxsize=4)
def parse_pgb_ini(text: str) -> PgbConfig:
    """The configuration in ``text``; ``InvalidPgbConfig`` names the first problem found.

    A hook meets the same text several times (the domain validates what it adopts, the
    effect validates itself, the workload adapter renders the per-process copies from it):
    the last few results are kept, which is safe because a ``PgbConfig`` never changes.
    """
    return _parse(text, _FAST_PATH_MIN_DATABASES)


# The fast path saves some 4 us per database and parse, and its regex costs 1-2 ms to compile
# once per process (a hook parses the file two or three times): below this many databases the
# general path is the cheaper one.
_FAST_PATH_MIN_DATABASES = 200


def _parse(text: str, fast_path_min_databases: int) -> PgbConfig:
    _reject_control_characters(text)
    if text.startswith(_DATABASES_HEADER):
        try:
            cfg = _parse_rendered(text, fast_path_min_databases)
        except InvalidPgbConfig:
            cfg = None  # the general path finds it again, with its line number
        if cfg is not None:
            return cfg
    return _parse_general(text)


def _parse_general(text: str) -> PgbConfig:
    """``text`` read line by line: any text pgbouncer reads, with the first problem named."""
    sections = _read_sections(text.split("\n"))
    for required in ("databases", "pgbouncer"):
        if required not in sections:
            raise InvalidPgbConfig(f"section [{required}] is missing")

    entries = sections["databases"]
    try:
        databases = [(name, _conn_from_text(value, True)) for name, value in entries.items()]
    except InvalidPgbConfig:
        # Only now pay for naming the entry: a try per entry costs a call per entry.
        for name, value in entries.items():
            _parse_entry("databases", name, value, controls_checked=True)
        raise
    return PgbConfig(
        databases=databases,
        pgbouncer=sections["pgbouncer"],
        users=sections.get("users", {}),
        peers=_parse_peers(sections),
    )


def _read_sections(lines: list[str]) -> dict[str, dict[str, str]]:
    """The raw ``key = value`` texts of ``lines``, by section, checked line by line."""
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    section = ""
    for number, raw in enumerate(lines, 1):
        line = raw.strip(" \t")
        if not line:
            continue
        first = line[0]
        if first == ";" or first == "#":
            continue
        if first == "[":
            section = _section_name(line, number)
            if section in sections:
                raise InvalidPgbConfig(f"line {number}: section [{section}] is given twice")
            current = sections[section] = {}
            continue
        if first == "%":
            raise InvalidPgbConfig(
                f"line {number}: %include and other directives are refused "
                "(the charm never writes them and a follower must not read other files)"
            )
        key, sep, value = line.partition("=")
        key = key.rstrip(" \t")
        if not sep or not key or " " in key or "\t" in key:
            raise InvalidPgbConfig(
                f"line {number}: neither a [section], a key = value line nor a comment"
            )
        if current is None:
            raise InvalidPgbConfig(f"line {number}: {key!r} comes before any [section]")
        if key in current:
            raise InvalidPgbConfig(f"line {number}: [{section}] {key}: given more than once")
        current[key] = value.lstrip(" \t")
    return sections


def _parse_peers(sections: dict[str, dict[str, str]]) -> list[tuple[int, ConnString]]:
    return [
        (_peer_id(key), _parse_entry("peers", key, value, controls_checked=True))
        for key, value in sections.get("peers", {}).items()
    ]


_DATABASES_HEADER = "[databases]\n"
_PGBOUNCER_HEADER = "\n[pgbouncer]\n"


def _parse_rendered(text: str, min_databases: int = 0) -> PgbConfig | None:
    """``text`` read the fast way when its ``[databases]`` section is as render_pgb_ini writes
    it and has at least ``min_databases`` lines, else None. The caller has refused control
    characters but tab.

    Every line of the section must match ``_rendered_databases_re`` (one regex pass over the
    whole section), the names must be strictly increasing (sorted and unique), and the result
    must be what the general path would build: the rest of the text goes through the general
    reader and PgbConfig's checks. The entries are split in one go (``_split_rendered``).
    """
    end = text.find(_PGBOUNCER_HEADER)
    if end < len(_DATABASES_HEADER) or text[end - 1] != "\n":
        return None
    body = text[len(_DATABASES_HEADER) : end - 1]
    if body:
        lines = body.count("\n") + 1
        if lines < min_databases or "\t" in body:
            return None
        found = _rendered_databases_re().findall(body)
        if len(found) != lines:
            return None  # a line the regex did not take: blank, comment, other shape
        names = [name for name, _ in found]
        if not all(map(_lt, names, itertools.islice(names, 1, None))) or "pgbouncer" in names:
            return None
        conns = _split_rendered([conn[1:] for _, conn in found])
        databases = tuple(zip(names, conns, strict=True))
    elif min_databases > 0:
        return None
    else:
        databases = ()
    sections = _read_sections(text[end + 1 :].split("\n"))
    if "databases" in sections:
        return None
    return _config_with_checked_databases(
        databases, sections["pgbouncer"], sections.get("users", {}), _parse_peers(sections)
    )


def _reject_control_characters(text: str) -> None:
    if text.isascii() and not text.encode("ascii").translate(None, _NON_CONTROL_BYTES):
        return
    bad = re.search(_TEXT_CONTROL, text)
    if bad is not None:
        line = text.count("\n", 0, bad.start()) + 1
        raise InvalidPgbConfig(
            f"line {line}: control character U+{ord(bad.group()):04X} (only tab is allowed)"
        )


def _section_name(line: str, number: int) -> str:
    if line[-1] != "]":
        raise InvalidPgbConfig(f"line {number}: a section header must end with ']'")
    name = line[1:-1]
    if name in SECTIONS:
        return name
    canonical = name.strip(" \t").lower()
    if canonical in SECTIONS:
        raise InvalidPgbConfig(
            f"line {number}: write [{canonical}]: pgbouncer matches section names exactly"
        )
    raise InvalidPgbConfig(
        f"line {number}: unknown section [{name}] (pgbouncer knows {', '.join(SECTIONS)})"
    )


def _parse_entry(
    section: str, key: object, value: str, controls_checked: bool = False
) -> ConnString:
    try:
        return _conn_from_text(value, controls_checked)
    except InvalidPgbConfig as err:
        raise _fail(section, key, str(err)) from None


def _peer_id(key: str) -> int:
    if key.isascii() and key.isdigit():
        return int(key)
    raise _fail("peers", key, f"a peer id is an integer from 1 to {_MAX_PEER_ID}")


def render_pgb_ini(cfg: PgbConfig) -> str:
    """The text of ``cfg``: sections in a fixed order, sorted keys, ``key = value`` lines."""
    lines = ["[databases]"]
    # conn._text is render()'s cache (None until rendered, "" for an empty entry): reading it
    # saves a method call per database.
    lines += [
        f"{name} = {text}" if (text := conn._text or conn.render()) else f"{name} ="
        for name, conn in cfg.databases
    ]
    lines += ["", "[pgbouncer]"]
    lines += [_line(key, value) for key, value in cfg.pgbouncer]
    if cfg.users:
        lines += ["", "[users]"]
        lines += [_line(name, value) for name, value in cfg.users]
    if cfg.peers:
        lines += ["", "[peers]"]
        lines += [_line(str(peer_id), conn.render()) for peer_id, conn in cfg.peers]
    lines.append("")
    return "\n".join(lines)


def _line(key: str, value: str) -> str:
    return f"{key} = {value}" if value else f"{key} ="


def min_pgbouncer_version(cfg: PgbConfig) -> tuple[int, int]:
    """The oldest pgbouncer (major, minor) that accepts ``cfg`` (``domain.pgb_version``)."""
    version = min_version(cfg)
    return (version.major, version.minor)


# ---------------------------------------------------------------------------------------------
# Changes, pool sizes, per-process copies


class ChangeKind(enum.Enum):
    """What running pgbouncer processes need for a new configuration to take effect."""

    NONE = "none"
    RELOAD = "reload"
    RESTART = "restart"


# Settings pgbouncer 1.18 applies on reload when changed, but keeps when the line is removed
# (they have no default to fall back to): taking one out needs a restart.
UNSET_NEEDS_RESTART = frozenset({"auth_user"})


def rendered_settings(text: str) -> dict[str, str] | None:
    """The ``[pgbouncer]`` settings of a text ``render_pgb_ini`` wrote, read without its
    ``[databases]`` section (whose entries a whole parse checks and splits: most of what a
    large file costs); None when the text has no such section or it cannot be read.

    Only for a text known to be valid, such as the file a unit wrote itself: nothing but the
    lines after the ``[pgbouncer]`` header is checked.
    """
    end = text.find(_PGBOUNCER_HEADER)
    if end < 0:
        return None
    try:
        sections = _read_sections(text[end + 1 :].split("\n"))
    except InvalidPgbConfig:
        return None
    return sections.get("pgbouncer")


def settings_change_kind(old: Mapping[str, str], new: PgbConfig) -> ChangeKind:
    """``change_kind`` of two different configurations, from the old one's ``[pgbouncer]``
    settings as written (``rendered_settings``), by the same rules.
    A value written otherwise than the new configuration renders it counts as different (a
    restart more, never a restart less)."""
    return _restart_or_reload(old.get, new)


def change_kind(old: PgbConfig | None, new: PgbConfig) -> ChangeKind:
    """NONE if equal; RESTART if there was none or a restart-only setting differs; else RELOAD."""
    if old is None:
        return ChangeKind.RESTART
    # Equal configurations render to the same text and different ones to different texts;
    # comparing texts (cached on parsed entries) spares splitting every entry of both.
    if old is new or render_pgb_ini(old) == render_pgb_ini(new):
        return ChangeKind.NONE
    return _restart_or_reload(old.setting, new)


def _restart_or_reload(old: Callable[[str], str | None], new: PgbConfig) -> ChangeKind:
    """Between two different configurations (``old``: its settings by key)."""
    for key in RESTART_ONLY_SETTINGS:
        if old(key) != new.setting(key):
            return ChangeKind.RESTART
    for key in UNSET_NEEDS_RESTART:
        if old(key) is not None and new.setting(key) is None:
            return ChangeKind.RESTART
    return ChangeKind.RELOAD


def _non_negative_int(name: str) -> Callable[[object, object, int], None]:
    def check(_instance: object, _attribute: object, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidPgbConfig(f"[pgbouncer] {name}: {value!r} is not an integer >= 0")

    return check


@value_class
class PoolSizes:
    """The three pool-size settings of one pgbouncer process."""

    default_pool_size: int = attrs.field(validator=_non_negative_int("default_pool_size"))
    min_pool_size: int = attrs.field(validator=_non_negative_int("min_pool_size"))
    reserve_pool_size: int = attrs.field(validator=_non_negative_int("reserve_pool_size"))


UNLIMITED_POOL_SIZES = PoolSizes(default_pool_size=20, min_pool_size=10, reserve_pool_size=10)


def pool_sizes(max_db_connections: int, processes: int) -> PoolSizes:
    """Pool sizes that share ``max_db_connections`` among ``processes`` pgbouncer processes.

    Each process gets ``effective = max_db_connections / processes``: half of it as its default
    pool and a quarter each as minimum and reserve, rounded up so no pool is empty. 0 means
    unlimited, which gets pgbouncer-like fixed sizes.
    """
    if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
        raise InvalidPgbConfig(f"processes: {processes!r} is not an integer >= 1")
    if (
        isinstance(max_db_connections, bool)
        or not isinstance(max_db_connections, int)
        or max_db_connections < 0
    ):
        raise InvalidPgbConfig(
            f"[pgbouncer] max_db_connections: {max_db_connections!r} is not an integer >= 0"
        )
    if max_db_connections == 0:
        return UNLIMITED_POOL_SIZES
    # ceil(effective / 2) and ceil(effective / 4) in exact integer arithmetic.
    half = -(-max_db_connections // (2 * processes))
    quarter = -(-max_db_connections // (4 * processes))
    return PoolSizes(default_pool_size=half, min_pool_size=quarter, reserve_pool_size=quarter)


# pgbouncer requires a logfile setting; a foreground process also logs to standard error.
PROCESS_LOGFILE = "/dev/null"


def per_process_dir(index: int, base_dir: str = PGB_DIR) -> str:
    """The folder of pgbouncer process ``index`` (its ini, pidfile, log and socket)."""
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise InvalidPgbConfig(f"process index: {index!r} is not an integer >= 0")
    return f"{base_dir}/instance_{index}"


def per_process_config(cfg: PgbConfig, index: int, base_dir: str = PGB_DIR) -> PgbConfig:
    """``cfg`` for process ``index``: its own pidfile and socket folder, and no log file.

    Processes sharing the port through ``so_reuseport`` must not share these paths. All of them
    read the one auth file in ``base_dir``; with peering each gets its own ``peer_id``. A
    process run in the foreground (as Pebble runs it) writes its log to standard error, which
    Pebble keeps in a bounded buffer and can forward; a log file would grow, unrotated, in
    the container's own filesystem, so ``logfile`` is ``/dev/null``.
    """
    folder = per_process_dir(index, base_dir)
    changes: dict[str, str | None] = {
        "pidfile": f"{folder}/pgbouncer.pid",
        "logfile": PROCESS_LOGFILE,
        "unix_socket_dir": folder,
        "auth_file": f"{base_dir}/userlist.txt",
    }
    if cfg.peers:
        changes["peer_id"] = str(index + 1)
    return cfg.with_settings(changes)
