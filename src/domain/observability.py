"""Observability as values: which exporters a unit runs, how they log in, what COS scrapes.

The model
---------
A unit runs ``processes`` pgbouncer processes sharing ``listen_port`` through ``so_reuseport``.
A scrape through that shared port reaches whichever process the kernel hands the connection
to, so one exporter there describes one process in ``processes``. Here every process ``i`` gets
its own exporter (``ExporterSpec``): the Go ``pgbouncer_exporter`` the workload image ships,
run as a Pebble service beside ``pgbouncer_<i>``, which

- connects to *its* process only, through the unix socket pgbouncer opens in that process's
  own folder (``instance_<i>/.s.PGSQL.<listen_port>``, see ``pgb_config.per_process_config``);
- listens for Prometheus on its own port, ``METRICS_BASE_PORT + i``;
- logs in to pgbouncer's admin console (database ``pgbouncer``) as ``STATS_USER``, a user
  listed in pgbouncer's ``stats_users`` (``SHOW`` commands only: no ``PAUSE``, ``RELOAD``,
  ``KILL`` or ``SHUTDOWN``) and in the auth file with a password the leader generates and
  keeps in the peer secret store.

The password never appears on a command line or in the Pebble plan: the connection string
(``ExporterSpec.connection_string``) names the socket, the port, the database and the user
but no password, and the exporter's PostgreSQL driver (lib/pq, as libpq) takes the password
from the file ``PGPASSFILE`` names, a 0600 ``.pgpass`` file (``pgpass_file``) owned by the
workload user. The plan's environment holds only that file's path.

``scrape_jobs`` turns what the leader knows about every unit (its name, its stable DNS name
and how many processes it runs) into the ``prometheus_scrape`` jobs: one target per process
of every unit, each labelled with the unit (``juju_unit``) and the process (``pgbouncer_process``),
so every number on the dashboard and in the alerts can be told apart or summed.

What one hook does about metrics is planned with everything else
(``domain.metrics_service``: the leader's stats user in its files, and each unit's
exporters). Nothing here does I/O; the Pebble layer and the relation adapters carry these
values out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import attrs

from domain import peer_data
from domain.auth_file import AuthEntry, SecretKind, parse_auth_file, render_auth_file
from domain.errors import InvalidInput
from domain.peer_data import content_digest
from domain.pgb_config import PGB_DIR, PgbConfig, per_process_dir

STATS_USER = "pgbouncer_stats"
# The admin console pgbouncer serves on every listener.
ADMIN_DATABASE = "pgbouncer"
# The Go pgbouncer_exporter's default port; process i is scraped on METRICS_BASE_PORT + i.
METRICS_BASE_PORT = 9127
DEFAULT_LISTEN_PORT = "6432"
METRICS_PATH = "/metrics"
EXPORTER_SERVICE_PREFIX = "pgbouncer_exporter_"
PASSFILE_PATH = f"{PGB_DIR}/exporter.pgpass"
SCRAPE_JOB_NAME = "pgbouncer"
UNIT_LABEL = "juju_unit"
PROCESS_LABEL = "pgbouncer_process"
# Generated passwords are letters and digits: nothing to escape in .pgpass or the auth file,
# and never taken for a SCRAM secret by pgbouncer (an md5-shaped one is refused below).
_PASSWORD = re.compile(r"[A-Za-z0-9]{24,128}")
_UNIT_NAME = re.compile(r"[a-z][a-z0-9-]*/[0-9]+")
_HOSTNAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.\-]{0,251}[A-Za-z0-9])?")


class InvalidStatsPassword(InvalidInput):
    """The stats user's password is not one the leader generates (the message never shows it)."""


