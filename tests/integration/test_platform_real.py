"""The platform's rows that real pgbouncer can show here (``platform-facts.md``).

- The Pebble layer's per-process check (``adapters.pebble.layer.serving_check_command``) is
  run as Pebble runs it (as ``postgres``, its command line split as a shell would) against
  real pgbouncer processes: it passes while a process serves and fails when the process is
  killed, hung, or running without its TCP port (pgbouncer runs on when its port is taken).
- Processes log to standard error (what Pebble keeps, bounded), not to a file that grows.
- The local workload keeps its word: a per-process folder that refuses a write leaves every
  file as it was, and the unit acknowledges nothing.
"""

import contextlib
import os
import pathlib
import random
import shlex
import signal
import socket
import subprocess
from collections.abc import Iterator

import pytest

from adapters.pebble.layer import serving_check_command
from domain.charm_config import CharmConfig, initial_config
from domain.pgb_config import render_pgb_ini
from domain.ports import WorkloadUnavailable
from localenv.juju_model import MultiUnitModel
from localenv.local_workload import LocalWorkload
from localenv.net import free_port
from localenv.processes import pgrep, wait_until

pytestmark = pytest.mark.real

PROCESSES = 2
AS_ROOT = os.geteuid() == 0


def ini(port: int, pool_mode: str = "session") -> str:
    cfg = initial_config(CharmConfig(listen_port=port, pool_mode=pool_mode), PROCESSES)
    return render_pgb_ini(cfg.with_settings({"listen_addr": "127.0.0.1"}))


def serving_check(
    workload: LocalWorkload, index: int, port: int
) -> subprocess.CompletedProcess[str]:
    """The layer's check for process ``index``, run as Pebble's exec check runs it."""
    command = serving_check_command(index, port, tcp=True, base_dir=workload.base_dir)
    return subprocess.run(
        shlex.split(command),
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
        user="postgres" if AS_ROOT else None,
        group="postgres" if AS_ROOT else None,
        extra_groups=[] if AS_ROOT else None,
    )


@pytest.fixture
def workload(workload_dir: str) -> Iterator[LocalWorkload]:
    with LocalWorkload(workload_dir, processes=PROCESSES) as workload:
        yield workload


def test_the_check_passes_while_a_process_serves_and_fails_once_it_is_killed(
    workload: LocalWorkload,
) -> None:
    port = free_port()
    workload.write_cfg(ini(port))
    workload.reload()
    assert [serving_check(workload, i, port).returncode for i in range(PROCESSES)] == [0, 0]

    pid = workload.pids()[1]
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    assert wait_until(lambda: workload.pids()[1] is None)

    killed = serving_check(workload, 1, port)
    assert killed.returncode != 0
    assert "cannot connect to" in killed.stderr
    assert serving_check(workload, 0, port).returncode == 0


def test_the_check_fails_for_a_hung_process(workload: LocalWorkload) -> None:
    port = free_port()
    workload.write_cfg(ini(port))
    workload.reload()
    pid = workload.pids()[0]
    assert pid is not None

    os.kill(pid, signal.SIGSTOP)
    try:
        hung = serving_check(workload, 0, port)
    finally:
        os.kill(pid, signal.SIGCONT)

    assert hung.returncode != 0
    assert "no answer" in hung.stderr
    assert serving_check(workload, 0, port).returncode == 0


def test_the_check_fails_for_a_process_running_without_its_tcp_port(
    workload: LocalWorkload,
) -> None:
    port = free_port()
    workload.write_cfg(ini(port))
    cfg_path = os.path.join(workload.instance_dir(0), "pgbouncer.ini")
    # Another program holds the port, without SO_REUSEPORT.
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        process = subprocess.Popen(
            ["pgbouncer", cfg_path],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            user="postgres" if AS_ROOT else None,
            group="postgres" if AS_ROOT else None,
            extra_groups=[] if AS_ROOT else None,
        )
        try:
            unix_socket = pathlib.Path(workload.instance_dir(0)) / f".s.PGSQL.{port}"
            assert wait_until(unix_socket.exists, timeout=10)
            check = serving_check(workload, 0, port)
            # pgbouncer runs on, answering on its unix socket only: Pebble would call it active.
            assert process.poll() is None
        finally:
            process.terminate()
            _, stderr = process.communicate(timeout=10)

    assert "cannot listen on 127.0.0.1" in stderr
    assert check.returncode != 0
    assert f"does not listen on TCP port {port}" in check.stderr


