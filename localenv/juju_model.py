"""MultiUnitModel: several units of the real charm, wired to each other as Juju wires them.

Juju cannot run here, so each unit is the real charm class run by ``ops.testing`` (one
``Context`` and one ``State`` per unit), and this module plays the Juju controller between
them: it keeps the shared truth (the ``pgb-peers`` databags, the application's secrets, the
config, who leads), builds each unit's ``State`` from it before a hook, reads the output
``State`` after the hook, and turns every difference into the events Juju would send.

The charm's workload is its only swapped part: ``LocalPgBouncerCharm.make_workload()`` returns
the unit's own workload object from a registry the model owns, so the object outlives hook
runs (it tracks processes). With ``real=True`` it is ``LocalWorkload`` (real pgbouncer
processes in a folder per unit); otherwise a ``FakeWorkload`` (files in memory).

Juju semantics, as modelled
---------------------------
- **Application databag.** One dict, every unit's ``local_app_data``. Only the leader may write
  it (ops enforces that inside the hook). When a hook changes it, every other unit in the
  relation gets ``pgb-peers-relation-changed``. Juju runs that hook with ``JUJU_REMOTE_APP`` and
  no remote unit; ``ops.testing`` insists on a remote unit for relation-changed, so the event
  names the unit that wrote the data. It is kept apart from unit-data changes (kind
  ``app_changed``) and coalesces only with another pending app change.
- **Unit databags.** A unit's ``local_unit_data`` is what the others see in ``peers_data[n]``,
  once they have been told of it (relation-joined). A change produces relation-changed, with
  ``remote_unit`` = the writer, on every unit that knows the writer.
- **Scope.** A unit enters the relation when its relation-created hook has run; then it and
  every unit already in scope get relation-joined about each other, each followed by
  relation-changed (as Juju always does), and a unit entering scope while the application
  databag holds data gets an ``app_changed``. ``peers_data`` holds the units a unit has been
  told of: joined adds, departed removes.
- **Secrets.** An application-owned secret is readable by every unit of the application and
  managed by the leader only (ops.testing enforces that). The model keeps each secret's latest
  content and label, and each unit's tracked content: a unit's view has ``latest_content`` (what
  ``peek``/``refresh`` see) and its own ``tracked_content``. Juju sends no secret-changed to the
  owning application's units, so the model sends none either; the charm wakes its followers
  through the application databag.
- **Deferred events.** Each unit's output ``State.deferred`` goes into its next ``State``; ops
  re-emits them before the next event. When nothing is pending but some units still hold
  deferred events, ``settle`` runs update-status on them (Juju's periodic hook) a few rounds.
- **Delivery.** A queue of pending ``(unit, event)`` pairs. ``settle(rng)`` picks the next one
  at random among those Juju could run next: a unit's relation-created comes before any other
  of its hooks, and the hooks about one remote unit (joined, changed, departed) keep their
  order; everything else interleaves freely, across and within units. Duplicates coalesce:
  relation-changed for the same unit and remote, and config-changed, update-status,
  pebble-ready and leader-elected per unit. A pending leader-elected on a unit that lost the
  lead is dropped (Juju would not run it). Hooks see the model as it is when they run
  (config, leadership, databags), as in Juju.
- **Lifecycle.** ``add_unit`` queues relation-created, config-changed and pebble-ready on the
  new unit; ``remove_unit`` stops its workload and sends relation-departed (with
  ``departing_unit``) to the units that knew it; its own dying hooks are not run.
  ``elect`` moves the lead and queues leader-elected on the new leader. ``reschedule`` wipes
  a unit's container (a new pod) and queues pebble-ready.

**Refresh** (``juju refresh``). ``restore(...)`` loads a running model as a revision left it
(databags, secrets, files in the containers, pgbouncer running). ``refresh(n, runner)``
replaces unit ``n``'s pod: its container starts empty, and upgrade-charm, config-changed and
pebble-ready are queued. From then on it runs the charm of ``runner`` (a ``RevisionRunner``:
another revision in its own process) or, with None, this tree's charm; a unit can also start
on another revision (``set_revision``), which is how a model of mixed revisions is built.

Not modelled: install, start, stop and remove, leader-settings-changed and the secret hooks
(the charm observes none of them, and Juju sends no secret-changed for the application's own
secret), the dying unit's own hooks, and upgrade-charm outside ``refresh``. Pebble answers
from a unit's first hook (its container is reachable unless ``set_reachable`` says
otherwise); pebble-ready still arrives as a hook of its own, at any point after
relation-created.

Relations with other applications, two ways:

- **Real** (``backend=False``, then ``relate_backend(cluster)`` and ``relate_client(app,
  database)``): the ``backend-database`` relation to a real ``PostgresCluster`` (the provider's
  credentials in a secret it owns and granted to this application) and ``database``
  relations from client applications. Every unit gets relation-created, then relation-joined
  and relation-changed about the remote unit (``<app>/0``); the charm's own handlers run:
  the leader installs ``auth_query`` on the cluster, serves the client's request (role,
  database, pgbouncer.ini entries) and, once every unit acknowledged, hands the credentials
  in a secret of its own (``client_credentials`` reads them). What the units write in their
  side of such a relation goes to the remote application, which the model does not run: it
  sends no hook back. A unit added later enters the relations too. Not modelled: the remote
  side changing its data, relation-departed and -broken of these relations.
- **Stand-in** (``backend=True``, the default): the relation is present from the start with
  remote data ``{"endpoints": "127.0.0.1:<port>", "secret-user": "secret:x"}``, so the charm
  sees that the backend delivered credentials, but no backend-database hook is sent;
  ``setup_backend(auth)`` stands in for the outcome of the setup: the auth file is written
  into the leader's container through its workload, and update-status is queued on the
  leader, whose peer logic then stores it in the secret store and publishes it.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import pathlib
import random
import shutil
import tempfile
import weakref
from collections.abc import Mapping
from types import TracebackType
from typing import Any, ClassVar

import ops
import yaml
from ops import testing

from adapters.juju import converters
from adapters.juju.hostname import unit_hostname
from adapters.juju.secret_store import SECRET_ID_KEY
from charm import PgBouncerK8sCharm
from domain.peer_data import (
    ACK_WANTED_KEY,
    AUTH_FILE_KEY,
    CFG_FILE_KEY,
    LEADER_HOSTNAME_KEY,
    UnitPeerData,
    content_digest,
)
from domain.ports import WorkloadPort
from domain.status import Severity
from domain.sync_status import sync_summary
from localenv.fake_workload import FakeWorkload
from localenv.local_workload import LocalWorkload
from localenv.postgres_cluster import PostgresCluster
from localenv.revision_runner import RevisionError, RevisionRunner
from localenv.tls_provider import CertificateAuthority, requested_csrs

APP = "pgbouncer-k8s"
PEER = "pgb-peers"
BACKEND = "backend-database"
CONTAINER = "pgbouncer"
PEER_RELATION_ID = 2
BACKEND_RELATION_ID = 3
BACKEND_APP = "postgresql-k8s"
MODEL = testing.Model(name="pgb-local", uuid="2b9a3ec4-5f1e-4c55-9d3c-6a7b8c9d0e1f")
MAX_UNITS = 50
# The secret content key of the auth file in the Juju secret store (see secret_store).
SECRET_AUTH_KEY = AUTH_FILE_KEY.replace("_", "-")

ROOT = pathlib.Path(__file__).resolve().parents[1]


def charm_metadata() -> tuple[dict[str, Any], dict[str, Any]]:
    """The charm's metadata and config options, from charmcraft.yaml."""
    charmcraft = yaml.safe_load((ROOT / "charmcraft.yaml").read_text())
    keys = ("name", "containers", "resources", "peers", "requires", "provides", "assumes")
    return {key: charmcraft[key] for key in keys if key in charmcraft}, charmcraft["config"]


