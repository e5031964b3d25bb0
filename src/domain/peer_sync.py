"""PeerSyncService: the ``pgb-peers`` flowcharts as a pure function of what a unit sees.

Model. Each hook, the application layer gathers a ``PeerView`` (is this unit the leader, its
hostname, the application databag, the secret store, its own unit databag, the two files in
its container, whether the backend has delivered credentials, the charm config) and
``domain.hook_plan`` calls the method named for the event. The method returns the ordered list
of effects (see ``domain.effects``) and touches nothing itself.

On the leader the other relations' services (``LeaderStep``: the backend's, the clients')
take part in the same plan: once the leader's files are known (restored, rendered) each step
may change them and add its own effects, then the plan publishes and acknowledges the files
as they end up, and answers the clients. The files are written once, and pgbouncer is
signalled once, with the stronger of what the changes need (``pgb_config.change_kind``).

The two roles, as the seed's flowcharts and the contract give them:

- The leader's container is the source of truth. Before anything else it restores a file that
  is missing (a rescheduled pod) from what it published earlier. It then publishes
  ``cfg_file`` and ``leader_hostname`` and, once the backend is ready, the auth file into the
  secret store. With no config at all it defers (peer hooks) or renders the initial one from
  the charm config (pebble-ready, leader-elected, config-changed).
- A follower adopts what the leader published: a *valid* ``cfg_file`` and a *valid* auth file
  are written where they differ from its container; then one ``Reload`` (or ``Restart`` when a
  restart-only setting changed, or when nothing ran yet). Invalid peer data is never written;
  the follower keeps its last good files and reports why.

Every method is idempotent: on a repeat of the same inputs it returns no write, no publish and
no reload, only what is still missing. Effects are emitted only where they change something,
so a quiet hook costs no hook tool call and no Pebble write. Every reason not to be simply
active is a ``Report`` among the effects.

| event                   | follower                     | leader                                 |
|-------------------------|------------------------------|----------------------------------------|
| relation-created        | hostname, return             | hostname; cfg? else defer; publish;    |
|                         |                              | backend ready? else defer; store auth  |
| relation-joined/changed | hostname, adopt              | hostname; cfg? else defer;             |
|                         |                              | publish cfg and leader hostname        |
| secret-changed          | adopt                        | publish                                |
| relation-departed       | adopt; leader gone?          | publish leader hostname                |
| leader-elected          | (not sent to followers)      | take published; re-render; publish     |
| pebble-ready            | adopt; start                 | render if none; publish; start         |
| upgrade-charm           | adopt; reload (starts)       | restore; publish; reload (starts)      |
| config-changed          | adopt                        | re-render from charm config; publish   |
| update-status           | adopt                        | publish                                |
"""

from collections.abc import Sequence
from typing import Protocol

import attrs

from domain.auth_file import parse_auth_file
from domain.charm_config import CharmConfig, apply_charm_config, budget, initial_config
from domain.effects import (
    Acknowledge,
    Defer,
    Effect,
    PublishCfg,
    PublishLeaderHostname,
    Reload,
    RememberApplied,
    RememberTlsServed,
    RemoveAuth,
    RemoveBackendCa,
    RemoveClientTls,
    Report,
    RequestAcknowledgements,
    Restart,
    SetHostname,
    SetPgbouncerVersion,
    StoreAuth,
    WriteAuth,
    WriteBackendCa,
    WriteCfg,
    WriteClientTls,
    in_contract_order,
)
from domain.errors import InvalidInput
from domain.peer_data import (
    Acknowledgement,
    AppPeerData,
    StoreContents,
    UnitPeerData,
    acknowledgements_wanted,
    content_digest,
    no_acknowledgement_wanted,
)
from domain.pgb_config import (
    ChangeKind,
    PgbConfig,
    change_kind,
    parse_pgb_ini,
    render_pgb_ini,
    rendered_settings,
    settings_change_kind,
)
from domain.pgb_validation import WorkloadFacts, check_published
from domain.pgb_version import OLDEST_SUPPORTED, PgbVersion, too_new
from domain.status import Severity, StatusReason
from domain.tls import (
    InvalidTlsMaterial,
    TlsFilesPlan,
    TlsInPlace,
    TlsView,
    apply_tls_intent,
    asked_by,
    asked_by_settings,
    copies_need_rewrite,
    files_in_place,
    plan_tls_files,
    rotation_needs_reload,
    runnable_part,
    serving,
    tls_reasons,
)
from domain.values import value_class

