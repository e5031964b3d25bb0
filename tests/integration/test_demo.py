"""``make demo`` end to end: ``python -m demo`` as a subprocess, the way a user runs it.

The demo relates three units of the charm to a throwaway PostgreSQL and to a client
application through the charm's real handlers; these tests check what it says it did, its
exit status, and that nothing it started is left running or on disk, also when it is
interrupted half-way (Ctrl-C).
"""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from localenv.processes import pgrep

pytestmark = pytest.mark.real

ROOT = Path(__file__).resolve().parents[2]
UNITS = ("pgbouncer-k8s/0", "pgbouncer-k8s/1", "pgbouncer-k8s/2")


def start_demo() -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-u", "-m", "demo"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def folders(output: str) -> list[str]:
    """The folders the demo made: the PostgreSQL's and the units' parent folder."""
    found = re.findall(r"\(data in (/tmp/\S+)\)", output)
    found += re.findall(r"the units' folders are under (/tmp/\S+)", output)
    return found


def assert_nothing_left(output: str) -> None:
    made = folders(output)
    assert len(made) == 2, output
    for folder in made:
        assert pgrep(folder) == [], f"processes left running from {folder}"
        assert not os.path.exists(folder), f"{folder} left behind"


def test_the_demo_relates_for_real_connects_the_client_and_reloads_every_unit():
    demo = start_demo()
    output, _ = demo.communicate(timeout=300)

    assert demo.returncode == 0, output
    lines = output.splitlines()
    installed = "on the PostgreSQL: role pgbouncer_auth_postgres and pgbouncer_auth.get_auth()"
    assert any(installed in line for line in lines), output
    user = re.search(r"myapp got user (relation_id_\d+) for database appdb", output)
    assert user is not None, output
    # The client, with the credentials the charm handed it, through every process of every unit.
    for unit in UNITS:
        for index in (0, 1):
            expected = f"[demo]     {unit} process {index}: {user[1]} in database appdb of "
            assert any(line.startswith(expected) for line in lines), output
    assert "[demo]     client connected through every unit" in lines
    # The seed's table, with the client's password row masked and kept in the Juju secret.
    masked = (
        rf"^\| {user[1]} \| \*\*\*\* \(in the Juju secret secret:\S+, key relation-id-\d+, "
        r"not in the databag\) \|$"
    )
    assert re.search(masked, output, re.M), output
    # Every unit reloaded (SIGHUP, same pids, no start) to the new pool_mode.
    for unit in UNITS:
        reloaded = re.search(
            rf"{re.escape(unit)} \((leader|follower)\): [1-9]\d* SIGHUP, 0 starts, pids "
            r"unchanged .*SHOW CONFIG pool_mode: transaction, transaction$",
            output,
            re.M,
        )
        assert reloaded is not None, output
    assert "[demo]     every unit reloaded with pool_mode=transaction" in lines
    # TLS: the client is told, and verify-full works through every process of every unit.
    assert "[demo]     myapp is told tls=True, tls-ca = the demo CA: True" in lines
    for unit in UNITS:
        hostname = unit.replace("/", "-") + ".pgbouncer-k8s-endpoints.pgb-local.svc.cluster.local"
        verified = re.search(
            rf"^\[demo\]     {re.escape(unit)} as {re.escape(hostname)}: SSL connection "
            r"\(protocol: TLSv1\.[23].*TLS logins per process \[[1-9]\d*, [1-9]\d*\]; "
            r"pids unchanged$",
            output,
            re.M,
        )
        assert verified is not None, output
    assert "[demo]     TLS verified through every unit" in lines
    assert lines[-1] == "[demo] done"
    assert_nothing_left(output)


def test_the_demo_interrupted_cleans_up_and_exits_130():
    demo = start_demo()
    assert demo.stdout is not None
    output = ""
    deadline = time.monotonic() + 240
    try:
        for line in demo.stdout:
            output += line
            if "client connected through every unit" in line:
                demo.send_signal(signal.SIGINT)
                break
            assert time.monotonic() < deadline, output
        rest, _ = demo.communicate(timeout=60)
        output += rest
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()

    assert demo.returncode == 130, output
    assert "[demo] interrupted" in output
    assert "[demo] cleaning up: stopping every pgbouncer and PostgreSQL" in output
    assert_nothing_left(output)
