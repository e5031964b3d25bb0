"""Pebble as the real daemon answers (``platform-facts.md``), on top of ``ops.testing``.

``ops.testing`` simulates Pebble's plan, services and files, but answers more kindly than the
real daemon in the places the charm got wrong. ``RealisticPebble`` is a thin subclass of
``ops.testing``'s own Pebble client (``scenario.mocking._MockPebbleClient``) that changes only
those answers; ``use_realistic_pebble`` puts it in place of the original for one test, so the
charm runs under ``testing.Context`` as usual. What differs:

- ``send_signal`` delivers the signal to every *running* named service (recorded in
  ``PebbleWorld.journal``) and *then* raises ``APIError`` 500 with one
  ``cannot send signal to "x": service is not running`` clause per other service, joined
  with ``; `` (``ops.testing`` raises before signalling anything);
- a service named in ``PebbleWorld.refusing`` fails to start as pgbouncer refusing its config
  does: it goes to ``backoff``, the other services start, and the call raises a
  ``ChangeError`` whose text is Pebble's several lines with pgbouncer's own ERROR and FATAL
  lines (``ops.testing`` starts everything);
- ``backoff`` is a service status (``ops.testing`` knows only active, inactive, error);
- starts, restarts, stops and signals are recorded, so a test can tell a reload from a restart;
- files and folders it creates get the owner Pebble would give them (``user``/``group``; this
  needs root, as the suite does), folders it did not create are left as they are, and a mount
  behaves as the folder it stands for (``ops.testing`` makes it a symlink).

A layer added with ``combine=True`` cannot remove a service in either: that is ``ops.testing``'s
behaviour already, and the real one.
"""

from __future__ import annotations

import datetime
import grp
import os
import pathlib
import pwd
import shutil
import uuid
from collections.abc import Iterable
from typing import Any, ClassVar

import attrs
import pytest
from ops import pebble
from scenario import mocking

BACKOFF = "backoff"


def refusal_log(service: str, reason: str) -> list[str]:
    """What pgbouncer prints when it refuses its config, as Pebble's task log carries it."""
    return [
        f"2026-12-02T10:00:00.000Z [{service}] 2026-12-02 10:00:00.000 UTC [4242] ERROR {reason}",
        f"2026-12-02T10:00:00.000Z [{service}] 2026-12-02 10:00:00.000 UTC [4242] "
        "FATAL cannot load config file",
    ]


@attrs.define
class PebbleWorld:
    """What a test tells the double, and what the double saw."""

    # service -> pgbouncer's reason for refusing to start (its ERROR line)
    refusing: dict[str, str] = attrs.Factory(dict)
    # ("SIGHUP" | "start" | "restart" | "stop", service), in order
    journal: list[tuple[str, str]] = attrs.Factory(list)

    def actions(self, action: str) -> list[str]:
        return [service for done, service in self.journal if done == action]