NOT_REACHABLE = "waiting for the pgbouncer container (Pebble is not reachable)"
NO_CONFIG = "no pgbouncer config yet"
BACKEND_NOT_READY = "backend database not ready: no auth file yet"
WAITING_FOR_LEADER_CFG = "waiting for the leader to publish pgbouncer.ini"
LEADER_CFG_INVALID = "pgbouncer.ini on the leader is invalid"


@value_class
class WorkloadFiles:
    """The two files as they are in this unit's container (None: the file is not there)."""

    cfg: str | None = attrs.field(default=None, repr=False)
    auth: str | None = attrs.field(default=None, repr=False)


@value_class
class PeerView:
    """Everything one unit sees of the peer relation and its container in one hook."""

    is_leader: bool
    hostname: str
    app: AppPeerData = AppPeerData()
    store: StoreContents = StoreContents()
    own: UnitPeerData = UnitPeerData()
    # None when the container cannot be reached: nothing can be read or written there.
    workload: WorkloadFiles | None = WorkloadFiles()
    # The backend-database relation has delivered credentials. "The backend is ready" (the
    # contract) is that plus the auth file being in the container.
    backend_credentials: bool = False
    # Hostnames the other live units wrote in their unit databags.
    peer_hostnames: tuple[str, ...] = ()
    # The charm's options; None when they are invalid (``hook_plan`` reports which one).
    charm: CharmConfig | None = CharmConfig()
    # pgbouncer processes on this unit.
    processes: int = 1
    # TLS: the certificates relation, this unit's TLS files, what its copies serve.
    tls: TlsView = TlsView()
    # The pgbouncer version of this unit's image, asked once per start of the container
    # (else what the unit published); None while unknown: validated as the oldest supported.
    pgbouncer_version: PgbVersion | None = None
    # The versions the other units published: the leader publishes nothing older ones refuse.
    peer_versions: tuple[PgbVersion, ...] = ()
    # What this unit remembers its pgbouncer runs (the digests of the two files it wrote and
    # signalled); None when it remembers nothing (a new unit, or memory lost).
    applied: Acknowledgement | None = None

    @property
    def app_processes(self) -> int:
        """Every pgbouncer process of the application, among which ``max_db_connections`` is
        divided: this unit's count for each live unit (the units of one application run the
        same image on the same resources)."""
        return self.processes * (1 + len(self.peer_hostnames))


class LeaderStep(Protocol):
    """Another relation's service taking part in the leader's plan."""

    def shape(self, plan: "Plan", files: WorkloadFiles | None) -> WorkloadFiles | None:
        """The leader's files as this step wants them (None: the container is unreachable,
        or the plan stopped before the files were known); may add effects and reports."""
        ...

    def answer(self, plan: "Plan") -> None:
        """After the files were published and acknowledged: answer who waits for them."""
        ...


