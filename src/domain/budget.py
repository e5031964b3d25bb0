"""The backend's connection budget, shared by every unit and every pgbouncer process.

The model
---------
PostgreSQL's ``max_connections`` is one number for the whole server, and every pgbouncer
process of every unit opens its own server connections. The operator's ``max_db_connections``
is therefore the most server connections per database that the whole application opens. The
leader divides it among the units, each unit among its processes: every process gets
``max_db_connections // (units x processes per unit)``, rounded down so the total never
exceeds the operator's number. pgbouncer 1.18 has no way to say "none" (0 means unlimited), so
a process gets at least 1: with more processes in the application than the number allows, the
total is the number of processes, above the operator's number, and ``ConnectionBudget.over``
says so, for a status the operator can act on (raise the number, or run fewer units).

Within a process, pgbouncer's ``max_db_connections`` caps every pool of a database together,
and that includes the connection pgbouncer 1.18 opens as the auth role to run ``auth_query``
in the client's database. A client's pool therefore gets the share less that one connection
(``default_pool_size`` = share - 1, at least 1): logins never have to evict a client's server
connection to run ``auth_query``, a churn that PostgreSQL sees as one more backend while the
evicted one exits. No reserve pool is added on top, and an idle pool holds no server
connection (``min_pool_size`` 0): a quiet client costs the backend nothing.

0 means unlimited, as for pgbouncer: each process keeps pgbouncer's own defaults (a pool of
20, no reserve, no minimum) and nothing caps the total.

Every unit renders the leader's one configuration, so the share assumes every unit runs as
many processes as the leader (the units of one application run the same image on the same
resources; ``processes_per_unit`` takes each unit's count where it is known).
"""

from collections.abc import Callable, Sequence

import attrs

from domain.errors import InvalidCharmConfig

UNLIMITED_POOL_SIZE = 20  # pgbouncer's own default_pool_size


def _count(name: str, minimum: int) -> Callable[[object, object, int], None]:
    def check(_instance: object, _attribute: object, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise InvalidCharmConfig(f"{name}: {value!r} is not an integer >= {minimum}")

    return check


@attrs.frozen
class ConnectionBudget:
    """What one pgbouncer process may open, and what the whole application then opens."""

    # The operator's number for the whole application (0: unlimited).
    configured: int = attrs.field(validator=_count("max_db_connections", 0))
    # Every pgbouncer process of the application.
    processes: int = attrs.field(validator=_count("processes", 1))

    @property
    def per_process(self) -> int:
        """pgbouncer's ``max_db_connections`` for each process (0: unlimited)."""
        if self.configured == 0:
            return 0
        return max(1, self.configured // self.processes)

    @property
    def default_pool_size(self) -> int:
        if self.per_process == 0:
            return UNLIMITED_POOL_SIZE
        # One of the share is the auth role's, for auth_query.
        return max(1, self.per_process - 1)

    @property
    def min_pool_size(self) -> int:
        return 0

    @property
    def reserve_pool_size(self) -> int:
        return 0

    @property
    def total(self) -> int | None:
        """The most server connections per database the application opens (None: unlimited)."""
        return None if self.configured == 0 else self.per_process * self.processes

    @property
    def over(self) -> bool:
        """Whether the floor of one connection per process takes the total above the number."""
        total = self.total
        return total is not None and total > self.configured

    def settings(self) -> dict[str, str]:
        """The ``[pgbouncer]`` settings of every process."""
        return {
            "max_db_connections": str(self.per_process),
            "default_pool_size": str(self.default_pool_size),
            "min_pool_size": str(self.min_pool_size),
            "reserve_pool_size": str(self.reserve_pool_size),
        }

    def describe_overrun(self) -> str:
        return (
            f"max_db_connections {self.configured} is below the {self.processes} pgbouncer"
            f" processes of the application: each opens 1 server connection per database,"
            f" {self.total} in total; raise it or run fewer units"
        )


def connection_budget(
    max_db_connections: int, processes_per_unit: Sequence[int]
) -> ConnectionBudget:
    """The budget of an application whose units run ``processes_per_unit`` processes each."""
    if not processes_per_unit:
        raise InvalidCharmConfig("processes: an application has at least one unit")
    for processes in processes_per_unit:
        _count("processes", 1)(None, None, processes)
    return ConnectionBudget(configured=max_db_connections, processes=sum(processes_per_unit))
