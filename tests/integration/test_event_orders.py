"""Event orders: many units of the real charm, fake workloads, Juju's interleavings.

``MultiUnitModel`` runs each unit's hooks with ``ops.testing`` and delivers the events Juju
would send in an order drawn by a seeded ``random.Random``. The workloads are
``FakeWorkload`` (files in memory, reloads and restarts counted), so hundreds of orders run in
seconds. Every order must converge (every unit runs the published files and acknowledges
them, the leader's hostname is published), with no uncaught exception and no unit left
deferring. The figures (seeds, hook runs, deferrals) are collected in ``FIGURES`` and printed
by ``test_print_figures`` (run pytest with ``-s`` to see them).
"""

import concurrent.futures
import dataclasses
import logging
import multiprocessing
import os
import random
from collections.abc import Sequence

import pytest

from domain.auth_file import md5_secret
from domain.charm_config import CharmConfig, apply_charm_config
from domain.pgb_config import parse_pgb_ini
from localenv.juju_model import (
    APP_CHANGED,
    CHANGED,
    CONFIG_CHANGED,
    CREATED,
    DEPARTED,
    JOINED,
    UPDATE_STATUS,
    HookFailed,
    MultiUnitModel,
    NotSettled,
)

FIGURES: dict[str, dict[str, object]] = {}

AUTH = f'"pgbouncer_auth_pgbouncer_k8s" "{md5_secret("pgbouncer_auth_pgbouncer_k8s", "pw")}"\n'
POOL_MODES = ("session", "transaction", "statement")


def config_problems(model: MultiUnitModel) -> list[str]:
    """Where the published pgbouncer.ini does not carry what the charm config decides."""
    cfg = model.published_cfg()
    if cfg is None:
        return ["no cfg_file published"]
    published = parse_pgb_ini(cfg)
    options = model.config
    charm = CharmConfig(
        listen_port=int(options["listen_port"]),
        pool_mode=str(options["pool_mode"]),
        max_db_connections=int(options["max_db_connections"]),
    )
    # The budget is the application's: divided among every process of every live unit.
    wanted = apply_charm_config(published, charm, model.processes * len(model.units))
    return [
        f"{key} is {published.setting(key)!r} in cfg_file, the config makes it {value!r}"
        for key, value in wanted.pgbouncer
        if published.setting(key) != value
    ]


def assert_converged(model: MultiUnitModel) -> None:
    problems = model.divergence()
    assert not problems, "\n".join(problems)


def bring_up(units: int, seed: int = 0) -> MultiUnitModel:
    model = MultiUnitModel(units)
    model.setup_backend(AUTH)
    model.settle(random.Random(seed))
    assert_converged(model)
    return model


# --- a random search over interleavings -----------------------------------------------------


def random_script(seed: int, units: int) -> tuple[MultiUnitModel, bool]:
    """Bring-up, a late leader, the backend, one or two config changes in flight, then one
    of: the leader removed and another elected, a follower removed, a unit added, a unit
    rescheduled with an empty container; each step after a random number of deliveries.

    Returns the settled model and whether the lead moved after the last config change.
    """
    rng = random.Random(seed)
    model = MultiUnitModel(units, leader=None)
    model.run(rng, rng.randint(0, 3 * units))
    model.elect(rng.choice(model.units))
    model.run(rng, rng.randint(0, 10))
    model.setup_backend(AUTH)
    model.run(rng, rng.randint(0, 10))
    for _ in range(rng.choice((1, 2))):
        model.set_config(pool_mode=rng.choice(POOL_MODES), max_db_connections=rng.randint(0, 200))
        model.run(rng, rng.randint(0, 10))
    moved = False
    change = rng.random()
    if change < 0.3:
        leader = model.leader
        assert leader is not None
        model.remove_unit(leader)
        model.run(rng, rng.randint(0, 5))
        model.elect(rng.choice(model.units))
        moved = True
    elif change < 0.5:
        model.remove_unit(rng.choice(model.followers))
    elif change < 0.7:
        model.add_unit()
    elif change < 0.85:
        model.reschedule(rng.choice(model.units))
    leader = model.leader
    if leader is not None and model.published_auth() is model.workload(leader).read_auth() is None:
        # The auth file went with the old leader's container before it reached the store:
        # the backend handler sets the backend up again on the leader.
        model.setup_backend(AUTH)
    model.run(rng, rng.randint(0, 10))
    model.settle(rng)
    return model, moved


