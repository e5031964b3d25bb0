"""Another revision of the charm, run in its own Python process, for mixed-revision models.

During ``juju refresh`` units of two revisions share the ``pgb-peers`` relation. Two revisions
cannot be imported into one interpreter (both are the ``app``, ``domain`` and ``adapters``
packages), so ``RevisionRunner`` starts a worker process whose ``sys.path`` begins with the
other revision's tree (a ``git archive`` of a fixed commit, see ``checkout``), and
``MultiUnitModel`` hands it the hooks of the units that run that revision: the unit's input
``State`` and its ``FakeWorkload`` go in (pickled), the output ``State``, the workload as the
hook left it and the charm's log lines come back. Everything else (the databags, the secrets,
which events follow) stays with the model, as with the units of the current revision.

The worker is this file run as a script: it imports only the other tree's modules (the charm,
its ``localenv.fake_workload``) and ``ops.testing`` from the shared virtualenv.
"""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
import tarfile
import tempfile
from typing import IO, Any

_HEADER = struct.Struct(">Q")
_HERE = os.path.abspath(__file__)
_ROOT = os.path.dirname(os.path.dirname(_HERE))


class RevisionError(RuntimeError):
    """The other revision's hook raised; the message holds its traceback and log."""


def checkout(commit: str, into: str) -> str:
    """The tree of ``commit`` (from this repository's history) extracted into ``into``."""
    archive = subprocess.run(
        ["git", "-C", _ROOT, "archive", "--format=tar", commit],
        check=True,
        capture_output=True,
    ).stdout
    with tempfile.TemporaryFile() as file:
        file.write(archive)
        file.seek(0)
        with tarfile.open(fileobj=file) as tar:
            tar.extractall(into, filter="data")
    return into


def _send(stream: IO[bytes], value: object) -> None:
    data = pickle.dumps(value)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _receive(stream: IO[bytes]) -> Any:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError("the revision worker closed its pipe")
    (size,) = _HEADER.unpack(header)
    return pickle.loads(stream.read(size))


class RevisionRunner:
    """A worker process running hooks of the charm revision found in ``tree``."""

    def __init__(self, tree: str, juju_version: str, processes: int) -> None:
        self.tree = tree
        self._process = subprocess.Popen(
            [sys.executable, _HERE, tree, juju_version, str(processes)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=tree,
        )

    def run(
        self, unit: int, event: tuple[str, int | None, int], state: Any, workload: Any
    ) -> tuple[Any, Any, list[str]]:
        """One hook: ``event`` is (kind, remote unit, relation id) as the model queues it."""
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        _send(self._process.stdin, (unit, event, state, workload))
        ok, result, workload, logs = _receive(self._process.stdout)
        if not ok:
            raise RevisionError(result)
        return result, workload, logs

    def close(self) -> None:
        if self._process.poll() is None:
            assert self._process.stdin is not None
            self._process.stdin.close()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()


# --- the worker --------------------------------------------------------------------------


def _worker(tree: str, juju_version: str, processes: int) -> None:
    import traceback

    # Only the other revision's tree: not this script's folder (this revision's localenv).
    sys.path[:] = [
        entry for entry in sys.path if os.path.abspath(entry or ".") != _ROOT + "/localenv"
    ]
    sys.path[:0] = [os.path.join(tree, "src"), os.path.join(tree, "lib"), tree]
    import yaml
    from ops import testing

    from app.charm import PgBouncerK8sCharm  # the other revision's

    with open(os.path.join(tree, "charmcraft.yaml"), encoding="utf-8") as file:
        charmcraft = yaml.safe_load(file)
    keys = ("name", "containers", "resources", "peers", "requires", "provides", "assumes")
    meta = {key: charmcraft[key] for key in keys if key in charmcraft}
    current: dict[str, Any] = {}

    class Charm(PgBouncerK8sCharm):
        def make_workload(self):  # type: ignore[override]
            return current["workload"]

    Charm.processes = processes
    contexts: dict[int, Any] = {}
    charm_root = tempfile.mkdtemp(prefix="pgb-revision-charm-")
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    # The charm's own prints must not corrupt the pipe.
    sys.stdout = sys.stderr
    while True:
        try:
            unit, (kind, remote, relation_id), state, workload = _receive(stdin)
        except EOFError:
            return
        ctx = contexts.get(unit)
        if ctx is None:
            ctx = testing.Context(
                Charm,
                meta=meta,
                config=charmcraft["config"],
                juju_version=juju_version,
                app_name=meta["name"],
                unit_id=unit,
                charm_root=charm_root,
            )
            contexts[unit] = ctx
        current["workload"] = workload
        ctx.juju_log.clear()
        try:
            out = ctx.run(_event(ctx, state, kind, remote, relation_id), state)
            reply = (True, out, workload, [f"{x.level} {x.message}" for x in ctx.juju_log])
        except Exception:
            logs = "\n".join(f"{x.level} {x.message}" for x in ctx.juju_log[-20:])
            reply = (False, traceback.format_exc() + logs, workload, [])
        _send(stdout, reply)


def _event(ctx: Any, state: Any, kind: str, remote: int | None, relation_id: int) -> Any:
    relation = state.get_relation(relation_id)
    on = ctx.on
    if kind == "relation_created":
        return on.relation_created(relation)
    if kind == "relation_joined":
        return on.relation_joined(relation, remote_unit=remote)
    if kind in ("relation_changed", "app_changed"):
        return on.relation_changed(relation, remote_unit=remote)
    if kind == "relation_departed":
        return on.relation_departed(relation, remote_unit=remote, departing_unit=remote)
    if kind == "leader_elected":
        return on.leader_elected()
    if kind == "config_changed":
        return on.config_changed()
    if kind == "pebble_ready":
        return on.pebble_ready(state.get_container("pgbouncer"))
    if kind == "update_status":
        return on.update_status()
    if kind == "upgrade_charm":
        return on.upgrade_charm()
    raise ValueError(f"unknown event kind {kind!r}")


if __name__ == "__main__":
    _worker(sys.argv[1], sys.argv[2], int(sys.argv[3]))
