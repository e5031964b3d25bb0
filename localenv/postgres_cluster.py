"""A throwaway PostgreSQL server for the integration tests and the demo.

``PostgresCluster`` runs ``initdb`` into a fresh temporary folder, starts the server listening
only on 127.0.0.1 (a free port) and on a unix socket inside that folder, and on ``stop()`` shuts
it down and deletes the folder. Every TCP and socket login needs a password
(``scram-sha-256`` by default); the superuser's password is set at ``initdb`` time from a file,
never on a command line. PostgreSQL refuses to run as root, so when this process is root the
server programs run as the ``postgres`` system user through ``runuser``. Durability is traded
for speed (``fsync = off``): the data is thrown away anyway.

``psql()`` runs the real ``psql`` client, with the password in its environment (``PGPASSWORD``),
so tests talk to the server, or to pgbouncer in front of it, the way an application does.
"""

import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import weakref
from types import TracebackType

from localenv.binaries import pg_program
from localenv.net import free_port


class PostgresError(RuntimeError):
    """A PostgreSQL program failed; the message holds its output (never a password)."""


def _tail(path: str, lines: int = 20) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            return "".join(file.readlines()[-lines:])
    except OSError as err:
        return f"(cannot read {path}: {err})"


def psql(
    sql: str,
    *,
    host: str,
    port: int,
    user: str,
    password: str | None = None,
    dbname: str = "postgres",
    timeout: float = 30.0,
) -> str:
    """Run ``sql`` with the real ``psql`` client and return its unaligned, tuples-only output.

    ``host`` is an address or a unix socket folder, as for libpq. The password travels in
    ``PGPASSWORD``. A failed statement raises ``PostgresError`` with psql's error text.
    """
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env["PGCONNECT_TIMEOUT"] = "10"
    if password is not None:
        env["PGPASSWORD"] = password
    command = [
        pg_program("psql"),
        "--no-psqlrc",
        "--no-align",
        "--tuples-only",
        "--set=ON_ERROR_STOP=1",
        f"--host={host}",
        f"--port={port}",
        f"--username={user}",
        f"--dbname={dbname}",
        f"--command={sql}",
    ]
    result = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise PostgresError(
            f"psql to {host}:{port} db={dbname} user={user} failed "
            f"(exit {result.returncode}): {result.stderr.strip()}"
        )
    return result.stdout.rstrip("\n")


