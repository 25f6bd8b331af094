#!/usr/bin/env bash
# Set up (first time) and start PingTower in its embedded mode: every service in one process,
# SQLite files under ./data, the in-process bus. Needs only Python 3.11+.
# Extra arguments go to `pingtower up` (e.g. --port 9000 --data-dir /var/lib/pingtower).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
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
