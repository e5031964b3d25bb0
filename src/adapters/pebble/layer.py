"""The Pebble layer: one pgbouncer service per process, all on one port, each with a check.

pgbouncer is single-threaded, so a unit runs one process per CPU core (bounded by
``MAX_PROCESSES``: past a few processes the pooler is rarely the bottleneck and each process
holds its own server connections). The processes share ``listen_port`` through
``so_reuseport``; each reads its own copy of pgbouncer.ini from ``instance_<i>/``, which
differs from the main file only in its pidfile, log and unix socket folder. Command lines
carry only the ini path: no password ever appears in a process list.

Running is not serving: pgbouncer whose TCP port is taken logs ``cannot listen`` and runs on,
and Pebble calls it active. So each process has an ``exec`` check, ``pgbouncer_<i>_up``, and
its service restarts when the check fails (``on-check-failure``). The check needs only what
the rock has (``perl`` is Essential in Ubuntu; pgbouncer's own tools are not on every image):

- it connects to the process's own unix socket, ``instance_<i>/.s.PGSQL.<port>``, sends the
  8-byte SSLRequest and waits for pgbouncer's one-byte answer: a dead process refuses the
  connection, a hung one never answers; pgbouncer logs nothing for this, so a check every few
  seconds does not fill the log (a real login attempt logs four lines);
- when the config has a ``listen_addr``, it looks in ``/proc`` for a TCP socket on
  ``listen_port`` in LISTEN state held by this very process (its pidfile): every process
  shares the port, so connecting to it would prove only that one of them listens.

The checks have no ``level``: a down process must not make Kubernetes kill the whole
container (its files live in the container's own filesystem); Pebble restarts the process.

A layer cannot remove a service (``add_layer(combine=True)`` merges), so when the process
count shrinks the services beyond it are replaced by disabled ones (``startup: disabled``, no
``on-check-failure``) whose checks become no-ops, and the workload adapter stops them.
"""

import os
import shlex
from collections.abc import Iterable

from domain.pgb_config import PGB_DIR, per_process_dir

LAYER_LABEL = "pgbouncer"
SERVICE_PREFIX = "pgbouncer_"
CHECK_SUFFIX = "_up"
WORKLOAD_USER = "postgres"
MAX_PROCESSES = 4
CHECK_PERIOD = "10s"
CHECK_TIMEOUT = "3s"
CHECK_THRESHOLD = 3

# Arguments: the process's folder, listen_port, 1 when it must listen on TCP. Exit 0: serving.
# No single quote inside: Pebble splits the command line as a POSIX shell would.
SERVING_CHECK = r"""
use strict; use IO::Socket::UNIX;
my ($dir, $port, $tcp) = @ARGV;
my $path = "$dir/.s.PGSQL.$port";
my $sock = IO::Socket::UNIX->new(Peer => $path) or die "cannot connect to $path: $!\n";
local $SIG{ALRM} = sub { die "no answer on $path\n" };
alarm 2;
$sock->syswrite(pack("NN", 8, 80877103)) == 8 or die "cannot write to $path: $!\n";
my $got = $sock->sysread(my $answer, 1);
alarm 0;
$got == 1 && $answer =~ /^[NS]$/ or die "no SSLRequest answer on $path\n";
exit 0 unless $tcp;
open(my $pidfile, "<", "$dir/pgbouncer.pid") or die "no pidfile in $dir: $!\n";
my ($pid) = <$pidfile> =~ /(\d+)/ or die "no pid in $dir/pgbouncer.pid\n";
my %listening;
for my $table ("/proc/net/tcp", "/proc/net/tcp6") {
    open(my $rows, "<", $table) or next;
    <$rows>;
    while (<$rows>) {
        my @field = split;
        my ($local_port) = $field[1] =~ /:([0-9A-F]+)$/;
        $listening{"socket:[$field[9]]"} = 1 if $field[3] eq "0A" && hex($local_port) == $port;
    }
}
opendir(my $fds, "/proc/$pid/fd") or die "process $pid is gone\n";
for my $fd (readdir $fds) {
    my $target = readlink("/proc/$pid/fd/$fd");
    exit 0 if defined $target && $listening{$target};
}
die "process $pid does not listen on TCP port $port\n";
"""


def default_processes() -> int:
    return max(1, min(os.cpu_count() or 1, MAX_PROCESSES))


def service_names(processes: int) -> list[str]:
    return [service_name(index) for index in range(processes)]


def service_name(index: int) -> str:
    return f"{SERVICE_PREFIX}{index}"


def check_name(index: int) -> str:
    return f"{service_name(index)}{CHECK_SUFFIX}"


def process_index(service: str) -> int | None:
    """The process index a service name stands for, or None for a service not ours."""
    suffix = service.removeprefix(SERVICE_PREFIX)
    if suffix == service or not suffix.isascii() or not suffix.isdigit():
        return None
    return int(suffix)


def serving_check_command(index: int, listen_port: int, tcp: bool, base_dir: str = PGB_DIR) -> str:
    """The command line of process ``index``'s check (``base_dir`` is for tests here)."""
    folder = per_process_dir(index, base_dir)
    args = ["perl", "-e", SERVING_CHECK, folder, str(listen_port), "1" if tcp else "0"]
    return shlex.join(args)


def pgbouncer_layer(
    processes: int, listen_port: int, tcp: bool, retired: Iterable[int] = ()
) -> dict[str, object]:
    """The layer for ``processes`` processes; ``retired`` are indices of services to disable."""
    services: dict[str, object] = {}
    checks: dict[str, object] = {}
    for index in range(processes):
        services[service_name(index)] = {
            **_service(index),
            "startup": "enabled",
            "on-check-failure": {check_name(index): "restart"},
        }
        checks[check_name(index)] = {
            "override": "replace",
            "period": CHECK_PERIOD,
            "timeout": CHECK_TIMEOUT,
            "threshold": CHECK_THRESHOLD,
            "exec": {
                "command": serving_check_command(index, listen_port, tcp),
                "user": WORKLOAD_USER,
                "group": WORKLOAD_USER,
            },
        }
    for index in sorted(set(retired)):
        if index < processes:
            continue
        services[service_name(index)] = {**_service(index), "startup": "disabled"}
        # A layer cannot delete a check either: make it one that always passes, rarely.
        checks[check_name(index)] = {
            "override": "replace",
            "period": "1h",
            "exec": {"command": "true"},
        }
    return {
        "summary": "pgbouncer processes sharing one port",
        "services": services,
        "checks": checks,
    }


def _service(index: int) -> dict[str, object]:
    return {
        "override": "replace",
        "summary": f"pgbouncer process {index}",
        "command": f"pgbouncer {per_process_dir(index)}/pgbouncer.ini",
        "user": WORKLOAD_USER,
        "group": WORKLOAD_USER,
    }
