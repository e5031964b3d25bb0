"""The charm's config options, and the pgbouncer settings they decide.

The model
---------
``CharmConfig`` holds the options an operator sets with ``juju config`` (``charmcraft.yaml``
declares them): ``listen_port``, ``pool_mode`` and ``max_db_connections``. It is frozen and
checks itself in its constructor, so a ``CharmConfig`` that exists is one the charm can apply;
a bad option raises ``InvalidCharmConfig`` naming the option and the reason. The fields are
plain ``int`` and ``str`` so an adapter can build it straight from Juju's config.

Two functions turn it into pgbouncer settings:

- ``initial_config`` is the pgbouncer.ini a leader starts from when it has none: no databases
  yet (the ``database`` relations add them) and the ``[pgbouncer]`` settings it lists, which
  pgbouncer 1.18 accepts as they are (a ``real`` test starts it on them);
- ``apply_charm_config`` replaces only the settings the options decide in an existing
  configuration, leaving its databases and every other setting alone, so config-changed never
  undoes what the relation handlers wrote.

The options decide ``listen_port``, ``pool_mode``, and through ``domain.budget`` pgbouncer's
``max_db_connections`` and the three pool sizes: the option is the most server connections per
database that the whole application opens, so each process gets its share of it, given the
number of pgbouncer processes of the whole application (units x processes per unit).
"""

from domain.budget import ConnectionBudget
from domain.errors import InvalidCharmConfig
from domain.pgb_config import AUTH_PATH, PGB_DIR, POOL_MODES, PgbConfig
from domain.values import value_class

__all__ = ["POOL_MODES", "CharmConfig", "apply_charm_config", "initial_config"]


def _is_int(value: object) -> bool:
    # bool is an int subclass, and True is no port.
    return isinstance(value, int) and not isinstance(value, bool)


@value_class
class CharmConfig:
    """The charm's options, validated: ``InvalidCharmConfig`` names the bad one."""

    listen_port: int = 6432
    pool_mode: str = "session"
    max_db_connections: int = 100

    def __attrs_post_init__(self) -> None:
        # pgbouncer runs unprivileged: the kernel refuses it a port below 1024, and it would
        # run on without listening.
        if not _is_int(self.listen_port) or not 1024 <= self.listen_port <= 65535:
            raise InvalidCharmConfig(
                f"listen_port: {self.listen_port!r} is not a port from 1024 to 65535"
            )
        if self.pool_mode not in POOL_MODES:
            raise InvalidCharmConfig(
                f"pool_mode: {self.pool_mode!r} is not one of {', '.join(POOL_MODES)}"
            )
        if not _is_int(self.max_db_connections) or self.max_db_connections < 0:
            raise InvalidCharmConfig(
                f"max_db_connections: {self.max_db_connections!r} is not an integer >= 0 "
                "(0 means unlimited)"
            )


def budget(charm: CharmConfig, processes: int) -> ConnectionBudget:
    """The connection budget of an application running ``processes`` pgbouncer processes."""
    return ConnectionBudget(configured=charm.max_db_connections, processes=processes)


def _charm_settings(charm: CharmConfig, processes: int) -> dict[str, str]:
    return {
        "listen_port": str(charm.listen_port),
        "pool_mode": charm.pool_mode,
        **budget(charm, processes).settings(),
    }


def initial_config(charm: CharmConfig, processes: int) -> PgbConfig:
    """The configuration a leader starts from: no databases, the charm's settings.

    ``processes`` is every pgbouncer process of the application (units x processes per unit).
    """
    settings = {
        "listen_addr": "*",
        "logfile": f"{PGB_DIR}/pgbouncer.log",
        "pidfile": f"{PGB_DIR}/pgbouncer.pid",
        "unix_socket_dir": PGB_DIR,
        # The rock's workload user; pgbouncer started as root drops to it.
        "user": "postgres",
        "auth_type": "md5",
        "auth_file": AUTH_PATH,
        "max_client_conn": "10000",
        # Drivers (JDBC, psycopg's options) send these at startup; pgbouncer refuses
        # connections that carry a startup parameter it does not track unless told to ignore it.
        "ignore_startup_parameters": "extra_float_digits,options",
        # One process per core shares the port.
        "so_reuseport": "1",
        "server_tls_sslmode": "prefer",
        **_charm_settings(charm, processes),
    }
    return PgbConfig(databases=(), pgbouncer=settings)


def apply_charm_config(cfg: PgbConfig, charm: CharmConfig, processes: int) -> PgbConfig:
    """``cfg`` with the settings the charm options decide replaced, all else untouched.

    ``processes`` is every pgbouncer process of the application (units x processes per unit).
    """
    return cfg.with_settings(dict(_charm_settings(charm, processes)))