def test_processes_log_to_standard_error_and_write_no_log_file(workload: LocalWorkload) -> None:
    port = free_port()
    workload.write_cfg(ini(port))
    workload.reload()
    workload.write_cfg(ini(port, pool_mode="transaction"))
    workload.reload()

    for index in range(PROCESSES):
        folder = pathlib.Path(workload.instance_dir(index))
        # console.log is what this machine keeps of the process's standard error (Pebble
        # keeps it in its bounded log buffer).
        assert sorted(p.name for p in folder.glob("*.log")) == ["console.log"]
        assert wait_until(lambda f=folder: "got SIGHUP" in (f / "console.log").read_text())
    assert not list(pathlib.Path(workload.base_dir).glob("*.log"))


@contextlib.contextmanager
def read_only(folder: str) -> Iterator[None]:
    """A folder nobody may write into, root included (``chattr +i``), as a full or read-only
    filesystem would be."""
    if AS_ROOT:
        subprocess.run(["chattr", "+i", folder], check=True)
    else:
        os.chmod(folder, 0o500)
    try:
        yield
    finally:
        if AS_ROOT:
            subprocess.run(["chattr", "-i", folder], check=True)
        else:
            os.chmod(folder, 0o700)


def snapshot(base_dir: str) -> dict[str, tuple[bytes, int]]:
    return {
        str(path): (path.read_bytes(), path.stat().st_mtime_ns)
        for path in pathlib.Path(base_dir).rglob("*")
        if path.is_file() and path.name != "console.log"
    }


def test_a_read_only_process_folder_leaves_every_file_as_it_was(
    workload: LocalWorkload,
) -> None:
    port = free_port()
    workload.write_cfg(ini(port))
    before = snapshot(workload.base_dir)

    with read_only(workload.instance_dir(1)), pytest.raises(WorkloadUnavailable) as raised:
        workload.write_cfg(ini(port, pool_mode="transaction"))

    assert "cannot write pgbouncer.ini" in str(raised.value)
    assert snapshot(workload.base_dir) == before


def test_a_follower_whose_process_folder_is_read_only_acknowledges_nothing() -> None:
    with MultiUnitModel(
        2, real=True, processes=PROCESSES, config={"listen_port": free_port()}
    ) as model:
        model.setup_backend('"app" "not-a-real-password"\n')
        model.settle(random.Random(0))
        follower = model.followers[0]
        workload = model.local_workload(follower)
        # What the follower claims to run: its memory (it acknowledges in its databag only
        # while the leader waits for that, and nobody waits here).
        acked = model.remembered_applied(follower)
        assert acked is not None
        before = snapshot(workload.base_dir)

        with read_only(workload.instance_dir(1)):
            model.set_config(pool_mode="transaction")
            model.settle(random.Random(0), allow_deferred=True)
            assert "pool_mode = transaction" in (model.published_cfg() or "")
            assert snapshot(workload.base_dir) == before
            assert model.remembered_applied(follower) == acked
            assert "cannot write pgbouncer.ini" in model.unit_status(follower)

        # The folder writable again, the deferred event brings the follower in line.
        model.update_status(follower)
        model.settle(random.Random(1), allow_deferred=True)
        assert model.remembered_applied(follower) != acked
        assert model.divergence() == []
    assert pgrep(model.base_dir) == []


def test_a_process_killed_from_outside_is_reported_and_brought_back() -> None:
    with MultiUnitModel(
        2, real=True, processes=PROCESSES, config={"listen_port": free_port()}
    ) as model:
        model.setup_backend('"app" "not-a-real-password"\n')
        model.settle(random.Random(0))
        follower = model.followers[0]
        workload = model.local_workload(follower)
        before = workload.pids()
        signals = workload.signals_sent
        killed = before[1]
        assert killed is not None
        os.kill(killed, signal.SIGKILL)
        assert wait_until(lambda: workload.pids()[1] is None)

        model.update_status(follower)
        model.settle(random.Random(0))

        # Reported by the hook that saw it, and started by that same hook.
        assert "pgbouncer process 1 (exited with code -9) not serving" in model.unit_status(
            follower
        )
        after = workload.pids()
        assert after[0] == before[0]  # the running process was left alone: no restart
        assert after[1] not in (None, killed)
        assert workload.signals_sent == signals  # nor a SIGHUP
        assert [s.condition.value for s in workload.process_states()] == ["serving"] * 2

        model.update_status(follower)
        model.settle(random.Random(0))
        assert model.unit_status(follower).startswith("active")
    assert pgrep(model.base_dir) == []
