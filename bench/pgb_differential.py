"""Differential campaign: the follower's validation against the real pgbouncer, at scale.

Every generated config (``localenv.pgb_campaign``: mutations of configs the charm renders) goes
through ``domain.pgb_validation.check_published`` and through a real pgbouncer started on it
(``localenv.pgbouncer_probe``). The table counts each outcome; the follower must never write a
config pgbouncer refuses or runs without serving (the ``UNSAFE`` rows must be 0). Where the
follower is stricter than pgbouncer, the reasons are listed with their counts.

    .venv/bin/python bench/pgb_differential.py [--cases 3000] [--seed 19] [--workers 2]

Exit status 1 when a case is unsafe; each unsafe case is printed with pgbouncer's log.
"""

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from localenv.pgb_campaign import Kind, run_campaign, summary  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--cases", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=1.0)
    args = parser.parse_args(argv)

    start = time.monotonic()
    results = run_campaign(args.seed, args.cases, workers=args.workers, timeout=args.timeout)
    elapsed = time.monotonic() - start
    kinds, stricter = summary(results)
    written = sum(1 for r in results if r.follower == "accepted")

    print(f"differential campaign: seed {args.seed}, {len(results)} cases, {elapsed:.0f} s")
    print(f"{'outcome':<58} {'cases':>6}")
    for kind in (
        Kind.OK,
        Kind.BOTH_REFUSE,
        Kind.STRICTER,
        Kind.UNSAFE,
        Kind.UNSAFE_NOT_SERVING,
        Kind.SKIPPED,
    ):
        print(f"{kind:<58} {kinds.get(kind, 0):>6}")
    print(f"{'follower writes (accepted)':<58} {written:>6}")
    print(f"{'follower refuses':<58} {len(results) - written:>6}")
    print()
    print(f"{'follower stricter than pgbouncer, by reason':<100} {'cases':>6}")
    for reason, count in stricter.most_common():
        print(f"  {reason:<98} {count:>6}")
    unsafe = [r for r in results if r.kind in (Kind.UNSAFE, Kind.UNSAFE_NOT_SERVING)]
    for result in unsafe:
        print(f"\n--- case {result.case.number} {result.kind} {result.case.labels}")
        print(result.case.text)
        print("--- pgbouncer:", result.log[-600:])
    return 1 if unsafe else 0


if __name__ == "__main__":
    sys.exit(main())