META, CONFIG = charm_metadata()


class LocalPgBouncerCharm(PgBouncerK8sCharm):
    """The real charm with one seam changed: the workload comes from the model's registry."""

    workloads: ClassVar[Mapping[str, WorkloadPort]] = {}

    def make_workload(self) -> WorkloadPort:
        try:
            return self.workloads[self.unit.name]
        except KeyError:
            raise RuntimeError(f"no workload registered for {self.unit.name}") from None


# The kinds of pending events. ``app_changed`` is relation-changed for an app-databag change.
CREATED = "relation_created"
JOINED = "relation_joined"
CHANGED = "relation_changed"
APP_CHANGED = "app_changed"
DEPARTED = "relation_departed"
LEADER_ELECTED = "leader_elected"
CONFIG_CHANGED = "config_changed"
PEBBLE_READY = "pebble_ready"
UPDATE_STATUS = "update_status"
UPGRADE_CHARM = "upgrade_charm"
_PER_REMOTE = frozenset({JOINED, CHANGED, DEPARTED})
_ONCE_PER_UNIT = frozenset(
    {CONFIG_CHANGED, UPDATE_STATUS, PEBBLE_READY, LEADER_ELECTED, UPGRADE_CHARM}
)
BROKEN = "relation_broken"
_RELATION_KINDS = frozenset({CREATED, JOINED, CHANGED, DEPARTED, BROKEN})
CLIENT = "database"
CERTIFICATES = "certificates"
CERTIFICATES_APP = "self-signed-certificates"
CLIENT_SECRET_FIELDS = '["username", "password", "uris"]'


@dataclasses.dataclass(frozen=True)
class Pending:
    """One event waiting to be delivered to ``unit``; ``remote`` is the other unit it is
    about (relation events) or, for ``app_changed``, the unit that wrote the app databag."""

    unit: int
    kind: str
    remote: int | None = None
    # The relation the event is about (relation events); the peer relation by default.
    relation: int = PEER_RELATION_ID

    def describe(self) -> str:
        name = f"{APP}/{self.unit}"
        if self.relation != PEER_RELATION_ID and self.kind in _RELATION_KINDS:
            what = f"{name}: {self.kind} on relation {self.relation}"
            return what + (f" (remote unit {self.remote})" if self.remote is not None else "")
        if self.kind == APP_CHANGED:
            return f"{name}: relation_changed (app databag, written by {APP}/{self.remote})"
        if self.remote is not None:
            return f"{name}: {self.kind} (remote {APP}/{self.remote})"
        return f"{name}: {self.kind}"


@dataclasses.dataclass(frozen=True)
class Delivery:
    """One hook run: which event, and what the unit was left with."""

    seq: int
    event: Pending
    deferred: int
    unit_status: str


class NotSettled(RuntimeError):
    """Delivery did not come to rest within its bound; the message lists what is pending."""


class HookFailed(RuntimeError):
    """The charm raised in a hook; the message names the hook and the last deliveries."""


@dataclasses.dataclass
class Metrics:
    """Counters over the model's life: hook runs and deferrals, per unit and event kind."""

    # (unit, hook kind) -> hook runs.
    hook_runs: collections.Counter[tuple[str, str]] = dataclasses.field(
        default_factory=collections.Counter
    )
    # (unit, deferred event name) -> how many hooks ended with that event deferred: an event
    # deferred again each time ops re-emits it counts once per hook.
    deferrals: collections.Counter[tuple[str, str]] = dataclasses.field(
        default_factory=collections.Counter
    )
    # (unit, handle path): each event that was deferred at least once.
    deferred_events: set[tuple[str, str]] = dataclasses.field(default_factory=set)
    # Events dropped: a stale leader-elected, events of a removed unit or about it.
    dropped: int = 0

    def copy(self) -> Metrics:
        return Metrics(
            collections.Counter(self.hook_runs),
            collections.Counter(self.deferrals),
            set(self.deferred_events),
            self.dropped,
        )

    def since(self, earlier: Metrics) -> Metrics:
        return Metrics(
            self.hook_runs - earlier.hook_runs,
            self.deferrals - earlier.deferrals,
            self.deferred_events - earlier.deferred_events,
            self.dropped - earlier.dropped,
        )

    def runs(self, kind: str | None = None, unit: str | None = None) -> int:
        return sum(
            count
            for (name, event), count in self.hook_runs.items()
            if (kind is None or event == kind) and (unit is None or name == unit)
        )

    def deferred(self, kind: str | None = None, unit: str | None = None) -> int:
        return sum(
            count
            for (name, event), count in self.deferrals.items()
            if (kind is None or event == kind) and (unit is None or name == unit)
        )

    def per_unit(self) -> dict[str, int]:
        result: dict[str, int] = collections.defaultdict(int)
        for (name, _event), count in self.hook_runs.items():
            result[name] += count
        return dict(sorted(result.items()))

    def per_kind(self) -> dict[str, int]:
        result: dict[str, int] = collections.defaultdict(int)
        for (_name, event), count in self.hook_runs.items():
            result[event] += count
        return dict(sorted(result.items()))


@dataclasses.dataclass(frozen=True)
class SettleReport:
    deliveries: int
    update_status_rounds: int
    still_deferring: dict[str, int]


