#!/usr/bin/env bash
# Set up (first time) and start PingTower in its embedded mode: every service in one process,
# SQLite files under ./data, the in-process bus. Needs only Python 3.11+.
# Extra arguments go to `pingtower up` (e.g. --port 9000 --data-dir /var/lib/pingtower).
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
    { echo "PingTower needs Python 3.11 or newer" >&2; exit 1; }
if [ ! -x .venv/bin/python ]; then
    # Debian's own python3 has no ensurepip until python3-venv is installed.
    if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
        echo "==> installing python3-venv (Debian)"
        if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv
    fi
    echo "==> creating the virtual environment in .venv"
    python3 -m venv .venv
fi
stamp=.venv/.pingtower-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "==> installing PingTower and its dependencies"
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e .
    touch "$stamp"
fi
exec .venv/bin/pingtower up "$@"
