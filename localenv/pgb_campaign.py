"""A differential campaign: the follower's validation against the real pgbouncer, case by case.

A hostile or buggy leader can publish any text as ``cfg_file``. The contract promises that a
follower writes only what pgbouncer runs. This module generates such texts and asks both:

- the generator starts from configs the charm really renders (``initial_config``, client
  databases, the backend's auth settings, a ``[users]`` section) and applies 1 to 3 seeded
  mutations: per-type boundary values of settings (integers as C reads them, times, booleans,
  choices, ports), syntax oddities (quotes, inline comments, case, blanks, CR, BOM, duplicates,
  unknown and misspelt sections, ``%include``), unknown keys and keys of later pgbouncers,
  ``[databases]``/``[users]``/``[peers]`` entries, unicode, and cross-setting combinations
  (auth types, TLS modes and files, paths outside the folder, users and groups, listen
  addresses);
- the follower's verdict is ``domain.pgb_validation.check_published`` with the facts of the
  probe's folder (its pgbouncer version, its folder, its files), exactly what a follower runs
  before it writes; what it accepts is what pgbouncer would run: the per-process copy;
- pgbouncer's verdict comes from ``localenv.pgbouncer_probe``: refused, serving, or up but
  not serving.

A case is *unsafe* when the follower accepts and pgbouncer refuses or does not serve; *stricter*
when the follower refuses what pgbouncer serves (safe; grouped by the follower's reason).
Cases are independent and deterministic for a seed: ``cases(seed, n)`` yields the same texts
on every run.
"""

import concurrent.futures
import os
import random
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Callable, Iterator

import attrs

from domain.charm_config import CharmConfig, initial_config
from domain.errors import InvalidInput
from domain.pgb_config import PGB_DIR, ConnString, PgbConfig, render_pgb_ini
from domain.pgb_validation import CA, CERT, HBA, KEY, WorkloadFacts, check_published
from domain.pgb_version import PgbVersion, parse_version_output
from localenv.net import free_port
from localenv.pgbouncer_probe import (
    Expectation,
    Verdict,
    make_folder,
    pgbouncer_version_text,
    probe,
)

FOLDER_TOKEN = PGB_DIR  # generated texts name the container's folder; the run maps it
BASE_PORT = "6432"
TLS_DIR = "tls"
KEY_NAME = "pgbouncer.key"
CERT_NAME = "pgbouncer.crt"
CA_NAME = "ca.crt"
PROBE_USER = "pgb_auth"  # in the auth file of every case: the auth_user of the base configs


# ---------------------------------------------------------------------------------------------
# Base configs: what the charm renders.


def _base_configs() -> list[str]:
    charm = CharmConfig()
    plain = initial_config(charm, processes=2)
    entries = {
        "app": ConnString(
            {"host": "10.1.2.3", "port": "5432", "dbname": "app", "auth_user": "pgb_auth"}
        ),
        "app_readonly": ConnString(
            {"host": "10.1.2.4", "port": "5432", "dbname": "app", "auth_user": "pgb_auth"}
        ),
        "other": ConnString(
            {
                "host": "db.example",
                "port": "5433",
                "dbname": "other",
                "user": "relation_7",
                "password": "s3cr't pass",
            }
        ),
    }
    with_clients = PgbConfig(
        databases=entries,
        pgbouncer={
            **dict(plain.pgbouncer),
            "auth_user": "pgb_auth",
            "auth_query": "SELECT username, password FROM pgbouncer_auth.get_auth($1)",
        },
        users={"relation_7": "pool_mode=transaction max_user_connections=20"},
    )
    other = initial_config(
        CharmConfig(listen_port=7000, pool_mode="transaction", max_db_connections=0), processes=4
    )
    return [render_pgb_ini(c) for c in (plain, with_clients, other)]


# ---------------------------------------------------------------------------------------------
# Value pools

