"""Every benchmark figure of the project in one command: ``make bench``.

Runs the sections listed in ``SECTIONS`` (each one function), prints one table (figure, value,
target, verdict) and writes it to ``bench/RESULTS.md`` with the machine, the date, how loaded
the machine was, and the exact command behind each figure. A missed target is a verdict
(``MISSED``) and makes the exit status 1, as does a section that failed with an error; a
section that cannot run here (no PostgreSQL, not root, no valgrind) says why in its rows
("not measured") and does not change the exit status.

The figures are the ones the issue asks for:

- ``bench/bench_pgb_config.py``: pgbouncer.ini parse plus render, 1,000 databases, the way
  the real hook does it (every entry split, the per-process copies rendered);
- ``bench/hook_costs.py``: Pebble calls of one follower relation-changed, import cost of the
  charm against a bare ``import ops`` with the bytecode cached (instructions and wall time),
  the config work of one follower hook with a new 1,000-database config, peak memory;
- ``bench/hook_counts.py`` on ``localenv/juju_model.py`` (the multi-unit model): hooks for one
  config change with 3, 10 and 50 units and for a new client relation with 3 and 10, split
  into hooks that changed something and hooks that found nothing to do; bring-up hook runs;
  pgbench through pgbouncer while 20 config changes propagate by reload, then with restarts.

Usage: ``.venv/bin/python bench/run.py [--skip SECTION]... [--units 3,10,50]``; the section
names are the keys of ``SECTIONS``.
"""

import argparse
import collections
import dataclasses
import datetime
import functools
import glob
import math
import os
import platform
import random
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path[:0] = [str(BENCH), str(ROOT / "src"), str(ROOT / "lib"), str(ROOT)]

import bench_pgb_config  # noqa: E402
import hook_costs  # noqa: E402
import hook_counts  # noqa: E402

if TYPE_CHECKING:
    from localenv.juju_model import MultiUnitModel
    from localenv.postgres_cluster import PostgresCluster

RESULTS = BENCH / "RESULTS.md"
PY = ".venv/bin/python"


@dataclasses.dataclass
class Row:
    figure: str
    value: str
    target: str = "-"
    # "ok", "MISSED", "info" (no target) or "not measured".
    verdict: str = "info"


@dataclasses.dataclass
class Section:
    title: str
    # The exact command(s) behind the figures, for RESULTS.md.
    command: str
    rows: list[Row]
    # Details (breakdowns, noise) for RESULTS.md.
    notes: list[str] = dataclasses.field(default_factory=list)


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


# ---------------------------------------------------------------------------------------------
# pgbouncer.ini parse + render


def parse_render() -> Section:
    figures = bench_pgb_config.measure()
    median = figures["hook_1000_dbs_median_ms"]
    best = figures["hook_1000_dbs_min_ms"]
    first = _first_parse_in_fresh_processes(runs=7)
    return Section(
        "pgbouncer.ini parse + render, 1,000 databases",
        f"`{PY} bench/bench_pgb_config.py`: `measure()` times, {int(figures['runs'])} times each"
        " in one process (CPU time, time.process_time), on a"
        f" {figures['text_kib']:.0f} KiB text of 1,000 `[databases]` entries, one in five with"
        " a quoted password: the real hook's work (`hook_round_trip`: parse, every entry split"
        " into its parameters, the main file and the per-process copies of 2 processes"
        " rendered), and the lazy round trip `render_pgb_ini(parse_pgb_ini(text))`, which"
        " proves every entry valid but splits none. The first hook round trip in a fresh"
        " process (which also compiles the parser's regexes) is timed in 7 separate processes:"
        f" `{PY} -c '<build the same text; time one hook round trip>'`.",
        [
            Row(
                "parse, every entry split, render + copies, median",
                f"{median:.2f} ms",
                f"<= {bench_pgb_config.TARGET_MS:g} ms",
                verdict(median <= bench_pgb_config.TARGET_MS),
            ),
            Row(
                "  lazy round trip (nothing split), median",
                f"{figures['parse_render_1000_dbs_median_ms']:.2f} ms",
            ),
            Row(
                "  lazy, no value needing quotes, median",
                f"{figures['parse_render_1000_dbs_unquoted_median_ms']:.2f} ms",
            ),
            Row("  first hook round trip in a fresh process, median of 7", f"{first:.2f} ms"),
            Row(
                "  hook round trip, warm, instructions (callgrind)",
                _work_instructions("round_trip"),
            ),
        ],
        [
            f"hook round trip: best run {best:.2f} ms; median/best {median / best:.2f}"
            " (spread from other load)",
            "instructions: `hook_costs.work_instructions()` runs the build and two warm hook"
            " round trips, then one, under `valgrind --tool=callgrind`; the difference is one.",
        ],
    )


