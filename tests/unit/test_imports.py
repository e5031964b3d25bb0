"""What the charm's modules import: the domain stays framework- and I/O-free, and a hook
that never talks to PostgreSQL does not pay for loading its driver."""

import ast
import os
import pathlib
import subprocess
import sys

import pytest

SRC = pathlib.Path(__file__).resolve().parents[2] / "src"
FORBIDDEN_IN_DOMAIN = {
    "ops", "cattrs", "psycopg", "yaml", "subprocess", "socket", "os", "pathlib", "shutil",
    "io", "tempfile", "urllib.request", "http", "asyncio", "logging",
}  # fmt: skip


def _imports(path: pathlib.Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", sorted((SRC / "domain").glob("*.py")), ids=lambda p: p.name)
def test_domain_module_imports_no_framework_or_io(path: pathlib.Path):
    bad = {
        name
        for name in _imports(path)
        if name in FORBIDDEN_IN_DOMAIN or name.split(".")[0] in FORBIDDEN_IN_DOMAIN
    }
    assert bad == set()


# Loaded only in the hooks that need them, or never by the charm: the PostgreSQL driver, and
# what the data-platform interfaces library would bring (the v1 answer is the charm's own).
HEAVY = ("psycopg", "pydantic", "cryptography", "dpcharmlibs")


def test_importing_the_charm_does_not_load_the_postgresql_driver_or_pydantic():
    code = f"import sys, charm; print(sorted(m for m in sys.modules if m.startswith({HEAVY})))"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_only_the_entrypoint_imports_the_charm_class_and_the_app_layer_is_three_modules():
    importers = sorted(
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        if "app.charm" in _imports(path) and path != SRC / "app" / "charm.py"
    )
    assert importers == ["charm.py"]
    assert sorted(p.name for p in (SRC / "app").glob("*.py")) == [
        "__init__.py",
        "apply.py",
        "charm.py",
        "gather.py",
    ]


@pytest.mark.parametrize("package", ["domain", "adapters"])
def test_no_lower_layer_imports_the_app_layer(package: str):
    offenders = sorted(
        str(path.relative_to(SRC))
        for path in (SRC / package).rglob("*.py")
        if any(name == "app" or name.startswith("app.") for name in _imports(path))
    )
    assert offenders == []


def test_importing_the_charm_does_not_load_the_tls_library():
    """The TLS library brings cryptography and pydantic (bench/library_imports.py): only the
    hooks that need it load it (app.charm)."""
    heavy = ("charmlibs", "cryptography", "pydantic")
    code = f"import sys, charm; print(sorted(m for m in sys.modules if m.startswith({heavy})))"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
