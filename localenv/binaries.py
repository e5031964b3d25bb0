"""Where Debian's PostgreSQL programs are, with a clear message when they are missing."""

import glob
import os


def pg_bindir() -> str:
    """The ``bin`` folder of the newest PostgreSQL under /usr/lib/postgresql (Debian layout)."""
    candidates = [
        path
        for path in glob.glob("/usr/lib/postgresql/*/bin")
        if os.path.isfile(os.path.join(path, "initdb"))
    ]
    if not candidates:
        raise FileNotFoundError(
            "PostgreSQL server programs not found in /usr/lib/postgresql/*/bin: "
            "install them with `apt-get install postgresql` (or run scripts/setup.sh)"
        )

    def major(path: str) -> tuple[int, ...]:
        version = os.path.basename(os.path.dirname(path))
        return tuple(int(part) for part in version.split(".") if part.isdigit())

    return max(candidates, key=major)


def pg_program(name: str) -> str:
    """The full path of one PostgreSQL program (``initdb``, ``pg_ctl``, ``psql``...)."""
    path = os.path.join(pg_bindir(), name)
    if not os.access(path, os.X_OK):
        raise FileNotFoundError(f"{path} is missing: install it with `apt-get install postgresql`")
    return path
