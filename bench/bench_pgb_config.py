"""Benchmark: parse and render a pgbouncer.ini with 1,000 databases.

Every hook of a unit reads its pgbouncer.ini and every peer event parses the leader's published
copy, so ``parse_pgb_ini`` and ``render_pgb_ini`` run on each of them; a charm serving many
client relations has one ``[databases]`` entry per relation database. This builds such a
configuration (the settings ``initial_config`` renders, 1,000 databases shaped like the charm's
entries, one in five with a password that needs quoting) and times, per run:

- the lazy round trip ``render_pgb_ini(parse_pgb_ini(text))``: a canonical text takes the
  parser's fast path, which proves every entry valid but splits none;
- the real hook's work (the target, a median of at most 3 ms): parse, every entry split into
  its parameters (as comparing two configurations or looking entries up does), and the main
  file plus the per-process copies rendered (``per_process_config``, 2 processes), as a unit
  writing the file does.

Times are CPU time (``time.process_time``): the machine is shared, and wall time would
count the other processes' turns.

``measure()`` returns the figures for ``bench/run.py``; ``main()`` prints them as a table row.
"""

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from domain.charm_config import CharmConfig, initial_config
from domain.pgb_config import (
    ConnString,
    PgbConfig,
    parse_pgb_ini,
    per_process_config,
    render_pgb_ini,
)

DATABASES = 1000
RUNS = 60
TARGET_MS = 3.0
PROCESSES = 2


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


def _lazy_round_trip(text: str) -> None:
    render_pgb_ini(parse_pgb_ini(text))


def hook_round_trip(text: str, processes: int = PROCESSES) -> list[str]:
    """What a unit does with a new file: parse, every entry split, main and copies rendered."""
    cfg = parse_pgb_ini(text)
    for _name, conn in cfg.databases:
        conn.get("dbname")  # splits the entry into its parameters
    return [render_pgb_ini(cfg)] + [
        render_pgb_ini(per_process_config(cfg, index)) for index in range(processes)
    ]


def _forget_parses() -> None:
    # parse_pgb_ini keeps its last few results (a hook meets one text several times): each
    # run here must parse and split for real.
    cache_clear = getattr(parse_pgb_ini, "cache_clear", None)
    if cache_clear is not None:
        cache_clear()


def _timings(work, text: str, runs: int) -> list[float]:
    timings: list[float] = []
    for _ in range(runs):
        _forget_parses()
        start = time.process_time()
        work(text)
        timings.append((time.process_time() - start) * 1000)
    return timings


def _round_trips(text: str, runs: int) -> list[float]:
    if render_pgb_ini(parse_pgb_ini(text)) != text or hook_round_trip(text)[0] != text:
        raise AssertionError("the round trip changed the text")
    return _timings(_lazy_round_trip, text, runs)


def measure(runs: int = RUNS) -> dict[str, float]:
    """Milliseconds of one parse+render round trip of 1,000 databases (median and best).

    The headline figure uses the mixed entries of ``build_config``; the ``unquoted`` one has no
    value that needs quoting, the shape of a charm that keeps passwords out of the file.
    """
    text = render_pgb_ini(build_config())
    mixed = _round_trips(text, runs)
    unquoted = _round_trips(render_pgb_ini(build_config(quoted_every=0)), runs)
    split = _timings(hook_round_trip, text, runs)
    return {
        "hook_1000_dbs_median_ms": statistics.median(split),
        "hook_1000_dbs_min_ms": min(split),
        "parse_render_1000_dbs_median_ms": statistics.median(mixed),
        "parse_render_1000_dbs_min_ms": min(mixed),
        "parse_render_1000_dbs_unquoted_median_ms": statistics.median(unquoted),
        "target_ms": TARGET_MS,
        "runs": float(runs),
        "text_kib": len(text.encode()) / 1024,
    }


def main() -> None:
    figures = measure()
    median = figures["hook_1000_dbs_median_ms"]
    verdict = "ok" if median <= TARGET_MS else "SLOW"
    print(f"{'benchmark (CPU ms)':<44} {'median':>8} {'min':>8} {'target':>7} {'runs':>5}")
    print(
        f"{'parse, split, render + copies, 1,000 dbs':<44} {median:>8.2f} "
        f"{figures['hook_1000_dbs_min_ms']:>8.2f} {TARGET_MS:>7.1f} "
        f"{int(figures['runs']):>5}  {verdict}"
    )
    lazy = figures["parse_render_1000_dbs_median_ms"]
    print(f"{'  lazy round trip (nothing split)':<44} {lazy:>8.2f}")
    unquoted = figures["parse_render_1000_dbs_unquoted_median_ms"]
    print(f"{'  same, no value needing quotes':<44} {unquoted:>8.2f}")


if __name__ == "__main__":
    main()
