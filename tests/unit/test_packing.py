"""What ``charmcraft pack`` puts in the charm, and that its pins agree with each other.

``platform-facts.md`` (packing): the charm plugin installs ``charm-binary-python-packages``
first, at the newest release unless pinned, then ``requirements.txt`` from source; without a
``.jujuignore`` everything in the repository ships. ``.jujuignore`` is matched here by git
itself (``git check-ignore``: the same gitignore syntax), in a scratch repository whose only
exclude file is ``.jujuignore``.
"""

import importlib.metadata
import re
import subprocess

import pytest
from packaging.requirements import Requirement

from tests.unit.charm_harness import CHARMCRAFT, ROOT

PIN = re.compile(r"^(?P<name>[A-Za-z0-9_.-]+)(?:\[[a-z,]+\])?==(?P<version>[0-9][^\s;#]*)$")
NOT_PACKED = ("tests", "bench", "demo", "localenv", "scripts", ".ci")
PACKED = ("src", "charmcraft.yaml", "requirements.txt", "README.md")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = PIN.match(line)
        assert match, f"not an exact pin: {line!r}"
        pins[_norm(match["name"])] = match["version"]
    return pins


def test_requirements_are_exact_pins_without_addresses_or_hashes():
    text = (ROOT / "requirements.txt").read_text()
    assert "://" not in text
    assert "--hash" not in text
    assert _pins()  # every line parsed as name==version


def test_every_runtime_dependency_is_pinned_at_the_version_tested():
    """The closure of the top-level requirements, read from the installed packages' own
    metadata (this venv was installed from these pins), is pinned, at the installed version."""
    pins = _pins()
    seen: set[str] = set()
    todo = [Requirement(line.split("#")[0].strip()) for line in _top_level()]
    while todo:
        requirement = todo.pop()
        name = _norm(requirement.name)
        if name in seen:
            continue
        seen.add(name)
        assert name in pins, f"{requirement.name} is needed at run time but not pinned"
        distribution = importlib.metadata.distribution(name)
        assert distribution.version == pins[name], name
        for needed in distribution.requires or []:
            dependency = Requirement(needed)
            extras = requirement.extras or {""}
            if dependency.marker is None or any(
                dependency.marker.evaluate({"extra": extra}) for extra in extras
            ):
                todo.append(dependency)
    assert seen == set(pins), f"pinned but not needed: {sorted(set(pins) - seen)}"


def _top_level() -> list[str]:
    lines = (ROOT / "requirements.txt").read_text().split("\n\n")[0].splitlines()
    return [line for line in lines if line and not line.startswith("#")]


def test_binary_packages_are_pinned_as_in_requirements():
    pins = _pins()
    binaries = CHARMCRAFT["parts"]["charm"]["charm-binary-python-packages"]
    assert binaries
    for entry in binaries:
        match = PIN.match(entry)
        assert match, f"charm-binary-python-packages entry not pinned: {entry!r}"
        assert pins.get(_norm(match["name"])) == match["version"], entry


def test_the_workload_image_is_pinned_by_digest_with_its_tag():
    source = CHARMCRAFT["resources"]["pgbouncer-image"]["upstream-source"]
    assert re.fullmatch(r"ghcr\.io/canonical/charmed-pgbouncer@sha256:[0-9a-f]{64}", source)
    yaml_text = (ROOT / "charmcraft.yaml").read_text()
    # The tag is recorded beside the digest (published tags: <version>-<base>_edge).
    upstream = yaml_text.index("upstream-source:")
    comment = yaml_text[yaml_text.rindex("\n", 0, yaml_text.rindex("\n", 0, upstream)) : upstream]
    assert re.search(r"tag \d+\.\d+-\d+\.\d+_edge\b", comment), comment


@pytest.fixture(scope="module")
def ignored(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """The repository's files (``git ls-files``, plus folders) that .jujuignore leaves out."""
    scratch = tmp_path_factory.mktemp("jujuignore")
    subprocess.run(["git", "init", "-q", str(scratch)], check=True)
    (scratch / ".git" / "info" / "exclude").write_text((ROOT / ".jujuignore").read_text())
    files = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files"], capture_output=True, text=True, check=True
    ).stdout.split()
    paths = sorted({*files, *NOT_PACKED, *PACKED} | {f"{name}/" for name in NOT_PACKED})
    result = subprocess.run(
        ["git", "-C", str(scratch), "check-ignore", "--no-index", "--stdin"],
        input="\n".join(paths),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode in (0, 1), result.stderr
    return set(result.stdout.split())


@pytest.mark.parametrize("folder", NOT_PACKED)
def test_jujuignore_keeps_non_charm_folders_out(ignored: set[str], folder: str):
    assert f"{folder}/" in ignored


def test_jujuignore_keeps_the_charm_in(ignored: set[str]):
    files = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files"], capture_output=True, text=True, check=True
    ).stdout.split()
    packed = sorted(f for f in files if f not in ignored)
    assert [f for f in PACKED if f in ignored] == []
    assert [f for f in packed if f.startswith("src/")] == sorted(
        f for f in files if f.startswith("src/")
    )
    assert {f.split("/")[0] for f in packed} <= {"src", "lib", *PACKED, ".jujuignore"}
