"""A client application on the v1 protocol, made of the data-platform interfaces library's own
requirer (``ResourceRequirerEventHandler``), as a new client charm is: it writes its request,
and records what its ``resource_created`` event gives it. Used by the tests, never packed."""

from typing import Any, ClassVar

import ops
from dpcharmlibs.interfaces import (
    RequirerCommonModel,
    ResourceCreatedEvent,
    ResourceProviderModel,
    ResourceRequirerEventHandler,
)
from ops import testing

META = {"name": "v1-client", "requires": {"database": {"interface": "postgresql_client"}}}


class V1ClientCharm(ops.CharmBase):
    """Asks for ``database`` (set by the test); ``created`` holds what each event gave."""

    database: ClassVar[str] = "app"
    created: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, framework: ops.Framework):
        super().__init__(framework)
        request = RequirerCommonModel(resource=self.database, extra_user_roles="CREATEDB")
        self.requirer = ResourceRequirerEventHandler(
            self, "database", requests=[request], response_model=ResourceProviderModel
        )
        framework.observe(self.requirer.on.resource_created, self._on_created)

    def _on_created(self, event: ResourceCreatedEvent) -> None:
        response = event.response
        V1ClientCharm.created.append(
            {
                "username": response.username,
                "password": response.password,
                "uris": response.uris,
                "endpoints": response.endpoints,
                "database": response.resource,
            }
        )


def context() -> testing.Context[V1ClientCharm]:
    return testing.Context(V1ClientCharm, meta=META, app_name="v1-client")