INTS = [
    "٣",  # an Arabic-Indic digit: str.isdigit() takes it, pgbouncer does not
    "0",
    "1",
    "2",
    "5",
    "-1",
    "-0",
    "+5",
    "00",
    "01",
    "07",
    "08",
    "010",
    "0x10",
    "0X1f",
    "0b1",
    "1e3",
    "1.5",
    "127",
    "128",
    "1000",
    "32767",
    "32768",
    "65535",
    "65536",
    "2147483647",
    "2147483648",
    "-2147483648",
    "4294967296",
    "4294967297",
    "9223372036854775808",
    "99999999999999999999",
    "abc",
    "",
    "٣",
    "\uff15",  # a fullwidth digit five
    "1_000",
    "1 000",
]
PORTS = ["1", "80", "1023", "1024", "06432", "0x1920", "65535", "65536", "0", "-1", "7000"]
TIMES = [
    "0",
    "0.5",
    "1",
    "15",
    "600",
    ".5",
    "5.",
    "1e3",
    "1E2",
    "1e-3",
    "inf",
    "nan",
    "-1",
    "0x10",
    "1e400",
    "99999999999999999999",
    "1,5",
    "1 s",
    "",
    "00015",
    "0.000001",
    "3600.25",
]
BOOLS = ["0", "1", "2", "-1", "yes", "no", "true", "on", "01", "", "0x1", "1.0"]
MODES = ["0777", "0700", "0", "777", "0o777", "07777", "0888", "0x1ff", "511", ""]
CHOICES = {
    "pool_mode": ["session", "transaction", "statement", "SESSION", "Transaction", "pool", ""],
    "auth_type": [
        "md5",
        "scram-sha-256",
        "plain",
        "trust",
        "any",
        "hba",
        "pam",
        "cert",
        "MD5",
        "ldap",
        "password",
        "",
    ],
    "client_tls_sslmode": [
        "disable",
        "allow",
        "prefer",
        "require",
        "verify-ca",
        "verify-full",
        "Disable",
        "on",
    ],
    "server_tls_sslmode": [
        "disable",
        "allow",
        "prefer",
        "require",
        "verify-ca",
        "verify-full",
        "PREFER",
        "off",
    ],
}
TEXTS = [
    "",
    "x",
    '"quoted"',
    "'single'",
    "ünïcødé",
    "a;b",
    "a # b",
    "x" * 300,
    "DISCARD ALL",
    "SELECT 1",
    "extra_float_digits",
    "extra_float_digits, options",
    "a,,b",
]
LISTEN_ADDRS = [
    "*",
    "127.0.0.1",
    "localhost",
    "0.0.0.0",
    "127.0.0.1,127.0.0.2",
    "127.0.0.1, localhost",
    "::1",
    "::",
    "10.9.9.9",
    "192.0.2.1",
    "no-such-host.invalid",
    "127.0.0.1,",
    ",",
    "",
    "*,127.0.0.1",
    "[::1]",
    "127.1",
    "2130706433",
    "localhost:6432",
    "127.0.0.1 127.0.0.2",
    "ünï.example",
]
USERS = ["postgres", "root", "nobody", "no_such_user_x", "", "POSTGRES", "0"]
GROUPS = ["", "postgres", "root", "no_such_group_x", "0"]
AUTH_USERS = ["pgb_auth", "", "ü", "a b", "x" * 70]


def _paths(folder_kind: str) -> list[str]:
    f = FOLDER_TOKEN
    return {
        "log": [
            f"{f}/pgbouncer.log",
            f"{f}/../x.log",
            "/tmp/pgb-outside.log",
            "relative.log",
            f'"{f}/pgbouncer.log"',
            "~/x.log",
            f"{f}/no_such_dir/x.log",
            "",
            f"{f}/",
            f"{f}//pgbouncer.log",
            f"{f}/./pgbouncer.log",
        ],
        "pid": [
            f"{f}/pgbouncer.pid",
            "/tmp/pgb-outside.pid",
            f"{f}/no_such_dir/x.pid",
            "",
            f"'{f}/pgbouncer.pid'",
        ],
        "dir": [f, f"{f}/", "/tmp", "", "@abstract_pgb", f"{f}/no_such_dir", f"{f}/.."],
        "auth": [
            f"{f}/userlist.txt",
            f"{f}/missing.txt",
            "/etc/passwd",
            "",
            f"{f}/../userlist.txt",
        ],
        "tls": [
            f"{f}/{TLS_DIR}/{KEY_NAME}",
            f"{f}/{TLS_DIR}/{CERT_NAME}",
            f"{f}/{TLS_DIR}/{CA_NAME}",
            f"{f}/{TLS_DIR}/missing.pem",
            "/etc/ssl/certs/ca-certificates.crt",
            "",
        ],
        "other": [f"{f}/hba.conf", f"{f}/missing.conf", "/etc/resolv.conf", "/dev/null", ""],
    }[folder_kind]


SETTING_POOLS: dict[str, Callable[[], list[str]]] = {}


def _pool_for(key: str) -> list[str]:
    if key in CHOICES:
        return CHOICES[key]
    if key == "listen_port":
        return PORTS
    if key == "listen_addr":
        return LISTEN_ADDRS
    if key == "user":
        return USERS
    if key == "unix_socket_group":
        return GROUPS
    if key == "unix_socket_mode":
        return MODES
    if key == "logfile":
        return _paths("log")
    if key == "pidfile":
        return _paths("pid")
    if key == "unix_socket_dir":
        return _paths("dir")
    if key == "auth_file":
        return _paths("auth")
    if key.endswith(("_key_file", "_cert_file", "_ca_file")):
        return _paths("tls")
    if key in ("auth_hba_file", "resolv_conf", "conffile"):
        return _paths("other")
    if key == "auth_user":
        return AUTH_USERS
    kind = _KINDS.get(key, "text")
    return {"int": INTS, "bool": BOOLS, "time": TIMES, "text": TEXTS}[kind]


