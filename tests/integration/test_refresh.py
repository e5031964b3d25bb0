"""``juju refresh`` in the multi-unit model: out of the seed's layout, and mixed revisions.

The data is recorded, not made up: ``tests/data/peer_data_9b624b0.json`` is what three units of
9b624b0 (the revision before this one) left in the ``pgb-peers`` relation after serving a real
backend and a real client (``localenv/capture_peer_data.py``). Its ``without_secrets`` half is
the seed's plain-text layout (``cfg_file``, ``auth_file``, ``leader_hostname``,
``relation_id_4`` in the application databag); loaded into a model whose Juju has secrets it is
a model refreshed from the seed's layout onto a Juju with secrets.

A refresh replaces the pods one at a time, highest unit first (a StatefulSet's rolling update):
each refreshed unit starts with an empty container. Units still on 9b624b0 run that revision's
charm in their own process (``localenv.revision_runner``, a ``git archive`` of the fixed commit).
"""

import json
import pathlib
import random
from collections.abc import Callable, Iterator

import pytest

from domain.peer_data import is_store_key
from localenv.juju_model import CONFIG_CHANGED, UPGRADE_CHARM, MultiUnitModel
from localenv.net import free_port
from localenv.postgres_cluster import PostgresCluster, psql
from localenv.processes import pgrep
from localenv.revision_runner import RevisionRunner, checkout
from tests.charm_leftovers import drop_what_the_charm_made

PREVIOUS = "9b624b0"
RECORDING = json.loads(
    (pathlib.Path(__file__).parents[1] / "data" / f"peer_data_{PREVIOUS}.json").read_text()
)
STORE_LABEL = "pgb-peers-store"
JUJU_3 = "3.6.0"
JUJU_2 = "2.9.44"


def load(model: MultiUnitModel, recorded: dict) -> None:
    model.restore(
        units=recorded["units"],
        leader=recorded["leader"],
        app_data=recorded["app_data"],
        unit_data={int(n): data for n, data in recorded["unit_data"].items()},
        secrets=[
            (secret["id"], secret["label"], secret["content"])
            for secret in recorded["secrets"]
            if secret["label"] == STORE_LABEL
        ],
        files={int(n): (f["cfg"], f["auth"]) for n, f in recorded["files"].items()},
    )


def recorded_store(recorded: dict) -> dict[str, str]:
    """The recorded store's values under the contract's keys, wherever they were kept."""
    store = {key: value for key, value in recorded["app_data"].items() if is_store_key(key)}
    for secret in recorded["secrets"]:
        if secret["label"] == STORE_LABEL:
            store.update({key.replace("-", "_"): v for key, v in secret["content"].items()})
    return store


def credentials_in(text: str, store: dict[str, str]) -> list[str]:
    """Which of the store's credentials (a password, an auth file line's secret) ``text``
    holds."""
    found = []
    for key, value in store.items():
        if key == "auth_file":
            secrets = [line.split('" "')[1].rstrip('"') for line in value.splitlines()]
        else:
            secrets = [value]
        for secret in secrets:
            if secret and secret in text:
                found.append(key)
    return found


def databag_leaks(model: MultiUnitModel, store: dict[str, str]) -> list[str]:
    leaks = [f"app databag: {key}" for key in model.app_data if is_store_key(key)]
    leaks += [f"app databag holds {k}" for k in credentials_in(json.dumps(model.app_data), store)]
    for n in model.units:
        data = json.dumps(model.unit_data(n))
        leaks += [f"unit {n} databag holds {k}" for k in credentials_in(data, store)]
    return leaks


def peer_secret(model: MultiUnitModel) -> dict[str, str]:
    found = [
        model.secrets()[sid]
        for sid, label, _revision in model.secret_info()
        if label == STORE_LABEL
    ]
    assert len(found) == 1, model.secret_info()
    return {key.replace("-", "_"): value for key, value in found[0].items()}


def assert_serving(model: MultiUnitModel, cfg: str, auth: str) -> None:
    """Every unit runs these files, or the config the leader re-rendered from them (this
    revision sizes the pools by the application's connection budget), never an invalid one,
    never none, never without the auth file; and nothing failed."""
    configs = {cfg, model.published_cfg()}
    for n in model.units:
        workload = model.fake_workload(n)
        assert workload.cfg in configs, f"unit {n}"
        assert workload.auth == auth, f"unit {n}"
        assert workload.running, f"unit {n}"
        assert workload.loaded == (workload.cfg, auth), f"unit {n}"
        assert "invalid" not in model.unit_status(n), model.unit_status(n)