_FIRST_PARSE = """
import sys, time
sys.path.insert(0, {bench!r})
import bench_pgb_config
from domain.pgb_config import render_pgb_ini
text = render_pgb_ini(bench_pgb_config.build_config())
start = time.process_time()
bench_pgb_config.hook_round_trip(text)
print((time.process_time() - start) * 1000)
"""


def _first_parse_in_fresh_processes(runs: int) -> float:
    code = _FIRST_PARSE.format(bench=str(BENCH))
    times = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
        )
        times.append(float(out.stdout))
    return statistics.median(times)


# ---------------------------------------------------------------------------------------------
# One hook: Pebble calls, import cost, memory (bench/hook_costs.py)


@functools.cache
def _hook_costs() -> dict[str, object]:
    return hook_costs.measure()


# How the Pebble calls of ops' testing client are classed for the targets.
_RESTART_CALLS = frozenset(
    {
        "restart_services",
        "stop_services",
        "start_services",
        "replan_services",
        "autostart_services",
    }
)
_WRITE_CALLS = frozenset({"push", "make_dir", "remove_path", "add_layer"})
_SIGNAL_CALLS = frozenset({"send_signal"})


def pebble_calls() -> Section:
    pebble = _hook_costs()["pebble"]
    assert isinstance(pebble, dict)
    new: collections.Counter[str] = pebble["new files"]
    same: collections.Counter[str] = pebble["same data"]

    def count(calls: collections.Counter[str], kinds: frozenset[str]) -> int:
        return sum(n for name, n in calls.items() if name in kinds)

    def reads(calls: collections.Counter[str]) -> int:
        others = _RESTART_CALLS | _WRITE_CALLS | _SIGNAL_CALLS
        return sum(n for name, n in calls.items() if name not in others)

    restarts = count(new, _RESTART_CALLS) + count(same, _RESTART_CALLS)
    return Section(
        "Pebble calls of one follower pgb-peers-relation-changed",
        f"`{PY} bench/hook_costs.py`: `pebble_calls()` runs the hook under ops.testing and counts"
        " every public method call of ops' testing Pebble client (the calls a real Pebble would"
        " get), once with new files published and once with the same data again. Restart ="
        f" {', '.join(sorted(_RESTART_CALLS))}; write = {', '.join(sorted(_WRITE_CALLS))};"
        " read = any other call but send_signal. (`hook_costs.measure()` runs once, here, for"
        " this section and the next two.)",
        [
            Row(
                "new files: Pebble calls in all",
                str(sum(new.values())),
                "<= 10",
                verdict(sum(new.values()) <= 10),
            ),
            Row(
                "new files: send_signal calls",
                str(count(new, _SIGNAL_CALLS)),
                "<= 1",
                verdict(count(new, _SIGNAL_CALLS) <= 1),
            ),
            Row("both cases: restarts", str(restarts), "0", verdict(restarts == 0)),
            Row(
                "same data: writes",
                str(count(same, _WRITE_CALLS)),
                "0",
                verdict(count(same, _WRITE_CALLS) == 0),
            ),
            Row(
                "same data: send_signal calls",
                str(count(same, _SIGNAL_CALLS)),
                "0",
                verdict(count(same, _SIGNAL_CALLS) == 0),
            ),
            Row("same data: reads", str(reads(same)), "0", verdict(reads(same) == 0)),
        ],
        [
            f"{case}: " + ", ".join(f"{name} {n}" for name, n in sorted(calls.items()))
            for case, calls in pebble.items()
        ],
    )