# The type of each 1.18 setting as pgbouncer reads it (CF_INT, CF_TIME_USEC, ...).
_INT_KEYS = [
    "default_pool_size",
    "listen_backlog",
    "max_client_conn",
    "max_db_connections",
    "max_packet_size",
    "max_user_connections",
    "min_pool_size",
    "pkt_buf",
    "reserve_pool_size",
    "sbuf_loopcnt",
    "stats_period",
    "tcp_keepcnt",
    "tcp_keepidle",
    "tcp_keepintvl",
    "tcp_socket_buffer",
    "tcp_user_timeout",
    "verbose",
    "peer_id",
    "max_prepared_statements",
]
_BOOL_KEYS = [
    "application_name_add_host",
    "disable_pqexec",
    "log_connections",
    "log_disconnections",
    "log_pooler_errors",
    "log_stats",
    "server_fast_close",
    "server_reset_query_always",
    "server_round_robin",
    "so_reuseport",
    "syslog",
    "tcp_defer_accept",
    "tcp_keepalive",
]
_TIME_KEYS = [
    "autodb_idle_timeout",
    "client_idle_timeout",
    "client_login_timeout",
    "dns_max_ttl",
    "dns_nxdomain_ttl",
    "dns_zone_check_period",
    "idle_transaction_timeout",
    "query_timeout",
    "query_wait_timeout",
    "reserve_pool_timeout",
    "server_check_delay",
    "server_connect_timeout",
    "server_idle_timeout",
    "server_lifetime",
    "server_login_retry",
    "suspend_timeout",
]
_KINDS = {
    **{k: "int" for k in _INT_KEYS},
    **{k: "bool" for k in _BOOL_KEYS},
    **{k: "time" for k in _TIME_KEYS},
}
KNOWN_1_18 = sorted(
    {*_INT_KEYS, *_BOOL_KEYS, *_TIME_KEYS, *CHOICES} - {"peer_id", "max_prepared_statements"}
    | set(
        [
            "admin_users",
            "auth_file",
            "auth_hba_file",
            "auth_query",
            "auth_user",
            "client_tls_ca_file",
            "client_tls_cert_file",
            "client_tls_ciphers",
            "client_tls_dheparams",
            "client_tls_ecdhcurve",
            "client_tls_key_file",
            "client_tls_protocols",
            "conffile",
            "ignore_startup_parameters",
            "job_name",
            "listen_addr",
            "listen_port",
            "logfile",
            "pidfile",
            "resolv_conf",
            "server_check_query",
            "server_reset_query",
            "server_tls_ca_file",
            "server_tls_cert_file",
            "server_tls_ciphers",
            "server_tls_key_file",
            "server_tls_protocols",
            "stats_users",
            "syslog_facility",
            "syslog_ident",
            "unix_socket_dir",
            "unix_socket_group",
            "unix_socket_mode",
            "user",
        ]
    )
)
LATER_KEYS = [
    "peer_id",
    "auth_dbname",
    "track_extra_parameters",
    "max_prepared_statements",
    "cancel_wait_timeout",
    "query_wait_notify",
    "transaction_timeout",
    "scram_iterations",
    "client_tls13_ciphers",
    "server_tls13_ciphers",
    "max_db_client_connections",
    "auth_ident_file",
    "auth_ldap_options",
]
UNKNOWN_KEYS = ["listen_ports", "LISTEN_PORT", "Pool_Mode", "foo", "max-client-conn", "ü", "a.b"]

DB_NAMES = [
    "app2",
    "x" * 63,
    "x" * 64,
    "*",
    "pgbouncer",
    "Ünï",
    "a b",
    "a@b",
    "a$b",
    '"quoted"',
    "a.b-c_d",
    "1",
    "-",
    "a*b",
    "a;b",
]
DB_PARAMS = {
    "host": [
        "10.1.2.3",
        "localhost",
        "/tmp",
        "h1,h2",
        "ü.example",
        "a b",
        "''",
        "@abs",
        "x" * 300,
    ],
    "port": ["5432", "0", "65535", "65536", "-1", "05432", "0x10", "1e3", "abc", "5432,5433"],
    "dbname": ["app", "a b", "ü", "x" * 100, "''"],
    "user": ["u", "a b", "ü"],
    "password": ["p", "a b", "a'b", "ü"],
    "auth_user": ["pgb_auth", "ü"],
    "pool_size": INTS[:12],
    "reserve_pool": INTS[:12],
    "min_pool_size": INTS[:12],
    "max_db_connections": INTS[:12],
    "pool_mode": CHOICES["pool_mode"],
    "connect_query": ["SELECT 1", "'SELECT 1'", "a;b"],
    "client_encoding": ["UTF8", "nonsense"],
    "datestyle": ["ISO", "nonsense"],
    "timezone": ["UTC", "Mars/Olympus"],
    "application_name": ["x", "a b"],
    "auth_dbname": ["app"],
    "load_balance_hosts": ["disable"],
    "auth_query": ["SELECT 1"],
    "server_lifetime": ["10"],
    "foo": ["bar"],
    "PORT": ["5432"],
}
USER_VALUES = [
    "pool_mode=session",
    "pool_mode=transaction",
    "pool_mode=bad",
    "max_user_connections=5",
    "max_user_connections=08",
    "max_user_connections=-1",
    "foo=bar",
    "",
    "pool_mode = session",
    "pool_mode=session max_user_connections=10",
    "max_user_client_connections=5",
]
USER_NAMES = ["alice", "a@b", "a$b", "ü", "a.b-c", "*", "pgbouncer", "x" * 70, "a b"]


