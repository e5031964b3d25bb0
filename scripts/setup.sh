#!/usr/bin/env bash
# Installs what the tests and the demo need on a fresh Debian machine: Debian's pgbouncer and
# PostgreSQL (the real programs the integration tests and the demo start), and a virtualenv in
# .venv with the pinned Python packages. Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v pgbouncer >/dev/null 2>&1 || need_apt+=(pgbouncer)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
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
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet pgbouncer 2>/dev/null; then
    systemctl stop pgbouncer || true
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
if ! cmp -s requirements-dev.txt .venv/.installed-requirements 2>/dev/null \
    || ! cmp -s requirements.txt .venv/.installed-runtime 2>/dev/null; then
    .venv/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt
    cp requirements-dev.txt .venv/.installed-requirements
    cp requirements.txt .venv/.installed-runtime
fi
echo "setup: ready (.venv, pgbouncer $(pgbouncer --version | head -1 | awk '{print $2}'))"
