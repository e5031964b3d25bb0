"""Questions about running processes, asked the way an operator would (pgrep, /proc)."""

import os
import subprocess
import time
from collections.abc import Callable


def pgrep(pattern: str) -> list[str]:
    """``pgrep -af pattern``: "pid command line" of each process whose command line matches."""
    result = subprocess.run(["pgrep", "-af", pattern], capture_output=True, text=True, check=False)
    return result.stdout.splitlines()


def children(pid: int) -> list[str]:
    """``pgrep -a -P pid``: "pid command line" of each process whose parent is ``pid``."""
    result = subprocess.run(
        ["pgrep", "-a", "-P", str(pid)], capture_output=True, text=True, check=False
    )
    return result.stdout.splitlines()


def tcp_listeners(port: int) -> set[int]:
    """The pids holding a listening TCP socket (IPv4 or IPv6) on ``port``, read from /proc.

    Several processes show up when they share the port through ``SO_REUSEPORT``. Linux only;
    a process owned by another user is seen only when this one is root.
    """
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as file:
                rows = file.read().splitlines()[1:]
        except FileNotFoundError:
            continue
        for row in rows:
            fields = row.split()
            # local_address is HEXADDR:HEXPORT; state 0A is LISTEN; field 9 is the inode.
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    pids = set()
    if not inodes:
        return pids
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{entry}/fd")
            if any(os.readlink(f"/proc/{entry}/fd/{fd}") in inodes for fd in fds):
                pids.add(int(entry))
        except OSError:
            continue  # the process ended, or one of its fds closed, while we looked
    return pids


def wait_until(check: Callable[[], bool], timeout: float = 5.0, interval: float = 0.02) -> bool:
    """Poll ``check`` until it is true (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True
