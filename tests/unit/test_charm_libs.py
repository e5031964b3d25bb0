"""The COS libraries: pinned in charmcraft.yaml, fetched into lib/ and checked against the pins.

scripts/fetch_libs.py takes them from a pinned PyPI wheel (no Charmhub here). When lib/ holds
them (scripts/setup.sh fetches them), each must be the pinned version; the checker itself
must refuse a file whose LIBID, LIBAPI or LIBPATCH differs.
"""

import importlib.util
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
_SPEC = importlib.util.spec_from_file_location("fetch_libs", ROOT / "scripts" / "fetch_libs.py")
assert _SPEC is not None
assert _SPEC.loader is not None
fetch_libs = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(fetch_libs)

PINS = {
    "prometheus_k8s.prometheus_scrape": (0, 56),
    "grafana_k8s.grafana_dashboard": (0, 47),
    "loki_k8s.loki_push_api": (1, 22),
}


def test_charmcraft_pins_the_three_cos_libraries():
    assert fetch_libs.pins() == PINS
    assert set(fetch_libs.LIBIDS) == set(PINS)


@pytest.mark.parametrize("lib", sorted(PINS))
def test_the_library_in_lib_is_the_pinned_one(lib):
    api, patch = PINS[lib]
    path = fetch_libs.lib_path(lib, api, ROOT / "lib")
    if not path.is_file():
        pytest.skip(f"{path} not fetched (run scripts/setup.sh)")
    fetch_libs.check_lib(lib, path.read_text(), api, patch)
    assert fetch_libs.verify(ROOT / "lib", {lib: PINS[lib]}) == []


def _library(libid: str, api: int, patch: int) -> str:
    return f'"""A library."""\nLIBID = "{libid}"\nLIBAPI = {api}\nLIBPATCH = {patch}\n'


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        (_library("bc84295fef5f4049878f07b131968ee2", 0, 55), "LIBPATCH is 55, the pin says 56"),
        (_library("bc84295fef5f4049878f07b131968ee2", 1, 56), "LIBAPI is 1, the pin says 0"),
        (_library("0" * 32, 0, 56), "LIBID is '" + "0" * 32 + "'"),
        ('"""No fields."""\n', "LIBID is None"),
    ],
)
def test_a_library_of_another_version_is_refused(source, reason):
    with pytest.raises(fetch_libs.LibMismatch, match=reason):
        fetch_libs.check_lib("prometheus_k8s.prometheus_scrape", source, 0, 56)


def test_verify_reports_a_missing_or_wrong_file(tmp_path):
    lib = "prometheus_k8s.prometheus_scrape"
    assert fetch_libs.verify(tmp_path, {lib: (0, 56)}) == [
        f"{lib}: charms/prometheus_k8s/v0/prometheus_scrape.py is missing"
    ]
    path = fetch_libs.lib_path(lib, 0, tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(_library(fetch_libs.LIBIDS[lib], 0, 57))
    assert fetch_libs.verify(tmp_path, {lib: (0, 56)}) == [
        f"{lib}: LIBPATCH is 57, the pin says 56"
    ]
    path.write_text(_library(fetch_libs.LIBIDS[lib], 0, 56))
    assert fetch_libs.verify(tmp_path, {lib: (0, 56)}) == []
