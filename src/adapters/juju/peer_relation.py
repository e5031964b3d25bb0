"""The ``pgb-peers`` relation: databags read into domain values, databag effects written.

Reading is per hook and cheap: the application databag, this unit's databag and the other
units' databags are each structured once by ``converters``. Writing compares before setting, so
a value that did not change costs no ``relation-set`` call.
"""

import ops

from adapters.juju import converters
from adapters.juju.hostname import unit_hostname
from domain.errors import InvalidPeerData
from domain.peer_data import (
    ACK_WANTED_KEY,
    CFG_FILE_KEY,
    HOSTNAME_KEY,
    LEADER_HOSTNAME_KEY,
    PGBOUNCER_VERSION_KEY,
    Acknowledgement,
    AppPeerData,
    UnitPeerData,
)

PEER_RELATION = "pgb-peers"


class PeerRelationMissing(Exception):
    """The peer relation does not exist yet (a hook before pgb-peers-relation-created)."""


class PeerRelation:
    def __init__(self, model: ops.Model):
        self._model = model
        self.relation = model.get_relation(PEER_RELATION)

    @property
    def hostname(self) -> str:
        return unit_hostname(self._model.unit.name, self._model.name)

    def app_data(self) -> AppPeerData:
        if self.relation is None:
            return AppPeerData()
        return converters.read_app_data(self.relation.data[self._model.app])

    def own_data(self) -> UnitPeerData:
        if self.relation is None:
            return UnitPeerData()
        return converters.read_unit_data(self.relation.data[self._model.unit])

    def units_data(self) -> dict[str, UnitPeerData]:
        """Every live unit's databag, this unit's included. A unit whose databag does not
        read counts as one that has applied nothing (it is then shown as behind)."""
        if self.relation is None:
            return {}
        units = {*self.relation.units, self._model.unit}
        result: dict[str, UnitPeerData] = {}
        for unit in units:
            try:
                result[unit.name] = converters.read_unit_data(self.relation.data[unit], unit.name)
            except InvalidPeerData:
                result[unit.name] = UnitPeerData()
        return result

    def peer_hostnames(self) -> tuple[str, ...]:
        own = self._model.unit.name
        return tuple(
            sorted(
                data.hostname
                for name, data in self.units_data().items()
                if name != own and data.hostname
            )
        )

    def _databag(self, owner: ops.Unit | ops.Application) -> ops.RelationDataContent:
        if self.relation is None:
            raise PeerRelationMissing(f"the {PEER_RELATION} relation does not exist yet")
        return self.relation.data[owner]

    @staticmethod
    def _set(databag: ops.RelationDataContent, key: str, value: str) -> None:
        if databag.get(key) != value:
            databag[key] = value

    def set_hostname(self, hostname: str) -> None:
        self._set(self._databag(self._model.unit), HOSTNAME_KEY, hostname)

    def set_pgbouncer_version(self, version: str) -> None:
        self._set(self._databag(self._model.unit), PGBOUNCER_VERSION_KEY, version)

    def acknowledge(self, ack: Acknowledgement) -> None:
        databag = self._databag(self._model.unit)
        for key, value in converters.ack_fields(ack).items():
            self._set(databag, key, value)

    def publish_cfg(self, content: str) -> None:
        self._set(self._databag(self._model.app), CFG_FILE_KEY, content)

    def publish_leader_hostname(self, hostname: str) -> None:
        self._set(self._databag(self._model.app), LEADER_HOSTNAME_KEY, hostname)

    def request_acknowledgements(self, digest: str) -> None:
        self._set(self._databag(self._model.app), ACK_WANTED_KEY, digest)