def import_cost() -> Section:
    wall = _hook_costs()["import"]
    counted = _hook_costs()["instructions"]
    assert isinstance(wall, dict)
    target = hook_costs.IMPORT_RATIO_TARGET
    if isinstance(counted, dict):
        ratio = counted["ratio"]
        instruction_rows = [
            Row("import charm, instructions", f"{counted['charm'] / 1e6:.0f} M"),
            Row("import ops, instructions", f"{counted['ops'] / 1e6:.0f} M"),
            Row(
                "ratio charm / ops, instructions",
                f"{ratio:.3f}",
                f"<= {target:.2f}",
                verdict(ratio <= target),
            ),
        ]
    else:
        instruction_rows = [
            Row(
                "ratio charm / ops, instructions",
                "not measured: no valgrind",
                f"<= {target:.2f}",
                "not measured",
            )
        ]
    return Section(
        "Import cost of the charm, bytecode cached (every hook is a fresh process)",
        f"`{PY} bench/hook_costs.py`: `bytecode_cache()` gives the environment of a deployed"
        " unit from its second hook on: PYTHONDONTWRITEBYTECODE removed, a fresh"
        " PYTHONPYCACHEPREFIX folder filled by one warm-up run of each import. In it,"
        " `import_instructions()` counts the instructions of"
        f" `PYTHONPATH=src:lib {PY} -c 'import charm'` and of `... -c 'import ops'` under"
        " `valgrind --tool=callgrind` (deterministic: the target is judged on these), and"
        f" `import_cost()` times both {wall['runs']} times each, interleaved (median wall time,"
        " time.perf_counter around subprocess.run: as noisy as the machine).",
        [
            *instruction_rows,
            Row("import charm, wall time, median", f"{wall['charm_ms']:.1f} ms"),
            Row("import ops, wall time, median", f"{wall['ops_ms']:.1f} ms"),
            Row("  ratio charm / ops, wall time", f"{wall['ratio']:.3f}"),
        ],
    )


def follower_work() -> Section:
    figures = _hook_costs()["follower"]
    assert isinstance(figures, dict)
    work = figures["work_ms"]
    return Section(
        "Config work of one follower hook, new 1,000-database config",
        f"`{PY} bench/hook_costs.py`: `follower_config_work()` runs a follower's"
        " pgb-peers-relation-changed under ops.testing with a new 1,000-database config"
        " published (one [pgbouncer] setting changed: a reload) and the same hook with nothing"
        f" new, {figures['runs']} times each, interleaved, each on a fresh folder, and times"
        " the hook's CPU time (time.process_time). The figure is the difference of the"
        " medians: what the new config costs the hook (reading, validating, comparing, writing"
        " the file and its per-process copies). Both hooks carry the 1,000-database text in"
        " the app databag, so the harness's share cancels out.",
        [
            Row(
                "config work of the hook (new - same), CPU",
                f"{work:.1f} ms",
                "<= 5 ms",
                verdict(work <= 5.0),
            ),
            Row("  hook with the new config, CPU, median", f"{figures['new_ms']:.1f} ms"),
            Row("  hook with nothing new, CPU, median", f"{figures['same_ms']:.1f} ms"),
            Row("  config work of the hook (new - same), instructions", _work_instructions()),
        ],
        [
            "instructions: `hook_costs.work_instructions()` runs each hook once in its own"
            " process under `valgrind --tool=callgrind` (bytecode cached, parse cache empty)"
            " and takes the difference; deterministic, unlike the CPU time on this shared"
            " machine. Not measured without valgrind (`make bench` installs it).",
        ],
    )


def _work_instructions(key: str = "follower_work") -> str:
    figures = _hook_costs()["work_instructions"]
    if figures is None:
        return "not measured (no valgrind)"
    assert isinstance(figures, dict)
    return f"{figures[key] / 1e6:.1f} M"


def hook_memory() -> Section:
    rss = _hook_costs()["rss"]
    assert isinstance(rss, dict)
    return Section(
        "Peak memory of one hook",
        f"`{PY} bench/hook_costs.py`: `peak_rss()` runs one follower relation-changed under"
        " ops.testing in a fresh process and prints its peak RSS (VmHWM of /proc/self/status)"
        " and the peak tracemalloc figure of the hook alone; a second process only imports"
        " ops.testing.",
        [
            Row(
                "process running one hook, peak RSS", f"{rss['process_with_one_hook_mib']:.1f} MiB"
            ),
            Row(
                "  process importing ops.testing only",
                f"{rss['process_importing_ops_testing_mib']:.1f} MiB",
            ),
            Row(
                "  allocated by the hook itself (tracemalloc peak)",
                f"{rss['allocated_during_the_hook_mib']:.2f} MiB",
            ),
        ],
    )


# ---------------------------------------------------------------------------------------------
# The multi-unit model (localenv/juju_model.py)


