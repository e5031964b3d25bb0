"""Ports on the loopback interface: find a free one, wait until one is listening."""

import socket
import time


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now.

    The kernel picks it (bind to port 0); the port is released before returning, so another
    program could take it in between: callers that can, retry on "address in use".
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    """Return once a TCP connection to ``host:port`` succeeds; TimeoutError after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_error: OSError | None = None
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError as err:
            last_error = err
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"nothing listens on {host}:{port} after {timeout:g}s (last error: {last_error})"
            )
        time.sleep(0.02)