class PostgresCluster:
    """A private PostgreSQL server in a temporary folder; a context manager.

    >>> with PostgresCluster() as pg:
    ...     pg.psql("SELECT 1")
    '1'
    """

    def __init__(
        self,
        superuser: str = "postgres",
        password: str | None = None,
        auth_method: str = "scram-sha-256",
        os_user: str = "postgres",
        ssl: tuple[str, str] | None = None,
    ) -> None:
        if auth_method not in ("scram-sha-256", "md5"):
            raise ValueError(f"auth_method must be scram-sha-256 or md5, not {auth_method!r}")
        self._superuser = superuser
        self._password = password if password is not None else secrets.token_urlsafe(18)
        self._auth_method = auth_method
        # (key, certificate) PEM: the server then runs with ssl = on.
        self._ssl = ssl
        self._os_user = os_user
        self._root: str | None = None
        self._port: int | None = None
        self._running = False
        self._finalizer: weakref.finalize | None = None

    # -- what clients need ---------------------------------------------------------------

    @property
    def host(self) -> str:
        """The TCP address the server listens on."""
        return "127.0.0.1"

    @property
    def port(self) -> int:
        """The TCP port (and unix socket number) of the running server."""
        if self._port is None:
            raise PostgresError("the cluster is not started")
        return self._port

    @property
    def superuser(self) -> str:
        return self._superuser

    @property
    def password(self) -> str:
        """The superuser's password."""
        return self._password

    @property
    def socket_dir(self) -> str:
        """The folder holding the server's unix socket."""
        if self._root is None:
            raise PostgresError("the cluster is not started")
        return self._root

    @property
    def data_dir(self) -> str:
        return os.path.join(self.socket_dir, "data")

    @property
    def log_file(self) -> str:
        return os.path.join(self.socket_dir, "postgres.log")

    def dsn(
        self, dbname: str = "postgres", user: str | None = None, password: str | None = None
    ) -> str:
        """A libpq keyword/value connection string; the superuser's unless ``user`` is given."""
        if user is None:
            user = self._superuser
            password = self._password if password is None else password
        parts = {"host": self.host, "port": str(self.port), "dbname": dbname, "user": user}
        if password is not None:
            parts["password"] = password
        return " ".join(f"{key}={_dsn_quote(value)}" for key, value in parts.items())

    def psql(
        self,
        sql: str,
        dbname: str = "postgres",
        user: str | None = None,
        password: str | None = None,
    ) -> str:
        """Run ``sql`` over TCP with psql; as the superuser unless ``user`` is given."""
        if user is None:
            user = self._superuser
            password = self._password if password is None else password
        return psql(
            sql, host=self.host, port=self.port, user=user, password=password, dbname=dbname
        )

    # -- life cycle --------------------------------------------------------------------------

    def start(self, attempts: int = 3) -> "PostgresCluster":
        """Create the cluster and start the server; retries on another free port if needed."""
        if self._running:
            return self
        if self._root is None:
            self._init()
        last_error: PostgresError | None = None
        for _ in range(attempts):
            self._port = free_port()
            try:
                self._run_pg(
                    pg_program("pg_ctl"),
                    "start",
                    "--wait",
                    "--timeout=60",
                    f"--pgdata={self.data_dir}",
                    f"--log={self.log_file}",
                    f"--options=-p {self._port}",
                )
            except PostgresError as err:
                last_error = err
                continue
            self._running = True
            # A forgotten cluster (a crashed test session) must not outlive the interpreter.
            self._finalizer = weakref.finalize(
                self,
                _emergency_stop,
                self._pg_argv(*self._stop_command("immediate")),
                self.socket_dir,
            )
            return self
        self._port = None
        raise PostgresError(
            f"{last_error}\nlast lines of {self.log_file}:\n{_tail(self.log_file)}"
        )

    def stop(self) -> None:
        """Stop the server (fast shutdown: clients are disconnected) and delete its folder."""
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        try:
            if self._running and self._root is not None:
                self._run_pg(*self._stop_command("fast"))
        finally:
            self._running = False
            self._port = None
            if self._root is not None:
                shutil.rmtree(self._root, ignore_errors=True)
                self._root = None

    def __enter__(self) -> "PostgresCluster":
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals ---------------------------------------------------------------------------

    def _as_os_user(self) -> bool:
        return os.geteuid() == 0

    def _stop_command(self, mode: str) -> list[str]:
        return [
            pg_program("pg_ctl"),
            "stop",
            "--wait",
            f"--mode={mode}",
            "--timeout=60",
            f"--pgdata={self.data_dir}",
        ]

    def _pg_argv(self, *command: str) -> list[str]:
        if self._as_os_user():
            return ["runuser", "-u", self._os_user, "--", *command]
        return list(command)

    def _run_pg(self, *command: str) -> str:
        result = subprocess.run(
            self._pg_argv(*command),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=self._root or "/",
            stdin=subprocess.DEVNULL,
        )
        if result.returncode != 0:
            name = os.path.basename(command[0])
            raise PostgresError(
                f"{name} {command[1] if len(command) > 1 else ''} failed "
                f"(exit {result.returncode}): {(result.stdout + result.stderr).strip()}"
            )
        return result.stdout

    def _init(self) -> None:
        root = tempfile.mkdtemp(prefix="pgcluster-")
        self._root = root
        try:
            ids = None
            if self._as_os_user():
                entry = pwd.getpwnam(self._os_user)
                ids = (entry.pw_uid, entry.pw_gid)
                os.chown(root, *ids)
            os.chmod(root, 0o700)
            pwfile = os.path.join(root, "pwfile")
            fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                if ids is not None:
                    os.fchown(file.fileno(), *ids)
                file.write(self._password + "\n")
            try:
                self._run_pg(
                    pg_program("initdb"),
                    f"--pgdata={self.data_dir}",
                    f"--username={self._superuser}",
                    f"--pwfile={pwfile}",
                    f"--auth={self._auth_method}",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",
                )
            finally:
                os.unlink(pwfile)
            settings = {
                "listen_addresses": "'127.0.0.1'",
                "unix_socket_directories": _conf_quote(root),
                "password_encryption": _conf_quote(self._auth_method),
                "fsync": "off",
                "synchronous_commit": "off",
                "full_page_writes": "off",
                "max_connections": "200",
            }
            if self._ssl is not None:
                for name, content in zip(("server.key", "server.crt"), self._ssl, strict=True):
                    path = os.path.join(self.data_dir, name)
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                    with os.fdopen(fd, "w", encoding="utf-8") as file:
                        if ids is not None:
                            os.fchown(file.fileno(), *ids)
                        file.write(content)
                settings.update(
                    ssl="on", ssl_cert_file="'server.crt'", ssl_key_file="'server.key'"
                )
            with open(os.path.join(self.data_dir, "postgresql.conf"), "a", encoding="utf-8") as f:
                f.write("\n# localenv.PostgresCluster\n")
                f.writelines(f"{key} = {value}\n" for key, value in settings.items())
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            self._root = None
            raise


def _emergency_stop(stop_argv: list[str], root: str) -> None:
    subprocess.run(stop_argv, capture_output=True, timeout=60, check=False)
    shutil.rmtree(root, ignore_errors=True)


def _conf_quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _dsn_quote(value: str) -> str:
    if value and not any(char in value for char in " '\\"):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
