#!/usr/bin/env bash
# Installs what the tests and the demo need on a fresh Debian machine: Debian's pgbouncer and
# PostgreSQL (the real programs the integration tests and the demo start), and a virtualenv in
# .venv with the pinned Python packages. Safe to run again: it installs only what is missing.
# With --bench (make bench) it also installs valgrind, whose callgrind counts the instructions
# of the import-cost benchmark; nothing else needs it.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
# /usr/sbin is not on a non-root user's PATH; Debian installs pgbouncer there.
command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ] || need_apt+=(pgbouncer)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
# promtool (Debian's prometheus package) runs the alert-rule tests; Debian's pgbouncer exporter
# (a Python one, not the image's Go exporter) is tried against pgbouncer 1.18 by a real test.
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
command -v prometheus-pgbouncer-exporter >/dev/null 2>&1 || need_apt+=(prometheus-pgbouncer-exporter)
if [ "${1:-}" = "--bench" ]; then
    command -v valgrind >/dev/null 2>&1 || need_apt+=(valgrind)
fi
if [ "${#need_apt[@]}" -gt 0 ]; then
    echo "setup: installing ${need_apt[*]} with apt-get"
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: need root to install ${need_apt[*]}: sudo apt-get install -y ${need_apt[*]}" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
# The Debian packages start their own services; the tests start private instances instead.
for service in pgbouncer prometheus prometheus-pgbouncer-exporter; do
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$service" 2>/dev/null; then
        systemctl stop "$service" || true
    fi
done

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
if ! cmp -s requirements-dev.txt .venv/.installed-requirements 2>/dev/null \
    || ! cmp -s requirements.txt .venv/.installed-runtime 2>/dev/null; then
    .venv/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt
    cp requirements-dev.txt .venv/.installed-requirements
    cp requirements.txt .venv/.installed-runtime
fi
# The COS Charmhub libraries, into lib/ (not committed), checked against charmcraft.yaml's pins.
.venv/bin/python scripts/fetch_libs.py
pgbouncer_bin=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
echo "setup: ready (.venv, pgbouncer $("$pgbouncer_bin" --version | head -1 | awk '{print $2}'))"