@dataclasses.dataclass
class SearchResult:
    seeds: int = 0
    hook_runs: int = 0
    most_hooks: int = 0
    deferrals: int = 0
    stale_after_lead_moved: list[int] = dataclasses.field(default_factory=list)
    failures: list[str] = dataclasses.field(default_factory=list)

    def add(self, other: "SearchResult") -> None:
        self.seeds += other.seeds
        self.hook_runs += other.hook_runs
        self.most_hooks = max(self.most_hooks, other.most_hooks)
        self.deferrals += other.deferrals
        self.stale_after_lead_moved += other.stale_after_lead_moved
        self.failures += other.failures


def search(units: int, seeds: Sequence[int]) -> SearchResult:
    """Run ``random_script`` for each seed and check every outcome (one worker's share)."""
    # Thousands of hooks log at DEBUG; warnings and errors still reach HookFailed messages.
    logging.disable(logging.INFO)
    result = SearchResult()
    try:
        for seed in seeds:
            result.seeds += 1
            try:
                model, moved = random_script(seed, units)
            except (NotSettled, HookFailed) as err:
                result.failures.append(f"seed {seed}: {err}")
                continue
            with model:
                runs = model.metrics.runs()
                result.hook_runs += runs
                result.most_hooks = max(result.most_hooks, runs)
                result.deferrals += model.metrics.deferred()
                if problems := model.divergence():
                    result.failures.append(f"seed {seed}: not converged: {problems}")
                if problems := config_problems(model):
                    # Counted apart when the lead moved: a new leader must apply what the
                    # old one never handled (test_new_leader_applies_a_config_change_...).
                    if moved:
                        result.stale_after_lead_moved.append(seed)
                    result.failures.append(f"seed {seed}: config not applied: {problems}")
    finally:
        logging.disable(logging.NOTSET)
    return result


@pytest.mark.parametrize(("units", "seeds"), [(3, 130), (5, 70)])
def test_random_interleavings_converge(units: int, seeds: int) -> None:
    # The seeds are shared out among one process per core (forked: nothing to import again).
    workers = max(1, min(2, os.cpu_count() or 1))
    shares = [range(first, seeds, workers) for first in range(workers)]
    total = SearchResult()
    with concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("fork")
    ) as pool:
        for result in pool.map(search, [units] * workers, shares):
            total.add(result)

    FIGURES[f"random orders, {units} units"] = {
        "seeds": total.seeds,
        "hook runs": total.hook_runs,
        "hook runs per seed (mean)": round(total.hook_runs / total.seeds, 1),
        "hook runs per seed (max)": total.most_hooks,
        "deferrals": total.deferrals,
        "seeds whose config change was lost when the lead moved": len(
            total.stale_after_lead_moved
        ),
    }
    assert total.seeds == seeds
    assert not total.failures, "\n".join(total.failures[:5])
    # A config change the old leader never handled is applied by the new one.
    assert total.stale_after_lead_moved == []


# --- the hard cases ------------------------------------------------------------------------


def test_a_follower_up_before_the_leader() -> None:
    model = MultiUnitModel(0)
    first, second = model.add_unit(), model.add_unit()
    model.settle(random.Random(1))
    for n in (first, second):
        assert model.workload(n).read_cfg() is None
        assert model.deferred(n) == []
        assert model.unit_status(n) == "waiting: waiting for the leader to publish pgbouncer.ini"

    leader = model.add_unit()
    model.elect(leader)
    model.setup_backend(AUTH)
    model.settle(random.Random(2))

    assert_converged(model)
    assert model.published_auth() == AUTH


