"""Benchmark: how many hooks the application runs for one change, in the multi-unit model.

Every hook is a fresh Python process on a unit, so the number of hooks a change costs, summed
over the application, is the charm's main running cost at scale. ``localenv.juju_model``
plays Juju between N units of the real charm (``ops.testing`` per unit, a fake workload); the
model fires a hook on every other unit whenever a unit writes its databag, and on every
follower whenever the leader writes the application databag, as Juju does.

Each hook the model runs is put in one of two piles:

- **changed something**: it wrote a databag (the unit's, the application's, a client
  relation's), a secret, a file in its container, or signalled or started pgbouncer;
- **found nothing to do**: none of that (its status may still have been set).

Two changes are counted:

- ``config_change(N)``: N units brought up with the stand-in backend and settled, then one
  ``juju config`` (``pool_mode=transaction``, ``max_db_connections=50``) until it converges.
  Target: at most 2N+1 hooks in all (N config-changed, N-1 followers told of the new file,
  and two to spare).
- ``client_added(N)``: N units related to a real PostgreSQL (``PostgresCluster``) and
  settled, then a client application related (``relate_client``) until it has its
  credentials. The client relation's own hooks (relation-created, -joined, -changed on each
  unit: 3N) are counted apart; target: at most 2N+1 other hooks.

``main()`` prints the figures; ``bench/run.py`` puts them in its table.
"""

from __future__ import annotations

import collections
import dataclasses
import random
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "lib"), str(ROOT)]

from localenv.juju_model import (  # noqa: E402
    APP_CHANGED,
    PEER_RELATION_ID,
    MultiUnitModel,
    Pending,
)
from localenv.postgres_cluster import PostgresCluster  # noqa: E402

AUTH_USER = "pgbouncer_auth_pgbouncer_k8s"


def target(units: int) -> int:
    """The issue's budget for one change: 2N+1 hooks."""
    return 2 * units + 1


@dataclasses.dataclass(frozen=True)
class Hook:
    unit: int
    kind: str
    relation: int
    changed: bool


class LedgerModel(MultiUnitModel):
    """The multi-unit model, recording for each hook whether it changed anything."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ledger: list[Hook] = []

    def __enter__(self) -> LedgerModel:
        return self

    def _footprint(self, n: int) -> tuple[object, ...]:
        # Everything a hook on unit n can change that another unit or the operator's
        # workload sees; the status is left out (setting it fires no hook).
        return (
            dict(self._app_data),
            dict(self._unit_data.get(n, {})),
            {sid: dict(record.latest) for sid, record in self._secrets.items()},
            {
                rid: (dict(rel.local_app_data), dict(rel.local_unit_data.get(n, {})))
                for rid, rel in self._relations.items()
            },
            dict(self.counters(n)) if n in self._live else {},
        )

    def _deliver(self, event: Pending) -> None:
        n = event.unit
        before = self._footprint(n)
        runs = self.metrics.runs()
        super()._deliver(event)
        if self.metrics.runs() == runs:
            return  # dropped, not run
        kind = "app_changed" if event.kind == APP_CHANGED else event.kind
        self.ledger.append(Hook(n, kind, event.relation, self._footprint(n) != before))


@dataclasses.dataclass
class Count:
    """The hooks of one change."""

    units: int
    hooks: list[Hook]
    # The client relation's id (client_added), whose own hooks are counted apart.
    client_relation: int | None = None

    @property
    def own(self) -> list[Hook]:
        return [hook for hook in self.hooks if hook.relation == self.client_relation]

    @property
    def counted(self) -> list[Hook]:
        return [hook for hook in self.hooks if hook.relation != self.client_relation]

    @property
    def changed(self) -> int:
        return sum(hook.changed for hook in self.counted)

    @property
    def idle(self) -> int:
        return len(self.counted) - self.changed

    @property
    def total(self) -> int:
        return len(self.counted)

    def by_kind(self) -> dict[str, tuple[int, int]]:
        """hook kind (with ``peer`` or ``client`` for relation events) -> (changed, idle)."""
        result: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
        for hook in self.counted:
            where = "" if hook.relation == PEER_RELATION_ID else f" (relation {hook.relation})"
            result[hook.kind + where][0 if hook.changed else 1] += 1
        return {kind: (changed, idle) for kind, (changed, idle) in sorted(result.items())}


def auth_file() -> str:
    from domain.auth_file import md5_secret

    return f'"{AUTH_USER}" "{md5_secret(AUTH_USER, "pw")}"\n'


def config_change(units: int) -> Count:
    with LedgerModel(units) as model:
        model.setup_backend(auth_file())
        model.settle(random.Random(10))
        if not model.converged():
            raise RuntimeError("bring-up did not converge: " + "; ".join(model.divergence()))
        model.ledger.clear()
        model.set_config(pool_mode="transaction", max_db_connections=50)
        model.settle(random.Random(11))
        if not model.converged():
            raise RuntimeError("the change did not converge: " + "; ".join(model.divergence()))
        return Count(units, list(model.ledger))


def client_added(units: int, cluster: PostgresCluster) -> Count:
    with LedgerModel(units, backend=False) as model:
        model.relate_backend(cluster)
        model.settle(random.Random(20))
        if not model.converged():
            raise RuntimeError("bring-up did not converge: " + "; ".join(model.divergence()))
        model.ledger.clear()
        relation = model.relate_client(f"client-{units}", f"bench_db_{units}")
        model.settle(random.Random(21))
        credentials = model.client_credentials(relation)  # LookupError when not handed
        if "password" not in credentials:
            raise RuntimeError("the client got no password")
        return Count(units, list(model.ledger), client_relation=relation)


def main() -> None:
    for units in (3, 10):
        count = config_change(units)
        print(
            f"config change, {units} units: {count.total} hooks ({count.changed} changed"
            f" something, {count.idle} found nothing), target {target(units)}; {count.by_kind()}"
        )
    with PostgresCluster() as cluster:
        for units in (3, 10):
            count = client_added(units, cluster)
            print(
                f"client added, {units} units: {count.total} hooks beyond the client's own"
                f" {len(count.own)} ({count.changed} changed something, {count.idle} found"
                f" nothing), target {target(units)}; {count.by_kind()}"
            )


if __name__ == "__main__":
    main()
