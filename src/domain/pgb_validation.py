"""What a unit lets its pgbouncer run: a published config checked against this unit's workload.

The model
---------
``parse_pgb_ini`` (``domain.pgb_config``) answers "is this a pgbouncer.ini pgbouncer reads, and
means what we think?": its grammar, value types and ranges. Whether pgbouncer *runs* on it, and
whether the charm allows it, also depends on facts of the unit's container, which the adapters
learn and pass in as plain values (``WorkloadFacts``):

- ``version``: the pgbouncer the image ships (``pgbouncer --version``, learned once per start of
  the container). Settings newer than it are refused, naming them and the version;
- ``base_dir``: the folder the contract gives pgbouncer (``/var/lib/postgresql/pgbouncer``);
- ``user``: the workload user (``postgres``), whose group is also ``postgres`` in the image;
- ``files``: the files the unit put in its folder beyond the two the contract names, each with
  its kind (TLS key, certificate, CA bundle, HBA file, resolv.conf). pgbouncer refuses to start
  when TLS names a file it cannot load as what it expects; a file the unit does not know about
  counts as missing, the safe answer.

``check_runnable(cfg, facts)`` applies, on top of the grammar:

- **version**: nothing newer than ``facts.version`` (``domain.pgb_version``);
- **the folder** (the contract): every path pgbouncer opens or creates (``logfile``,
  ``pidfile``, ``unix_socket_dir``, ``auth_file``, ``auth_hba_file``, ``resolv_conf``, TLS key,
  certificate and CA files) is a plain absolute path inside ``base_dir``; ``auth_file`` is the
  charm's own; files pgbouncer creates go in ``base_dir`` or a per-process ``instance_<n>``
  folder (folders that exist); files it only reads must be among ``facts.files``;
- **the user**: ``user`` is the workload user (or unset: Pebble already runs pgbouncer as that
  user), ``unix_socket_group`` is unset or the workload user's group;
- **auth**: ``md5``, ``scram-sha-256``, ``plain`` and ``hba`` check passwords from the auth file,
  so they need ``auth_file``; ``hba`` also needs ``auth_hba_file``; ``cert`` needs
  ``client_tls_sslmode = verify-full`` (pgbouncer refuses to start otherwise). ``trust``,
  ``any`` and ``pam`` are refused: they let clients in without the passwords the charm hands
  out (pgbouncer accepts them; the charm, a gatekeeper on a shared PostgreSQL, does not);
- **TLS**: a ``client_tls_sslmode`` other than ``disable`` needs a key and a certificate file
  (pgbouncer refuses to start without them);
- **serving**: pgbouncer must listen somewhere: a ``listen_addr`` or a unix socket.

``check_published(text, facts)`` is what a follower runs before writing the leader's
``cfg_file``: parse, check, and derive the per-process copies (``per_process_config``), each of
which passes the same check, since the copies are what pgbouncer actually runs.
"""

import re
from collections.abc import Mapping

import attrs

from domain.errors import InvalidPgbConfig
from domain.pgb_config import (
    PGB_DIR,
    PROCESS_LOGFILE,
    PgbConfig,
    parse_pgb_ini,
    per_process_config,
    render_pgb_ini,
)
from domain.pgb_version import OLDEST_SUPPORTED, PgbVersion, too_new

WORKLOAD_USER = "postgres"
AUTH_NAME = "userlist.txt"

# Paths pgbouncer creates (its folder must exist), and paths it only reads, with the kind of
# file each must be (pgbouncer refuses to start on a key file that holds a certificate).
CREATED_PATHS = ("logfile", "pidfile")
KEY, CERT, CA, HBA, RESOLV_CONF = (
    "TLS key",
    "TLS certificate",
    "CA bundle",
    "HBA file",
    "resolv.conf",
)
READ_PATHS = {
    "auth_hba_file": HBA,
    "resolv_conf": RESOLV_CONF,
    "client_tls_key_file": KEY,
    "client_tls_cert_file": CERT,
    "client_tls_ca_file": CA,
    "server_tls_key_file": KEY,
    "server_tls_cert_file": CERT,
    "server_tls_ca_file": CA,
}
PASSWORD_AUTH_TYPES = ("md5", "scram-sha-256", "plain", "hba")
REFUSED_AUTH_TYPES = ("trust", "any", "pam")
# A unix socket path is at most 107 bytes (sun_path) and pgbouncer appends "/.s.PGSQL.<port>".
_MAX_SOCKET_DIR = 107 - len("/.s.PGSQL.65535")
_PLAIN_PATH = r"(?:/[A-Za-z0-9_][A-Za-z0-9_.-]*)+"


def _as_dict(value: Mapping[str, str]) -> dict[str, str]:
    return dict(value)


@attrs.frozen
class WorkloadFacts:
    """What the unit knows about its pgbouncer container, as plain values."""

    version: PgbVersion = OLDEST_SUPPORTED
    base_dir: str = PGB_DIR
    user: str = WORKLOAD_USER
    # path -> kind (KEY, CERT, CA, HBA, RESOLV_CONF) of the files the unit put in its folder.
    files: Mapping[str, str] = attrs.field(factory=dict, converter=_as_dict, hash=False)
    processes: int = 1


@attrs.frozen
class CheckedConfig:
    """A published config this unit can run: the parsed main file and its per-process copies."""

    cfg: PgbConfig
    process_copies: tuple[tuple[PgbConfig, str], ...]


def _fail(key: str, reason: str) -> InvalidPgbConfig:
    return InvalidPgbConfig(f"[pgbouncer] {key}: {reason}")