# ---------------------------------------------------------------------------------------------
# Mutations: each takes the text and a Random, returns the new text and a short label.


def _lines(text: str) -> list[str]:
    return text.split("\n")


def _section_end(lines: list[str], section: str) -> int:
    """The index after the last line of ``[section]`` (or -1 when it is not there)."""
    try:
        start = lines.index(f"[{section}]")
    except ValueError:
        return -1
    end = start + 1
    while end < len(lines) and not lines[end].startswith("["):
        end += 1
    while end > start + 1 and lines[end - 1] == "":
        end -= 1
    return end


def _set_line(text: str, key: str, value: str, section: str = "pgbouncer") -> str:
    lines = _lines(text)
    prefix = key + " ="
    for i, line in enumerate(lines):
        if line.startswith(prefix) or line == prefix:
            lines[i] = f"{key} = {value}"
            return "\n".join(lines)
    end = _section_end(lines, section)
    if end < 0:
        lines += ["", f"[{section}]", f"{key} = {value}"]
    else:
        lines.insert(end, f"{key} = {value}")
    return "\n".join(lines)


def _remove_line(text: str, key: str) -> str:
    return "\n".join(line for line in _lines(text) if not line.startswith(key + " ="))


def m_known_value(text: str, rnd: random.Random) -> tuple[str, str]:
    key = rnd.choice(KNOWN_1_18)
    value = rnd.choice(_pool_for(key))
    return _set_line(text, key, value), f"value:{key}"


def m_boundary_int(text: str, rnd: random.Random) -> tuple[str, str]:
    key = rnd.choice(_INT_KEYS[:-2])
    return _set_line(text, key, rnd.choice(INTS)), f"int:{key}"


def m_time(text: str, rnd: random.Random) -> tuple[str, str]:
    key = rnd.choice(_TIME_KEYS)
    return _set_line(text, key, rnd.choice(TIMES)), f"time:{key}"


def m_bool(text: str, rnd: random.Random) -> tuple[str, str]:
    key = rnd.choice(_BOOL_KEYS)
    return _set_line(text, key, rnd.choice(BOOLS)), f"bool:{key}"


def m_remove(text: str, rnd: random.Random) -> tuple[str, str]:
    lines = [x for x in _lines(text) if " = " in x or x.endswith(" =")]
    key = rnd.choice(lines).split(" ", 1)[0]
    return _remove_line(text, key), f"remove:{key}"


def m_later_or_unknown(text: str, rnd: random.Random) -> tuple[str, str]:
    key = rnd.choice(LATER_KEYS + UNKNOWN_KEYS)
    value = rnd.choice(["1", "0", "app", "IntervalStyle", "100", "10"])
    return _set_line(text, key, value), f"key:{key}"


def m_syntax(text: str, rnd: random.Random) -> tuple[str, str]:
    lines = _lines(text)
    candidates = [i for i, x in enumerate(lines) if " = " in x]
    i = rnd.choice(candidates)
    key, _, value = lines[i].partition(" = ")
    kind = rnd.randrange(20)
    if kind == 0:
        lines[i] = f'{key} = "{value}"'
    elif kind == 1:
        lines[i] = f"{key} = '{value}'"
    elif kind == 2:
        lines[i] = f"{key} = {value} ; comment"
    elif kind == 3:
        lines[i] = f"{key} = {value} # comment"
    elif kind == 4:
        lines[i] = f"  \t{key}={value}"
    elif kind == 5:
        lines[i] = key.upper() + " = " + value
    elif kind == 6:
        lines[i] = lines[i] + "\r"
    elif kind == 7:
        lines[i] = lines[i] + " \t "
    elif kind == 8:
        lines.insert(i, lines[i])
    elif kind == 9:
        lines.insert(i, "%include " + FOLDER_TOKEN + "/other.ini")
    elif kind == 10:
        lines[0] = "\ufeff" + lines[0]
    elif kind == 11:
        lines.insert(i, rnd.choice(["[pgbouncer]", "[databases]", "[users]"]))
    elif kind == 12:
        lines.insert(
            i,
            rnd.choice(
                [
                    "[ pgbouncer ]",
                    "[PGBOUNCER]",
                    "[other]",
                    "[peers]x",
                    "[pgbouncer] junk",
                    "[]",
                    "[pgbouncer",
                ]
            ),
        )
    elif kind == 13:
        lines[i] = key + " " + value
    elif kind == 14:
        lines[i] = f"{key} = {value} = x"
    elif kind == 15:
        lines.insert(i, rnd.choice(["; comment", "# comment", "   ", "\t", "  ; indented"]))
    elif kind == 16:
        lines[i] = f"{key}\t=\t{value}"
    elif kind == 17:
        lines[i] = f"{key} =   {value}"
    elif kind == 18:
        lines[i] = f"{key} = {value}\x0b"
    else:
        lines[i] = f"{key}ü = {value}"
    return "\n".join(lines), f"syntax:{kind}"