@dataclasses.dataclass
class _Runs:
    mean: float
    max: int
    by_event: dict[str, int]

    @classmethod
    def of(cls, per_unit: dict[str, int], per_kind: dict[str, int]) -> "_Runs":
        counts = list(per_unit.values())
        return cls(statistics.mean(counts) if counts else 0.0, max(counts, default=0), per_kind)


@dataclasses.dataclass
class _Convergence:
    bring_up: _Runs
    bring_up_deferrals: int
    deferrals_once_up: int
    change: "hook_counts.Count"
    change_deferrals: int
    reloads: int
    restarts: int


def convergence(units: tuple[int, ...]) -> Section:
    rows: list[Row] = []
    notes: list[str] = []
    for count in units:
        started = time.perf_counter()
        figures = _converge(count)
        took = time.perf_counter() - started
        bring_up, change = figures.bring_up, figures.change
        budget = hook_counts.target(count)
        rows += [
            Row(
                f"{count} units, config change: hooks in all",
                str(change.total),
                f"<= {budget}",
                verdict(change.total <= budget),
            ),
            Row(
                f"  {count} units, config change: hooks that changed something / found nothing",
                f"{change.changed} / {change.idle}",
            ),
            Row(
                f"  {count} units, config change: deferrals",
                str(figures.change_deferrals),
                "0",
                verdict(figures.change_deferrals == 0),
            ),
            Row(
                f"  {count} units, bring-up: hook runs per unit (mean / max)",
                f"{bring_up.mean:.1f} / {bring_up.max}",
            ),
            Row(
                f"  {count} units, bring-up: deferrals once the unit's workload ran",
                str(figures.deferrals_once_up),
                "0",
                verdict(figures.deferrals_once_up == 0),
            ),
        ]
        notes.append(
            f"{count} units: config change hooks by event (changed something, found nothing)"
            f" {change.by_kind()}; {figures.reloads} reloads and {figures.restarts} restarts"
            f" for the change; bring-up hook runs by event {bring_up.by_event},"
            f" {figures.bring_up_deferrals} deferrals in all, {figures.deferrals_once_up} of"
            f" them in hooks that began with the unit's pgbouncer running; {took:.0f} s"
        )
    return Section(
        "Hooks for one config change in the multi-unit model (fake workload)",
        "`bench/hook_counts.py`: `LedgerModel(N)`, the multi-unit model"
        " (`localenv.juju_model.MultiUnitModel`: the real charm under ops.testing per unit,"
        " `FakeWorkload`) recording each hook: `setup_backend(<md5 auth file>)`,"
        " `settle(random.Random(10))`, then `set_config(pool_mode='transaction',"
        " max_db_connections=50)`, `settle(random.Random(11))`; both must converge. A hook"
        " *changed something* when it wrote a databag (unit, application, client relation), a"
        " secret or a file in its container, or signalled or started pgbouncer; otherwise it"
        " *found nothing to do*. Target: 2N+1 hooks for the change. A deferral is a hook that"
        " ends with an event deferred, counted 'once the workload ran' when the unit's"
        " pgbouncer was already running as the hook began.",
        rows,
        notes,
    )


def _converge(units: int) -> _Convergence:
    with hook_counts.LedgerModel(units) as model:
        # The delivery (1-based, as in model.log) during which each unit's pgbouncer first ran.
        up_since: dict[int, int] = {}
        for n in model.units:
            _note_first_start(model, n, up_since)
        model.setup_backend(hook_counts.auth_file())
        model.settle(random.Random(10))
        if not model.converged():
            raise RuntimeError("bring-up did not converge: " + "; ".join(model.divergence()))
        bring_up = model.metrics.copy()
        before = {n: model.counters(n) for n in model.units}
        model.ledger.clear()
        model.set_config(pool_mode="transaction", max_db_connections=50)
        model.settle(random.Random(11))
        if not model.converged():
            raise RuntimeError("config change did not converge: " + "; ".join(model.divergence()))
        change = model.metrics.since(bring_up)
        once_up = sum(
            1
            for delivery in model.log[: bring_up.runs()]
            if delivery.deferred
            and delivery.event.unit in up_since
            and delivery.seq > up_since[delivery.event.unit]
        )
        after = {n: model.counters(n) for n in model.units}
        return _Convergence(
            bring_up=_Runs.of(bring_up.per_unit(), bring_up.per_kind()),
            bring_up_deferrals=bring_up.deferred(),
            deferrals_once_up=once_up,
            change=hook_counts.Count(units, list(model.ledger)),
            change_deferrals=change.deferred(),
            reloads=sum(after[n]["reloads"] - before[n]["reloads"] for n in model.units),
            restarts=sum(after[n]["restarts"] - before[n]["restarts"] for n in model.units),
        )


