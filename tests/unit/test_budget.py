"""The connection budget: literal cases, then the promise checked over a whole range."""

import attrs
import pytest

from domain.budget import ConnectionBudget, connection_budget
from domain.charm_config import CharmConfig, initial_config
from domain.effects import (
    PublishCfg,
    Reload,
    RememberApplied,
    Report,
    RequestAcknowledgements,
    WriteCfg,
)
from domain.errors import InvalidCharmConfig
from domain.peer_data import (
    Acknowledgement,
    AppPeerData,
    UnitPeerData,
    no_acknowledgement_wanted,
)
from domain.peer_sync import PeerSyncService, PeerView, WorkloadFiles
from domain.pgb_config import render_pgb_ini
from domain.status import Severity, StatusReason
from tests.unit.peer_fixtures import HOST0, HOST1, HOST2


@pytest.mark.parametrize(
    ("configured", "units", "settings", "total", "over"),
    [
        # 100 over 3 units x 2 processes: 16 each, 96 in all; a pool of 15 leaves one for
        # the auth role's auth_query connection.
        (100, [2, 2, 2], ("16", "15", "0", "0"), 96, False),
        (100, [2], ("50", "49", "0", "0"), 100, False),
        (100, [4, 4, 4, 4, 4], ("5", "4", "0", "0"), 100, False),
        (7, [2, 2, 2], ("1", "1", "0", "0"), 6, False),
        # Fewer connections than processes: one each, above the number, and said so.
        (5, [2, 2, 2], ("1", "1", "0", "0"), 6, True),
        (1, [4], ("1", "1", "0", "0"), 4, True),
        # Units reporting different process counts: the shared share fits them all.
        (30, [1, 2, 3], ("5", "4", "0", "0"), 30, False),
        # 0 is unlimited: pgbouncer's own pool of 20, still no idle connection held.
        (0, [2, 2], ("0", "20", "0", "0"), None, False),
    ],
)
def test_the_budget_divides_the_number_among_every_process(
    configured, units, settings, total, over
):
    budget = connection_budget(configured, units)
    keys = ("max_db_connections", "default_pool_size", "min_pool_size", "reserve_pool_size")
    assert budget.settings() == dict(zip(keys, settings, strict=True))
    assert budget.total == total
    assert budget.over is over


def test_the_total_never_exceeds_the_number_unless_there_are_more_processes_than_it():
    for configured in range(0, 130):
        for units in range(1, 7):
            for processes in range(1, 5):
                budget = connection_budget(configured, [processes] * units)
                every = units * processes
                share = int(budget.settings()["max_db_connections"])
                pools = int(budget.settings()["default_pool_size"]) + int(
                    budget.settings()["reserve_pool_size"]
                )
                assert budget.settings()["min_pool_size"] == "0"
                if configured == 0:
                    assert share == 0
                    assert budget.total is None
                    continue
                assert share >= 1
                assert budget.over is (every > configured)
                if every <= configured:
                    assert every * share <= configured  # never above the number
                    assert every * pools <= configured
                    assert pools == max(1, share - 1)
                    assert every * (share + 1) > configured  # and nothing left unused
                else:
                    assert share == 1
                    assert budget.total == every


def test_the_overrun_is_described_for_the_operator():
    assert connection_budget(5, [2, 2, 2]).describe_overrun() == (
        "max_db_connections 5 is below the 6 pgbouncer processes of the application:"
        " each opens 1 server connection per database, 6 in total; raise it or run fewer units"
    )


@pytest.mark.parametrize(
    ("configured", "units", "message"),
    [
        (-1, [1], "max_db_connections: -1 is not an integer >= 0"),
        (True, [1], "max_db_connections: True is not an integer >= 0"),
        (10, [], "processes: an application has at least one unit"),
        (10, [2, 0], "processes: 0 is not an integer >= 1"),
    ],
)
def test_bad_inputs_are_refused(configured, units, message):
    with pytest.raises(InvalidCharmConfig, match=f"^{message}$"):
        connection_budget(configured, units)


def test_a_budget_checks_itself():
    with pytest.raises(InvalidCharmConfig, match="processes: 0"):
        ConnectionBudget(configured=10, processes=0)


# --- the leader follows the number of units ------------------------------------------------

CHARM = CharmConfig(max_db_connections=100)


def _cfg(app_processes: int) -> str:
    return render_pgb_ini(initial_config(CHARM, app_processes))


def _leader(cfg: str, peers: tuple[str, ...], processes: int = 2) -> PeerView:
    return PeerView(
        is_leader=True,
        hostname=HOST0,
        app=AppPeerData(
            cfg_file=cfg, leader_hostname=HOST0, ack_wanted=no_acknowledgement_wanted(cfg)
        ),
        own=UnitPeerData(hostname=HOST0),
        workload=WorkloadFiles(cfg=cfg),
        applied=Acknowledgement.of(cfg, None, True),
        peer_hostnames=peers,
        charm=CHARM,
        processes=processes,
    )


def _moved(cfg: str) -> list:
    return [
        WriteCfg(cfg),
        Reload(),
        PublishCfg(cfg),
        RequestAcknowledgements(no_acknowledgement_wanted(cfg)),
        RememberApplied(Acknowledgement.of(cfg, None, True)),
    ]


@pytest.mark.parametrize(
    ("running", "peers", "share"),
    [
        # One unit of 2 processes ran 50 each; a second unit joins: 25 each.
        (2, (HOST1,), "25"),
        # Three units, one leaves: 100 // 4 = 25, from 16.
        (6, (HOST1,), "25"),
        (4, (HOST1, HOST2), "16"),
    ],
)
def test_a_unit_joining_or_leaving_moves_every_share(running, peers, share):
    view = _leader(_cfg(running), peers)
    wanted = _cfg(2 * (1 + len(peers)))
    assert f"max_db_connections = {share}\n" in wanted
    for effects in (
        PeerSyncService().on_relation_changed(view),
        PeerSyncService().on_relation_departed(view, None),
        PeerSyncService().on_update_status(view),
    ):
        assert effects == _moved(wanted)


def test_a_settled_share_changes_nothing():
    view = _leader(_cfg(4), (HOST1,))
    assert PeerSyncService().on_relation_changed(view) == []
    assert PeerSyncService().on_update_status(view) == []


def test_more_processes_than_the_budget_is_reported():
    charm = CharmConfig(max_db_connections=3)
    cfg = render_pgb_ini(initial_config(charm, 4))
    view = attrs.evolve(_leader(cfg, (HOST1,)), charm=charm)
    assert PeerSyncService().on_update_status(view) == [
        Report(
            StatusReason(
                Severity.BLOCKED,
                "max_db_connections 3 is below the 4 pgbouncer processes of the application:"
                " each opens 1 server connection per database, 4 in total; raise it or run"
                " fewer units",
            )
        )
    ]