@pytest.fixture(scope="module")
def previous_tree(tmp_path_factory: pytest.TempPathFactory) -> str:
    return checkout(PREVIOUS, str(tmp_path_factory.mktemp(f"rev-{PREVIOUS}")))


@pytest.fixture
def previous(previous_tree: str) -> Iterator[RevisionRunner]:
    """9b624b0's charm in its own process, on the Juju of the models below."""
    runner = RevisionRunner(previous_tree, JUJU_3, processes=2)
    yield runner
    runner.close()


def rolling_refresh(
    model: MultiUnitModel,
    seed: int,
    to: RevisionRunner | None = None,
    check: Callable[[int], None] | None = None,
) -> None:
    """Refresh every unit, highest first, settling after each; ``check`` after each unit."""
    for step, n in enumerate(sorted(model.units, reverse=True)):
        model.refresh(n, to)
        model.settle(random.Random(seed + step))
        if check is not None:
            check(n)


# --- out of the seed's layout -------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_refresh_from_the_seed_layout_on_juju_3_moves_every_credential_into_the_secret(
    seed: int,
) -> None:
    recorded = RECORDING["without_secrets"]
    store = recorded_store(recorded)
    cfg, auth = store_files = recorded["app_data"]["cfg_file"], store["auth_file"]
    assert set(store) == {"auth_file", "relation_id_4"}, "the recording is the seed's layout"
    with MultiUnitModel(juju_version=JUJU_3) as model:
        load(model, recorded)
        assert databag_leaks(model, store) != [], "the layout starts with plain credentials"

        def never_loses_the_auth_file(_n: int) -> None:
            assert_serving(model, *store_files)

        rolling_refresh(model, seed, check=never_loses_the_auth_file)

        assert databag_leaks(model, store) == []
        # The same values: the auth file, and the client's password, kept (not rotated).
        assert peer_secret(model) == store
        assert peer_secret(model)["relation_id_4"] == recorded["client_password"]
        assert model.app_data["schema_version"] == "2"
        assert model.divergence() == []
        assert_serving(model, cfg, auth)


def test_a_refreshed_follower_takes_the_plain_auth_file_before_the_leader_moved_it() -> None:
    """The refreshed follower's hooks run before any hook of the leader: the credentials are
    still in plain text, and the follower's new pod serves the same files at once."""
    recorded = RECORDING["without_secrets"]
    store = recorded_store(recorded)
    with MultiUnitModel(juju_version=JUJU_3) as model:
        load(model, recorded)
        model.refresh(2)
        for kind in (UPGRADE_CHARM, CONFIG_CHANGED):
            model.deliver(2, kind)
        workload = model.fake_workload(2)
        assert workload.cfg == recorded["app_data"]["cfg_file"]
        assert workload.auth == store["auth_file"]
        assert workload.loaded == (workload.cfg, workload.auth)
        assert "auth_file" in model.app_data, "the leader has not run yet"
        assert model.secret_info() == []

        # The leader's first hook after that, whichever it is, moves the credentials.
        model.update_status(0)
        model.settle(random.Random(0))
        assert databag_leaks(model, store) == []
        assert peer_secret(model) == store
        assert model.divergence() == []
        assert_serving(model, recorded["app_data"]["cfg_file"], store["auth_file"])


@pytest.fixture
def served(postgres: PostgresCluster) -> Iterator[MultiUnitModel]:
    """Three units on real pgbouncer processes, on a Juju without secrets (2.9), serving a real
    client from a real backend: the seed's layout, made by this revision. At teardown nothing
    runs and what the charm made on the session's PostgreSQL is gone."""
    with MultiUnitModel(
        3,
        real=True,
        processes=2,
        backend=False,
        juju_version=JUJU_2,
        config={"listen_port": free_port()},
    ) as model:
        yield model
    assert pgrep(model.base_dir) == [], "pgbouncer processes left running"
    drop_what_the_charm_made(postgres, [CLIENT_DB])


CLIENT_DB = "refresh_db"


