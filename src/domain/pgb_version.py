"""Which pgbouncer runs, and what each version accepts that older ones refuse.

The model
---------
A ``PgbVersion`` is pgbouncer's release number (major, minor, patch), read from what
``pgbouncer --version`` prints (``PgBouncer 1.18.0`` on its first line) by
``parse_version_output``. Versions compare as tuples.

pgbouncer refuses to start on a setting, a section or a connection parameter it does not know,
so a configuration is runnable only by versions that know everything it uses.
``INTRODUCED_IN`` says, for each such name the charm's model knows beyond pgbouncer 1.18 (the
oldest version the charm supports, Debian's, which the tests run), the first release that
accepts it. The facts come from pgbouncer's changelog:

- 1.19.0: peering, the ``[peers]`` section and ``peer_id``; ``auth_dbname``, a setting and a
  ``[databases]`` parameter;
- 1.20.0: ``track_extra_parameters``;
- 1.21.0: ``max_prepared_statements`` (protocol-level prepared statements), the version the
  ``charmed-pgbouncer`` rock ships.

``needs(cfg)`` lists what a configuration uses with the version it needs; ``too_new(cfg,
version)`` those a given version refuses; ``min_version(cfg)`` the oldest version that runs it.
Keys are named as the configuration names them: ``[peers]``, ``peer_id``,
``[databases] auth_dbname``.
"""

import re
from typing import TYPE_CHECKING

import attrs

from domain.errors import InvalidInput

if TYPE_CHECKING:
    from domain.pgb_config import PgbConfig


class InvalidPgbVersion(InvalidInput):
    """What the workload says about its pgbouncer version cannot be read."""


@attrs.frozen(order=True)
class PgbVersion:
    """A pgbouncer release number: ``PgbVersion(1, 18, 0)`` is 1.18.0."""

    major: int
    minor: int
    patch: int = 0

    def __attrs_post_init__(self) -> None:
        for part in (self.major, self.minor, self.patch):
            if isinstance(part, bool) or not isinstance(part, int) or not 0 <= part < 10_000:
                raise InvalidPgbVersion(f"{part!r} is not a version number part")

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"

    @classmethod
    def parse(cls, text: str) -> "PgbVersion":
        """``"1.21.0"`` (or ``"1.21"``) as a version."""
        found = re.fullmatch(r"([0-9]{1,4})\.([0-9]{1,4})(?:\.([0-9]{1,4}))?", text)
        if found is None:
            raise InvalidPgbVersion(f"{text[:40]!r} is not a pgbouncer version (such as 1.21.0)")
        major, minor, patch = found.groups()
        return cls(int(major), int(minor), int(patch or 0))


OLDEST_SUPPORTED = PgbVersion(1, 18, 0)


def parse_version_output(text: str) -> PgbVersion:
    """The version in what ``pgbouncer --version`` prints (``PgBouncer 1.18.0`` first)."""
    first = text.strip().split("\n", 1)[0].strip()
    found = re.fullmatch(r"(?:PgBouncer|pgbouncer) ([0-9.]+)(?:\S*)", first)
    if found is None:
        raise InvalidPgbVersion(
            f"pgbouncer --version printed {first[:60]!r}, not 'PgBouncer <version>'"
        )
    return PgbVersion.parse(found.group(1))


V1_19 = PgbVersion(1, 19, 0)
V1_20 = PgbVersion(1, 20, 0)
V1_21 = PgbVersion(1, 21, 0)

# [pgbouncer] settings newer than 1.18, by the release that added them.
SETTINGS_INTRODUCED_IN: dict[str, PgbVersion] = {
    "auth_dbname": V1_19,
    "peer_id": V1_19,
    "track_extra_parameters": V1_20,
    "max_prepared_statements": V1_21,
}
# [databases] parameters newer than 1.18.
DATABASE_PARAMS_INTRODUCED_IN: dict[str, PgbVersion] = {"auth_dbname": V1_19}
PEERS_INTRODUCED_IN = V1_19


def needs(cfg: "PgbConfig") -> list[tuple[str, PgbVersion]]:
    """What ``cfg`` uses that pgbouncer 1.18 lacks, each with the release that added it."""
    found: list[tuple[str, PgbVersion]] = []
    if cfg.peers:
        found.append(("[peers]", PEERS_INTRODUCED_IN))
    for key, version in SETTINGS_INTRODUCED_IN.items():
        if cfg.setting(key) is not None:
            found.append((key, version))
    for param, version in DATABASE_PARAMS_INTRODUCED_IN.items():
        if cfg.uses_database_param(param):
            found.append((f"[databases] {param}", version))
    return found


def too_new(cfg: "PgbConfig", version: PgbVersion) -> list[tuple[str, PgbVersion]]:
    """What ``cfg`` uses that pgbouncer ``version`` refuses to start on."""
    return [(name, needed) for name, needed in needs(cfg) if needed > version]


def min_version(cfg: "PgbConfig") -> PgbVersion:
    """The oldest supported pgbouncer that runs ``cfg``."""
    return max((needed for _, needed in needs(cfg)), default=OLDEST_SUPPORTED)
