"""The migration out of the seed's layout and the schema rule, as pure functions: literal
inputs, exact equality on what they return."""

import pytest

from domain.errors import InvalidEffect
from domain.peer_data import merge_store
from domain.peer_schema import SCHEMA_VERSION, SchemaCheck, check_schema
from domain.status import Severity, StatusReason
from domain.store_migration import (
    DropPlainCredentials,
    MoveToSecret,
    ReportMigration,
    plan_store_migration,
)
from tests.unit.peer_fixtures import AUTH_A, AUTH_B, CFG_A

PW4 = "Z4OtFCe6r5HG6mk1XuR6LkwZ"
PW5 = "q8Kd0s7a1LmNcVbXz2PwRt5Y"
SEED = {"cfg_file": CFG_A, "leader_hostname": "h0", "auth_file": AUTH_A, "relation_id_4": PW4}


def moving(count: int) -> ReportMigration:
    return ReportMigration(
        StatusReason(
            Severity.MAINTENANCE,
            f"moving {count} plain-text credential(s) from the peer databag into the peer secret",
        )
    )


@pytest.mark.parametrize(
    ("plain", "secret", "has_secrets", "is_leader", "expected"),
    [
        pytest.param(
            SEED,
            None,
            True,
            True,
            [
                moving(2),
                MoveToSecret((("auth_file", AUTH_A), ("relation_id_4", PW4))),
                DropPlainCredentials(("auth_file", "relation_id_4")),
            ],
            id="seed layout, no secret: move both, then drop both",
        ),
        pytest.param(
            SEED,
            {"auth_file": AUTH_A, "relation_id_4": PW4},
            True,
            True,
            [moving(2), DropPlainCredentials(("auth_file", "relation_id_4"))],
            id="interrupted after the move: only the drop is left",
        ),
        pytest.param(
            {"cfg_file": CFG_A, "relation_id_4": PW4},
            {"auth_file": AUTH_A, "relation_id_4": PW4},
            True,
            True,
            [moving(1), DropPlainCredentials(("relation_id_4",))],
            id="interrupted half-way through the drop",
        ),
        pytest.param(
            SEED,
            {"auth_file": AUTH_B},
            True,
            True,
            [
                moving(2),
                MoveToSecret((("relation_id_4", PW4),)),
                DropPlainCredentials(("auth_file", "relation_id_4")),
            ],
            id="a secret written beside the plain keys keeps its value; the rest moves",
        ),
        pytest.param(
            {"cfg_file": CFG_A},
            {"auth_file": AUTH_A},
            True,
            True,
            [],
            id="done: nothing left",
        ),
        pytest.param({"relation_id_4": ""}, None, True, True, [], id="an empty value is absent"),
        pytest.param(
            SEED, None, False, True, [], id="without Juju secrets the databag is the store"
        ),
        pytest.param(SEED, None, True, False, [], id="a follower moves nothing"),
    ],
)
def test_plan_store_migration(plain, secret, has_secrets, is_leader, expected):
    assert plan_store_migration(plain, secret, has_secrets, is_leader) == expected


def _after(plain: dict[str, str], secret: dict[str, str] | None, steps) -> tuple[dict, dict]:
    """What the steps leave, carried out on plain dicts (the model of the two places)."""
    plain, secret = dict(plain), dict(secret or {})
    for step in steps:
        if isinstance(step, MoveToSecret):
            secret = {**dict(step.values), **secret}
        elif isinstance(step, DropPlainCredentials):
            for key in step.keys:
                plain.pop(key, None)
    return plain, secret


@pytest.mark.parametrize("stop_after", [0, 1, 2])
def test_a_migration_stopped_after_any_step_resumes_to_the_same_state(stop_after: int):
    plain = {**SEED, "relation_id_5": PW5}
    steps = [s for s in plan_store_migration(plain, None, True, True) if not _is_report(s)]
    done_plain, done_secret = _after(plain, None, steps)
    part_plain, part_secret = _after(plain, None, steps[:stop_after])
    resumed = plan_store_migration(part_plain, part_secret, True, True)
    assert _after(part_plain, part_secret, resumed) == (done_plain, done_secret)
    assert done_plain == {"cfg_file": CFG_A, "leader_hostname": "h0"}
    assert done_secret == {"auth_file": AUTH_A, "relation_id_4": PW4, "relation_id_5": PW5}
    assert plan_store_migration(done_plain, done_secret, True, True) == []