def client_hooks(units: tuple[int, ...]) -> Section:
    command = (
        "`bench/hook_counts.py`: `client_added(N)`: a throwaway PostgreSQL"
        " (`localenv.postgres_cluster.PostgresCluster`), `LedgerModel(N, backend=False)`,"
        " `relate_backend(cluster)`, `settle(random.Random(20))`; then"
        " `relate_client('client-N', 'bench_db_N')`, `settle(random.Random(21))`, and the"
        " client must hold its credentials (`client_credentials`). The client relation's own"
        " hooks (relation-created, -joined and -changed on each unit) are counted apart; the"
        " target is 2N+1 other hooks. Changed something / found nothing as in the section"
        " above."
    )
    missing = _postgres_missing()
    if missing:
        return Section(
            "Hooks for a new client relation (real PostgreSQL, fake pgbouncer)",
            command,
            [
                Row(
                    f"{n} units: hooks beyond the client's own",
                    f"not measured: {missing}",
                    f"<= {hook_counts.target(n)}",
                    "not measured",
                )
                for n in units
            ],
        )
    from localenv.postgres_cluster import PostgresCluster

    rows: list[Row] = []
    notes: list[str] = []
    with PostgresCluster() as cluster:
        for n in units:
            count = hook_counts.client_added(n, cluster)
            budget = hook_counts.target(n)
            rows += [
                Row(
                    f"{n} units, client added: hooks beyond the client's own",
                    str(count.total),
                    f"<= {budget}",
                    verdict(count.total <= budget),
                ),
                Row(
                    f"  {n} units, client added: changed something / found nothing",
                    f"{count.changed} / {count.idle}",
                ),
                Row(
                    f"  {n} units, client added: the client relation's own hooks",
                    str(len(count.own)),
                ),
            ]
            notes.append(
                f"{n} units: hooks by event (changed something, found nothing) {count.by_kind()}"
            )
    return Section(
        "Hooks for a new client relation (real PostgreSQL, fake pgbouncer)", command, rows, notes
    )


def _postgres_missing() -> str | None:
    from localenv.binaries import pg_program

    if os.geteuid() != 0:
        return "needs root (PostgreSQL runs as the postgres user)"
    try:
        pg_program("initdb")
    except Exception as err:  # any reason is reported
        return f"{type(err).__name__}: {err}"
    return None


def _note_first_start(model: "MultiUnitModel", n: int, up_since: dict[int, int]) -> None:
    workload = model.fake_workload(n)
    for name in ("reload", "restart"):
        original = getattr(workload, name)

        def wrapped(*args: object, _original: Callable[..., None] = original) -> None:
            _original(*args)
            if workload.running and n not in up_since:
                up_since[n] = len(model.log) + 1

        setattr(workload, name, wrapped)


CHANGES = 20
CLIENTS = 4
CHUNK_SECONDS = 1