def _instance_dir(path: str, base_dir: str) -> bool:
    rest = path[len(base_dir) + 1 :] if path.startswith(base_dir + "/") else None
    return rest is not None and re.fullmatch(r"instance_(?:0|[1-9][0-9]{0,3})", rest) is not None


def _check_path(key: str, path: str, facts: WorkloadFacts) -> None:
    base = facts.base_dir
    if not re.fullmatch(_PLAIN_PATH, path) or "/../" in path + "/" or "/./" in path + "/":
        raise _fail(key, f"{path[:60]!r} is not a plain absolute path (no quotes, ~, . or ..)")
    if not path.startswith(base + "/"):
        raise _fail(key, f"must be inside {base} (the contract keeps pgbouncer in its folder)")


def _check_created(key: str, path: str, facts: WorkloadFacts) -> None:
    _check_path(key, path, facts)
    folder = path.rsplit("/", 1)[0]
    if folder != facts.base_dir and not _instance_dir(folder, facts.base_dir):
        raise _fail(key, f"must be in {facts.base_dir} or one of its instance_<n> folders")


def _check_read(key: str, path: str, facts: WorkloadFacts) -> None:
    _check_path(key, path, facts)
    kind = facts.files.get(path)
    if kind is None:
        raise _fail(key, "names a file this unit does not have")
    if kind != READ_PATHS[key]:
        raise _fail(key, f"needs a {READ_PATHS[key]}, this unit's file is a {kind}")


def check_runnable(cfg: PgbConfig, facts: WorkloadFacts) -> None:
    """``InvalidPgbConfig`` naming the first reason this unit must not run ``cfg``."""
    newer = too_new(cfg, facts.version)
    if newer:
        names = ", ".join(name for name, _ in newer)
        needed = max(version for _, version in newer)
        raise InvalidPgbConfig(
            f"{names}: needs pgbouncer {needed}, this unit runs {facts.version}"
        )
    setting = cfg.setting

    user = setting("user")
    if user and user != facts.user:
        raise _fail("user", f"must be the workload user {facts.user} (or unset)")
    group = setting("unix_socket_group")
    if group and group != facts.user:
        raise _fail("unix_socket_group", f"must be the workload user's group {facts.user}")

    for key in CREATED_PATHS:
        if key == "logfile" and setting(key) == PROCESS_LOGFILE:
            continue  # the per-process copies log to standard error, which Pebble keeps
        if value := setting(key):
            _check_created(key, value, facts)
    for key in READ_PATHS:
        if value := setting(key):
            _check_read(key, value, facts)
    auth_file = setting("auth_file")
    if auth_file:
        own = f"{facts.base_dir}/{AUTH_NAME}"
        if auth_file != own:
            raise _fail("auth_file", f"must be the charm's auth file {own}")
    # Unset, pgbouncer's default is /tmp: the per-process copies, which pgbouncer runs, always
    # set their own folder, so the main file may leave it out.
    socket_dir = setting("unix_socket_dir")
    if socket_dir:
        if socket_dir != facts.base_dir and not _instance_dir(socket_dir, facts.base_dir):
            _check_path("unix_socket_dir", socket_dir, facts)
            raise _fail(
                "unix_socket_dir", f"must be {facts.base_dir} or one of its instance_<n> folders"
            )
        if len(socket_dir.encode()) > _MAX_SOCKET_DIR:
            raise _fail("unix_socket_dir", f"longer than {_MAX_SOCKET_DIR} bytes: no socket fits")
    elif socket_dir == "" and not setting("listen_addr"):
        raise _fail("listen_addr", "pgbouncer would listen nowhere: no address and no socket")

    auth_type = setting("auth_type") or "md5"
    if auth_type in REFUSED_AUTH_TYPES:
        raise _fail(
            "auth_type", f"{auth_type} lets clients in without the passwords the charm hands out"
        )
    if auth_type in PASSWORD_AUTH_TYPES and not auth_file:
        raise _fail("auth_file", f"auth_type {auth_type} checks passwords from it: required")
    if auth_type == "hba" and not setting("auth_hba_file"):
        raise _fail("auth_hba_file", "auth_type hba reads its rules from it: required")

    client_tls = setting("client_tls_sslmode") or "disable"
    if auth_type == "cert" and client_tls != "verify-full":
        raise _fail("auth_type", "cert needs client_tls_sslmode = verify-full")
    if client_tls != "disable":
        needed = ["client_tls_key_file", "client_tls_cert_file"]
        if client_tls.startswith("verify-"):
            needed.append("client_tls_ca_file")  # to verify client certificates against
        for key in needed:
            if not setting(key):
                raise _fail(key, f"client_tls_sslmode {client_tls} needs it")


def check_published(text: str, facts: WorkloadFacts = WorkloadFacts()) -> CheckedConfig:
    """The leader's ``cfg_file`` as this unit would run it; ``InvalidPgbConfig`` says why not.

    The main file and every per-process copy pass ``check_runnable``: the copies are what the
    pgbouncer processes read.
    """
    cfg = parse_pgb_ini(text)
    check_runnable(cfg, facts)
    copies = []
    for index in range(facts.processes):
        copy = per_process_config(cfg, index, facts.base_dir)
        try:
            check_runnable(copy, facts)
        except InvalidPgbConfig as err:
            raise InvalidPgbConfig(f"the copy for process {index}: {err}") from None
        copies.append((copy, render_pgb_ini(copy)))
    return CheckedConfig(cfg, tuple(copies))
