"""Building ``ops.testing`` states for the charm: the metadata from charmcraft.yaml, a
container whose pgbouncer folder is a real temporary folder, and the peer relation."""

import pathlib
import shutil

import yaml
from ops import pebble, testing

from adapters.pebble.layer import LAYER_LABEL, WORKLOAD_USER, pgbouncer_layer, service_names
from adapters.pebble.workload import FOLDER_MODE
from charm import PgBouncerK8sCharm
from domain.peer_data import short_digest
from domain.pgb_config import PGB_DIR

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHARMCRAFT = yaml.safe_load((ROOT / "charmcraft.yaml").read_text())
META = {
    key: CHARMCRAFT[key]
    for key in ("name", "containers", "resources", "peers", "requires", "provides", "assumes")
}
CONFIG = CHARMCRAFT["config"]
PROCESSES = 2
DEFAULT_PORT = 6432
MODEL = testing.Model(name="test")
UNIT_0 = "pgbouncer-k8s/0"


def context(juju_version: str = "3.6.0") -> testing.Context[PgBouncerK8sCharm]:
    return testing.Context(
        PgBouncerK8sCharm,
        meta=META,
        config=CONFIG,
        juju_version=juju_version,
        app_name="pgbouncer-k8s",
    )


def container(
    folder: pathlib.Path, can_connect: bool = True, running: bool = True
) -> testing.Container:
    """The pgbouncer container; with ``running``, its services are up (a settled unit) on
    the default port. ``folder`` is given to the workload user, mode 0700, as Pebble makes it."""
    if folder.exists():
        shutil.chown(folder, WORKLOAD_USER, WORKLOAD_USER)
        folder.chmod(FOLDER_MODE)
    names = service_names(PROCESSES)
    layer = pgbouncer_layer(PROCESSES, DEFAULT_PORT, tcp=True)
    layers = {LAYER_LABEL: pebble.Layer(layer)} if running else {}  # type: ignore[arg-type]
    statuses = {name: pebble.ServiceStatus.ACTIVE for name in names} if running else {}
    return testing.Container(
        "pgbouncer",
        can_connect=can_connect,
        mounts={"pgbouncer": testing.Mount(location=PGB_DIR, source=folder)},
        layers=layers,
        service_statuses=statuses,
    )


def write_files(folder: pathlib.Path, cfg: str | None = None, auth: str | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if cfg is not None:
        (folder / "pgbouncer.ini").write_text(cfg)
    if auth is not None:
        (folder / "userlist.txt").write_text(auth)


def read_file(folder: pathlib.Path, name: str) -> str | None:
    path = folder / name
    return path.read_text() if path.exists() else None


def serving(folder: pathlib.Path, port: int = 6432) -> testing.ActiveStatus:
    """The status of a unit that serves: its port, its processes and the short digest of the
    pgbouncer.ini it runs (what ``juju status`` shows of which config each unit runs)."""
    digest = short_digest(read_file(folder, "pgbouncer.ini"))
    return testing.ActiveStatus(
        f"pgbouncer on port {port}, {PROCESSES} processes, config {digest}"
    )
