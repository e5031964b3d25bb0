"""Put the COS Charmhub libraries the charm uses into lib/, at the versions charmcraft.yaml pins.

Where Charmhub is reachable, ``charmcraft fetch-libs`` does this from the ``charm-libs`` list in
charmcraft.yaml. Here only PyPI is, and one pinned PyPI package vendors the same published
files: ``postgresql-charms-single-kernel`` (``WHEEL`` below) carries
``lib/charms/<charm>/v<api>/<name>.py`` for each of them. This script downloads that wheel
with pip (no dependencies), copies each pinned library out of it into ``lib/`` and checks
that the copy is the pinned one: its ``LIBID`` is the library's identity on Charmhub
(``LIBIDS``), its ``LIBAPI`` and ``LIBPATCH`` the ``version`` charmcraft.yaml names. A
mismatch stops the script with the library, the field and both values; nothing is left
half-copied (each file is written to a temporary name and renamed).

lib/ is not committed (the repository holds only the project's own code): scripts/setup.sh
runs this script, which does nothing when every library is already there at its pin.

    python scripts/fetch_libs.py [--check]

``--check`` only verifies what is in lib/ and exits 1 if a library is missing or differs.
"""

import argparse
import ast
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
WHEEL = "postgresql-charms-single-kernel==16.3.20"
# Where the libraries sit inside that wheel.
WHEEL_LIB_DIR = "single_kernel_postgresql/lib"
# Each library's LIBID: its identity on Charmhub, the same in every version.
LIBIDS = {
    "prometheus_k8s.prometheus_scrape": "bc84295fef5f4049878f07b131968ee2",
    "grafana_k8s.grafana_dashboard": "c49eb9c7dfef40c7b6235ebd67010a3f",
    "loki_k8s.loki_push_api": "bf76f23cdd03464b877c52bd1d2f563e",
}


class LibMismatch(Exception):
    """A library file is not the pinned one."""


def pins(charmcraft: Path = ROOT / "charmcraft.yaml") -> dict[str, tuple[int, int]]:
    """``charm-libs`` from charmcraft.yaml: ``charm.lib`` -> (LIBAPI, LIBPATCH)."""
    declared = yaml.safe_load(charmcraft.read_text()).get("charm-libs", [])
    result = {}
    for entry in declared:
        api, patch = str(entry["version"]).split(".")
        result[entry["lib"]] = (int(api), int(patch))
    return result


def lib_path(lib: str, api: int, base: Path) -> Path:
    """Where ``charm.name`` at LIBAPI ``api`` lives under ``base``: charms/<charm>/v<api>/."""
    charm, name = lib.split(".")
    return base / "charms" / charm / f"v{api}" / f"{name}.py"


def lib_fields(source: str) -> dict[str, object]:
    """LIBID, LIBAPI and LIBPATCH as the file assigns them (read, never executed)."""
    fields: dict[str, object] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name) and target.id in ("LIBID", "LIBAPI", "LIBPATCH"):
                fields[target.id] = ast.literal_eval(node.value)
    return fields


def check_lib(lib: str, source: str, api: int, patch: int) -> None:
    """Raise ``LibMismatch`` unless ``source`` is ``lib`` at version ``api.patch``."""
    fields = lib_fields(source)
    wanted = {"LIBID": LIBIDS[lib], "LIBAPI": api, "LIBPATCH": patch}
    for key, value in wanted.items():
        if fields.get(key) != value:
            raise LibMismatch(f"{lib}: {key} is {fields.get(key)!r}, the pin says {value!r}")


def verify(base: Path, wanted: dict[str, tuple[int, int]]) -> list[str]:
    """What is missing or wrong under ``base`` (empty when every pinned library is right)."""
    problems = []
    for lib, (api, patch) in wanted.items():
        path = lib_path(lib, api, base)
        if not path.is_file():
            problems.append(f"{lib}: {path.relative_to(base)} is missing")
            continue
        try:
            check_lib(lib, path.read_text(), api, patch)
        except LibMismatch as err:
            problems.append(str(err))
    return problems


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as tmp:
        tmp.write(text)
    os.replace(tmp.name, path)


def fetch(base: Path, wanted: dict[str, tuple[int, int]]) -> None:
    """Download the wheel and copy every pinned library out of it, checked, into ``base``."""
    with tempfile.TemporaryDirectory() as folder:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", folder, WHEEL],
            check=True,
        )
        (wheel,) = Path(folder).glob("*.whl")
        with zipfile.ZipFile(wheel) as archive:
            sources = {}
            for lib, (api, patch) in wanted.items():
                inside = lib_path(lib, api, Path(WHEEL_LIB_DIR)).as_posix()
                source = archive.read(inside).decode()
                check_lib(lib, source, api, patch)
                sources[lib] = source
    # Only once every library checked out, so a bad pin leaves lib/ as it was.
    for lib, source in sources.items():
        _write_atomically(lib_path(lib, wanted[lib][0], base), source)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="verify lib/ only")
    parser.add_argument("--lib-dir", type=Path, default=ROOT / "lib")
    args = parser.parse_args(argv)
    wanted = pins()
    problems = verify(args.lib_dir, wanted)
    if not problems:
        print(f"fetch_libs: {len(wanted)} libraries in lib/ at their pins")
        return 0
    if args.check:
        for problem in problems:
            print(f"fetch_libs: {problem}", file=sys.stderr)
        return 1
    try:
        fetch(args.lib_dir, wanted)
    except LibMismatch as err:
        print(f"fetch_libs: {err}", file=sys.stderr)
        return 1
    problems = verify(args.lib_dir, wanted)
    for problem in problems:
        print(f"fetch_libs: {problem}", file=sys.stderr)
    if not problems:
        print(f"fetch_libs: fetched {', '.join(sorted(wanted))} from {WHEEL}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
