"""Ask the real pgbouncer what it makes of a config text: refused, up but not serving, or serving.

The differential campaign (``bench/pgb_differential.py``, ``tests/integration/
test_pgb_differential.py``) runs every generated config through the charm's validation and
through this probe, and compares. The probe is what a unit's container does with a file:

- the text is written as ``pgbouncer.ini`` into a fresh folder owned by the workload user,
  and pgbouncer runs as that user, as the container's Pebble service runs it;
- pgbouncer is started in the foreground on it; the verdict is

  * ``REFUSED``: it exits (pgbouncer logs ``FATAL`` and exits 1 on a config it refuses);
  * ``SERVING``: every address the config asks for accepts a connection and speaks the
    protocol on it (an SSLRequest, then a startup message, get their answers): TCP on the
    ``listen_port`` the follower believes
    in, and the unix socket when there is one;
  * ``NOT_SERVING``: it keeps running, but after ``timeout`` seconds at least one of them
    still does not accept (pgbouncer only logs when it cannot bind or listen).

pgbouncer has no "check the config and exit" switch (``-V`` does not read it): a start is the
only way to learn its verdict, and an accepted config is over in some 30 ms, since the probe
stops waiting as soon as everything accepts. A refusal is over when the process exits.
"""

import contextlib
import enum
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time

import attrs

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
WORKLOAD_USER = "postgres"


class Verdict(enum.Enum):
    SERVING = "serving"
    REFUSED = "refused"
    NOT_SERVING = "not serving"


@attrs.frozen
class Outcome:
    verdict: Verdict
    log: str = attrs.field(repr=False, default="")


@attrs.frozen
class Expectation:
    """Where the follower believes pgbouncer will accept connections."""

    tcp_port: int | None  # None: no listen_addr, unix socket only
    tcp_host: str = "127.0.0.1"
    unix_socket: str | None = None  # the socket path, None when unix_socket_dir is empty
    user: str = "probe"  # the user the probe logs in as: one in the auth file


def make_folder(parent: str | None = None) -> str:
    """A fresh folder the workload user owns (pgbouncer writes its pidfile and socket there)."""
    folder = tempfile.mkdtemp(prefix="pgb-probe-", dir=parent)
    if os.geteuid() == 0:
        ids = pwd.getpwnam(WORKLOAD_USER)
        os.chown(folder, ids.pw_uid, ids.pw_gid)
    os.chmod(folder, 0o755)
    return folder


# The PostgreSQL SSLRequest: pgbouncer answers one byte, "S" (TLS) or "N" (no TLS).
_SSL_REQUEST = (8).to_bytes(4, "big") + (80877103).to_bytes(4, "big")


def _startup_message(user: str, database: str) -> bytes:
    body = (3 << 16).to_bytes(4, "big")
    body += f"user\0{user}\0database\0{database}\0\0".encode()
    return (len(body) + 4).to_bytes(4, "big") + body


def _answers(sock: socket.socket, user: str) -> bool:
    """True when pgbouncer talks on ``sock``: it answers an SSLRequest with "N" (or "S"), then
    a startup message with an authentication request or an error ("R" or "E"), as it does
    for any client before the password. Accepting the connection is not enough: pgbouncer
    with a tiny packet buffer accepts and then drops every client."""
    try:
        sock.sendall(_SSL_REQUEST)
        answer = sock.recv(1)
        if answer == b"S":
            return True  # TLS was offered: a client could go on with a handshake
        if answer != b"N":
            return False
        # A user of the auth file: an unknown one would send pgbouncer to its auth_query,
        # which waits for a backend the probe does not have.
        sock.sendall(_startup_message(user, "pgbouncer"))
        return sock.recv(1) in (b"R", b"E")
    except OSError:
        return False


def _accepts_tcp(host: str, port: int, user: str) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            return _answers(sock, user)
    except OSError:
        return False


def _accepts_unix(path: str, user: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        try:
            sock.connect(path)
        except OSError:
            return False
        return _answers(sock, user)


def probe(cfg_path: str, expect: Expectation, timeout: float = 2.0) -> Outcome:
    """Start pgbouncer on ``cfg_path`` and tell what it does (see the module docstring)."""
    console = cfg_path + ".console"
    with open(console, "wb") as out:
        # As the container's Pebble service does: run as the workload user, not as root.
        as_user = {"user": WORKLOAD_USER, "group": WORKLOAD_USER} if os.geteuid() == 0 else {}
        proc = subprocess.Popen(
            [PGBOUNCER, cfg_path],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            **as_user,  # type: ignore[call-overload]
        )
    try:
        deadline = time.monotonic() + timeout
        delay = 0.005
        while True:
            if proc.poll() is not None:
                return Outcome(Verdict.REFUSED, _read(console))
            tcp_ok = expect.tcp_port is None or _accepts_tcp(
                expect.tcp_host, expect.tcp_port, expect.user
            )
            unix_ok = expect.unix_socket is None or _accepts_unix(expect.unix_socket, expect.user)
            if tcp_ok and unix_ok:
                # Serving: unless it dies right away on something it checks later.
                time.sleep(0.02)
                if proc.poll() is None:
                    return Outcome(Verdict.SERVING, _read(console))
                return Outcome(Verdict.REFUSED, _read(console))
            if time.monotonic() >= deadline:
                return Outcome(Verdict.NOT_SERVING, _read(console))
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def _read(path: str) -> str:
    with contextlib.suppress(OSError), open(path, encoding="utf-8", errors="replace") as file:
        return file.read()[-2000:]
    return ""


def pgbouncer_version_text() -> str:
    """What ``pgbouncer --version`` prints (the first line names the version)."""
    return subprocess.run(
        [PGBOUNCER, "--version"], capture_output=True, text=True, check=True
    ).stdout
