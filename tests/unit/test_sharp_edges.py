"""Sharp edges of pgbouncer's grammars with 100 kB values, through the models and the core.

Each input either parses into a valid value or is refused with the model's own error; the
follower never writes what was refused and never raises.
"""

import pytest

from domain.auth_file import parse_auth_file
from domain.effects import Report, WriteAuth, WriteCfg
from domain.errors import InvalidAuthFile, InvalidInput
from domain.peer_data import AppPeerData, StoreContents
from domain.peer_sync import PeerSyncService, PeerView, WorkloadFiles
from domain.pgb_config import parse_pgb_ini, render_pgb_ini
from domain.status import MAX_MESSAGE, Severity, StatusReason
from tests.unit.peer_fixtures import AUTH_A, CFG_A, HOST0, HOST1

BIG = "x" * 100_000
CFG_BIG_QUERY = CFG_A.replace(
    "user = postgres\n", f"user = postgres\nserver_reset_query = {BIG}\n"
)
CFG_BIG_NAME = CFG_A.replace("[databases]\n", f"[databases]\n{BIG} = host=h dbname=d\n")
CFG_BIG_QUOTED = CFG_A.replace("[databases]\n", f"[databases]\nq = host=h password='{BIG} \\ '\n")
AUTH_BIG_SECRET = f'"user" "{BIG}"\n'
AUTH_BIG_NAME = f'"{BIG}" "secret"\n'


def test_a_100_kb_setting_value_round_trips():
    cfg = parse_pgb_ini(CFG_BIG_QUERY)
    assert cfg.setting("server_reset_query") == BIG
    assert parse_pgb_ini(render_pgb_ini(cfg)) == cfg


def test_a_100_kb_quoted_password_with_a_backslash_round_trips():
    cfg = parse_pgb_ini(CFG_BIG_QUOTED)
    entry = cfg.database("q")
    assert entry is not None
    assert entry.get("password") == f"{BIG} \\ "
    assert parse_pgb_ini(render_pgb_ini(cfg)) == cfg


def test_database_names_stop_at_63_characters_as_in_pgbouncer():
    # pgbouncer 1.18 logs "too long db name" and refuses the whole file from 64 on.
    parse_pgb_ini(CFG_A.replace("[databases]\n", f"[databases]\n{'d' * 63} = host=h\n"))
    with pytest.raises(InvalidInput, match="a database name is 1-63 of") as caught:
        parse_pgb_ini(CFG_A.replace("[databases]\n", f"[databases]\n{'d' * 64} = host=h\n"))
    with pytest.raises(InvalidInput, match="a database name is 1-63 of") as big:
        parse_pgb_ini(CFG_BIG_NAME)
    assert len(str(caught.value)) < 200
    assert len(str(big.value)) < 200


@pytest.mark.parametrize("text", [AUTH_BIG_SECRET, AUTH_BIG_NAME], ids=["secret", "user"])
def test_a_100_kb_auth_field_is_refused_as_pgbouncer_would_stop_reading(text: str):
    with pytest.raises(InvalidAuthFile, match="line 1") as caught:
        parse_auth_file(text)
    assert BIG not in str(caught.value)


@pytest.mark.parametrize(
    ("cfg", "auth", "cfg_taken", "auth_taken"),
    [
        (CFG_BIG_QUERY, AUTH_A, True, True),
        (CFG_BIG_NAME, AUTH_A, False, True),
        (CFG_BIG_QUOTED, AUTH_BIG_SECRET, True, False),
        (CFG_A + "\x00", AUTH_A + "\x00", False, False),
        ("%include /etc/passwd\n" + CFG_A, '# "user" "secret"\n', False, False),
    ],
    ids=["big setting", "big database name", "big quoted value", "NUL", "include and #"],
)
def test_the_follower_writes_only_what_validates_and_never_raises(
    cfg: str, auth: str, cfg_taken: bool, auth_taken: bool
):
    # ... and what it reports fits a status line.
    view = PeerView(
        is_leader=False,
        hostname=HOST1,
        app=AppPeerData(cfg_file=cfg, leader_hostname=HOST0),
        store=StoreContents(auth_file=auth),
        workload=WorkloadFiles(),
    )
    effects = PeerSyncService().on_relation_changed(view)

    written = [e.content for e in effects if isinstance(e, WriteCfg | WriteAuth)]
    assert written == [text for text, taken in ((cfg, cfg_taken), (auth, auth_taken)) if taken]
    refused = [e.reason.message for e in effects if isinstance(e, Report)]
    assert [message.split(":")[0] for message in refused] == [
        *(["invalid cfg_file from the leader"] if not cfg_taken else []),
        *(["invalid auth file from the leader"] if not auth_taken else []),
    ]
    for message in refused:
        assert "\n" not in message
        assert len(message) <= MAX_MESSAGE


def test_a_status_reason_is_one_short_line():
    reason = StatusReason(Severity.WAITING, "invalid cfg_file:\n" + BIG)
    assert reason.message.startswith("invalid cfg_file: xxx")
    assert len(reason.message) == MAX_MESSAGE
    assert reason.message.endswith("…")
