"""Benchmark: what the optional libraries cost a hook to import, next to ``import ops``.

A hook is a fresh Python process, so what the charm imports is paid on every hook. The charm
imports the TLS library (``adapters.juju.certificates``: cryptography, pydantic) only in the
hooks that need it (certificates events, a restarted container, a unit not yet serving its
certificate), and the COS libraries (prometheus_scrape, grafana_dashboard, loki_push_api and
cosl) only in hooks of a unit with the matching relation; a unit without those relations
pays neither. Measured, with bytecode cached (each is run once before measuring): ``import
ops`` (the floor), ``import charm`` (every hook), and the charm plus each library.

Two figures for each: the instructions the process executes (valgrind's callgrind, the
machine's load does not change it; skipped when valgrind is missing) and the median wall time
over ``RUNS`` runs. Ratios are against ``import ops``.

Usage: ``.venv/bin/python bench/library_imports.py``
"""

import os
import pathlib
import re
import shutil
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "lib")])}
RUNS = 15
CASES = {
    "import ops": "import ops",
    "import charm": "import charm",
    "import charm + TLS library": "import charm, adapters.juju.certificates",
    "import charm + prometheus_scrape": "import charm, charms.prometheus_k8s.v0.prometheus_scrape",
    "import charm + grafana_dashboard": "import charm, charms.grafana_k8s.v0.grafana_dashboard",
    "import charm + loki_push_api": "import charm, charms.loki_k8s.v1.loki_push_api",
    "import charm + all three COS": (
        "import charm, charms.prometheus_k8s.v0.prometheus_scrape, "
        "charms.grafana_k8s.v0.grafana_dashboard, charms.loki_k8s.v1.loki_push_api"
    ),
}


def instructions(code: str) -> int | None:
    if shutil.which("valgrind") is None:
        return None
    out = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            "-c",
            code,
        ],
        env=ENV,
        capture_output=True,
        text=True,
        check=True,
    )
    found = re.search(r"Collected : (\d+)", out.stderr)
    return int(found.group(1)) if found else None


def wall_ms(code: str) -> float:
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], env=ENV, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def measure() -> list[tuple[str, int | None, float]]:
    rows = []
    for name, code in CASES.items():
        subprocess.run([sys.executable, "-c", code], env=ENV, check=True)  # cache bytecode
        rows.append((name, instructions(code), wall_ms(code)))
    return rows


def main() -> None:
    rows = measure()
    base_instr, base_ms = rows[0][1], rows[0][2]
    print(f"{'process':36} {'instructions':>14} {'ratio':>6} {'wall ms':>9} {'ratio':>6}")
    for name, instr, ms in rows:
        if instr is not None and base_instr:
            instr_text, instr_ratio = f"{instr:,}", f"{instr / base_instr:.2f}"
        else:
            instr_text, instr_ratio = "n/a", "n/a"
        print(f"{name:36} {instr_text:>14} {instr_ratio:>6} {ms:9.1f} {ms / base_ms:6.2f}")


if __name__ == "__main__":
    main()
