"""Benchmark: what importing a candidate library would add to every hook, before adopting it.

A hook is a fresh Python process, so a library the charm imports is paid for on every hook.
This prints, for an interpreter that has the candidate installed (a throwaway virtualenv: the
candidate is not a dependency of the charm), the cost of ``import ops`` and of ``import ops,
<candidate>``, with bytecode cached (two warm-up runs, ``PYTHONPYCACHEPREFIX`` in a fresh
folder), and the ratio of the two, against the hook-cost target of ``import charm`` /
``import ops`` <= 1.20. The figure is the instruction count of the whole process under
``valgrind --tool=callgrind`` when valgrind is installed (stable on a shared machine), else
the median wall time of ``RUNS`` runs.

    python3 -m venv /tmp/cr && /tmp/cr/bin/pip install ops==3.9.0 charm-refresh==3.1.1.9
    .venv/bin/python bench/import_candidate.py /tmp/cr/bin/python charm_refresh
"""

import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

RUNS = 15
TARGET = 1.20
CALLGRIND = ("valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null")


def _cost(python: str, statement: str, env: dict[str, str]) -> float:
    for _ in range(2):  # write the bytecode, then run from it
        subprocess.run([python, "-c", statement], env=env, check=True)
    if shutil.which("valgrind"):
        out = subprocess.run(
            [*CALLGRIND, python, "-c", statement],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stderr
        match = re.search(r"Collected : (\d+)", out)
        if match is None:
            raise RuntimeError(f"no instruction count in valgrind's output:\n{out}")
        return float(match.group(1))
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run([python, "-c", statement], env=env, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    python, module = sys.argv[1], sys.argv[2]
    with tempfile.TemporaryDirectory(prefix="pycache-") as cache:
        env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
        env["PYTHONPYCACHEPREFIX"] = cache
        unit = "instructions" if shutil.which("valgrind") else "s (median wall)"
        base = _cost(python, "import ops", env)
        both = _cost(python, f"import ops, {module}", env)
    print(f"| import | cost ({unit}) | / import ops |")
    print("|---|---|---|")
    print(f"| ops | {base:,.0f} | 1.00 |")
    print(f"| ops, {module} | {both:,.0f} | {both / base:.2f} |")
    print(
        f"{module} alone adds {both / base - 1:.0%} of `import ops`; the whole charm's budget "
        f"over ops is {TARGET - 1:.0%}."
    )


if __name__ == "__main__":
    main()
