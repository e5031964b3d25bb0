"""Benchmark: what one hook costs the charm — Pebble calls, import time, peak memory.

Three figures, each measured the way a deployed hook would see it:

- **Pebble calls** made by one follower ``pgb-peers-relation-changed`` under ``ops.testing``,
  counted by wrapping every public method of ops' testing Pebble client (the calls a real
  Pebble would receive): once with new files published, once with the same data again.
- **Import cost**: a hook is a fresh Python process, so the charm's module is imported on
  every hook. Whole-process wall time of ``python -c "import charm"`` against
  ``python -c "import ops"``, medians over at least 15 runs each, and their ratio.
- **Peak memory** of one hook: the peak RSS of a process that runs one follower
  relation-changed through ``ops.testing`` (VmHWM), against one that only imports ``ops.testing``
  (the harness's share), and the peak of what the hook itself allocates (``tracemalloc``).

``measure()`` returns the figures for ``bench/run.py``; ``main()`` prints them.
"""

import collections
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "lib"), str(ROOT)]

IMPORT_RUNS = 21
PYTHON = sys.executable
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "lib")])}


def _count_pebble_calls(run) -> collections.Counter[str]:
    from ops._private.harness import _TestingPebbleClient

    counts: collections.Counter[str] = collections.Counter()
    originals = {}
    depth = [0]
    for name in dir(_TestingPebbleClient):
        attribute = getattr(_TestingPebbleClient, name)
        if name.startswith("_") or not callable(attribute):
            continue
        originals[name] = attribute

        def wrapper(self, *args, __name=name, __original=attribute, **kwargs):
            # Only calls from ops count: the testing client calls itself (send_signal checks
            # get_services, push makes parents) where a real Pebble does that server-side.
            if depth[0] == 0:
                counts[__name] += 1
            depth[0] += 1
            try:
                return __original(self, *args, **kwargs)
            finally:
                depth[0] -= 1

        setattr(_TestingPebbleClient, name, wrapper)
    try:
        run()
    finally:
        for name, attribute in originals.items():
            setattr(_TestingPebbleClient, name, attribute)
    return counts


def pebble_calls() -> dict[str, collections.Counter[str]]:
    """Pebble calls of one follower relation-changed: new files, then the same data again."""
    from ops import testing

    from charm import PgBouncerK8sCharm
    from tests.unit.charm_harness import PROCESSES, container, context, write_files
    from tests.unit.peer_fixtures import AUTH_A, AUTH_B, CFG_A, CFG_B, HOST0, HOST1
    from tests.unit.test_charm import ack_of, backend, store_secret

    PgBouncerK8sCharm.processes = PROCESSES
    results: dict[str, collections.Counter[str]] = {}
    for case, (cfg, auth) in {"new files": (CFG_B, AUTH_B), "same data": (CFG_A, AUTH_A)}.items():
        with tempfile.TemporaryDirectory() as tmp:
            folder = pathlib.Path(tmp)
            write_files(folder, cfg=CFG_A, auth=AUTH_A)
            secret = store_secret(auth)
            peer = testing.PeerRelation(
                "pgb-peers",
                local_app_data={"cfg_file": cfg, "leader_hostname": HOST1, "secret_id": secret.id},
                local_unit_data={"hostname": HOST0, **ack_of(CFG_A, AUTH_A)},
                peers_data={1: {"hostname": HOST1}},
            )
            state = testing.State(
                leader=False,
                model=testing.Model(name="test"),
                containers={container(folder)},
                relations={peer, backend()},
                secrets={secret},
            )
            ctx = context()
            results[case] = _count_pebble_calls(
                lambda ctx=ctx, peer=peer, state=state: ctx.run(
                    ctx.on.relation_changed(peer, remote_unit=1), state
                )
            )
    return results


def _median_seconds(code: str, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([PYTHON, "-c", code], env=ENV, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def import_cost(runs: int = IMPORT_RUNS) -> dict[str, float]:
    # Warm the file cache once so neither side pays for the first read from disk.
    _median_seconds("import charm", 1)
    # Interleave the two so machine noise falls on both alike.
    charm, bare = [], []
    for _ in range(runs):
        charm.append(_median_seconds("import charm", 1))
        bare.append(_median_seconds("import ops", 1))
    charm_ms, ops_ms = statistics.median(charm) * 1000, statistics.median(bare) * 1000
    return {"charm_ms": charm_ms, "ops_ms": ops_ms, "ratio": charm_ms / ops_ms, "runs": runs}


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
    return {"pebble": pebble_calls(), "import": import_cost(), "rss": peak_rss()}


def main() -> None:
    figures = measure()
    pebble = figures["pebble"]
    assert isinstance(pebble, dict)
    for case, counts in pebble.items():
        calls = ", ".join(f"{name} {n}" for name, n in sorted(counts.items()))
        print(f"follower relation-changed, {case}: {sum(counts.values())} Pebble calls ({calls})")
    print(figures["import"])
    print(figures["rss"])


if __name__ == "__main__":
    main()
