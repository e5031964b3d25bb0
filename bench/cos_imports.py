"""Benchmark: what the COS libraries add to a hook's import, next to ``import ops``.

A hook is a fresh Python process. The charm imports the COS libraries (prometheus_scrape,
grafana_dashboard, loki_push_api and their dependency cosl) only in hooks of a unit that has
the matching relation, so a unit not related to COS pays nothing. This prints the
whole-process wall time of ``python -c "import ..."`` (median of ``RUNS``, bytecode cached)
for ``ops``, the charm, and the charm plus each library, with the ratio to ``import ops``.

    .venv/bin/python bench/cos_imports.py
"""

import os
import pathlib
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
RUNS = 11
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "lib")])}
CASES = {
    "ops": "import ops",
    "charm": "import charm",
    "charm + prometheus_scrape": "import charm, charms.prometheus_k8s.v0.prometheus_scrape",
    "charm + grafana_dashboard": "import charm, charms.grafana_k8s.v0.grafana_dashboard",
    "charm + loki_push_api": "import charm, charms.loki_k8s.v1.loki_push_api",
    "charm + all three": (
        "import charm, charms.prometheus_k8s.v0.prometheus_scrape, "
        "charms.grafana_k8s.v0.grafana_dashboard, charms.loki_k8s.v1.loki_push_api"
    ),
}


def median_ms(code: str) -> float:
    subprocess.run([sys.executable, "-c", code], env=ENV, check=True)  # warm the bytecode
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], env=ENV, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    results = {name: median_ms(code) for name, code in CASES.items()}
    base = results["ops"]
    print(f"{'import':<28} {'median ms':>10} {'/ import ops':>13}")
    for name, ms in results.items():
        print(f"{name:<28} {ms:>10.1f} {ms / base:>13.2f}")


if __name__ == "__main__":
    main()