def pgbench_under_changes() -> Section:
    command = (
        "A throwaway PostgreSQL (`localenv.postgres_cluster.PostgresCluster`) and"
        " `MultiUnitModel(3, real=True, processes=2)` (real pgbouncer processes); the backend's"
        " auth file and one `[databases]` entry reach the leader's pgbouncer.ini through its"
        " workload and the charm publishes them. While"
        f" {CHANGES} `set_config(pool_mode=transaction|session, max_db_connections=40+i)` each"
        " settle and converge (0.3 s apart), pgbench runs back to back, like an application"
        " that reconnects after an error:"
        f" `pgbench --client={CLIENTS} --jobs=2 --time={CHUNK_SECONDS} --no-vacuum --log`"
        " through the first follower's first process (its unix socket), again and again until"
        " the last change has converged. Reload run: the charm as it is. Restart run: the same,"
        " with every unit's workload restarting where the charm reloads (the reference"
        " implementation's approach). Failed = pgbench's failed transactions plus one per"
        " client pgbench aborted (the transaction in flight, or the connection, was lost)."
        " p99 = 99th percentile latency of the transactions pgbench logged (--log)."
    )
    missing = _pgbench_missing()
    if missing:
        return Section(
            "Config changes under load (pgbench)",
            command,
            [
                Row(
                    f"{mode}: failed transactions, p99",
                    f"not measured: {missing}",
                    "-",
                    "not measured",
                )
                for mode in ("reload", "restart")
            ],
        )
    from localenv.postgres_cluster import PostgresCluster

    rows: list[Row] = []
    notes: list[str] = []
    with PostgresCluster() as postgres:
        setup = _pgbench_setup(postgres)
        for mode in ("reload", "restart"):
            run = _pgbench_run(postgres, setup, restart=mode == "restart")
            failed = run.load.failed + run.load.aborted
            rows += [
                Row(
                    f"{mode}: failed transactions",
                    f"{failed} (of {run.load.processed + failed})",
                    "0" if mode == "reload" else "-",
                    verdict(failed == 0) if mode == "reload" else "info",
                ),
                Row(f"{mode}: p99 latency", _ms(_p99(run.load.latencies_us))),
            ]
            reasons = sorted(run.load.reasons)[:3]
            notes.append(
                f"{mode}: {run.load.runs} pgbench runs; {run.load.processed} transactions"
                f" processed, {run.load.failed} failed, {run.load.aborted} clients aborted"
                + (f" ({'; '.join(reasons)})" if reasons else "")
                + f"; {CHANGES} changes took {run.changes_took:.1f} s; per unit signals and"
                f" starts during the run {run.counters}"
            )
    return Section("Config changes under load (pgbench)", command, rows, notes)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def _pgbench_missing() -> str | None:
    from localenv.binaries import pg_program
    from localenv.local_workload import find_pgbouncer

    if os.geteuid() != 0:
        return "needs root (PostgreSQL and pgbouncer run as the postgres user)"
    try:
        find_pgbouncer()
        pg_program("pgbench")
        pg_program("initdb")
    except Exception as err:  # any reason is reported
        return f"{type(err).__name__}: {err}"
    return None


@dataclasses.dataclass
class _PgbenchSetup:
    admin: str
    admin_password: str
    user: str
    password: str
    database: str


def _pgbench_setup(postgres: "PostgresCluster") -> _PgbenchSetup:
    from localenv.binaries import pg_program

    setup = _PgbenchSetup(
        "bench_admin", secrets.token_hex(16), "bench_app", secrets.token_hex(16), "bench_appdb"
    )
    postgres.psql(f"CREATE ROLE {setup.user} LOGIN PASSWORD '{setup.password}'")
    postgres.psql(f"CREATE DATABASE {setup.database} OWNER {setup.user}")
    initialize = [
        *("--initialize", "--quiet", "--scale=1", f"--host={postgres.host}"),
        *(f"--port={postgres.port}", f"--username={setup.user}", setup.database),
    ]
    subprocess.run(
        [pg_program("pgbench"), *initialize],
        env=_pgbench_env(setup),
        check=True,
        capture_output=True,
        timeout=300,
    )
    return setup


def _pgbench_env(setup: _PgbenchSetup) -> dict[str, str]:
    return {"PGPASSWORD": setup.password, "PGCONNECT_TIMEOUT": "10", "PATH": "/usr/bin:/bin"}


@dataclasses.dataclass
class _Load:
    """What back-to-back pgbench runs did: summed over the runs."""

    runs: int = 0
    processed: int = 0
    failed: int = 0
    aborted: int = 0
    reasons: set[str] = dataclasses.field(default_factory=set)
    latencies_us: list[int] = dataclasses.field(default_factory=list)

    def add(self, out: str, logs: str) -> None:
        self.runs += 1
        self.processed += int(_figure(out, r"number of transactions actually processed: (\d+)"))
        self.failed += int(_figure(out, r"number of failed transactions: (\d+)"))
        aborted = re.findall(r"client \d+ aborted (.*)", out)
        if not aborted and "processed:" not in out:
            # pgbench could not start at all (no connection): every client failed.
            aborted = ["before starting: " + (out.strip().splitlines() or ["?"])[-1]]
            self.aborted += CLIENTS
        else:
            self.aborted += len(aborted)
        self.reasons.update(re.sub(r"\d+", "N", reason) for reason in aborted)
        self.latencies_us += _latencies(logs)