def m_drop_section(text: str, rnd: random.Random) -> tuple[str, str]:
    section = rnd.choice(["databases", "pgbouncer"])
    lines = _lines(text)
    if f"[{section}]" in lines:
        lines.remove(f"[{section}]")
    return "\n".join(lines), f"drop:[{section}]"


def _conn(rnd: random.Random) -> str:
    params = {"host": "10.1.2.3", "port": "5432", "dbname": "app"}
    for _ in range(rnd.randrange(0, 3)):
        key = rnd.choice(list(DB_PARAMS))
        params[key] = rnd.choice(DB_PARAMS[key])
    parts = []
    for k, v in params.items():
        style = rnd.randrange(8)
        if style == 0:
            parts.append(f"{k} = {v}")
        elif style == 1 or " " in v:
            parts.append(f"{k}='{v}'" if style != 2 else f"{k}={v}")
        else:
            parts.append(f"{k}={v}")
    sep = " " if rnd.randrange(6) else rnd.choice(["  ", "\t", ", "])
    return sep.join(parts)


def m_database(text: str, rnd: random.Random) -> tuple[str, str]:
    name = rnd.choice(DB_NAMES)
    return _set_line(text, name, _conn(rnd), section="databases"), "databases"


def m_users(text: str, rnd: random.Random) -> tuple[str, str]:
    return _set_line(text, rnd.choice(USER_NAMES), rnd.choice(USER_VALUES), "users"), "users"


def m_peers(text: str, rnd: random.Random) -> tuple[str, str]:
    peer = rnd.choice(["1", "2", "0", "16384", "a"])
    conn = rnd.choice(["host=127.0.0.1 port=6433", "host=/tmp", "host=h pool_size=2", ""])
    return _set_line(text, peer, conn, "peers"), "peers"


def m_cross(text: str, rnd: random.Random) -> tuple[str, str]:
    """The settings that only make sense together: auth types and files, TLS, paths."""
    kind = rnd.randrange(6)
    f = FOLDER_TOKEN
    if kind == 0:
        text = _set_line(text, "auth_type", rnd.choice(CHOICES["auth_type"][:8]))
        if rnd.randrange(2):
            text = _set_line(text, "auth_hba_file", rnd.choice(_paths("other")))
        if rnd.randrange(3) == 0:
            text = _remove_line(text, "auth_file")
        return text, "cross:auth"
    if kind in (1, 2):
        text = _set_line(text, "client_tls_sslmode", rnd.choice(CHOICES["client_tls_sslmode"][:6]))
        if rnd.randrange(4):
            text = _set_line(
                text,
                "client_tls_key_file",
                rnd.choice([f"{f}/{TLS_DIR}/{KEY_NAME}"] * 3 + _paths("tls")),
            )
        if rnd.randrange(4):
            text = _set_line(
                text,
                "client_tls_cert_file",
                rnd.choice([f"{f}/{TLS_DIR}/{CERT_NAME}"] * 3 + _paths("tls")),
            )
        if rnd.randrange(2):
            text = _set_line(text, "client_tls_ca_file", rnd.choice(_paths("tls")))
        if rnd.randrange(4) == 0:
            text = _set_line(text, "auth_type", "cert")
        return text, "cross:client_tls"
    if kind == 3:
        text = _set_line(text, "server_tls_sslmode", rnd.choice(CHOICES["server_tls_sslmode"][:6]))
        for key in ("server_tls_ca_file", "server_tls_key_file", "server_tls_cert_file"):
            if rnd.randrange(2):
                text = _set_line(text, key, rnd.choice(_paths("tls")))
        return text, "cross:server_tls"
    if kind == 4:
        key = rnd.choice(
            [
                "logfile",
                "pidfile",
                "unix_socket_dir",
                "auth_file",
                "resolv_conf",
                "auth_hba_file",
                "conffile",
            ]
        )
        return _set_line(text, key, rnd.choice(_pool_for(key))), f"cross:path:{key}"
    key = rnd.choice(["user", "unix_socket_group", "listen_addr"])
    return _set_line(text, key, rnd.choice(_pool_for(key))), f"cross:{key}"


