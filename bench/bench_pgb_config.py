"""Benchmark: parse and render a pgbouncer.ini with 1,000 databases.

Every hook of a unit reads its pgbouncer.ini and every peer event parses the leader's published
copy, so ``parse_pgb_ini`` and ``render_pgb_ini`` run on each of them; a charm serving many
client relations has one ``[databases]`` entry per relation database. This builds such a
configuration (the settings ``initial_config`` renders, 1,000 databases shaped like the charm's
entries, one in five with a password that needs quoting), then times one round trip
``render_pgb_ini(parse_pgb_ini(text))`` per run and reports the median. The target is a median
of at most 3 ms.

``measure()`` returns the figures for ``bench/run.py``; ``main()`` prints them as a table row.
"""

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from domain.charm_config import CharmConfig, initial_config
from domain.pgb_config import ConnString, PgbConfig, parse_pgb_ini, render_pgb_ini

DATABASES = 1000
RUNS = 60
TARGET_MS = 3.0


def build_config(databases: int = DATABASES, quoted_every: int = 5) -> PgbConfig:
    """The initial configuration plus ``databases`` entries like the charm writes.

    One entry in ``quoted_every`` (none if 0) carries a user and a password that needs quoting.
    """
    cfg = initial_config(CharmConfig(), processes=2)
    entries: dict[str, ConnString] = {}
    for i in range(databases):
        params = {
            "host": f"10.1.{i // 250}.{i % 250 + 1}",
            "port": "5432",
            "dbname": f"app_{i}",
            "auth_user": f"pgbouncer_auth_relation_{i}",
        }
        if quoted_every and i % quoted_every == 0:
            params["user"] = f"relation_{i}"
            params["password"] = f"s3cr't {i:08x}"
        if i % 10 == 0:
            params["pool_mode"] = "transaction"
            params["max_db_connections"] = "40"
        entries[f"app_{i}"] = ConnString(params)
    return PgbConfig(databases=entries, pgbouncer=cfg.pgbouncer, users=cfg.users, peers=cfg.peers)


def _round_trips(text: str, runs: int) -> list[float]:
    if render_pgb_ini(parse_pgb_ini(text)) != text:
        raise AssertionError("the round trip changed the text")
    timings: list[float] = []
    for _ in range(runs):
        start = time.perf_counter()
        render_pgb_ini(parse_pgb_ini(text))
        timings.append((time.perf_counter() - start) * 1000)
    return timings


def measure(runs: int = RUNS) -> dict[str, float]:
    """Milliseconds of one parse+render round trip of 1,000 databases (median and best).

    The headline figure uses the mixed entries of ``build_config``; the ``unquoted`` one has no
    value that needs quoting, the shape of a charm that keeps passwords out of the file.
    """
    text = render_pgb_ini(build_config())
    mixed = _round_trips(text, runs)
    unquoted = _round_trips(render_pgb_ini(build_config(quoted_every=0)), runs)
    return {
        "parse_render_1000_dbs_median_ms": statistics.median(mixed),
        "parse_render_1000_dbs_min_ms": min(mixed),
        "parse_render_1000_dbs_unquoted_median_ms": statistics.median(unquoted),
        "target_ms": TARGET_MS,
        "runs": float(runs),
        "text_kib": len(text.encode()) / 1024,
    }


def main() -> None:
    figures = measure()
    median = figures["parse_render_1000_dbs_median_ms"]
    verdict = "ok" if median <= TARGET_MS else "SLOW"
    unquoted = figures["parse_render_1000_dbs_unquoted_median_ms"]
    print(f"{'benchmark':<40} {'median ms':>10} {'min ms':>8} {'target':>7} {'runs':>5}")
    print(
        f"{'pgb_config parse+render 1,000 dbs':<40} {median:>10.2f} "
        f"{figures['parse_render_1000_dbs_min_ms']:>8.2f} {TARGET_MS:>7.1f} "
        f"{int(figures['runs']):>5}  {verdict}"
    )
    print(f"{'  same, no value needing quotes':<40} {unquoted:>10.2f}")


if __name__ == "__main__":
    main()
