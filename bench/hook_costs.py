"""Benchmark: what one hook costs the charm — Pebble calls, import time, peak memory.

Three figures, each measured the way a deployed hook would see it:

- **Pebble calls** made by one follower ``pgb-peers-relation-changed`` under ``ops.testing``,
  counted by wrapping every public method of ops' testing Pebble client (the calls a real
  Pebble would receive): once with new files published, once with the same data again.
- **Import cost**: a hook is a fresh Python process, so the charm's module is imported on
  every hook. ``python -c "import charm"`` against ``python -c "import ops"`` as a deployed
  unit runs them from its second hook on: with the bytecode cached (Python wrote
  ``__pycache__`` on the first hook; here a fresh ``PYTHONPYCACHEPREFIX`` folder, warmed once,
  and ``PYTHONDONTWRITEBYTECODE`` removed from the environment). Two measures: instructions
  (``valgrind --tool=callgrind``, deterministic, so the target is judged on them) and
  whole-process wall time (medians over 21 interleaved runs, as noisy as the machine).
- **Config work of one follower hook**: the CPU time a new 1,000-database pgbouncer.ini adds
  to a follower's ``pgb-peers-relation-changed`` under ``ops.testing``: the hook with a new
  config published, minus the same hook with nothing new (both with the 1,000-database
  config in the app databag, so the harness's share cancels out), medians of many runs.
- **Peak memory** of one hook: the peak RSS of a process that runs one follower
  relation-changed through ``ops.testing`` (VmHWM), against one that only imports ``ops.testing``
  (the harness's share), and the peak of what the hook itself allocates (``tracemalloc``).

``measure()`` returns the figures for ``bench/run.py``; ``main()`` prints them.
"""

import collections
import contextlib
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "lib"), str(ROOT), str(ROOT / "bench")]