class RealisticPebble(mocking._MockPebbleClient):  # pyright: ignore[reportPrivateUsage]
    world: ClassVar[PebbleWorld] = PebbleWorld()

    # -- services ------------------------------------------------------------------------

    def get_services(self, names: list[str] | None = None) -> list[pebble.ServiceInfo]:
        self._check_connection()
        services = self._render_services()
        infos = []
        for name in sorted(services if names is None else names):
            if name not in services:
                continue
            status = self._service_status.get(name, pebble.ServiceStatus.INACTIVE)
            current: Any = status if status == BACKOFF else pebble.ServiceStatus(status)
            startup = pebble.ServiceStartup(services[name].startup or "disabled")
            infos.append(pebble.ServiceInfo(name, startup=startup, current=current))
        return infos

    def _is_running(self, name: str) -> bool:
        return self._service_status.get(name) == pebble.ServiceStatus.ACTIVE

    def send_signal(self, sig: int | str, service_names: Iterable[str]) -> None:
        names = list(service_names)
        self._check_connection()
        plan = self.get_plan()
        errors = []
        for name in names:
            if name in plan.services and self._is_running(name):
                self.world.journal.append((str(sig), name))
            else:
                errors.append(f'cannot send signal to "{name}": service is not running')
        if errors:
            raise self._api_error(500, "; ".join(errors))

    def start_services(
        self, services: list[str], timeout: float = 30.0, delay: float = 0.1
    ) -> pebble.ChangeID:
        return self._start("start", services)

    def restart_services(
        self, services: list[str], timeout: float = 30.0, delay: float = 0.1
    ) -> pebble.ChangeID:
        return self._start("restart", services)

    def stop_services(
        self, services: list[str], timeout: float = 30.0, delay: float = 0.1
    ) -> pebble.ChangeID:
        change = super().stop_services(services, timeout, delay)
        self.world.journal.extend(("stop", name) for name in services)
        return change

    def _start(self, action: str, services: list[str]) -> pebble.ChangeID:
        self._check_connection()
        known = self._render_services()
        for name in services:
            if name not in known:
                raise self._api_error(
                    400, f"cannot {action} services: service {name} does not exist"
                )
        tasks = []
        for name in services:
            if action == "start" and self._is_running(name):
                continue  # Pebble does not start a service twice
            self.world.journal.append((action, name))
            reason = self.world.refusing.get(name)
            if reason is None:
                self._service_status[name] = pebble.ServiceStatus.ACTIVE
                continue
            self._service_status[name] = BACKOFF  # type: ignore[assignment]
            tasks.append((name, refusal_log(name, reason)))
        change_id = self._new_service_change(
            pebble.ChangeKind.RESTART if action == "restart" else pebble.ChangeKind.START,
            services,
        ).id
        if tasks:
            raise _change_error(change_id, tasks)
        return change_id

    # -- files ---------------------------------------------------------------------------

    def _local(self, path: str) -> pathlib.Path:
        # A mount is a symlink in ops.testing and a folder in a real container.
        return (self._root / path[1:]).resolve()

    def list_files(
        self, path: Any, *, pattern: str | None = None, itself: bool = False
    ) -> list[pebble.FileInfo]:
        infos = super().list_files(path, pattern=pattern, itself=itself)
        for info in infos:
            local = self._local(info.path)
            if info.type == pebble.FileType.SYMLINK and local.is_dir():
                real = _fileinfo(local)
                real.path, real.name = info.path, info.name
                infos[infos.index(info)] = real
        return infos

    def make_dir(self, path: Any, *, make_parents: bool = False, permissions: int | None = None,
                 user_id: int | None = None, user: str | None = None,
                 group_id: int | None = None, group: str | None = None) -> None:  # fmt: skip
        path = str(path)
        self._check_connection()
        local = self._local(path)
        missing = []
        probe = local
        while not probe.exists():
            missing.append(probe)
            probe = probe.parent
        if not missing and not make_parents:
            raise pebble.PathError("generic-file-error", f"mkdir {path}: file exists")
        if len(missing) > 1 and not make_parents:
            raise pebble.PathError("not-found", f"parent directory not found: {path}")
        for folder in reversed(missing):
            folder.mkdir()
            os.chmod(folder, 0o755 if permissions is None else permissions)
            _chown(folder, user, group)

    def push(self, path: Any, source: Any, *, encoding: str = "utf-8", make_dirs: bool = False,
             permissions: int | None = None, user_id: int | None = None, user: str | None = None,
             group_id: int | None = None, group: str | None = None) -> None:  # fmt: skip
        path = str(path)
        parent = self._local(path).parent
        if make_dirs and not parent.exists():
            self.make_dir(os.path.dirname(path), make_parents=True, user=user, group=group)
        super().push(path, source, encoding=encoding, make_dirs=False, permissions=permissions)
        _chown(self._local(path), user, group)

    def remove_path(self, path: Any, *, recursive: bool = False) -> None:
        path = str(path)
        self._check_connection()
        local = self._local(path)
        if local.is_dir() and recursive:
            shutil.rmtree(local)
            return
        super().remove_path(path, recursive=recursive)


def _change_error(change_id: str, tasks: list[tuple[str, list[str]]]) -> pebble.ChangeError:
    now = datetime.datetime.now()
    lines = ["cannot perform the following tasks:"]
    task_objects = []
    for name, log in tasks:
        summary = f'Start service "{name}"'
        lines.append(
            f"- {summary} (service start attempt: exited quickly with code 1, will restart)"
        )
        task_objects.append(
            pebble.Task(
                id=pebble.TaskID(str(uuid.uuid4())),
                kind="start",
                summary=summary,
                status="Error",
                log=log,
                progress=pebble.TaskProgress(label="", done=1, total=1),
                spawn_time=now,
                ready_time=now,
            )
        )
    err = "\n".join(lines)
    change = pebble.Change(
        id=pebble.ChangeID(change_id),
        kind="start",
        summary="Start services",
        status="Error",
        tasks=task_objects,
        ready=True,
        err=err,
        spawn_time=now,
        ready_time=now,
    )
    return pebble.ChangeError(err, change)


def _chown(path: pathlib.Path, user: str | None, group: str | None) -> None:
    uid = -1 if user is None else pwd.getpwnam(user).pw_uid
    gid = -1 if group is None else grp.getgrnam(group).gr_gid
    if (uid, gid) != (-1, -1):
        os.chown(path, uid, gid)


def _fileinfo(path: pathlib.Path) -> pebble.FileInfo:
    import ops

    return ops.Container._build_fileinfo(path)  # pyright: ignore[reportPrivateUsage]


def use_realistic_pebble(monkeypatch: pytest.MonkeyPatch) -> PebbleWorld:
    """Make every ``testing.Context`` of this test talk to ``RealisticPebble``."""
    world = PebbleWorld()
    monkeypatch.setattr(RealisticPebble, "world", world)
    monkeypatch.setattr(mocking, "_MockPebbleClient", RealisticPebble)
    return world