class PeerSyncService:
    """One method per event; each returns the ordered effects for that event.

    ``steps`` are the other relations' services on the leader (see ``LeaderStep``).
    """

    # --- the seed's flowcharts -------------------------------------------------------------

    def on_relation_created(
        self, view: PeerView, steps: Sequence[LeaderStep] = ()
    ) -> list[Effect]:
        plan = Plan(view, steps)
        plan.save_hostname()
        if not view.is_leader:
            return plan.done()
        files = plan.shape(plan.leader_files())
        if files is None:
            return plan.defer(NOT_REACHABLE)
        if files.cfg is None:
            return plan.defer(NO_CONFIG)
        plan.publish_cfg(files.cfg)
        if not (view.backend_credentials and files.auth is not None):
            plan.acknowledge(files, ok=True)
            return plan.defer(BACKEND_NOT_READY)
        plan.store_auth(files.auth)
        plan.acknowledge(files, ok=True)
        plan.answer()
        return plan.done()

    def on_relation_changed(
        self, view: PeerView, steps: Sequence[LeaderStep] = ()
    ) -> list[Effect]:
        plan = Plan(view, steps)
        plan.save_hostname()
        if not view.is_leader:
            plan.follow()
            return plan.done()
        # A unit joining or leaving changes every process's share of the budget.
        files = plan.shape(plan.follow_budget(plan.leader_files()))
        if files is None:
            return plan.defer(NOT_REACHABLE)
        if files.cfg is None:
            return plan.defer(NO_CONFIG)
        plan.publish_cfg(files.cfg)
        plan.publish_hostname()
        if view.backend_credentials and files.auth is not None:
            plan.store_auth(files.auth)
        plan.acknowledge(files, ok=True)
        plan.answer()
        return plan.done()

    on_relation_joined = on_relation_changed

    # --- the contract's other events ----------------------------------------------------

    def on_secret_changed(self, view: PeerView, steps: Sequence[LeaderStep] = ()) -> list[Effect]:
        plan = Plan(view, steps)
        if view.is_leader:
            plan.lead(render_if_missing=False)
        else:
            plan.follow()
        return plan.done()

    def on_relation_departed(
        self,
        view: PeerView,
        departing_hostname: str | None,
        steps: Sequence[LeaderStep] = (),
    ) -> list[Effect]:
        plan = Plan(view, steps)
        if view.is_leader:
            plan.lead(render_if_missing=False)
            return plan.done()
        gone = departing_hostname is not None and departing_hostname == view.app.leader_hostname
        plan.follow(leader_gone=gone)
        return plan.done()

    def on_leader_elected(self, view: PeerView, steps: Sequence[LeaderStep] = ()) -> list[Effect]:
        plan = Plan(view, steps)
        if not view.is_leader:
            # Juju sends leader-elected to the new leader only; a stale event is a no-op.
            return plan.done()
        plan.save_hostname()
        # The old leader may have left before it handled a config change, or after it
        # published a config this unit had not applied yet: start from what it published,
        # then apply the charm config this unit sees.
        plan.lead(render_if_missing=True, rerender=True, take_published=True)
        return plan.done()

    def on_workload_ready(self, view: PeerView, steps: Sequence[LeaderStep] = ()) -> list[Effect]:
        """pebble-ready: the container (re)started, so no pgbouncer process runs yet."""
        plan = Plan(view, steps)
        plan.save_hostname()
        files = plan.lead(render_if_missing=True) if view.is_leader else plan.follow()
        if files is not None and files.cfg is not None:
            plan.ensure_started()
        return plan.done()

    def on_upgrade_charm(self, view: PeerView, steps: Sequence[LeaderStep] = ()) -> list[Effect]:
        """The unit runs a new revision, usually in a new pod: before anything else it serves
        the same files again. Missing files are restored (leader) or adopted (follower), then
        one Reload, which starts the processes (and adds the layer) where none runs and
        never cuts the clients of one that does."""
        plan = Plan(view, steps)
        plan.save_hostname()
        files = plan.lead(render_if_missing=False) if view.is_leader else plan.follow()
        if files is not None and files.cfg is not None:
            plan.signal(ChangeKind.RELOAD)
        return plan.done()

    def on_config_changed(self, view: PeerView, steps: Sequence[LeaderStep] = ()) -> list[Effect]:
        plan = Plan(view, steps)
        if view.is_leader:
            plan.lead(render_if_missing=True, rerender=True)
        else:
            plan.follow()
        return plan.done()

    def on_tls_changed(self, view: PeerView, steps: Sequence[LeaderStep] = ()) -> list[Effect]:
        """The certificates events, and the backend's CA: the leader publishes the TLS
        settings (every leader hook does, in ``Plan.shape``); each unit puts its own files
        in place (``Plan._file_effects``)."""
        return self.on_update_status(view, steps)

    def on_update_status(self, view: PeerView, steps: Sequence[LeaderStep] = ()) -> list[Effect]:
        plan = Plan(view, steps)
        if view.is_leader:
            plan.lead(render_if_missing=False)
        else:
            plan.follow()
        return plan.done()