@pytest.mark.parametrize("seed", range(10))
def test_the_leader_elected_late(seed: int) -> None:
    rng = random.Random(seed)
    model = MultiUnitModel(3, leader=None)
    model.settle(rng)
    assert model.published_cfg() is None

    model.elect(2)
    model.setup_backend(AUTH)
    model.settle(rng)

    assert_converged(model)
    assert config_problems(model) == []


def test_the_leader_removed_mid_propagation() -> None:
    model = bring_up(3)
    model.set_config(pool_mode="transaction")
    model.deliver(0, CONFIG_CHANGED)  # the leader publishes; no follower has it yet
    assert parse_pgb_ini(model.published_cfg() or "").setting("pool_mode") == "transaction"

    model.remove_unit(0)
    model.elect(1)
    model.settle(random.Random(3))

    assert_converged(model)
    assert config_problems(model) == []
    assert model.unit_status(1).startswith("active")


def test_new_leader_applies_a_config_change_the_old_leader_never_handled() -> None:
    model = bring_up(3)
    model.set_config(pool_mode="transaction")
    # Unit 1 handles config-changed as a follower: nothing new is published, nothing to do.
    model.deliver(1, CONFIG_CHANGED)
    # The leader goes before its own config-changed runs; unit 1 takes over.
    model.remove_unit(0)
    model.elect(1)
    model.settle(random.Random(4))

    assert_converged(model)  # converged, but on the old pool_mode:
    assert config_problems(model) == []


@pytest.mark.parametrize("seed", range(20))
def test_two_config_changes_in_flight(seed: int) -> None:
    rng = random.Random(seed)
    model = bring_up(3, seed)
    restarts = {n: model.counters(n)["restarts"] for n in model.units}

    model.set_config(pool_mode="transaction", max_db_connections=40)
    model.run(rng, rng.randint(0, 6))
    model.set_config(pool_mode="statement", max_db_connections=0)
    model.settle(rng)

    assert_converged(model)
    assert config_problems(model) == []
    assert {n: model.counters(n)["restarts"] for n in model.units} == restarts


@pytest.mark.parametrize("which", ["follower", "leader"])
def test_a_unit_rescheduled_with_an_empty_container(which: str) -> None:
    model = bring_up(3)
    model.set_config(pool_mode="transaction")
    model.settle(random.Random(5))
    n = 0 if which == "leader" else 2
    published = model.published_cfg()
    starts = model.counters(n)["starts"]

    model.reschedule(n)
    assert model.workload(n).read_cfg() is None
    model.settle(random.Random(6))

    assert_converged(model)
    assert model.published_cfg() == published  # the leader restored its files, not a new render
    assert model.workload(n).read_auth() == AUTH
    assert model.counters(n)["starts"] == starts + 1


def test_an_unreachable_container_defers_then_catches_up() -> None:
    model = bring_up(3)
    model.set_reachable(2, False)
    model.set_config(pool_mode="statement")
    model.settle(random.Random(7), allow_deferred=True)
    assert model.deferred(2) != []
    assert model.workload(1).read_cfg() == model.published_cfg()

    model.set_reachable(2, True)
    model.update_status(2)
    model.settle(random.Random(8))

    assert_converged(model)
    assert model.deferred(2) == []


def test_juju_without_secrets_keeps_the_auth_file_in_the_app_databag() -> None:
    model = MultiUnitModel(3, juju_version="2.9.44")
    model.setup_backend(AUTH)
    model.settle(random.Random(9))

    assert_converged(model)
    assert model.app_data["auth_file"] == AUTH
    assert model.secrets() == {}


