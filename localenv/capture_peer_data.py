"""Record what a revision of the charm leaves in the ``pgb-peers`` relation, as JSON.

Run it with a revision's tree first on ``sys.path`` (``--tree``): it imports that tree's
``localenv.juju_model`` and charm, runs three units of it on fake workloads with the real
``backend-database`` and ``database`` relations to a throwaway PostgreSQL, lets them settle,
and prints the peer relation as Juju holds it (application databag, each unit's databag, the
application's secrets) for a Juju with secrets and one without. The refresh tests read the
recording back (``tests/data/peer_data_<commit>.json``) as the previous revision's data.

    git archive 9b624b0 | tar -x -C /tmp/rev
    .venv/bin/python localenv/capture_peer_data.py --tree /tmp/rev --commit 9b624b0 \
        > tests/data/peer_data_9b624b0.json

The passwords in the recording belong to a PostgreSQL that existed for one run: they are test
data, not credentials of anything.
"""

import argparse
import json
import os
import random
import sys


def capture(juju_version: str) -> dict[str, object]:
    from localenv.juju_model import MultiUnitModel  # the recorded revision's
    from localenv.postgres_cluster import PostgresCluster

    with PostgresCluster() as cluster:
        cluster.start()
        with MultiUnitModel(3, backend=False, juju_version=juju_version) as model:
            model.settle(random.Random(0), allow_deferred=True)
            model.relate_backend(cluster)
            model.settle(random.Random(1))
            relation_id = model.relate_client("rec-client", "rec_db")
            model.settle(random.Random(2))
            problems = model.divergence()
            if problems:
                raise SystemExit(f"the recorded model did not converge: {problems}")
            password = model.client_credentials(relation_id)["password"]
            return {
                "juju_version": juju_version,
                "leader": model.leader,
                "units": model.units,
                "client_relation_id": relation_id,
                "client_password": password,
                "app_data": model.app_data,
                "unit_data": {str(n): model.unit_data(n) for n in model.units},
                "secrets": [
                    {"id": sid, "label": label, "content": model.secrets()[sid]}
                    for sid, label, _revisions in model.secret_info()
                ],
                "files": {
                    str(n): {
                        "cfg": model.workload(n).read_cfg(),
                        "auth": model.workload(n).read_auth(),
                    }
                    for n in model.units
                },
            }


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Record the peer relation data a revision of the charm leaves."
    )
    parser.add_argument("--tree", required=True, help="the revision's source tree")
    parser.add_argument("--commit", required=True, help="the revision's commit hash")
    args = parser.parse_args()
    tree = os.path.abspath(args.tree)
    sys.path[:0] = [os.path.join(tree, "src"), os.path.join(tree, "lib"), tree]
    sys.modules.pop("localenv", None)
    recording = {
        "commit": args.commit,
        "with_secrets": capture("3.6.0"),
        "without_secrets": capture("2.9.44"),
    }
    json.dump(recording, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