def m_unicode(text: str, rnd: random.Random) -> tuple[str, str]:
    key = rnd.choice(
        [
            "application_name_add_host",
            "server_reset_query",
            "job_name",
            "syslog_ident",
            "admin_users",
            "ignore_startup_parameters",
            "max_client_conn",
            "pool_mode",
        ]
    )
    value = rnd.choice(["ünï", "日本", "\u00a0", "x\u200by", "١٢", "😀", "é" * 100])
    return _set_line(text, key, value), f"unicode:{key}"


def _plausible(key: str, rnd: random.Random) -> str:
    """A value a careful leader might write for ``key``: mostly valid, near the edges."""
    kind = _KINDS.get(key)
    if kind == "int":
        return str(
            rnd.choice(
                [
                    0,
                    1,
                    2,
                    7,
                    100,
                    127,
                    128,
                    4096,
                    32767,
                    32768,
                    65535,
                    rnd.randrange(0, 1000),
                    rnd.randrange(0, 2**31),
                    2**31 - 1,
                ]
            )
        )
    if kind == "time":
        whole = rnd.choice(
            [
                "0",
                "1",
                "5",
                "15",
                "600",
                "3600",
                "86400",
                "999999999",
                str(rnd.randrange(0, 10**6)),
            ]
        )
        return whole + rnd.choice(["", "", ".5", ".25", ".000001", ".999999"])
    if kind == "bool":
        return rnd.choice(["0", "1"])
    if key in CHOICES:
        return rnd.choice([c for c in CHOICES[key] if c.islower() and c])
    if key.endswith("_protocols"):
        return rnd.choice(
            [
                "secure",
                "default",
                "legacy",
                "all",
                "tlsv1.2,tlsv1.3",
                "tlsv1.2:tlsv1.3",
                "!tlsv1.0",
                "tlsv1.3",
                "secure,!tlsv1.2",
            ]
        )
    if key.endswith("_ciphers"):
        return rnd.choice(["default", "secure", "fast", "normal", "compat", "legacy"])
    if key == "client_tls_dheparams":
        return rnd.choice(["auto", "none", "legacy"])
    if key == "client_tls_ecdhcurve":
        return rnd.choice(["auto", "none", "prime256v1", "secp384r1", "secp521r1"])
    if key == "listen_addr":
        return rnd.choice(
            [
                "*",
                "127.0.0.1",
                "localhost",
                "0.0.0.0",
                "127.0.0.1,localhost",
                "",
                "127.0.0.1,127.0.0.2",
                "127.255.255.254",
                "*,127.0.0.1",
            ]
        )
    if key == "listen_port":
        return str(rnd.choice([1024, 65535, rnd.randrange(1024, 65536)]))
    if key == "unix_socket_mode":
        return rnd.choice(["0777", "0700", "0770", "0755", "0600", "0000", "07"])
    if key in ("user", "unix_socket_group"):
        return rnd.choice(["postgres", ""])
    return rnd.choice(_pool_for(key))


def m_plausible(text: str, rnd: random.Random) -> tuple[str, str]:
    """Careful changes: the follower should take most of these, so they test what it writes."""
    lines = []
    for _ in range(rnd.randrange(1, 5)):
        key = rnd.choice(KNOWN_1_18)
        text = _set_line(text, key, _plausible(key, rnd))
        lines.append(key)
    return text, "plausible:" + ",".join(lines)


def m_plausible_tls(text: str, rnd: random.Random) -> tuple[str, str]:
    f = FOLDER_TOKEN
    mode = rnd.choice(["allow", "prefer", "require", "verify-ca", "verify-full"])
    text = _set_line(text, "client_tls_sslmode", mode)
    text = _set_line(text, "client_tls_key_file", f"{f}/{TLS_DIR}/{KEY_NAME}")
    text = _set_line(text, "client_tls_cert_file", f"{f}/{TLS_DIR}/{CERT_NAME}")
    if mode.startswith("verify") or rnd.randrange(2):
        text = _set_line(text, "client_tls_ca_file", f"{f}/{TLS_DIR}/{CA_NAME}")
    for key in (
        "client_tls_protocols",
        "client_tls_ciphers",
        "client_tls_dheparams",
        "client_tls_ecdhcurve",
        "server_tls_sslmode",
        "server_tls_protocols",
    ):
        if rnd.randrange(3) == 0:
            text = _set_line(text, key, _plausible(key, rnd))
    if mode == "verify-full" and rnd.randrange(2):
        text = _set_line(text, "auth_type", "cert")
    return text, f"plausible_tls:{mode}"