# --- the model keeps Juju's rules ------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_deliveries_follow_jujus_order_rules(seed: int) -> None:
    model, _moved = random_script(seed, 4)
    with model:
        seen: dict[int, list[tuple[str, int | None]]] = {}
        for delivery in model.log:
            event = delivery.event
            before = seen.setdefault(event.unit, [])
            # relation-created is each unit's first hook.
            assert before or event.kind == CREATED, delivery
            if event.kind in (CHANGED, DEPARTED):
                # Nothing about a remote unit before relation-joined about it.
                assert (JOINED, event.remote) in before, delivery
            if event.kind == JOINED:
                assert (JOINED, event.remote) not in before, delivery
            before.append((event.kind, event.remote))
        assert model.metrics.runs() == len(model.log)


def test_pending_events_coalesce() -> None:
    model = bring_up(3)
    model.set_config(pool_mode="transaction")
    model.set_config(pool_mode="statement")
    model.update_status(1)
    model.update_status(1)

    kinds = sorted((event.unit, event.kind) for event in model.pending())
    assert kinds == [
        (0, CONFIG_CHANGED),
        (1, CONFIG_CHANGED),
        (1, UPDATE_STATUS),
        (2, CONFIG_CHANGED),
    ]
    model.settle(random.Random(14))
    assert_converged(model)
    assert config_problems(model) == []


def test_only_the_leader_writes_and_followers_read_the_newest_secret() -> None:
    model = bring_up(3)
    (secret_id, label, revision), *others = model.secret_info()
    assert others == []
    assert label == "pgb-peers-store"
    new_auth = AUTH + '"relation_id_4" "Z4OtFCe6r5HG6mk1XuR6LkwZ"\n'

    model.setup_backend(new_auth)  # a new auth file in the leader's container
    model.settle(random.Random(15))

    assert_converged(model)
    assert model.secret_info() == [(secret_id, label, revision + 1)]
    for n in model.units:
        assert model.workload(n).read_auth() == new_auth
    assert "Z4OtFCe6r5HG6mk1XuR6LkwZ" not in "".join(model.app_data.values())


# --- what one change costs -----------------------------------------------------------------


@pytest.mark.parametrize("units", [3, 5])
def test_cost_of_bring_up_and_of_one_config_change(units: int) -> None:
    model = MultiUnitModel(units)
    model.setup_backend(AUTH)
    model.settle(random.Random(10))
    assert_converged(model)
    bring_up_runs = model.metrics.copy()
    before = {n: model.counters(n) for n in model.units}

    model.set_config(pool_mode="transaction", max_db_connections=50)
    model.settle(random.Random(11))

    assert_converged(model)
    change = model.metrics.since(bring_up_runs)
    assert change.deferred() == 0
    for n in model.followers:
        name = model.unit_name(n)
        # One relation-changed for the leader's new cfg_file per follower.
        assert change.runs(APP_CHANGED, name) == 1
    for n in model.units:
        after = model.counters(n)
        assert after["reloads"] - before[n]["reloads"] == 1
        assert after["restarts"] == before[n]["restarts"]
    FIGURES[f"fake workload, {units} units"] = {
        "bring-up hook runs per unit": bring_up_runs.per_unit(),
        "bring-up hook runs by event": bring_up_runs.per_kind(),
        "bring-up deferrals": dict(bring_up_runs.deferrals),
        "bring-up events deferred": len(bring_up_runs.deferred_events),
        "config change hook runs per unit": change.per_unit(),
        "config change hook runs by event": change.per_kind(),
        "config change: relation-changed about a unit databag (acks)": change.runs(CHANGED),
        "config change deferrals": change.deferred(),
    }


# The 50-unit figures are a benchmark (bench/run.py), not a test: they take minutes.


def test_print_figures() -> None:
    for title, figures in FIGURES.items():
        print(f"\n== {title}")
        for key, value in figures.items():
            print(f"   {key}: {value}")