@pytest.mark.real
def test_a_client_keeps_its_password_through_juju_3_and_the_refresh(
    served: MultiUnitModel, postgres: PostgresCluster
) -> None:
    """Juju 2.9 without secrets: the credentials are in plain text, as in the seed. Juju moves
    to 3 and the charm is refreshed unit by unit: the client's password moves into the secret
    unchanged, and the client connects through every unit with the password it was given."""
    model = served
    model.settle(random.Random(0), allow_deferred=True)
    model.relate_backend(postgres)
    model.settle(random.Random(1))
    relation_id = model.relate_client("refresh-client", CLIENT_DB)
    model.settle(random.Random(2))
    client = model.client_credentials(relation_id)
    key = f"relation_id_{relation_id}"
    assert model.app_data[key] == client["password"], "the seed's layout: plain in the databag"
    store = {k: v for k, v in model.app_data.items() if is_store_key(k)}

    def connect_everywhere() -> None:
        port = int(model.config["listen_port"])
        for n in model.units:
            for index in range(2):
                folder = model.local_workload(n).instance_dir(index)
                # session_user: in its database a client's session runs as the database's
                # owner role (current_user); it logged in as itself.
                result = psql(
                    "SELECT session_user",
                    host=folder,
                    port=port,
                    user=client["username"],
                    password=client["password"],
                    dbname=CLIENT_DB,
                )
                assert result == client["username"], (n, index)

    connect_everywhere()
    model.upgrade_juju(JUJU_3)
    rolling_refresh(model, 3)

    assert databag_leaks(model, store) == []
    assert peer_secret(model) == store
    assert model.divergence() == []
    connect_everywhere()


def test_refresh_from_the_seed_layout_without_juju_secrets_keeps_the_layout() -> None:
    """Positive control: without secrets the application databag is the store."""
    recorded = RECORDING["without_secrets"]
    store = recorded_store(recorded)
    with MultiUnitModel(juju_version=JUJU_2) as model:
        load(model, recorded)
        rolling_refresh(model, 0)

        assert {k: v for k, v in model.app_data.items() if is_store_key(k)} == store
        assert model.secret_info() == []
        assert model.divergence() == []
        assert_serving(model, recorded["app_data"]["cfg_file"], store["auth_file"])


def test_recorded_data_of_the_previous_revision_read_by_this_one() -> None:
    recorded = RECORDING["with_secrets"]
    store = recorded_store(recorded)
    with MultiUnitModel(juju_version=JUJU_3) as model:
        load(model, recorded)
        rolling_refresh(model, 3)

        assert peer_secret(model) == store
        assert databag_leaks(model, store) == []
        assert model.divergence() == []
        assert_serving(model, recorded["app_data"]["cfg_file"], store["auth_file"])


# --- mixed revisions ------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["with_secrets", "without_secrets"])
def test_rolling_refresh_with_mixed_revisions_keeps_every_unit_serving(
    previous: RevisionRunner, layout: str
) -> None:
    """Units of 9b624b0 and of this revision share the relation, each leading in turn:
    9b624b0 leads this revision's followers, then this revision leads 9b624b0's, then a
    rollback of one unit, then everything on this revision."""
    recorded = RECORDING[layout]
    store = recorded_store(recorded)
    files = recorded["app_data"]["cfg_file"], store["auth_file"]
    with MultiUnitModel(juju_version=JUJU_3) as model:
        load(model, recorded)
        for n in model.units:
            model.set_revision(n, previous)
            model.update_status(n)
        model.settle(random.Random(0))
        assert_serving(model, *files)
        assert "schema_version" not in model.app_data, "9b624b0 leads: it writes no version"

        # Juju refreshes the highest unit first: 9b624b0 (unit 0) still leads.
        model.refresh(2)
        model.settle(random.Random(1))
        model.refresh(1)
        model.settle(random.Random(2))
        assert [model.revision(n) for n in (0, 1, 2)][1:] == ["current", "current"]
        assert model.divergence() == []
        assert_serving(model, *files)

        # A unit of this revision leads a unit of 9b624b0.
        model.elect(1)
        model.set_config(pool_mode="transaction")
        model.settle(random.Random(3))
        assert model.app_data["schema_version"] == "2"
        assert model.divergence() == []
        cfg = model.published_cfg()
        assert cfg is not None
        assert "pool_mode = transaction" in cfg
        assert_serving(model, cfg, store["auth_file"])

        # Rollback of unit 2 to 9b624b0 while this revision leads: it reads this one's data.
        model.refresh(2, previous)
        model.settle(random.Random(4))
        assert model.divergence() == []
        assert_serving(model, cfg, store["auth_file"])

        # The refresh completes.
        model.refresh(2)
        model.refresh(0)
        model.settle(random.Random(5))
        assert model.divergence() == []
        assert_serving(model, cfg, store["auth_file"])
        assert databag_leaks(model, store) == []
        assert peer_secret(model) == store
