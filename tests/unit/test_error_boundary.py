"""One error boundary: the domain raises only its own ``InvalidInput`` family, and the Juju
adapters and the application layer catch that family, never ``ValueError`` or ``TypeError``."""

import ast
import pathlib

import pytest

from domain.auth_file import AuthEntry
from domain.effects import AnswerClient, Defer, InstallAuth
from domain.errors import (
    InvalidAuthFile,
    InvalidEffect,
    InvalidInput,
    InvalidPeerData,
    InvalidStatus,
)
from domain.hook_view import OutOfSecrets, SecretSupply
from domain.peer_data import Acknowledgement, AppPeerData, UnitPeerData
from domain.status import Severity, StatusReason
from tests.unit.relation_fixtures import ACCESS

SRC = pathlib.Path(__file__).resolve().parents[2] / "src"
BUILTIN_ERRORS = {"ValueError", "TypeError"}


def _names(node: ast.expr | None) -> set[str]:
    if node is None:
        return set()
    if isinstance(node, ast.Tuple):
        return {name for element in node.elts for name in _names(element)}
    if isinstance(node, ast.Call):
        return _names(node.func)
    if isinstance(node, ast.Name):
        return {node.id}
    if isinstance(node, ast.Attribute):
        return {node.attr}
    return set()


def _nodes(folder: str, kind: type[ast.AST]) -> list[tuple[str, ast.AST]]:
    found = []
    for path in sorted((SRC / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, kind):
                found.append((f"{path.relative_to(SRC)}:{node.lineno}", node))  # type: ignore[attr-defined]
    return found


def test_the_domain_raises_no_builtin_error():
    raised = [
        where
        for where, node in _nodes("domain", ast.Raise)
        if _names(node.exc) & BUILTIN_ERRORS  # type: ignore[attr-defined]
    ]
    assert raised == []


@pytest.mark.parametrize("folder", ["app", "adapters/juju"])
def test_the_charm_side_catches_no_builtin_error(folder: str):
    caught = [
        where
        for where, node in _nodes(folder, ast.ExceptHandler)
        if _names(node.type) & BUILTIN_ERRORS  # type: ignore[attr-defined]
    ]
    assert caught == []


@pytest.mark.parametrize(
    ("build", "error"),
    [
        (lambda: StatusReason(Severity.WAITING, " "), InvalidStatus),
        (lambda: UnitPeerData(hostname="not a host!"), InvalidPeerData),
        (lambda: AppPeerData(leader_hostname="-bad-"), InvalidPeerData),
        (lambda: Acknowledgement("not-a-digest", "none", True), InvalidPeerData),
        (lambda: AuthEntry("alice", b"hunter2"), InvalidAuthFile),  # type: ignore[arg-type]
        (lambda: Defer(""), InvalidEffect),
        (lambda: AnswerClient(-1, ()), InvalidEffect),
        (lambda: InstallAuth(ACCESS, "pgbouncer_auth_x", "pw", ()), InvalidEffect),
        (lambda: SecretSupply(()).take(), OutOfSecrets),
    ],
    ids=[
        "empty status",
        "unit hostname",
        "leader hostname",
        "digest",
        "auth secret type",
        "empty deferral",
        "relation id",
        "no database",
        "no fresh password",
    ],
)
def test_bad_values_raise_the_domains_own_errors(build, error):
    with pytest.raises(error) as caught:
        build()
    assert isinstance(caught.value, InvalidInput)


def test_adapters_shorten_errors_with_the_one_first_line_helper():
    # A status or log line made from an error is its first line, cut the same way everywhere
    # (adapters/errors.py); a hand-made copy drifts (strip or not, the empty message).
    copies = [
        f"{path.relative_to(SRC)}:{number}"
        for path in sorted(SRC.rglob("*.py"))
        if path != SRC / "adapters" / "errors.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if "splitlines()[0]" in line and "err" in line
    ]
    assert copies == []