def _load_until(stop: threading.Event, argv: list[str], env: dict[str, str], load: _Load) -> None:
    while not stop.is_set():
        with tempfile.TemporaryDirectory(prefix="pgb-bench-pgbench-") as logs:
            run = subprocess.run(
                [*argv, f"--log-prefix={logs}/tx"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=CHUNK_SECONDS + 60,
            )
            load.add(run.stdout, logs)


@dataclasses.dataclass
class _PgbenchRun:
    load: _Load
    changes_took: float
    counters: dict[int, dict[str, int]]


def _pgbench_run(postgres: "PostgresCluster", setup: _PgbenchSetup, restart: bool) -> _PgbenchRun:
    from domain.pgb_config import ConnString, parse_pgb_ini, render_pgb_ini
    from localenv.binaries import pg_program
    from localenv.juju_model import MultiUnitModel
    from localenv.net import free_port

    host, port = postgres.host, postgres.port
    auth = f'"{setup.admin}" "{setup.admin_password}"\n"{setup.user}" "{setup.password}"\n'
    with MultiUnitModel(
        3, real=True, processes=2, backend_port=port, config={"listen_port": free_port()}
    ) as model:
        model.setup_backend(auth)
        model.settle(random.Random(0))
        leader = model.leader
        assert leader is not None
        workload = model.workload(leader)
        cfg = parse_pgb_ini(workload.read_cfg() or "")
        cfg = cfg.with_settings({"admin_users": setup.admin}).with_database(
            setup.database, ConnString({"host": host, "port": str(port), "dbname": setup.database})
        )
        workload.write_cfg(render_pgb_ini(cfg))
        model.update_status(leader)
        model.settle(random.Random(1))
        if not model.converged():
            raise RuntimeError("the model did not converge: " + "; ".join(model.divergence()))
        if restart:
            for n in model.units:
                local = model.local_workload(n)
                setattr(local, "reload", local.restart)  # noqa: B010 - swap one method
        before = {n: model.counters(n) for n in model.units}
        follower = model.followers[0]
        argv = [
            pg_program("pgbench"),
            f"--host={model.local_workload(follower).instance_dir(0)}",
            f"--port={model.config['listen_port']}",
            f"--username={setup.user}",
            *(f"--client={CLIENTS}", "--jobs=2", f"--time={CHUNK_SECONDS}", "--no-vacuum"),
            *("--log", setup.database),
        ]
        load, stop = _Load(), threading.Event()
        loader = threading.Thread(target=_load_until, args=(stop, argv, _pgbench_env(setup), load))
        loader.start()
        try:
            time.sleep(0.5)  # the first clients are connected and running
            started = time.monotonic()
            for change in range(CHANGES):
                model.set_config(
                    pool_mode=("transaction", "session")[change % 2],
                    max_db_connections=40 + change,
                )
                model.settle(random.Random(100 + change))
                if not model.converged():
                    raise RuntimeError(f"change {change} did not converge")
                time.sleep(0.3)
            took = time.monotonic() - started
        finally:
            stop.set()
            loader.join()
        counters = {
            n: {key: model.counters(n)[key] - before[n][key] for key in before[n]}
            for n in model.units
        }
        return _PgbenchRun(load, took, counters)


def _figure(out: str, pattern: str) -> str:
    match = re.search(pattern, out)
    return match.group(1) if match else "0"


def _latencies(folder: str) -> list[int]:
    """Latencies (us) of the transactions pgbench logged in ``folder``.

    A line is ``client transaction latency script epoch_s epoch_us ...``; a failed or skipped
    transaction has a word instead of its latency.
    """
    latencies: list[int] = []
    for path in glob.glob(os.path.join(folder, "tx*")):
        with open(path, encoding="ascii") as log:
            for line in log:
                fields = line.split()
                if len(fields) > 2 and fields[2].isdigit():
                    latencies.append(int(fields[2]))
    return latencies


def _p99(latencies_us: list[int]) -> float | None:
    if not latencies_us:
        return None
    ordered = sorted(latencies_us)
    return ordered[math.ceil(0.99 * len(ordered)) - 1] / 1000


# ---------------------------------------------------------------------------------------------
# The sections, in the order they are printed. To add figures, write one more function that
# returns a Section and list it here (``--skip`` takes these names).
#
# >>> Multi-unit model figures (localenv/juju_model.py) <<<
# ``convergence`` and ``pgbench_under_changes`` below are the ones the issue asks of the
# multi-unit model; other figures of it (more unit counts, other event orders) go next to them.

SECTIONS: dict[str, Callable[[argparse.Namespace], Section]] = {
    "parse_render": lambda _args: parse_render(),
    "pebble_calls": lambda _args: pebble_calls(),
    "import_cost": lambda _args: import_cost(),
    "follower_work": lambda _args: follower_work(),
    "hook_memory": lambda _args: hook_memory(),
    # --- multi-unit model ---
    "convergence": lambda args: convergence(args.units),
    "client_hooks": lambda args: client_hooks(tuple(n for n in args.units if n <= 10)),
    "pgbench_under_changes": lambda _args: pgbench_under_changes(),
}


# ---------------------------------------------------------------------------------------------
# Running, printing, RESULTS.md


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git_head() -> str:
    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True)
        return out.stdout.strip()

    try:
        head = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" (with uncommitted changes in the tree)" if dirty else "")