def _stronger(a: ChangeKind, b: ChangeKind) -> ChangeKind:
    order = (ChangeKind.NONE, ChangeKind.RELOAD, ChangeKind.RESTART)
    return max(a, b, key=order.index)


def parse_or_none(text: str | None) -> PgbConfig | None:
    if text is None:
        return None
    try:
        return parse_pgb_ini(text)
    except InvalidInput:
        return None


@attrs.define(eq=False, repr=False)
class Plan:
    """The effects of one hook, built step by step by the services.

    ``wanted`` is what the container's files will be once the plan is carried out; the plan
    writes each file at most once, in ``done``, and signals pgbouncer at most once.
    """

    view: PeerView
    steps: Sequence[LeaderStep] = ()
    effects: list[Effect] = attrs.Factory(list)
    pending: ChangeKind = ChangeKind.NONE
    wanted: WorkloadFiles | None = None
    # What the application databag will hold as cfg_file, and this unit's acknowledgement.
    published_cfg: str | None = None
    own_ack: Acknowledgement | None = None
    # Leader: a client waits for its credentials, so the followers' acknowledgements of what
    # it publishes are wanted (a step says so while shaping the files).
    acknowledgements_wanted: bool = False
    _shaped: bool = False
    # This unit's TLS files (domain.tls): decided first, every config copy depends on them.
    tls: TlsFilesPlan = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.tls = plan_tls_files(self.view.tls)
        self.wanted = self.view.workload
        self.published_cfg = self.view.app.cfg_file
        self.own_ack = self.view.own.ack

    # --- what services add -----------------------------------------------------------------

    def add(self, effect: Effect) -> None:
        self.effects.append(effect)

    def report(self, severity: Severity, message: str) -> None:
        self.effects.append(Report(StatusReason(severity, message)))

    def defer_later(self, reason: str, severity: Severity = Severity.WAITING) -> None:
        """Report ``reason`` and defer the event, once the rest of the plan is carried out."""
        self.report(severity, reason)
        self.effects.append(Defer(reason))

    def defer(self, reason: str) -> list[Effect]:
        self.defer_later(reason)
        return self.done()

    # --- the peer relation ---------------------------------------------------------------

    def save_hostname(self) -> None:
        if self.view.own.hostname != self.view.hostname:
            self.effects.append(SetHostname(self.view.hostname))
        version = self.view.pgbouncer_version
        if version is not None and self.view.own.pgbouncer_version != version:
            self.effects.append(SetPgbouncerVersion(version))

    def facts(self) -> WorkloadFacts:
        """What this unit validates a config against (``domain.pgb_validation``)."""
        return WorkloadFacts(
            version=self.view.pgbouncer_version or OLDEST_SUPPORTED,
            files=files_in_place(self.tls.in_place),
            processes=self.view.processes,
        )

    def check_runnable_here(self, cfg: str) -> None:
        """``InvalidInput`` unless this unit can run ``cfg``: as published where its TLS files
        are in place, without the TLS settings whose files it lacks (it serves plain until
        they are there, ``domain.tls``)."""
        parsed = parse_pgb_ini(cfg)
        runnable = runnable_part(parsed, self.tls.in_place)
        check_published(cfg if runnable is parsed else render_pgb_ini(runnable), self.facts())

    def _too_new_for_units(self, cfg: str) -> str | None:
        """Why some unit's pgbouncer would refuse ``cfg``, or None."""
        view = self.view
        oldest = min((view.pgbouncer_version or OLDEST_SUPPORTED, *view.peer_versions))
        parsed = parse_or_none(cfg)
        newer = too_new(parsed, oldest) if parsed is not None else []
        if not newer:
            return None
        needed = max(version for _, version in newer)
        names = ", ".join(name for name, _ in newer)
        return f"pgbouncer.ini uses {names}: needs pgbouncer {needed}, a unit runs {oldest}"

    def publish_cfg(self, cfg: str) -> None:
        if self.view.app.cfg_file != cfg:
            if (too_new_reason := self._too_new_for_units(cfg)) is not None:
                self.report(Severity.BLOCKED, too_new_reason)
                return
            try:
                self.effects.append(PublishCfg(cfg))
            except InvalidInput as err:
                self.report(Severity.BLOCKED, f"{LEADER_CFG_INVALID}: {err}")
                return
            self.published_cfg = cfg
        self._request_acknowledgements()

    def _request_acknowledgements(self) -> None:
        """Leader: ask the followers to acknowledge the published config while a client waits
        for it, and only then: each acknowledgement wakes every other unit.

        ``ack_wanted`` names the config it is about, so it is written with every new
        ``cfg_file`` (in the same hook: no more hooks). A request no longer needed is
        withdrawn with the next publication, never on its own: that write alone would wake
        every follower.
        """
        published = self.published_cfg
        if published is None:
            return
        current = self.view.app.ack_wanted
        if self.acknowledgements_wanted:
            wanted = acknowledgements_wanted(published)
        elif current == acknowledgements_wanted(published):
            return  # wanted until now for this very config: withdrawn with the next one
        else:
            wanted = no_acknowledgement_wanted(published)
        if wanted != current:
            self.effects.append(RequestAcknowledgements(wanted))

    def publish_hostname(self) -> None:
        if self.view.app.leader_hostname != self.view.hostname:
            self.effects.append(PublishLeaderHostname(self.view.hostname))

    def store_auth(self, auth: str) -> None:
        if self.view.store.auth_file == auth:
            return
        try:
            self.effects.append(StoreAuth(auth))
        except InvalidInput as err:
            self.report(Severity.BLOCKED, f"auth file on the leader is invalid: {err}")

    def acknowledge(self, files: WorkloadFiles, ok: bool) -> None:
        """Say what this unit runs: a follower in its unit databag, only when the leader asks
        (``AppPeerData.acknowledgement_wanted``); the leader only to itself (its files are
        what it publishes), for the clients' gate."""
        if files.cfg is None and ok:
            return  # nothing applied yet, nothing refused: nothing to say
        ack = Acknowledgement.of(files.cfg, files.auth, ok)
        self.own_ack = ack
        if self.view.is_leader or not self.view.app.acknowledgement_wanted():
            return
        if self.view.own.ack != ack:
            self.effects.append(Acknowledge(ack))

    def ensure_started(self) -> None:
        self.signal(ChangeKind.RESTART)

    def signal(self, kind: ChangeKind) -> None:
        """Ask for a reload or restart; one hook sends at most one, the stronger."""
        self.pending = _stronger(self.pending, kind)

    # --- the other relations' steps ----------------------------------------------------------

    def shape(self, files: WorkloadFiles | None) -> WorkloadFiles | None:
        """The leader's files after every step changed them as it wants; steps run once."""
        if self._shaped:
            return files
        self._shaped = True
        for step in self.steps:
            files = step.shape(self, files)
        files = self._tls_intent(files)
        if files is not None:
            self.wanted = files
        return files

    def _tls_intent(self, files: WorkloadFiles | None) -> WorkloadFiles | None:
        """Leader: its config with the TLS settings its relations call for (domain.tls)."""
        current = parse_or_none(files.cfg) if files is not None else None
        if files is None or current is None:
            return files
        wanted = apply_tls_intent(current, self.view.tls.intent())
        if wanted == current:
            return files
        return WorkloadFiles(render_pgb_ini(wanted), files.auth)

    def answer(self) -> None:
        for step in self.steps:
            step.answer(self)

    # --- the end -------------------------------------------------------------------------

    def done(self) -> list[Effect]:
        """The effects in the contract's order: each file written once, at most one Reload
        or Restart, at most one Defer, no reason twice."""
        if not self._shaped and self.view.is_leader:
            # The plan stopped before the files were known: the steps still report.
            self.shape(None)
        effects = [*self.effects, *self._file_effects()]
        if self.pending is ChangeKind.RESTART:
            effects.append(Restart())
        elif self.pending is ChangeKind.RELOAD:
            effects.append(Reload())
        effects += self._remember_applied()
        deferrals = [effect for effect in effects if isinstance(effect, Defer)]
        # Two services may find the same reason (no container): it is shown once.
        reports = list(dict.fromkeys(e for e in effects if isinstance(e, Report)))
        actions = [e for e in effects if not isinstance(e, Report | Defer)]
        return in_contract_order(actions + reports + deferrals[:1])

    def _remember_applied(self) -> list[Effect]:
        """What the unit's pgbouncer will run once the files are written and signalled (the
        effect comes after both, so a failure leaves the old record and the next hook retries).
        """
        wanted = self.wanted
        if self.view.workload is None or wanted is None or wanted.cfg is None:
            return []
        applied = Acknowledgement.of(wanted.cfg, wanted.auth, ok=True)
        return [] if self.view.applied == applied else [RememberApplied(applied)]

    def _file_effects(self) -> list[Effect]:
        current, wanted = self.view.workload, self.wanted
        if current is None or wanted is None:
            return []
        effects: list[Effect] = []
        kind = ChangeKind.NONE
        tls, served = self.tls, self.view.tls.served
        effects += self._tls_file_effects()
        if wanted.cfg is not None and wanted.cfg != current.cfg:
            effects.append(WriteCfg(wanted.cfg, tls.in_place))
            kind = self._change_kind(current.cfg, parse_pgb_ini(wanted.cfg))
        # The copies follow this unit's TLS files even when the main file is unchanged.
        asked = self._asked_tls(current.cfg, wanted.cfg)
        if asked is not None and wanted.cfg is not None:
            if wanted.cfg == current.cfg and copies_need_rewrite(asked, tls.in_place, served):
                effects.append(WriteCfg(wanted.cfg, tls.in_place))
            if serving(asked, tls.in_place) != served or rotation_needs_reload(asked, tls):
                kind = _stronger(kind, ChangeKind.RELOAD)
        effects += [Report(reason) for reason in tls_reasons(self.view.tls, asked, tls.in_place)]
        copies_written = any(isinstance(effect, WriteCfg) for effect in effects)
        served_after = serving(asked, tls.in_place) if copies_written else served
        if served_after != self.view.tls.served_remembered:
            effects.append(RememberTlsServed(served_after))
        if wanted.auth != current.auth:
            effects.append(WriteAuth(wanted.auth) if wanted.auth is not None else RemoveAuth())
            kind = _stronger(kind, ChangeKind.RELOAD)
        # Without a config no pgbouncer can run, so there is nothing to signal yet.
        if wanted.cfg is not None:
            self.signal(kind)
        return effects

    def _tls_file_effects(self) -> list[Effect]:
        tls = self.tls
        effects: list[Effect] = []
        if tls.write_client is not None:
            effects.append(WriteClientTls(tls.write_client))
        if tls.write_backend_ca is not None:
            try:
                effects.append(WriteBackendCa(tls.write_backend_ca))
            except InvalidTlsMaterial as err:
                effects.append(
                    Report(StatusReason(Severity.WAITING, f"the backend's CA is unusable: {err}"))
                )
        if tls.remove_client:
            effects.append(RemoveClientTls())
        if tls.remove_backend_ca:
            effects.append(RemoveBackendCa())
        return effects

    def _change_kind(self, current: str | None, new: PgbConfig) -> ChangeKind:
        """What replacing the file ``current`` by ``new`` needs of pgbouncer.

        A file this unit wrote and signalled itself (its memory names it) is valid and as
        ``render_pgb_ini`` wrote it: only its ``[pgbouncer]`` settings are read, since a whole
        parse of a large ``[databases]`` section costs more than the rest of a follower's
        hook. Any other file is parsed whole (an invalid one means a restart).
        """
        settings = self._own_settings(current)
        if settings is not None:
            return settings_change_kind(settings, new)
        return change_kind(parse_or_none(current), new)

    def _own_settings(self, current: str | None) -> dict[str, str] | None:
        """The ``[pgbouncer]`` settings of ``current`` when this unit wrote it itself (its
        memory names it, so it is valid and as ``render_pgb_ini`` wrote it); else None."""
        applied = self.view.applied
        if current is None or applied is None or applied.cfg_digest != content_digest(current):
            return None
        return rendered_settings(current)

    def _asked_tls(self, current: str | None, wanted: str | None) -> TlsInPlace | None:
        """The TLS files the config this unit will run names (None: no usable config). An
        unchanged file of its own is read by its settings alone: a whole parse of a large
        config in every quiet hook cost more than the rest of the hook."""
        settings = self._own_settings(current) if wanted == current else None
        if settings is not None:
            return asked_by_settings(settings.get)
        final = parse_or_none(wanted)
        return asked_by(final) if final is not None else None

    # --- the leader and the follower -------------------------------------------------------

    def adopt(
        self, current: WorkloadFiles, cfg: str | None, auth: str | None
    ) -> tuple[WorkloadFiles, bool]:
        """Take the given published files where they differ from the container.

        Returns the files as they will be and whether everything given was valid. A file
        that fails validation is not taken: the unit keeps its last good one.
        """
        ok = True
        new_cfg, new_auth = current.cfg, current.auth
        if cfg is not None and cfg != current.cfg:
            try:
                self.check_runnable_here(cfg)
            except InvalidInput as err:
                ok = False
                self.report(Severity.WAITING, f"invalid cfg_file from the leader: {err}")
            else:
                new_cfg = cfg
        if auth is not None and auth != current.auth:
            try:
                parse_auth_file(auth)
            except InvalidInput as err:
                ok = False
                self.report(Severity.WAITING, f"invalid auth file from the leader: {err}")
            else:
                new_auth = auth
        if new_cfg is not None and self._unapplied(current):
            self.signal(ChangeKind.RELOAD)
        self.wanted = WorkloadFiles(new_cfg, new_auth)
        return self.wanted, ok

    def _unapplied(self, current: WorkloadFiles) -> bool:
        """Whether the files on disk are not the ones this unit remembers running.

        The memory (else, from an older revision, the acknowledgement) is written only after
        the signal went through, so a hook that wrote the files and then lost Pebble leaves
        this trace; the next hook reloads.
        """
        ack = self.view.applied or self.view.own.ack
        if ack is None or current.cfg is None:
            return False
        on_disk = Acknowledgement.of(current.cfg, current.auth, ack.ok)
        return (ack.cfg_digest, ack.auth_digest) != (on_disk.cfg_digest, on_disk.auth_digest)

    def leader_files(self, take_published: bool = False) -> WorkloadFiles | None:
        """The leader's files after restoring any that is missing from what it published.

        With ``take_published`` (a new leader), the published files replace its own where
        they differ and are valid: only a leader ever changes them, so what the old leader
        published is never older than what a follower runs.
        """
        current = self.view.workload
        if current is None:
            return None
        app, store = self.view.app, self.view.store
        files, _ok = self.adopt(
            current,
            app.cfg_file if take_published or current.cfg is None else None,
            store.auth_file if take_published or current.auth is None else None,
        )
        return files

    def lead(
        self, render_if_missing: bool, rerender: bool = False, take_published: bool = False
    ) -> WorkloadFiles | None:
        """The leader outside the seed's hooks: restore, (re-)render, publish, acknowledge."""
        view = self.view
        files = self.leader_files(take_published)
        wants_render = rerender or (render_if_missing and files is not None and files.cfg is None)
        if files is not None and view.charm is not None and wants_render:
            files = self._render(files, view.charm)
        files = self.shape(self.follow_budget(files))
        if files is None:
            self.report(Severity.WAITING, NOT_REACHABLE)
            return None
        if files.cfg is None:
            self.report(Severity.WAITING, NO_CONFIG)
            return files
        self.publish_cfg(files.cfg)
        self.publish_hostname()
        if view.backend_credentials and files.auth is not None:
            self.store_auth(files.auth)
        self.acknowledge(files, ok=True)
        self.answer()
        return files

    def follow_budget(self, files: WorkloadFiles | None) -> WorkloadFiles | None:
        """Re-render when the budget's settings no longer match the number of units (one
        joined or left); report when the budget cannot hold (more processes than it)."""
        charm = self.view.charm
        if charm is None or files is None or files.cfg is None:
            return files
        share = budget(charm, self.view.app_processes)
        if share.over:
            self.report(Severity.BLOCKED, share.describe_overrun())
        current = parse_or_none(files.cfg)
        if current is None or current.setting("max_db_connections") is None:
            # Invalid (reported where it is published), or not rendered by the charm's
            # options yet: config-changed renders it.
            return files
        if all(current.setting(key) == value for key, value in share.settings().items()):
            return files
        return self._render(files, charm)

    def _render(self, files: WorkloadFiles, charm: CharmConfig) -> WorkloadFiles:
        processes = self.view.app_processes
        if files.cfg is None:
            text = render_pgb_ini(initial_config(charm, processes))
            self.wanted = WorkloadFiles(text, files.auth)
            return self.wanted
        try:
            current = parse_pgb_ini(files.cfg)
        except InvalidInput as err:
            self.report(Severity.BLOCKED, f"{LEADER_CFG_INVALID}: {err}")
            return files
        text = render_pgb_ini(apply_charm_config(current, charm, processes))
        self.wanted = WorkloadFiles(text, files.auth)
        return self.wanted

    def follow(self, leader_gone: bool = False) -> WorkloadFiles | None:
        """A follower adopts what the leader published; reports what it refused."""
        view = self.view
        if view.workload is None:
            self.defer_later(NOT_REACHABLE)
            return None
        if leader_gone or self._leader_missing():
            self.report(
                Severity.WAITING,
                f"leader {view.app.leader_hostname} departed; waiting for a new leader",
            )
        if view.app.cfg_file is None:
            self.report(Severity.WAITING, WAITING_FOR_LEADER_CFG)
        files, ok = self.adopt(view.workload, view.app.cfg_file, view.store.auth_file)
        if self._auth_withdrawn(files):
            files = self.wanted = WorkloadFiles(files.cfg, None)
        self.acknowledge(files, ok)
        return files

    def _auth_withdrawn(self, files: WorkloadFiles) -> bool:
        """The leader took the auth file back (the backend relation is gone): the store has
        none and the config this unit runs, the leader's, no longer names an auth user."""
        if self.view.store.auth_file is not None or files.auth is None or files.cfg is None:
            return False
        if files.cfg != self.view.app.cfg_file:
            return False  # not running the leader's config: nothing to conclude
        running = parse_or_none(files.cfg)
        return running is not None and running.setting("auth_user") is None

    def _leader_missing(self) -> bool:
        leader = self.view.app.leader_hostname
        peers = self.view.peer_hostnames
        return bool(peers) and leader is not None and leader not in peers