def _is_report(step) -> bool:
    return isinstance(step, ReportMigration)


@pytest.mark.parametrize(
    ("plain", "secret", "expected"),
    [
        pytest.param(SEED, None, {"auth_file": AUTH_A, "relation_id_4": PW4}, id="plain only"),
        pytest.param({}, {"auth_file": AUTH_A}, {"auth_file": AUTH_A}, id="secret only"),
        pytest.param(
            SEED,
            {"auth_file": AUTH_B},
            {"auth_file": AUTH_B, "relation_id_4": PW4},
            id="the secret wins; plain fills in",
        ),
        pytest.param({"cfg_file": CFG_A}, None, {}, id="no store key"),
    ],
)
def test_merge_store(plain, secret, expected):
    assert merge_store(plain, secret) == expected


def test_migration_steps_hide_the_values_they_carry():
    step = MoveToSecret((("relation_id_4", PW4),))
    assert PW4 not in repr(step)
    assert "relation_id_4" in repr(step)


@pytest.mark.parametrize("bad", [(("cfg_file", CFG_A),), ()])
def test_a_move_of_anything_but_store_keys_cannot_be_built(bad):
    with pytest.raises(InvalidEffect, match="values"):
        MoveToSecret(bad)


NEWER = (
    f"peer data is schema 3, newer than this revision's {SCHEMA_VERSION}: keeping the current "
    "files until the refresh completes"
)


WAITING_NEWER = StatusReason(Severity.WAITING, NEWER)
NOT_A_NUMBER = StatusReason(
    Severity.BLOCKED, "peer data has schema_version 'two', not a number: keeping the current files"
)
TOO_OLD = StatusReason(
    Severity.BLOCKED,
    "peer data is schema 0, older than this revision reads (1): keeping the current files",
)


def taking_over(published: str) -> StatusReason:
    return StatusReason(
        Severity.MAINTENANCE,
        f"peer data of schema {published} has no unit left that reads it: publishing schema 2 "
        "from this unit's files",
    )


@pytest.mark.parametrize(
    ("published", "is_leader", "peers", "expected"),
    [
        pytest.param(None, True, (), SchemaCheck(True, publish=2), id="unversioned: leader: 2"),
        pytest.param("", True, (), SchemaCheck(True, publish=2), id="empty counts as absent"),
        pytest.param("1", True, (), SchemaCheck(True, publish=2), id="older: leader raises it"),
        pytest.param("2", True, ("3",), SchemaCheck(True), id="current: nothing to write"),
        pytest.param(None, False, (), SchemaCheck(True), id="a follower never writes"),
        pytest.param("1", False, (), SchemaCheck(True), id="a follower reads version 1"),
        pytest.param(
            "3", False, (), SchemaCheck(False, reason=StatusReason(Severity.WAITING, NEWER)),
            id="newer: a follower does not read it",
        ),
        pytest.param(
            "3", True, ("2", "3"), SchemaCheck(False, reason=WAITING_NEWER),
            id="newer: a leader leaves it while a unit speaks it",
        ),
        pytest.param(
            "3", True, ("2", None), SchemaCheck(True, publish=2, reason=taking_over("3")),
            id="newer, nobody speaks it (rollback done): the leader takes over",
        ),
        pytest.param(
            "3", True, ("2", "x"), SchemaCheck(False, reason=WAITING_NEWER),
            id="a unit's version unreadable: no take-over",
        ),
        pytest.param("two", False, (), SchemaCheck(False, reason=NOT_A_NUMBER), id="not a number"),
        pytest.param("0", False, (), SchemaCheck(False, reason=TOO_OLD), id="older than readable"),
    ],
)  # fmt: skip
def test_check_schema(published, is_leader, peers, expected):
    assert check_schema(published, is_leader, peers) == expected


def test_importing_the_charm_does_not_load_the_migration():
    """Every hook imports the charm; the migration's module is the rare path."""
    import os
    import pathlib
    import subprocess
    import sys

    src = pathlib.Path(__file__).resolve().parents[2] / "src"
    code = "import sys, charm; print('domain.store_migration' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(src)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
