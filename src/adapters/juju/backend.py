"""What the ``backend-database`` relation tells the peer logic: has the backend delivered
credentials yet? (The contract's "backend ready" is that plus the auth file in the container,
which the domain checks.) The relation's full requirer side lives with the backend issue."""

import ops

BACKEND_RELATION = "backend-database"


def backend_relation(model: ops.Model) -> ops.Relation | None:
    return model.get_relation(BACKEND_RELATION)


def has_credentials(model: ops.Model) -> bool:
    relation = backend_relation(model)
    if relation is None or relation.app is None:
        return False
    remote = relation.data[relation.app]
    return bool(remote.get("endpoints")) and bool(
        remote.get("secret-user") or (remote.get("username") and remote.get("password"))
    )