@dataclasses.dataclass
class _SecretRecord:
    label: str | None
    latest: dict[str, str]
    revision: int
    grants: dict[int, frozenset[str]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class _RemoteRelation:
    """A regular relation with another application (one remote unit, number 0): what the
    remote side wrote, and what this application's units wrote on their side."""

    id: int
    endpoint: str
    remote_app: str
    remote_app_data: dict[str, str]
    local_app_data: dict[str, str] = dataclasses.field(default_factory=dict)
    local_unit_data: dict[int, dict[str, str]] = dataclasses.field(default_factory=dict)
    # Units whose relation-broken has run: the relation is gone for them.
    broken: set[int] = dataclasses.field(default_factory=set)


def _secret_key(secret_id: str) -> str:
    """A secret's ID without its ``secret:`` or ``secret://<model>/`` prefix."""
    return secret_id.rsplit("/", 1)[-1].removeprefix("secret:")


class MultiUnitModel:
    """Units of ``LocalPgBouncerCharm`` sharing one ``pgb-peers`` relation; a context manager.

    ``units`` units are added at once and ``leader`` (a unit number, or None) is elected;
    nothing is delivered until ``settle`` or ``step``. With ``real=True`` each unit runs
    ``processes`` real pgbouncer processes in ``<base_dir>/unit-<n>`` (a fresh folder under /tmp
    unless given). ``backend_port`` sets the backend relation's endpoint; ``backend=False``
    leaves the relation out (the charm then reports it is missing).
    """

    def __init__(
        self,
        units: int = 0,
        *,
        leader: int | None = 0,
        real: bool = False,
        processes: int = 2,
        backend: bool = True,
        backend_port: int = 5432,
        config: Mapping[str, str | int | float | bool] | None = None,
        juju_version: str = "3.6.0",
        base_dir: str | None = None,
        start_timeout: float = 10.0,
        unit_addresses: bool = False,
    ) -> None:
        self.real = real
        # Each unit listens on its own loopback address (as each pod has its own IP), so a
        # client can reach one given unit: unit_address(n).
        self.unit_addresses = unit_addresses
        self.processes = processes
        self.juju_version = juju_version
        self.has_secrets = ops.JujuVersion(juju_version).has_secrets
        self.metrics = Metrics()
        self.log: list[Delivery] = []
        self._start_timeout = start_timeout
        self._config: dict[str, str | int | float | bool] = dict(config or {})
        self._check_config(self._config)
        self._backend = backend
        self._backend_data = {
            "endpoints": f"127.0.0.1:{backend_port}",
            "secret-user": "secret:x",
        }
        self._workloads: dict[str, WorkloadPort] = {}
        self._retired: dict[int, collections.Counter[str]] = collections.defaultdict(
            collections.Counter
        )
        self._live: list[int] = []
        self._next_id = 0
        self._leader: int | None = None
        self._scope: list[int] = []
        self._known: dict[int, set[int]] = {}
        self._app_data: dict[str, str] = {}
        self._app_writer: int | None = None
        self._unit_data: dict[int, dict[str, str]] = {}
        self._secrets: dict[str, _SecretRecord] = {}
        self._tracked: dict[int, dict[str, dict[str, str]]] = {}
        self._deferred: dict[int, list[testing.DeferredEvent]] = {}
        self._stored: dict[int, frozenset[testing.StoredState]] = {}
        self._unit_status: dict[int, Any] = {}
        self._app_status: Any = None
        self._last_logs: dict[int, list[str]] = {}
        self._queue: list[Pending] = []
        # Real relations with other applications (relate_backend, relate_client), by id, and
        # the secrets their remote applications own and granted to this one (by id).
        self._relations: dict[int, _RemoteRelation] = {}
        self._next_relation_id = BACKEND_RELATION_ID + 1
        self._foreign_secrets: dict[str, testing.Secret] = {}
        # Secrets a unit owns (the TLS library keeps the unit's private key in one): only
        # that unit ever sees them.
        self._unit_secrets: dict[int, list[testing.Secret]] = collections.defaultdict(list)
        self._ca: CertificateAuthority | None = None
        # Units whose certificate requests the provider leaves unanswered for now.
        self.withheld: set[int] = set()
        self._last_out: dict[int, testing.State] = {}
        # Units running another revision of the charm, in its own process.
        self._runners: dict[int, RevisionRunner] = {}
        self._contexts: dict[int, testing.Context[LocalPgBouncerCharm]] = {}
        self._charm_root: str | None = None
        self._own_base = base_dir is None and real
        self.base_dir = (
            base_dir if base_dir is not None else (self._make_base() if real else "(memory)")
        )
        if self._own_base:
            # A model nobody closed leaves no folder behind (each LocalWorkload stops its
            # own processes when it goes).
            weakref.finalize(self, shutil.rmtree, self.base_dir, True)
        model_workloads = self._workloads
        model_processes = processes

        class _ModelCharm(LocalPgBouncerCharm):
            workloads = model_workloads
            processes = model_processes

        _ModelCharm.__name__ = _ModelCharm.__qualname__ = "LocalPgBouncerCharm"
        self.charm_class: type[LocalPgBouncerCharm] = _ModelCharm
        try:
            for _ in range(units):
                self.add_unit()
            if units and leader is not None:
                self.elect(leader)
        except BaseException:
            self.close()
            raise

    # --- names ------------------------------------------------------------------------------

    @staticmethod
    def unit_name(n: int) -> str:
        return f"{APP}/{n}"

    @staticmethod
    def unit_address(n: int) -> str:
        """Unit ``n``'s own loopback address (with ``unit_addresses``)."""
        return f"127.0.{1 + n // 200}.{2 + n % 200}"

    def unit_secrets(self, n: int) -> list[testing.Secret]:
        """The secrets unit ``n`` owns, as its last hook left them."""
        return list(self._unit_secrets[n])

    @staticmethod
    def hostname(n: int) -> str:
        return unit_hostname(f"{APP}/{n}", MODEL.name)

    @property
    def units(self) -> list[int]:
        """The live units, in the order they were added."""
        return list(self._live)

    @property
    def leader(self) -> int | None:
        return self._leader

    @property
    def followers(self) -> list[int]:
        return [n for n in self._live if n != self._leader]

    @property
    def config(self) -> dict[str, str | int | float | bool]:
        """The charm config: defaults from charmcraft.yaml with what was set on top."""
        options = CONFIG.get("options", {})
        values = {key: spec.get("default") for key, spec in options.items()}
        values.update(self._config)
        return values

    # --- what a test looks at --------------------------------------------------------------

    def workload(self, n: int) -> WorkloadPort:
        return self._workloads[self.unit_name(n)]

    def local_workload(self, n: int) -> LocalWorkload:
        workload = self.workload(n)
        if not isinstance(workload, LocalWorkload):
            raise TypeError("the model runs fake workloads (real=False)")
        return workload

    def fake_workload(self, n: int) -> FakeWorkload:
        workload = self.workload(n)
        if not isinstance(workload, FakeWorkload):
            raise TypeError("the model runs real workloads (real=True)")
        return workload

    @property
    def app_data(self) -> dict[str, str]:
        return dict(self._app_data)

    def unit_data(self, n: int) -> dict[str, str]:
        return dict(self._unit_data[n])

    def secrets(self) -> dict[str, dict[str, str]]:
        """Each application secret's latest content, by ID."""
        return {secret_id: dict(rec.latest) for secret_id, rec in self._secrets.items()}

    def secret_info(self) -> list[tuple[str, str | None, int]]:
        """(id, label, revisions) of each application secret."""
        return [(sid, rec.label, rec.revision) for sid, rec in self._secrets.items()]

    def published_cfg(self) -> str | None:
        return self._app_data.get(CFG_FILE_KEY)

    def published_auth(self) -> str | None:
        """The auth file in the peer secret store (a Juju secret, or the app databag)."""
        if not self.has_secrets:
            return self._app_data.get(AUTH_FILE_KEY)
        secret_id = self._app_data.get(SECRET_ID_KEY)
        if not secret_id:
            return None
        for sid, rec in self._secrets.items():
            if _secret_key(sid) == _secret_key(secret_id):
                return rec.latest.get(SECRET_AUTH_KEY)
        return None

    def unit_status(self, n: int) -> str:
        return _status_text(self._unit_status.get(n))

    def app_status(self) -> str:
        return _status_text(self._app_status)

    def deferred(self, n: int) -> list[str]:
        return [event.name for event in self._deferred.get(n, [])]

    def last_logs(self, n: int) -> list[str]:
        """The charm's log lines from unit ``n``'s last hook."""
        return list(self._last_logs.get(n, []))

    def counters(self, n: int) -> dict[str, int]:
        """The workload's counters, summed over the unit's containers (reschedules included).

        Real: ``signals`` (SIGHUP, SIGTERM, SIGKILL sent) and ``starts``; fake: reloads,
        restarts, starts and writes.
        """
        totals = collections.Counter(self._retired.get(n, {}))
        if n in self._live:
            totals.update(_counters(self.workload(n)))
        return dict(totals)

    # --- convergence -----------------------------------------------------------------------

    def divergence(self) -> list[str]:
        """Why the model has not converged yet; empty once it has."""
        problems: list[str] = []
        if self._leader is None or self._leader not in self._live:
            problems.append("no leader")
        cfg, auth = self.published_cfg(), self.published_auth()
        if cfg is None:
            problems.append("no cfg_file published")
        if self._leader is not None:
            wanted = self.hostname(self._leader)
            if self._app_data.get(LEADER_HOSTNAME_KEY) != wanted:
                problems.append(
                    f"leader_hostname is {self._app_data.get(LEADER_HOSTNAME_KEY)!r}, "
                    f"not {wanted!r}"
                )
        units: dict[str, UnitPeerData] = {}
        for n in self._live:
            name = self.unit_name(n)
            workload = self.workload(n)
            if not workload.is_reachable():
                problems.append(f"{name}: container unreachable")
                continue
            if workload.read_cfg() != cfg:
                problems.append(f"{name}: pgbouncer.ini differs from the published cfg_file")
            if workload.read_auth() != auth:
                problems.append(f"{name}: userlist.txt differs from the published auth file")
            if not _running(workload):
                problems.append(f"{name}: pgbouncer is not running")
            if isinstance(workload, FakeWorkload) and workload.loaded != (
                workload.cfg,
                workload.auth,
            ):
                problems.append(f"{name}: the running pgbouncer has not loaded its files")
            try:
                units[name] = converters.read_unit_data(self._unit_data[n], name)
            except ValueError as err:
                problems.append(f"{name}: unreadable unit databag: {err}")
            # What the unit remembers running is what it shows and trusts on its next peer
            # hook instead of reading its files: it must be what it runs. (A unit of another
            # revision keeps no such memory.)
            remembered = self.remembered_applied(n)
            if n not in self._runners and remembered != (
                content_digest(cfg),
                content_digest(auth),
            ):
                problems.append(f"{name}: remembers running other files than the published")
        leader = self.unit_name(self._leader) if self._leader is not None else ""
        summary = sync_summary(cfg, self._app_data.get(ACK_WANTED_KEY), units, leader)
        if summary.severity is not Severity.ACTIVE:
            problems.append(f"sync: {summary.message}")
        return problems

    def remembered_applied(self, n: int) -> tuple[str, str] | None:
        """The digests of the files unit ``n`` remembers its pgbouncer runs (its StoredState)."""
        for stored in self._stored.get(n, ()):
            content = dict(stored.content)
            if "applied_cfg" in content:
                return (content["applied_cfg"], content["applied_auth"])
        return None

    def converged(self) -> bool:
        return not self.divergence()

    # --- operations (they queue events; settle or step delivers them) -----------------------

    def add_unit(self) -> int:
        """A new unit (numbers are never reused); queues its first hooks."""
        if len(self._live) >= MAX_UNITS:
            raise ValueError(f"at most {MAX_UNITS} units")
        n = self._next_id
        self._next_id += 1
        self._workloads[self.unit_name(n)] = self._new_workload(n)
        self._live.append(n)
        self._known[n] = set()
        self._unit_data[n] = {}
        self._tracked[n] = {}
        self._deferred[n] = []
        self._stored[n] = frozenset()
        self._enqueue(Pending(n, CREATED))
        self._enqueue(Pending(n, CONFIG_CHANGED))
        self._enqueue(Pending(n, PEBBLE_READY))
        for relation in self._relations.values():
            self._enqueue_relation(n, relation.id)
        return n

    def remove_unit(self, n: int) -> None:
        """Unit ``n`` goes away: its processes stop, the units that knew it get departed."""
        self._check_live(n)
        workload = self.workload(n)
        self._retire(n, workload)
        self._live.remove(n)
        if n in self._scope:
            self._scope.remove(n)
        if self._leader == n:
            self._leader = None
        dropped = [
            ev
            for ev in self._queue
            if ev.unit == n
            or (
                ev.remote == n and ev.relation == PEER_RELATION_ID and ev.kind in (JOINED, CHANGED)
            )
        ]
        self.metrics.dropped += len(dropped)
        self._queue = [ev for ev in self._queue if ev not in dropped]
        for m in self._live:
            if n in self._known[m]:
                self._enqueue(Pending(m, DEPARTED, n))

    def elect(self, n: int) -> None:
        """Unit ``n`` becomes the leader; leader-elected is queued on it."""
        self._check_live(n)
        if self._leader == n:
            return
        self._leader = n
        self._queue = [ev for ev in self._queue if ev.kind != LEADER_ELECTED or ev.unit == n]
        self._enqueue(Pending(n, LEADER_ELECTED))

    def set_config(self, **options: str | int | float | bool) -> None:
        """``juju config``: the new values, and config-changed queued on every unit."""
        self._check_config(options)
        self._config.update(options)
        for n in self._live:
            self._enqueue(Pending(n, CONFIG_CHANGED))

    def pebble_ready(self, n: int) -> None:
        self._check_live(n)
        self._enqueue(Pending(n, PEBBLE_READY))

    def update_status(self, n: int) -> None:
        self._check_live(n)
        self._enqueue(Pending(n, UPDATE_STATUS))

    def set_reachable(self, n: int, reachable: bool) -> None:
        """Make unit ``n``'s container (un)reachable, as a Pebble that does not answer."""
        workload = self.workload(n)
        if not isinstance(workload, LocalWorkload | FakeWorkload):
            raise TypeError(f"cannot change reachability of {workload!r}")
        workload.set_reachable(reachable)

    def reschedule(self, n: int) -> None:
        """Unit ``n``'s pod is replaced: its container starts empty; pebble-ready is queued."""
        self._check_live(n)
        old = self.workload(n)
        self._retire(n, old)
        if isinstance(old, LocalWorkload):
            shutil.rmtree(old.base_dir, ignore_errors=True)
            self._workloads[self.unit_name(n)] = self._new_workload(n)
        elif isinstance(old, FakeWorkload):
            old.wipe()  # the same object keeps counting across the new pod
        self._enqueue(Pending(n, PEBBLE_READY))

    def set_revision(self, n: int, runner: RevisionRunner | None) -> None:
        """Unit ``n``'s next hooks run the charm of ``runner`` (None: this tree's)."""
        self._check_live(n)
        if runner is None:
            self._runners.pop(n, None)
        else:
            self._runners[n] = runner

    def revision(self, n: int) -> str:
        """Which charm unit ``n`` runs: ``current`` or the other revision's tree."""
        runner = self._runners.get(n)
        return runner.tree if runner is not None else "current"

    def refresh(self, n: int, runner: RevisionRunner | None = None) -> None:
        """``juju refresh`` reaching unit ``n``: a new pod (empty container, nothing running)
        running ``runner``'s charm (None: this tree's); upgrade-charm, config-changed and
        pebble-ready are queued."""
        self._check_live(n)
        old = self.workload(n)
        self._retire(n, old)
        if isinstance(old, LocalWorkload):
            shutil.rmtree(old.base_dir, ignore_errors=True)
            self._workloads[self.unit_name(n)] = self._new_workload(n)
        elif isinstance(old, FakeWorkload):
            old.wipe()
        self.set_revision(n, runner)
        self._deferred[n] = []  # a new pod: the charm's local state starts afresh
        self._stored[n] = frozenset()
        for kind in (UPGRADE_CHARM, CONFIG_CHANGED, PEBBLE_READY):
            self._enqueue(Pending(n, kind))

    def upgrade_juju(self, juju_version: str) -> None:
        """The controller and model move to another Juju version (e.g. 2.9 to 3, which brings
        secrets); nothing is queued: the units' next hooks see it."""
        self.juju_version = juju_version
        self.has_secrets = ops.JujuVersion(juju_version).has_secrets
        for ctx in self._contexts.values():
            ctx.close()
        self._contexts.clear()

    def restore(
        self,
        units: list[int],
        leader: int,
        app_data: Mapping[str, str],
        unit_data: Mapping[int, Mapping[str, str]],
        secrets: list[tuple[str, str | None, Mapping[str, str]]],
        files: Mapping[int, tuple[str | None, str | None]],
    ) -> None:
        """Load a running model as a revision left it: every unit in scope and known to the
        others, the application databag, each unit's databag, the application's secrets
        (id, label, content; tracked by every unit), and each unit's files (cfg, auth) with
        pgbouncer running on them (fake workloads only). Nothing is queued."""
        if self._live:
            raise RuntimeError("restore needs a model without units")
        if self.real:
            raise RuntimeError("restore runs fake workloads (real=False)")
        for n in units:
            self._workloads[self.unit_name(n)] = workload = FakeWorkload(self.unit_name(n))
            workload.cfg, workload.auth = files.get(n, (None, None))
            if workload.cfg is not None:
                workload.running = True
                workload.loaded = (workload.cfg, workload.auth)
            self._live.append(n)
            self._scope.append(n)
            self._known[n] = {m for m in units if m != n}
            self._unit_data[n] = dict(unit_data.get(n, {}))
            self._deferred[n] = []
            self._stored[n] = frozenset()
            self._tracked[n] = {sid: dict(content) for sid, _label, content in secrets}
        self._next_id = max(units) + 1
        self._secrets = {
            sid: _SecretRecord(label, dict(content), 1) for sid, label, content in secrets
        }
        self._app_data = dict(app_data)
        self._leader = self._app_writer = leader

    def setup_backend(self, auth: str) -> None:
        """Stand-in for the backend handler: the auth file lands in the leader's container
        (through its workload); the leader's next hook (an update-status is queued) stores it
        in the peer secret store and publishes it."""
        if not self._backend:
            raise RuntimeError("the model has no backend-database relation")
        if self._leader is None:
            raise RuntimeError("no leader to set the backend up")
        self.workload(self._leader).write_auth(auth)
        self._enqueue(Pending(self._leader, UPDATE_STATUS))

    # --- real relations with other applications ----------------------------------------------

    def relate_backend(
        self,
        cluster: PostgresCluster,
        *,
        database: str = APP,
        version: str | None = None,
        tls_ca: str | None = None,
    ) -> int:
        """``juju integrate`` with a PostgreSQL charm in front of ``cluster``: the real
        ``backend-database`` relation, its handlers run for real.

        The model plays the provider: it creates ``database`` on the cluster (what
        postgresql-k8s does for the database this charm asks for, its application name), and
        the remote application data holds ``endpoints``, ``database``, ``version`` and, with
        Juju secrets, ``secret-user``: a secret owned by the provider, granted to this
        application, with the cluster superuser's username and password (without secrets, the
        plain ``username``/``password`` fields). Relation-created, -joined and -changed are
        queued on every unit; the leader's handler then installs ``auth_query`` on the
        cluster, writes the auth file and config, stores and publishes them. The provider's
        answer is there from the first hook (a real provider answers after reading the
        request; the charm's handler copes with both). Returns the relation id.
        """
        if self._backend:
            raise RuntimeError(
                "the model already has the stand-in backend relation (make it with backend=False)"
            )
        if any(rel.endpoint == BACKEND for rel in self._relations.values()):
            raise RuntimeError("the backend-database relation exists already")
        exists = cluster.psql(f"SELECT count(*) FROM pg_database WHERE datname = '{database}'")
        if exists == "0":
            cluster.psql(f'CREATE DATABASE "{database}"')
        if version is None:
            version = cluster.psql("SHOW server_version").split()[0]
        data = {
            "endpoints": f"{cluster.host}:{cluster.port}",
            "database": database,
            "version": version,
        }
        credentials = {"username": cluster.superuser, "password": cluster.password}
        if self.has_secrets:
            secret = testing.Secret(tracked_content=credentials, latest_content=credentials)
            self._foreign_secrets[secret.id] = secret
            data["secret-user"] = secret.id
        else:
            data.update(credentials)
        if tls_ca is not None:
            # What postgresql-k8s sends with TLS on: in the secret-tls secret (the charm asks
            # for tls and tls-ca as secrets), or plain fields without Juju secrets.
            tls = {"tls": "True", "tls-ca": tls_ca}
            if self.has_secrets:
                tls_secret = testing.Secret(tracked_content=tls, latest_content=tls)
                self._foreign_secrets[tls_secret.id] = tls_secret
                data["secret-tls"] = tls_secret.id
            else:
                data.update(tls)
        relation = _RemoteRelation(BACKEND_RELATION_ID, BACKEND, BACKEND_APP, data)
        self._add_relation(relation)
        return relation.id

    def relate_client(
        self,
        app_name: str,
        database: str,
        extra_user_roles: str = "",
        *,
        requested_secrets: bool = True,
    ) -> int:
        """``juju integrate <app_name> pgbouncer-k8s``: a client application asks for
        ``database`` on the ``database`` endpoint. Relation-created, -joined and -changed are
        queued on every unit; ``settle`` runs until the leader served the request and, once
        every unit acknowledged the config holding it, handed the credentials
        (``client_credentials``). Returns the relation id (the client's role is
        ``relation_id_<id>``). ``requested_secrets=False`` plays a client whose library
        predates secrets: it sends no ``requested-secrets`` and reads plain fields."""
        request = {"database": database, "extra-user-roles": extra_user_roles}
        if requested_secrets:
            request["requested-secrets"] = CLIENT_SECRET_FIELDS
        relation = _RemoteRelation(self._next_relation_id, CLIENT, app_name, request)
        self._next_relation_id += 1
        self._add_relation(relation)
        return relation.id

    def relate_certificates(self, ca: CertificateAuthority) -> int:
        """``juju integrate`` with a ``self-signed-certificates`` charm run by ``ca``: each
        unit's request is answered (signed) right after the hook that made it, and every unit
        then gets relation-changed, as the provider's databag changed. Returns the id."""
        if any(rel.endpoint == CERTIFICATES for rel in self._relations.values()):
            raise RuntimeError("the certificates relation exists already")
        self._ca = ca
        relation = _RemoteRelation(self._next_relation_id, CERTIFICATES, CERTIFICATES_APP, {})
        self._next_relation_id += 1
        self._add_relation(relation)
        return relation.id

    def rotate_certificates(self) -> None:
        """The provider issues every unit a new certificate (a new serial) for its request;
        relation-changed is queued on every unit."""
        relation = self._certificates_relation()
        if relation is None or self._ca is None:
            raise RuntimeError("no certificates relation")
        csrs = [csr for data in relation.local_unit_data.values() for csr in requested_csrs(data)]
        relation.remote_app_data = self._ca.provider_data(csrs, reissue=True)
        for n in self._live:
            if n not in relation.broken:
                self._enqueue(Pending(n, CHANGED, 0, relation=relation.id))

    def release_certificates(self) -> None:
        """The provider answers the requests it withheld (``withheld``); relation-changed
        follows on every unit."""
        self.withheld.clear()
        if self._live:
            self._answer_certificate_requests(self._live[0])

    def unrelate(self, relation_id: int) -> None:
        """``juju remove-relation``: relation-broken is queued on every unit."""
        self._relation(relation_id)  # it exists
        self._queue = [ev for ev in self._queue if ev.relation != relation_id]
        for n in self._live:
            self._enqueue(Pending(n, BROKEN, relation=relation_id))

    def _certificates_relation(self) -> _RemoteRelation | None:
        for rel in self._relations.values():
            if rel.endpoint == CERTIFICATES and not rel.broken:
                return rel
        return None

    def _answer_certificate_requests(self, n: int) -> None:
        relation = self._certificates_relation()
        if relation is None or self._ca is None:
            return
        csrs = [
            csr
            for m, data in relation.local_unit_data.items()
            if m not in self.withheld
            for csr in requested_csrs(data)
        ]
        answer = self._ca.provider_data(csrs)
        if answer != relation.remote_app_data:
            relation.remote_app_data = answer
            for m in self._live:
                self._enqueue(Pending(m, CHANGED, 0, relation=relation.id))

    def relation_data(self, relation_id: int) -> dict[str, str]:
        """What this application wrote in a relation's application databag (the leader)."""
        return dict(self._relation(relation_id).local_app_data)

    def client_credentials(self, relation_id: int) -> dict[str, str]:
        """The answer the leader handed the client of ``relation_id``: the databag fields
        (``database``, ``endpoints``, ``read-only-endpoints``, ``version``) and, resolved
        through ``secret-user`` in the leader's last output state's secrets (Juju secrets) or
        read from the databag (without them, or for a client that asked for no secrets),
        ``username``, ``password`` and ``uris``.
        ``LookupError`` until the credentials are handed."""
        relation = self._relation(relation_id)
        data = dict(relation.local_app_data)
        secret_id = data.pop("secret-user", None)
        if not self.has_secrets or secret_id is None:
            if "password" not in data:
                raise LookupError(f"relation {relation_id}: no credentials handed yet")
            return data
        if self._leader is None or self._leader not in self._last_out:
            raise LookupError("no leader output to read the client's secret from")
        out = self._last_out[self._leader]
        for secret in out.secrets:
            if _secret_key(secret.id) == _secret_key(secret_id):
                return data | dict(secret.latest_content or {})
        raise LookupError(f"relation {relation_id}: secret {secret_id} not in the leader's state")

    def _relation(self, relation_id: int) -> _RemoteRelation:
        try:
            return self._relations[relation_id]
        except KeyError:
            raise ValueError(f"no relation {relation_id}") from None

    def _add_relation(self, relation: _RemoteRelation) -> None:
        self._relations[relation.id] = relation
        for n in self._live:
            self._enqueue_relation(n, relation.id)

    def _enqueue_relation(self, n: int, relation_id: int) -> None:
        """A unit enters a relation with another application: relation-created, then
        relation-joined about its remote unit (relation-changed follows it)."""
        self._enqueue(Pending(n, CREATED, relation=relation_id))
        self._enqueue(Pending(n, JOINED, 0, relation=relation_id))

    # --- delivery ---------------------------------------------------------------------------

    def pending(self) -> list[Pending]:
        return list(self._queue)

    def eligible(self) -> list[Pending]:
        """The pending events Juju could deliver next (see the module docstring)."""
        # A unit's peer relation-created comes before any other of its hooks; a relation's
        # relation-created before the unit's other hooks of that relation.
        starting = {
            ev.unit for ev in self._queue if ev.kind == CREATED and ev.relation == PEER_RELATION_ID
        }
        creating = {(ev.unit, ev.relation) for ev in self._queue if ev.kind == CREATED}
        seen: set[tuple[int, int, int | None]] = set()
        result = []
        for ev in self._queue:
            if ev.unit in starting and ev.kind != CREATED:
                continue
            if (
                ev.kind != CREATED
                and ev.kind in _RELATION_KINDS
                and ((ev.unit, ev.relation) in creating)
            ):
                continue
            if ev.kind in _PER_REMOTE:
                key = (ev.unit, ev.relation, ev.remote)
                if key in seen:
                    continue
                seen.add(key)
            result.append(ev)
        return result

    def step(self, rng: random.Random) -> Pending | None:
        """Deliver one pending event chosen by ``rng``; None when nothing is pending."""
        choices = self.eligible()
        if not choices:
            return None
        event = rng.choice(choices)
        self._queue.remove(event)
        self._deliver(event)
        return event

    def deliver(
        self, unit: int, kind: str, remote: int | None = None, relation: int | None = None
    ) -> Pending:
        """Deliver ``unit``'s pending event of ``kind`` (about ``remote`` and on ``relation``,
        if given) now, for scripted orders; it must be one Juju could run next
        (``LookupError`` otherwise)."""
        for event in self.eligible():
            if (
                (event.unit, event.kind) == (unit, kind)
                and remote in (None, event.remote)
                and relation in (None, event.relation)
            ):
                self._queue.remove(event)
                self._deliver(event)
                return event
        raise LookupError(
            f"no deliverable {kind} for {self.unit_name(unit)}; eligible: "
            + ", ".join(ev.describe() for ev in self.eligible())
        )

    def run(self, rng: random.Random, count: int) -> int:
        """Deliver up to ``count`` events (stopping early when none is left)."""
        done = 0
        while done < count and self.step(rng) is not None:
            done += 1
        return done

    def settle(
        self,
        rng: random.Random | None = None,
        *,
        max_deliveries: int | None = None,
        idle_rounds: int = 3,
        allow_deferred: bool = False,
    ) -> SettleReport:
        """Deliver until nothing is pending and no unit holds a deferred event.

        When the queue is empty but units still hold deferred events, update-status runs on
        them (Juju's periodic hook), up to ``idle_rounds`` times. ``NotSettled`` when more than
        ``max_deliveries`` events were needed, or (unless ``allow_deferred``) when units still
        defer after the last round.
        """
        rng = rng if rng is not None else random.Random(0)
        bound = max_deliveries if max_deliveries is not None else self._bound()
        delivered = 0
        rounds = 0
        while True:
            if self._queue:
                if delivered >= bound:
                    raise NotSettled(
                        f"not settled after {delivered} deliveries; pending:\n  "
                        + "\n  ".join(ev.describe() for ev in self._queue[:40])
                        + self._recent()
                    )
                self.step(rng)
                delivered += 1
                continue
            deferring = [n for n in self._live if self._deferred[n]]
            if not deferring:
                break
            if rounds >= idle_rounds:
                if allow_deferred:
                    break
                raise NotSettled(
                    f"units still defer after {rounds} update-status rounds: "
                    + "; ".join(
                        f"{self.unit_name(n)} defers {self.deferred(n)} ({self.unit_status(n)})"
                        for n in deferring
                    )
                    + self._recent()
                )
            rounds += 1
            for n in deferring:
                self._enqueue(Pending(n, UPDATE_STATUS))
        return SettleReport(
            deliveries=delivered,
            update_status_rounds=rounds,
            still_deferring={
                self.unit_name(n): len(self._deferred[n]) for n in self._live if self._deferred[n]
            },
        )

    # --- clean-up ---------------------------------------------------------------------------

    def close(self) -> None:
        """Stop every process the model started and delete the folders it made."""
        for workload in list(self._workloads.values()):
            if isinstance(workload, LocalWorkload | FakeWorkload):
                workload.stop()
        if self._own_base and os.path.isdir(self.base_dir):
            shutil.rmtree(self.base_dir, ignore_errors=True)
        for ctx in self._contexts.values():
            ctx.close()
        self._contexts.clear()
        if self._charm_root is not None:
            shutil.rmtree(self._charm_root, ignore_errors=True)
            self._charm_root = None

    def __enter__(self) -> MultiUnitModel:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # --- internals --------------------------------------------------------------------------

    def _make_base(self) -> str:
        # Directly under /tmp and traversable, so the pgbouncer user can reach unit folders.
        path = tempfile.mkdtemp(prefix="pgb-model-", dir="/tmp")
        os.chmod(path, 0o711)
        return path

    def _new_workload(self, n: int) -> WorkloadPort:
        if not self.real:
            return FakeWorkload(self.unit_name(n))
        return LocalWorkload(
            os.path.join(self.base_dir, f"unit-{n}"),
            processes=self.processes,
            start_timeout=self._start_timeout,
            listen_addr=self.unit_address(n) if self.unit_addresses else None,
        )

    def _retire(self, n: int, workload: WorkloadPort) -> None:
        if isinstance(workload, LocalWorkload):
            workload.stop()
            self._retired[n].update(_counters(workload))
        elif isinstance(workload, FakeWorkload):
            workload.stop()

    def _check_live(self, n: int) -> None:
        if n not in self._live:
            raise ValueError(f"{self.unit_name(n)} is not a live unit")

    @staticmethod
    def _check_config(options: Mapping[str, object]) -> None:
        known = CONFIG.get("options", {})
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ValueError(f"unknown config option(s): {', '.join(unknown)}")

    def _bound(self) -> int:
        n = max(len(self._live), 1)
        return 500 + 40 * n * n

    def _recent(self, count: int = 15) -> str:
        lines = [
            f"#{d.seq} {d.event.describe()} -> deferred={d.deferred} [{d.unit_status}]"
            for d in self.log[-count:]
        ]
        return "\nlast deliveries:\n  " + "\n  ".join(lines) if lines else ""

    def _enqueue(self, event: Pending) -> None:
        n = event.unit
        if n not in self._live:
            return
        for i, other in enumerate(self._queue):
            if other.unit != n:
                continue
            if event.kind in _ONCE_PER_UNIT and other.kind == event.kind:
                return
            if event.kind == APP_CHANGED and other.kind == APP_CHANGED:
                self._queue[i] = event  # the latest writer
                return
            if (
                event.kind == CHANGED
                and other.remote == event.remote
                and other.relation == event.relation
                and other.kind in (CHANGED, DEPARTED)
            ):
                return
        self._queue.append(event)

    def _state(self, n: int) -> tuple[testing.State, testing.PeerRelation, testing.Container]:
        peer = testing.PeerRelation(
            PEER,
            id=PEER_RELATION_ID,
            local_app_data=dict(self._app_data),
            local_unit_data=dict(self._unit_data[n]),
            peers_data={m: dict(self._unit_data[m]) for m in sorted(self._known[n])},
        )
        relations: list[testing.RelationBase] = [peer]
        if self._backend:
            relations.append(
                testing.Relation(
                    BACKEND,
                    id=BACKEND_RELATION_ID,
                    remote_app_name=BACKEND_APP,
                    remote_app_data=dict(self._backend_data),
                    remote_units_data={0: {}},
                )
            )
        for rel in self._relations.values():
            if n in rel.broken:
                continue
            relations.append(
                testing.Relation(
                    rel.endpoint,
                    id=rel.id,
                    remote_app_name=rel.remote_app,
                    local_app_data=dict(rel.local_app_data),
                    local_unit_data=dict(rel.local_unit_data.get(n, {})),
                    remote_app_data=dict(rel.remote_app_data),
                    remote_units_data={0: {}},
                )
            )
        container = testing.Container(CONTAINER, can_connect=self.workload(n).is_reachable())
        secrets = [
            testing.Secret(
                tracked_content=self._tracked[n].get(sid, rec.latest),
                latest_content=rec.latest,
                id=sid,
                owner="app",
                label=rec.label,
                remote_grants=rec.grants,
            )
            for sid, rec in self._secrets.items()
        ]
        secrets.extend(self._foreign_secrets.values())
        secrets.extend(self._unit_secrets[n])
        state = testing.State(
            leader=self._leader == n,
            model=MODEL,
            config=dict(self._config),
            relations=relations,
            containers={container},
            secrets=secrets,
            deferred=list(self._deferred[n]),
            stored_states=self._stored[n],
            planned_units=len(self._live),
            unit_status=self._unit_status.get(n),
            app_status=self._app_status if self._leader == n else None,
        )
        return state, peer, container

    def _event(self, ctx: testing.Context[Any], event: Pending, state: testing.State) -> Any:
        peer = state.get_relation(PEER_RELATION_ID)
        kind, remote = event.kind, event.remote
        if event.relation != PEER_RELATION_ID:
            relation = state.get_relation(event.relation)
            if kind == CREATED:
                return ctx.on.relation_created(relation)
            if kind == JOINED:
                return ctx.on.relation_joined(relation, remote_unit=remote)
            if kind == CHANGED:
                return ctx.on.relation_changed(relation, remote_unit=remote)
            if kind == BROKEN:
                return ctx.on.relation_broken(relation)
            raise ValueError(f"unsupported event {kind!r} on relation {event.relation}")
        if kind == CREATED:
            return ctx.on.relation_created(peer)
        if kind == JOINED:
            return ctx.on.relation_joined(peer, remote_unit=remote)
        if kind in (CHANGED, APP_CHANGED):
            return ctx.on.relation_changed(peer, remote_unit=remote)
        if kind == DEPARTED:
            return ctx.on.relation_departed(peer, remote_unit=remote, departing_unit=remote)
        if kind == LEADER_ELECTED:
            return ctx.on.leader_elected()
        if kind == CONFIG_CHANGED:
            return ctx.on.config_changed()
        if kind == PEBBLE_READY:
            return ctx.on.pebble_ready(state.get_container(CONTAINER))
        if kind == UPDATE_STATUS:
            return ctx.on.update_status()
        if kind == UPGRADE_CHARM:
            return ctx.on.upgrade_charm()
        raise ValueError(f"unknown event kind {kind!r}")

    def _deliver(self, event: Pending) -> None:
        n = event.unit
        if event.kind == LEADER_ELECTED and self._leader != n:
            self.metrics.dropped += 1
            return
        peer_event = event.relation == PEER_RELATION_ID
        if peer_event and event.kind == JOINED and event.remote is not None:
            self._known[n].add(event.remote)
        if peer_event and event.kind == DEPARTED and event.remote is not None:
            self._known[n].discard(event.remote)
        state, _peer, _container = self._state(n)
        name = self.unit_name(n)
        runner = self._runners.get(n)
        if runner is not None:
            workload = self.workload(n)
            try:
                out, workload, logs = runner.run(
                    n, (event.kind, event.remote, event.relation), state, workload
                )
            except RevisionError as err:
                raise HookFailed(
                    f"{event.describe()} raised in {runner.tree}:\n{err}{self._recent()}"
                ) from err
            self._workloads[name] = workload
            self._last_logs[n] = logs
        else:
            out = self._run_here(n, event, state)
        self.metrics.hook_runs[(name, event.kind)] += 1
        for deferred in out.deferred:
            self.metrics.deferrals[(name, deferred.name)] += 1
            self.metrics.deferred_events.add((name, deferred.handle_path))
        self._absorb(n, event, out)
        self.log.append(Delivery(len(self.log) + 1, event, len(out.deferred), self.unit_status(n)))

    def _run_here(self, n: int, event: Pending, state: testing.State) -> testing.State:
        ctx = self._context(n)
        try:
            out = ctx.run(self._event(ctx, event, state), state)
        except Exception as err:
            logs = "\n    ".join(f"{line.level} {line.message}" for line in ctx.juju_log[-20:])
            raise HookFailed(
                f"{event.describe()} raised {type(err).__name__}: {err}\n  charm log:\n    "
                f"{logs}{self._recent()}"
            ) from err
        finally:
            self._last_logs[n] = [f"{line.level} {line.message}" for line in ctx.juju_log]
            _forget_history(ctx)
        return out

    def _context(self, n: int) -> testing.Context[LocalPgBouncerCharm]:
        """Unit ``n``'s ``Context``, made once: a Context owns a folder, and a fixed charm
        root saves making and deleting one per hook."""
        ctx = self._contexts.get(n)
        if ctx is None:
            if self._charm_root is None:
                self._charm_root = tempfile.mkdtemp(prefix="pgb-model-charm-")
                # A model nobody closed still leaves no folder behind.
                weakref.finalize(self, shutil.rmtree, self._charm_root, True)
            ctx = testing.Context(
                self.charm_class,
                meta=META,
                config=CONFIG,
                juju_version=self.juju_version,
                app_name=APP,
                unit_id=n,
                charm_root=self._charm_root,
            )
            self._contexts[n] = ctx
        return ctx

    def _absorb(self, n: int, event: Pending, out: testing.State) -> None:
        peer = out.get_relation(PEER_RELATION_ID)
        app = dict(peer.local_app_data)
        if app != self._app_data:
            if self._leader != n:
                raise HookFailed(f"{self.unit_name(n)} changed the app databag but does not lead")
            self._app_data = app
            self._app_writer = n
            for m in self._scope:
                if m != n:
                    self._enqueue(Pending(m, APP_CHANGED, n))
        unit = dict(peer.local_unit_data)
        if unit != self._unit_data[n]:
            self._unit_data[n] = unit
            for m in self._live:
                if m != n and n in self._known[m]:
                    self._enqueue(Pending(m, CHANGED, n))
        for rel in self._relations.values():
            if n in rel.broken:
                continue
            if event.kind == BROKEN and event.relation == rel.id:
                rel.broken.add(n)
                rel.local_unit_data.pop(n, None)
                continue
            out_rel = out.get_relation(rel.id)
            app = dict(out_rel.local_app_data)
            if app != rel.local_app_data:
                if self._leader != n:
                    raise HookFailed(
                        f"{self.unit_name(n)} changed the {rel.endpoint} app databag but does "
                        "not lead"
                    )
                rel.local_app_data = app  # the remote application's business: no hook here
            rel.local_unit_data[n] = dict(out_rel.local_unit_data)
        self._last_out[n] = out
        self._answer_certificate_requests(n)
        self._unit_secrets[n] = [secret for secret in out.secrets if secret.owner == "unit"]
        for secret in out.secrets:
            if secret.id in self._foreign_secrets:
                continue  # the remote application's secret: its content is the owner's
            if secret.owner == "unit":
                continue
            latest = dict(secret.latest_content)
            record = self._secrets.get(secret.id)
            if record is None or record.latest != latest:
                if record is not None and self._leader != n:
                    raise HookFailed(f"{self.unit_name(n)} changed a secret but does not lead")
                self._secrets[secret.id] = _SecretRecord(
                    secret.label, latest, record.revision + 1 if record else 1
                )
            elif secret.label != record.label:
                record.label = secret.label
            self._secrets[secret.id].grants = {
                rid: frozenset(apps) for rid, apps in secret.remote_grants.items()
            }
            self._tracked[n][secret.id] = dict(secret.tracked_content)
        self._deferred[n] = list(out.deferred)
        self._stored[n] = frozenset(out.stored_states)
        self._unit_status[n] = out.unit_status
        if self._leader == n:
            self._app_status = out.app_status
        if event.kind == CREATED and event.relation == PEER_RELATION_ID:
            self._enter_scope(n)
        elif event.kind == JOINED and event.remote is not None:
            self._enqueue(Pending(n, CHANGED, event.remote, relation=event.relation))

    def _enter_scope(self, n: int) -> None:
        for m in self._scope:
            if m in self._live:
                self._enqueue(Pending(n, JOINED, m))
                self._enqueue(Pending(m, JOINED, n))
        self._scope.append(n)
        if self._app_data and self._app_writer is not None:
            self._enqueue(Pending(n, APP_CHANGED, self._app_writer))


def _forget_history(ctx: testing.Context[Any]) -> None:
    """Empty what a Context accumulates over runs (the model keeps what it needs)."""
    ctx.juju_log.clear()
    ctx.app_status_history.clear()
    ctx.unit_status_history.clear()
    ctx.workload_version_history.clear()
    ctx.removed_secret_revisions.clear()
    ctx.emitted_events.clear()
    ctx.exec_history.clear()
    ctx.action_logs.clear()
    ctx.trace_data.clear()


def _counters(workload: WorkloadPort) -> dict[str, int]:
    if isinstance(workload, LocalWorkload):
        return {"signals": workload.signals_sent, "starts": workload.starts}
    if isinstance(workload, FakeWorkload):
        return workload.counters()
    return {}


def _running(workload: WorkloadPort) -> bool:
    if isinstance(workload, LocalWorkload):
        return all(pid is not None for pid in workload.pids())
    if isinstance(workload, FakeWorkload):
        return workload.running
    return True


def _status_text(status: Any) -> str:
    if status is None:
        return "unknown"
    name = getattr(status, "name", "unknown")
    message = getattr(status, "message", "")
    return f"{name}: {message}" if message else str(name)