def run_section(name: str, args: argparse.Namespace) -> Section:
    started = time.perf_counter()
    try:
        section = SECTIONS[name](args)
    except Exception as err:  # reported, not raised
        traceback.print_exc()
        failure = Row(name, f"error: {type(err).__name__}: {err}", "-", "not measured")
        section = Section(name, "-", [failure])
    section.notes.append(f"section took {time.perf_counter() - started:.0f} s")
    return section


def table(sections: list[Section]) -> list[str]:
    rows = [(row.figure, row.value, row.target, row.verdict) for s in sections for row in s.rows]
    head = ("figure", "value", "target", "verdict")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(head, widths, strict=True))]
    lines.append("  ".join("-" * width for width in widths))
    for section in sections:
        lines.append(f"== {section.title}")
        for row in section.rows:
            cells = (row.figure, row.value, row.target, row.verdict)
            lines.append("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)))
    return lines


def markdown(sections: list[Section], machine: dict[str, str]) -> str:
    out = ["# Benchmark results", "", "Written by `make bench` (`.venv/bin/python bench/run.py`)."]
    out += ["", "## Machine and run", ""]
    out += [f"- {key}: {value}" for key, value in machine.items()]
    out += [
        "",
        "The machine may be shared (other test runs, other engineers): timings are medians over"
        " many runs, the load average above says how busy it was, and the notes under each"
        " section give the spread where the figure has one.",
    ]
    out += ["", "## Figures", "", "| figure | value | target | verdict |", "|---|---|---|---|"]
    for section in sections:
        out.append(f"| **{section.title}** | | | |")
        for row in section.rows:
            cells = [row.figure.strip(), row.value, row.target, row.verdict]
            out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    out += ["", "## How each figure is measured", ""]
    for section in sections:
        out += [f"### {section.title}", "", section.command, ""]
        out += [f"- {note}" for note in section.notes]
        out.append("")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description="Run every benchmark, write bench/RESULTS.md.")
    parser.add_argument("--skip", action="append", default=[], choices=sorted(SECTIONS))
    parser.add_argument(
        "--units",
        type=lambda text: tuple(int(n) for n in text.split(",")),
        default=(3, 10, 50),
        help="unit counts of the convergence section (default 3,10,50)",
    )
    args = parser.parse_args()
    os.chdir(ROOT)
    started = datetime.datetime.now(datetime.UTC)
    load_before = _loadavg()
    sections = []
    for name in SECTIONS:
        if name in args.skip:
            continue
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        sections.append(run_section(name, args))
    lines = table(sections)
    print("\n".join(lines))
    machine = {
        "date (UTC)": started.isoformat(timespec="seconds"),
        "nproc": str(len(os.sched_getaffinity(0))),
        "CPU": _cpu_model(),
        "Python": f"{platform.python_implementation()} {platform.python_version()}"
        f" ({sys.executable})",
        "git HEAD": _git_head(),
        "load average (1, 5, 15 min) before / after": f"{load_before} / {_loadavg()}",
        "pgbouncer": shutil.which("pgbouncer") or "not found",
        "skipped sections": ", ".join(args.skip) or "none",
    }
    RESULTS.write_text(markdown(sections, machine) + "\n", encoding="utf-8")
    print(f"\nwritten to {RESULTS.relative_to(ROOT)}")
    failed = [
        row.figure.strip()
        for section in sections
        for row in section.rows
        if row.verdict == "MISSED" or row.value.startswith("error:")
    ]
    if failed:
        print(
            f"bench: {len(failed)} target(s) missed or failed: {'; '.join(failed)}",
            file=sys.stderr,
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