def m_plausible_entries(text: str, rnd: random.Random) -> tuple[str, str]:
    name = rnd.choice(["app2", "x" * 63, "*", "a.b-c_d", "APP", "9"])
    params = {
        "host": rnd.choice(["10.1.2.3", "localhost", "/tmp", "h1.example,h2.example"]),
        "dbname": rnd.choice(["app", "other db", "ü"]),
    }
    for key in rnd.sample(
        [
            "port",
            "pool_size",
            "reserve_pool",
            "min_pool_size",
            "max_db_connections",
            "pool_mode",
            "user",
            "password",
            "connect_query",
            "application_name",
            "client_encoding",
        ],
        rnd.randrange(0, 4),
    ):
        params[key] = {
            "port": str(rnd.randrange(1, 65536)),
            "pool_mode": "transaction",
            "user": "u",
            "password": "p w'x",
            "connect_query": "SELECT 1",
            "application_name": "app",
            "client_encoding": "UTF8",
        }.get(key, str(rnd.randrange(0, 500)))
    conn = " ".join(
        f"{k}='{v.replace(chr(39), chr(39) * 2)}'" if (" " in v or "'" in v) else f"{k}={v}"
        for k, v in params.items()
    )
    text = _set_line(text, name, conn, section="databases")
    if rnd.randrange(2):
        user = rnd.choice(["alice", "a.b-c", "x" * 63, "B0b"])
        text = _set_line(
            text,
            user,
            rnd.choice(
                [
                    "pool_mode=statement",
                    "max_user_connections=3",
                    "pool_mode=session max_user_connections=0",
                ]
            ),
            "users",
        )
    return text, "plausible_entries"


MUTATIONS = [
    (m_plausible, 14),
    (m_plausible_tls, 4),
    (m_plausible_entries, 5),
    (m_known_value, 6),
    (m_boundary_int, 4),
    (m_time, 2),
    (m_bool, 2),
    (m_remove, 1),
    (m_later_or_unknown, 2),
    (m_syntax, 4),
    (m_drop_section, 1),
    (m_database, 4),
    (m_users, 2),
    (m_peers, 1),
    (m_cross, 6),
    (m_unicode, 1),
]
_OPS = [op for op, _ in MUTATIONS]
_WEIGHTS = [w for _, w in MUTATIONS]


@attrs.frozen
class Case:
    number: int
    text: str
    labels: tuple[str, ...]


def cases(seed: int, n: int) -> Iterator[Case]:
    """``n`` generated configs, the same for the same seed. Case 0 of each base is unmutated."""
    bases = _base_configs()
    rnd = random.Random(seed)
    for number in range(n):
        text = bases[number % len(bases)]
        labels: list[str] = []
        if number >= len(bases):
            for _ in range(rnd.choice((1, 1, 2, 3))):
                op = rnd.choices(_OPS, _WEIGHTS)[0]
                text, label = op(text, rnd)
                labels.append(label)
        yield Case(number, text, tuple(labels))


# ---------------------------------------------------------------------------------------------
# Running a case


class Kind:
    OK = "both run it"
    BOTH_REFUSE = "both refuse"
    STRICTER = "follower stricter (safe)"
    UNSAFE = "UNSAFE: follower writes, pgbouncer refuses"
    UNSAFE_NOT_SERVING = "UNSAFE: follower writes, pgbouncer up but not serving"
    SKIPPED = "skipped (port in use)"


@attrs.frozen
class Result:
    case: Case
    kind: str
    follower: str  # "accepted" or the reason
    pgbouncer: str  # the verdict
    log: str = attrs.field(default="", repr=False)


_TLS_SOURCE: dict[str, str] = {}


def _tls_material(parent: str) -> str:
    """A key, a self-signed certificate and a CA file, made once per process."""
    if "dir" not in _TLS_SOURCE:
        folder = os.path.join(parent, f"pgb-tls-{os.getpid()}")
        os.makedirs(folder, exist_ok=True)
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=pgbouncer",
                "-keyout",
                os.path.join(folder, KEY_NAME),
                "-out",
                os.path.join(folder, CERT_NAME),
            ],
            check=True,
            capture_output=True,
        )
        shutil.copy(os.path.join(folder, CERT_NAME), os.path.join(folder, CA_NAME))
        _TLS_SOURCE["dir"] = folder
    return _TLS_SOURCE["dir"]


def _prepare_folder(parent: str) -> str:
    folder = make_folder(parent)
    with open(os.path.join(folder, "userlist.txt"), "w", encoding="utf-8") as file:
        file.write(f'"{PROBE_USER}" "md5c1d0a3e5b5e8b9e4e2b0a1a1a1a1a1a1"\n')
    tls = os.path.join(folder, TLS_DIR)
    shutil.copytree(_tls_material(parent), tls)
    with open(os.path.join(folder, "hba.conf"), "w", encoding="utf-8") as file:
        file.write("host all all 0.0.0.0/0 md5\n")
    if os.geteuid() == 0:
        for root, dirs, files in os.walk(folder):
            for name in dirs + files:
                shutil.chown(os.path.join(root, name), "postgres", "postgres")
    return folder


def _facts(folder: str, version: PgbVersion) -> WorkloadFacts:
    """What a unit with these files in its folder knows about them."""
    tls = os.path.join(folder, TLS_DIR)
    files = {
        os.path.join(tls, KEY_NAME): KEY,
        os.path.join(tls, CERT_NAME): CERT,
        os.path.join(tls, CA_NAME): CA,
        os.path.join(folder, "hba.conf"): HBA,
    }
    return WorkloadFacts(version=version, base_dir=folder, files=files)


