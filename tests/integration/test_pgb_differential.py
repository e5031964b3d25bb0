"""The differential campaign against the real pgbouncer, a few hundred cases of it.

``bench/pgb_differential.py`` runs thousands; these tests keep a slice of it in the suite (two
pgbouncer processes at a time, each stopped as soon as it answers or exits), and check the probe
itself on configs whose fate is known, so that a probe that called everything "serving" (or
"refused") could not make the campaign pass.
"""

import os
import shutil
from collections.abc import Iterator

import pytest

from domain.errors import InvalidPgbConfig
from domain.pgb_validation import WorkloadFacts, check_published
from domain.pgb_version import PgbVersion, parse_version_output
from localenv.net import free_port
from localenv.pgb_campaign import Kind, cases, run_campaign
from localenv.pgbouncer_probe import (
    Expectation,
    Verdict,
    make_folder,
    pgbouncer_version_text,
    probe,
)

pytestmark = pytest.mark.real

SEED = 1919
CASES = 300


def test_no_config_the_follower_writes_is_refused_or_left_unserved() -> None:
    results = run_campaign(SEED, CASES, workers=2, timeout=1.0)
    unsafe = [r for r in results if r.kind in (Kind.UNSAFE, Kind.UNSAFE_NOT_SERVING)]
    assert [(r.case.number, r.case.labels, r.log[-300:]) for r in unsafe] == []
    kinds = {kind: sum(1 for r in results if r.kind == kind) for kind in {r.kind for r in results}}
    # The campaign means something only if both sides of each verdict are exercised.
    assert kinds.get(Kind.OK, 0) >= 60, kinds
    assert kinds.get(Kind.BOTH_REFUSE, 0) >= 60, kinds
    assert kinds.get(Kind.STRICTER, 0) >= 30, kinds


def test_generated_cases_are_seeded() -> None:
    first = [case.text for case in cases(SEED, 40)]
    assert first == [case.text for case in cases(SEED, 40)]
    assert first != [case.text for case in cases(SEED + 1, 40)]
    assert len(set(first)) > 30


def test_the_binary_is_pgbouncer_1_18() -> None:
    assert parse_version_output(pgbouncer_version_text()) == PgbVersion(1, 18, 0)


@pytest.fixture
def folder() -> Iterator[str]:
    path = make_folder()
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _config(folder: str, port: int, **extra: str) -> str:
    settings = {
        "listen_addr": "127.0.0.1",
        "listen_port": str(port),
        "unix_socket_dir": folder,
        "logfile": f"{folder}/pgbouncer.log",
        "pidfile": f"{folder}/pgbouncer.pid",
        "auth_file": f"{folder}/userlist.txt",
        **extra,
    }
    text = "[databases]\n\n[pgbouncer]\n" + "".join(f"{k} = {v}\n" for k, v in settings.items())
    path = os.path.join(folder, "pgbouncer.ini")
    with open(path, "w", encoding="utf-8") as file:
        file.write(text)
    return path


@pytest.mark.parametrize(
    ("extra", "verdict"),
    [
        pytest.param({}, Verdict.SERVING, id="plain"),
        pytest.param({"max_client_conn": "08"}, Verdict.REFUSED, id="leading-zero-int"),
        pytest.param({"logfile": '"/no/such/x.log"'}, Verdict.REFUSED, id="quoted-path"),
        pytest.param({"client_tls_sslmode": "allow"}, Verdict.REFUSED, id="tls-without-files"),
        pytest.param({"tcp_keepcnt": "128"}, Verdict.NOT_SERVING, id="keepcnt-128"),
        pytest.param({"listen_addr": "192.0.2.1"}, Verdict.NOT_SERVING, id="foreign-address"),
    ],
)
def test_the_probe_tells_serving_refused_and_not_serving(
    folder: str, extra: dict[str, str], verdict: Verdict
) -> None:
    port = free_port()
    path = _config(folder, port, **extra)
    outcome = probe(path, Expectation(tcp_port=port), timeout=1.5)
    assert outcome.verdict is verdict, outcome.log[-500:]


@pytest.mark.parametrize(
    "extra",
    [
        {"max_client_conn": "08"},
        {"logfile": '"/no/such/x.log"'},
        {"client_tls_sslmode": "allow"},
        {"tcp_keepcnt": "128"},
        {"listen_addr": "192.0.2.1"},
    ],
)
def test_the_follower_refuses_what_the_probe_refuses(folder: str, extra: dict[str, str]) -> None:
    facts = WorkloadFacts(base_dir=folder)
    with open(_config(folder, 7000), encoding="utf-8") as file:
        check_published(file.read(), facts)  # the control: the same config without the change
    (key,) = extra
    with open(_config(folder, 7000, **extra), encoding="utf-8") as file:
        text = file.read()
    with pytest.raises(
        InvalidPgbConfig, match=rf"^\[pgbouncer\] \w+: .*\b{key}\b|^\[pgbouncer\] {key}: "
    ):
        check_published(text, facts)