def _positive(_instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput(f"{attribute.name}: {value!r} is not an integer >= 1")


def _port(_instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise InvalidInput(f"{attribute.name}: {value!r} is not a port (1-65535)")


def _index(_instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInput(f"{attribute.name}: {value!r} is not an integer >= 0")


def check_stats_password(password: str) -> None:
    """Raise ``InvalidStatsPassword`` unless ``password`` has the generated shape."""
    if not isinstance(password, str) or _PASSWORD.fullmatch(password) is None:
        raise InvalidStatsPassword(
            "the stats password must be 24 to 128 letters and digits (as the leader generates)"
        )
    if AuthEntry(STATS_USER, password).kind is not SecretKind.PLAIN:
        # pgbouncer would take it for an md5 hash and let nobody in with it.
        raise InvalidStatsPassword("the stats password looks like an md5 secret")


@attrs.frozen
class ExporterSpec:
    """The exporter of pgbouncer process ``index``: where it reads, where it is scraped."""

    index: int = attrs.field(validator=_index)
    pgbouncer_port: int = attrs.field(validator=_port)
    metrics_port: int = attrs.field(validator=_port)
    # The container's pgbouncer folder (another one only for real processes in tests).
    base_dir: str = PGB_DIR

    @property
    def service_name(self) -> str:
        return f"{EXPORTER_SERVICE_PREFIX}{self.index}"

    @property
    def socket_dir(self) -> str:
        return per_process_dir(self.index, self.base_dir)

    @property
    def connection_string(self) -> str:
        """A libpq key=value string for this process's admin console: no password in it."""
        return (
            f"host={self.socket_dir} port={self.pgbouncer_port} dbname={ADMIN_DATABASE} "
            f"user={STATS_USER} sslmode=disable"
        )

    @property
    def listen_address(self) -> str:
        return f":{self.metrics_port}"


def exporters(
    processes: int, listen_port: int, base_dir: str = PGB_DIR
) -> tuple[ExporterSpec, ...]:
    """One exporter per pgbouncer process, each on its own metrics port."""
    if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
        raise InvalidInput(f"processes: {processes!r} is not an integer >= 1")
    if METRICS_BASE_PORT <= listen_port < METRICS_BASE_PORT + processes:
        raise InvalidInput(
            f"listen_port {listen_port} collides with the metrics ports "
            f"{METRICS_BASE_PORT}-{METRICS_BASE_PORT + processes - 1}"
        )
    return tuple(
        ExporterSpec(i, listen_port, METRICS_BASE_PORT + i, base_dir) for i in range(processes)
    )


def pgpass_file(password: str) -> str:
    """The .pgpass line the exporters' driver reads: the stats user on the admin console.

    Host and port are ``*``: each exporter names its own socket, and the file serves them all.
    """
    check_stats_password(password)
    return f"*:*:{ADMIN_DATABASE}:{STATS_USER}:{password}\n"


def stats_auth_entry(password: str) -> AuthEntry:
    """The stats user's auth file line, with the password itself.

    A plain password works with every ``auth_type`` pgbouncer offers (md5 and SCRAM
    included), where an md5 hash would lock the exporters out of a SCRAM setup. The auth file
    is as secret as the password: it lives in the peer secret store and in 0600 files.
    """
    check_stats_password(password)
    return AuthEntry(STATS_USER, password)


def with_stats_user(auth_text: str, password: str) -> str:
    """The auth file with the stats user's line added or replaced, every other line kept."""
    auth = parse_auth_file(auth_text)
    return render_auth_file(auth.without_user(STATS_USER).with_entry(stats_auth_entry(password)))


def has_stats_user(auth_text: str | None, password: str | None) -> bool:
    """Whether the auth file lets the stats user in with ``password``."""
    if auth_text is None or password is None:
        return False
    try:
        entry = parse_auth_file(auth_text).get(STATS_USER)
    except InvalidInput:
        return False
    return entry is not None and entry.secret == password


def with_stats_users(cfg: PgbConfig) -> PgbConfig:
    """``cfg`` with ``STATS_USER`` in ``stats_users``, any user already there kept."""
    current = cfg.setting("stats_users")
    users = [user.strip() for user in (current or "").split(",") if user.strip()]
    if STATS_USER in users:
        return cfg
    return cfg.with_settings({"stats_users": ",".join([*users, STATS_USER])})


def _unit_name(_instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if _UNIT_NAME.fullmatch(value) is None:
        raise InvalidInput(f"{attribute.name}: {value!r} is not a Juju unit name")


def _hostname(_instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if _HOSTNAME.fullmatch(value) is None:
        raise InvalidInput(f"{attribute.name}: {value!r} is not a DNS hostname")


@attrs.frozen
class UnitTargets:
    """What the leader knows of one unit: its name, its DNS name, its process count."""

    unit: str = attrs.field(validator=_unit_name)
    hostname: str = attrs.field(validator=_hostname)
    processes: int = attrs.field(validator=_positive)


def _unit_number(unit: UnitTargets) -> tuple[str, int]:
    app, number = unit.unit.split("/")
    return app, int(number)


def scrape_jobs(units: Iterable[UnitTargets]) -> list[dict[str, object]]:
    """The ``prometheus_scrape`` jobs: every process of every unit, labelled.

    One job; one static config per target, so each carries its own ``juju_unit`` and
    ``pgbouncer_process`` labels. Units are listed in unit-number order, processes in index
    order, so the same units always give the same jobs (no needless relation writes).
    """
    static_configs: list[Mapping[str, object]] = []
    for unit in sorted(units, key=_unit_number):
        for index in range(unit.processes):
            static_configs.append(
                {
                    "targets": [f"{unit.hostname}:{METRICS_BASE_PORT + index}"],
                    "labels": {UNIT_LABEL: unit.unit, PROCESS_LABEL: str(index)},
                }
            )
    if not static_configs:
        return []
    return [
        {
            "job_name": SCRAPE_JOB_NAME,
            "metrics_path": METRICS_PATH,
            "static_configs": static_configs,
        }
    ]


# --- what one hook does about metrics ---------------------------------------------------------

# The peer secret store's key for the stats password (``stats-password`` in a Juju secret).
STATS_PASSWORD_KEY = peer_data.STATS_PASSWORD_KEY
# Each unit's databag: how many pgbouncer processes (so exporters) it runs. An addition an
# older revision ignores.
PROCESSES_KEY = "pgbouncer_processes"


@attrs.frozen
class ExporterState:
    """An exporter service as Pebble runs it: whether it runs, whether it starts with the
    container (``startup: enabled``)."""

    index: int = attrs.field(validator=_index)
    running: bool
    enabled: bool


@attrs.frozen
class MetricsView:
    """What one unit sees of its metrics in one hook (a part of ``hook_view.HookView``).

    Read in the hook's one gathering, from what it reads anyway: the relations, the peer
    secret store, the unit databag, the services Pebble reported for the processes, and the
    unit's memory; nothing more is asked of Pebble.
    """

    # A Prometheus is related (``metrics-endpoint``): only then do the exporters run.
    related: bool = False
    # The stats user's password as the peer secret store holds it (None: not made yet).
    stored_password: str | None = attrs.field(default=None, repr=False)
    # Leader, related, and no stored password: one the gatherer drew (the domain does no
    # I/O, randomness included); letters and digits, the shape ``check_stats_password`` wants.
    fresh_password: str | None = attrs.field(default=None, repr=False)
    # The exporter services in the plan (any index, so those beyond the count too).
    exporters: tuple[ExporterState, ...] = ()
    # Whether ``exporters`` was read in this hook: a quiet follower's hook reads nothing from
    # Pebble and trusts what it remembers setting up (``set_up``).
    exporters_read: bool = True
    # What this unit's databag says of its process count.
    published_processes: str | None = None
    # The digest of the .pgpass file and specs the exporters were last set up with (memory).
    set_up: str = ""


def exporters_digest(pgpass: str, specs: Iterable[ExporterSpec]) -> str:
    """A one-way digest of what the exporters run with (the password only through sha256)."""
    described = [pgpass, *(f"{s.service_name} {s.connection_string} {s.listen_address}"
                           for s in specs)]  # fmt: skip
    return content_digest("\n".join(described))