def _port_is_free(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def run_case(case: Case, parent: str, version: PgbVersion, timeout: float) -> Result:
    folder = _prepare_folder(parent)
    try:
        port = free_port()
        text = case.text.replace(FOLDER_TOKEN, folder)
        text = re.sub(
            r"(?m)^listen_port = " + BASE_PORT + "$", f"listen_port = {port}", text
        ).replace("listen_port = 7000\n", f"listen_port = {port}\n")
        facts = _facts(folder, version)
        try:
            checked = check_published(text, facts)
        except InvalidInput as err:
            return _run_refused(case, folder, text, str(err), timeout)
        copy_cfg, copy_text = checked.process_copies[0]
        listen_port = int(copy_cfg.setting("listen_port") or "6432")
        if listen_port != port and not _port_is_free(listen_port):
            return Result(case, Kind.SKIPPED, "accepted", "not run")
        listen_addr = copy_cfg.setting("listen_addr") or ""
        sock_dir = copy_cfg.setting("unix_socket_dir")
        if sock_dir is None:
            sock_dir = "/tmp"
        first = listen_addr.split(",")[0]
        expect = Expectation(
            user=PROBE_USER,
            tcp_port=listen_port if listen_addr else None,
            tcp_host=first if first.startswith("127.") else "127.0.0.1",
            unix_socket=f"{sock_dir}/.s.PGSQL.{listen_port}"
            if sock_dir and not sock_dir.startswith("@")
            else None,
        )
        instance = os.path.join(folder, "instance_0")
        os.makedirs(instance, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(instance, "postgres", "postgres")
        path = os.path.join(instance, "pgbouncer.ini")
        with open(path, "w", encoding="utf-8") as file:
            file.write(copy_text)
        outcome = probe(path, expect, timeout)
        if outcome.verdict is Verdict.NOT_SERVING:
            # A loaded machine can be slow to start it (TLS keys, 2 shared cores): only a
            # second, much longer wait makes "not serving" a finding.
            outcome = probe(path, expect, timeout * 8)
        kind = {
            Verdict.SERVING: Kind.OK,
            Verdict.REFUSED: Kind.UNSAFE,
            Verdict.NOT_SERVING: Kind.UNSAFE_NOT_SERVING,
        }[outcome.verdict]
        return Result(case, kind, "accepted", outcome.verdict.value, outcome.log)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _run_refused(case: Case, folder: str, text: str, reason: str, timeout: float) -> Result:
    path = os.path.join(folder, "pgbouncer.ini")
    with open(path, "w", encoding="utf-8", newline="") as file:
        file.write(text)
    found = re.search(r"(?m)^listen_port = ([0-9]+)$", text)
    port = int(found.group(1)) if found else 6432
    has_addr = re.search(r"(?m)^listen_addr = \S", text) is not None
    expect = Expectation(tcp_port=port if has_addr else None, unix_socket=None)
    # Without a belief about where it serves, "still running after the timeout" counts as run.
    outcome = probe(path, expect, timeout)
    kind = Kind.BOTH_REFUSE if outcome.verdict is Verdict.REFUSED else Kind.STRICTER
    return Result(case, kind, reason, outcome.verdict.value, outcome.log)


def reason_group(reason: str) -> str:
    """The follower's reason without line numbers and values: one group per kind of refusal."""
    reason = re.sub(r"/\S*?pgb-probe-[^/ ]+(?=[/ )]|$)", "<folder>", reason)
    reason = re.sub(r"^line \d+: ", "", reason)
    reason = re.sub(r"'[^']*'|\"[^\"]*\"", "…", reason)
    reason = re.sub(r"^\[(\w+)\] [^:]+: (?=[^:]*$)", r"[\1] …: ", reason)
    reason = re.sub(r"^\S+ (is not|holds)", r"… \1", reason)
    reason = re.sub(r"(\[\w+\] [\w.*-]+: )\S+ (is not)", r"\1… \2", reason)
    reason = re.sub(r"\b\d+\b", "N", reason)
    return reason[:110]


def run_campaign(
    seed: int, n: int, workers: int = 2, timeout: float = 1.0, parent: str = "/tmp"
) -> list[Result]:
    """Every case of ``cases(seed, n)`` through both; results in case order."""
    version = parse_version_output(pgbouncer_version_text())
    work = make_folder(parent)
    try:
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            futures = [
                pool.submit(run_case, case, work, version, timeout) for case in cases(seed, n)
            ]
            return [f.result() for f in futures]
    finally:
        shutil.rmtree(work, ignore_errors=True)
        _TLS_SOURCE.clear()


def summary(results: list[Result]) -> tuple[Counter[str], Counter[str]]:
    """Counts per kind, and the stricter cases per reason group."""
    kinds = Counter(r.kind for r in results)
    stricter = Counter(reason_group(r.follower) for r in results if r.kind == Kind.STRICTER)
    return kinds, stricter
