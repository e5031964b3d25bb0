"""Benchmark: Pebble calls of one quiet hook, with and without a Prometheus related.

A settled unit (its files, its processes and, where Prometheus is related, its exporters and
stats user already in place: ``SETTLING_HOOKS`` update-status hooks have run first) handles
one more update-status; every public method of ops' testing Pebble client is counted, as in
``bench/hook_costs.py``. Printed: the leader and a follower, each without and with a
``metrics-endpoint`` relation, and the difference metrics make.

A second table gives each hook from the first one on (the first sets up the stats user
and the exporters), with its calls to ``send_signal`` (each one reload of pgbouncer).

Usage: ``.venv/bin/python bench/metrics_hook_costs.py``
"""

import collections
import pathlib
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "lib"), str(ROOT)]


def _count_pebble_calls(run) -> collections.Counter[str]:
    from localenv.pebble_calls import counting_pebble_calls

    with counting_pebble_calls() as counts:
        run()
    return counts


# Two: the metrics work as a second plan rewrote the leader's files after it acknowledged
# them, so its next hook reloaded once more before it was quiet.
SETTLING_HOOKS = 2


def _state(folder: pathlib.Path, leader: bool, metrics: bool):
    from ops import testing

    from adapters.juju.secret_store import SECRET_ID_KEY, SECRET_LABEL
    from tests.unit.charm_harness import MODEL, container, write_files
    from tests.unit.peer_fixtures import AUTH_A, CFG_A, HOST0, HOST1

    write_files(folder, cfg=CFG_A, auth=AUTH_A)
    secret = testing.Secret(tracked_content={"auth-file": AUTH_A}, owner="app", label=SECRET_LABEL)
    peer = testing.PeerRelation(
        "pgb-peers",
        local_app_data={
            "cfg_file": CFG_A,
            "leader_hostname": HOST0 if leader else HOST1,
            SECRET_ID_KEY: secret.id,
        },
        local_unit_data={"hostname": HOST0},
        peers_data={1: {"hostname": HOST1, "pgbouncer_processes": "2"}},
    )
    backend = testing.Relation(
        "backend-database",
        remote_app_name="postgresql-k8s",
        remote_app_data={"endpoints": "postgresql-k8s-primary:5432", "secret-user": "secret:x"},
    )
    relations = {peer, backend}
    if metrics:
        relations.add(testing.Relation("metrics-endpoint", remote_app_name="prometheus-k8s"))
    return testing.State(
        leader=leader,
        model=MODEL,
        containers={container(folder)},
        relations=relations,
        secrets={secret},
    )


def hook_calls(
    leader: bool, metrics: bool, hooks: int = SETTLING_HOOKS + 1
) -> list[dict[str, int]]:
    """Pebble calls of each of ``hooks`` update-status hooks on a unit, from its first hook
    with the given relations on; the last one is the quiet hook."""
    from charm import PgBouncerK8sCharm
    from tests.unit.charm_harness import PROCESSES, context

    PgBouncerK8sCharm.processes = PROCESSES
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = pathlib.Path(tmp) / "pgbouncer"
        folder.mkdir()
        state = _state(folder, leader, metrics)
        if not leader:
            # The follower's store needs the stats password the leader would have made.
            state = _with_stats_password(state)
        for _ in range(hooks):
            ctx = context()
            out = []
            counts = _count_pebble_calls(
                lambda ctx=ctx, state=state, out=out: out.append(
                    ctx.run(ctx.on.update_status(), state)
                )
            )
            state = out[0]
            results.append(dict(counts))
    return results


def _with_stats_password(state):
    import dataclasses

    (secret,) = state.secrets
    content = {**secret.tracked_content, "stats-password": "0123456789abcdef0123456789abcdef"}
    return dataclasses.replace(
        state,
        secrets={dataclasses.replace(secret, tracked_content=content, latest_content=content)},
    )


def main() -> None:
    print("| unit | Prometheus related | Pebble calls, quiet update-status | calls |")
    print("|---|---|---|---|")
    first_hooks = []
    for leader in (True, False):
        role = "leader" if leader else "follower"
        totals = []
        for metrics in (False, True):
            per_hook = hook_calls(leader, metrics)
            counts = per_hook[-1]
            totals.append(sum(counts.values()))
            detail = ", ".join(f"{name} {n}" for name, n in sorted(counts.items()))
            print(f"| {role} | {'yes' if metrics else 'no'} | {totals[-1]} | {detail} |")
            if metrics:
                first_hooks.append((role, per_hook))
        print(f"| {role} | extra for metrics | {totals[1] - totals[0]} | |")
    print()
    print("| unit, Prometheus related | hook | Pebble calls | SIGHUPs (send_signal) |")
    print("|---|---|---|---|")
    for role, per_hook in first_hooks:
        for number, counts in enumerate(per_hook, 1):
            signals = counts.get("send_signal", 0)
            print(f"| {role} | {number} | {sum(counts.values())} | {signals} |")


if __name__ == "__main__":
    main()