IMPORT_RUNS = 21
PYTHON = sys.executable
# The charm's folders first, as the charm's dispatch sets them; no PYTHONDONTWRITEBYTECODE (a
# developer's shell often sets it; a deployed unit does not): see bytecode_cache().
ENV = {
    **{key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"},
    "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "lib")]),
}
# Targets (the issue's): instructions of ``import charm`` / ``import ops``.
IMPORT_RATIO_TARGET = 1.20


def _count_pebble_calls(run) -> collections.Counter[str]:
    from localenv.pebble_calls import counting_pebble_calls

    with counting_pebble_calls() as counts:
        run()
    return counts


def _follower_run(folder: pathlib.Path, on_disk: str, published: str, auth: str):
    """One follower ``pgb-peers-relation-changed`` (unit 0; unit 1 leads) as a callable.

    The container holds ``on_disk`` (the config this unit applied: it remembers so, in its
    StoredState, and acknowledged it, as a unit of an older revision would have) and
    ``auth``; the leader published ``published`` and the same ``auth``, and asks for no
    acknowledgement (``ack_wanted`` is ``none:`` and its digest: no client waits). The unit
    is settled in this revision: its databag holds the peer schema and the pgbouncer version
    it learned on its first hooks (without it, every hook would ask the image again: an exec).
    """
    from ops import testing

    from charm import PgBouncerK8sCharm
    from domain.peer_data import no_acknowledgement_wanted
    from tests.unit.charm_harness import PROCESSES, container, context, write_files
    from tests.unit.peer_fixtures import HOST0, HOST1
    from tests.unit.test_charm import ack_of, backend, store_secret

    PgBouncerK8sCharm.processes = PROCESSES
    write_files(folder, cfg=on_disk, auth=auth)
    secret = store_secret(auth)
    peer = testing.PeerRelation(
        "pgb-peers",
        local_app_data={
            "cfg_file": published,
            "leader_hostname": HOST1,
            "secret_id": secret.id,
            "ack_wanted": no_acknowledgement_wanted(published),
            "schema_version": "2",
        },
        local_unit_data={
            "hostname": HOST0,
            **ack_of(on_disk, auth),
            "schema_version": "2",
            "pgbouncer_version": "1.18.0",
        },
        peers_data={1: {"hostname": HOST1, "schema_version": "2", "pgbouncer_version": "1.18.0"}},
    )
    applied = ack_of(on_disk, auth)
    memory = testing.StoredState(
        owner_path="PgBouncerK8sCharm",
        content={
            "applied_cfg": applied["applied_cfg_digest"],
            "applied_auth": applied["applied_auth_digest"],
        },
    )
    state = testing.State(
        leader=False,
        model=testing.Model(name="test"),
        containers={container(folder)},
        relations={peer, backend()},
        secrets={secret},
        stored_states={memory},
    )
    ctx = context()
    return lambda: ctx.run(ctx.on.relation_changed(peer, remote_unit=1), state)


def pebble_calls() -> dict[str, collections.Counter[str]]:
    """Pebble calls of one follower relation-changed: new files, then the same data again."""
    from tests.unit.peer_fixtures import AUTH_A, AUTH_B, CFG_A, CFG_B

    results: dict[str, collections.Counter[str]] = {}
    for case, (cfg, auth) in {"new files": (CFG_B, AUTH_B), "same data": (CFG_A, AUTH_A)}.items():
        with tempfile.TemporaryDirectory() as tmp:
            run = _follower_run(pathlib.Path(tmp), CFG_A, cfg, auth)
            if case == "new files":
                # The auth file is new too: the container still has the old one.
                (pathlib.Path(tmp) / "userlist.txt").write_text(AUTH_A)
            results[case] = _count_pebble_calls(run)
    return results


FOLLOWER_RUNS = 15


def follower_config_work(runs: int = FOLLOWER_RUNS) -> dict[str, float]:
    """CPU milliseconds a new 1,000-database config adds to one follower relation-changed.

    Each run times (``time.process_time``, CPU time, so other processes' load counts less)
    the hook with a new config (one ``[pgbouncer]`` setting changed, a reload) and the same
    hook with nothing new, each on a fresh folder; the figure is the difference of the
    medians. Both hooks carry the 1,000-database text in the app databag, so what the harness
    spends on the databag cancels out. ``parse_pgb_ini`` keeps its last few parses within a
    process (a hook meets one text several times): it is emptied before each run, as a hook,
    a fresh process, starts with nothing parsed.
    """
    import bench_pgb_config

    from domain.pgb_config import parse_pgb_ini, render_pgb_ini
    from tests.unit.peer_fixtures import AUTH_A

    old = render_pgb_ini(bench_pgb_config.build_config())
    new = old.replace("pool_mode = session", "pool_mode = transaction")
    if new == old:
        raise AssertionError("the 1,000-database config has no pool_mode = session line")
    timings: dict[str, list[float]] = {"new": [], "same": []}
    for _ in range(runs):
        for case, published in (("new", new), ("same", old)):
            with tempfile.TemporaryDirectory() as tmp:
                run = _follower_run(pathlib.Path(tmp), old, published, AUTH_A)
                # A hook is a fresh process: nothing parsed by an earlier run may be reused.
                parse_pgb_ini.cache_clear()
                start = time.process_time()
                run()
                timings[case].append((time.process_time() - start) * 1000)
    new_ms, same_ms = statistics.median(timings["new"]), statistics.median(timings["same"])
    return {"new_ms": new_ms, "same_ms": same_ms, "work_ms": new_ms - same_ms, "runs": runs}


@contextlib.contextmanager
def bytecode_cache() -> Iterator[dict[str, str]]:
    """The environment of a deployed unit after its first hook: bytecode cached.

    A fresh ``PYTHONPYCACHEPREFIX`` folder (so the tree's own ``__pycache__`` neither helps
    nor is touched), filled by one warm-up run of each import before anything is measured.
    """
    with tempfile.TemporaryDirectory(prefix="pgb-bench-pycache-") as cache:
        env = {**ENV, "PYTHONPYCACHEPREFIX": cache}
        for module in ("charm", "ops"):
            subprocess.run([PYTHON, "-c", f"import {module}"], env=env, check=True)
        yield env


def _seconds(code: str, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([PYTHON, "-c", code], env=env, check=True)
    return time.perf_counter() - start


def import_cost(runs: int = IMPORT_RUNS) -> dict[str, float]:
    """Wall-clock medians of ``import charm`` and ``import ops``, bytecode cached."""
    with bytecode_cache() as env:
        # Interleave the two so machine noise falls on both alike.
        charm, bare = [], []
        for _ in range(runs):
            charm.append(_seconds("import charm", env))
            bare.append(_seconds("import ops", env))
    charm_ms, ops_ms = statistics.median(charm) * 1000, statistics.median(bare) * 1000
    return {"charm_ms": charm_ms, "ops_ms": ops_ms, "ratio": charm_ms / ops_ms, "runs": runs}


def _instructions(code: str, env: dict[str, str]) -> int:
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", PYTHON, "-c", code],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    for line in out.stderr.splitlines():
        if "Collected :" in line:
            return int(line.split(":")[1])
    raise RuntimeError(f"no instruction count in callgrind's output: {out.stderr[-300:]}")


def import_instructions() -> dict[str, float] | None:
    """Instructions (callgrind) of ``import charm`` and ``import ops``, bytecode cached; None
    without valgrind (``make bench`` installs it)."""
    if shutil.which("valgrind") is None:
        return None
    with bytecode_cache() as env:
        charm = _instructions("import charm", env)
        bare = _instructions("import ops", env)
    return {"charm": charm, "ops": bare, "ratio": charm / bare}


# The config work and the parse in instructions (callgrind: deterministic where CPU time on
# this shared machine is not). Each script runs in its own process, as a hook does; the
# figure is the difference between two scripts that share everything else.
_FOLLOWER_ONE = """
import pathlib, sys, tempfile
sys.path[:0] = [{bench!r}, {root!r}]
import hook_costs, bench_pgb_config
from domain.pgb_config import parse_pgb_ini, render_pgb_ini
from tests.unit.peer_fixtures import AUTH_A
old = render_pgb_ini(bench_pgb_config.build_config())
new = old.replace("pool_mode = session", "pool_mode = transaction")
run = hook_costs._follower_run(pathlib.Path(tempfile.mkdtemp()), old, {published}, AUTH_A)
parse_pgb_ini.cache_clear()
run()
"""
_ROUND_TRIPS = """
import sys
sys.path[:0] = [{bench!r}]
import bench_pgb_config
from domain.pgb_config import render_pgb_ini
text = render_pgb_ini(bench_pgb_config.build_config())
for _ in range({trips}):
    bench_pgb_config._forget_parses()
    bench_pgb_config.hook_round_trip(text)
"""


def work_instructions() -> dict[str, float] | None:
    """Instructions of the follower's config work (the hook with a new 1,000-database config
    minus the same hook with nothing new) and of one warm hook round trip of the parse
    (two round trips minus one); None without valgrind."""
    if shutil.which("valgrind") is None:
        return None
    where = {"bench": str(ROOT / "bench"), "root": str(ROOT)}
    with bytecode_cache() as env:
        for code in (_FOLLOWER_ONE.format(published="new", **where),):
            subprocess.run([PYTHON, "-c", code], env=env, check=True, capture_output=True)
        new = _instructions(_FOLLOWER_ONE.format(published="new", **where), env)
        same = _instructions(_FOLLOWER_ONE.format(published="old", **where), env)
        one = _instructions(_ROUND_TRIPS.format(trips=1, bench=where["bench"]), env)
        two = _instructions(_ROUND_TRIPS.format(trips=2, bench=where["bench"]), env)
    return {"follower_work": new - same, "round_trip": two - one}


# Peak RSS is read from VmHWM, the high-water mark of this process's own address space.
# getrusage's ru_maxrss would not do: Linux carries it across fork and exec, so a child of a
# large parent (bench/run.py) reports at least the parent's size.
_ONE_HOOK = """
import sys, pathlib, tempfile
sys.path[:0] = [{root!r} + "/src", {root!r}]
from ops import testing
{body}
status = open("/proc/self/status").read()
print(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))
"""
_HOOK_BODY = """
from tests.unit.charm_harness import container, context, write_files
from tests.unit.peer_fixtures import AUTH_A, CFG_B, HOST0, HOST1
from tests.unit.test_charm import backend, store_secret
folder = pathlib.Path(tempfile.mkdtemp())
secret = store_secret(AUTH_A)
peer = testing.PeerRelation("pgb-peers",
    local_app_data={"cfg_file": CFG_B, "leader_hostname": HOST1, "secret_id": secret.id},
    local_unit_data={"hostname": HOST0}, peers_data={1: {"hostname": HOST1}})
state = testing.State(leader=False, model=testing.Model(name="test"),
    containers={container(folder)}, relations={peer, backend()}, secrets={secret})
ctx = context()
import tracemalloc
tracemalloc.start()
ctx.run(ctx.on.relation_changed(peer, remote_unit=1), state)
print(tracemalloc.get_traced_memory()[1])
"""


def peak_rss() -> dict[str, float]:
    def run(body: str) -> list[int]:
        code = _ONE_HOOK.format(root=str(ROOT), body=body)
        out = subprocess.run([PYTHON, "-c", code], env=ENV, check=True, capture_output=True)
        return [int(word) for word in out.stdout.split()]

    traced_peak, hook_kib = run(_HOOK_BODY)
    (harness_kib,) = run("")
    return {
        "process_with_one_hook_mib": hook_kib / 1024,
        "process_importing_ops_testing_mib": harness_kib / 1024,
        "allocated_during_the_hook_mib": traced_peak / 2**20,
    }


def measure() -> dict[str, object]:
    return {
        "pebble": pebble_calls(),
        "import": import_cost(),
        "instructions": import_instructions(),
        "follower": follower_config_work(),
        "work_instructions": work_instructions(),
        "rss": peak_rss(),
    }


def main() -> None:
    figures = measure()
    pebble = figures["pebble"]
    assert isinstance(pebble, dict)
    for case, counts in pebble.items():
        calls = ", ".join(f"{name} {n}" for name, n in sorted(counts.items()))
        print(f"follower relation-changed, {case}: {sum(counts.values())} Pebble calls ({calls})")
    print(figures["import"])
    print(figures["instructions"])
    print(figures["follower"])
    print(figures["rss"])


if __name__ == "__main__":
    main()
