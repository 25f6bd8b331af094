#!/usr/bin/env bash
# THE test command: sets up whatever is missing and runs every check and test.
#
#   bash scripts/test.sh                 everything (lint, format, types, the whole test suite)
#   bash scripts/test.sh tests/unit -x   extra arguments go to pytest
#
# On a fresh Debian or Ubuntu machine with only Python 3.11+ it creates .venv, installs the
# project with its test extras, installs and starts PostgreSQL and RabbitMQ (scripts/test-env.sh;
# set PINGTOWER_TEST_POSTGRES_URL / PINGTOWER_TEST_RABBITMQ_URL to use servers of your own), then
# runs ruff, mypy and pytest. Run it again and it reuses all of that, so it is quick.
# .ci/run calls exactly this, with CI=true: then a test that cannot reach its server fails.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

log() { printf '==> %s\n' "$*" >&2; }
die() {
	printf 'ERROR: %s\n' "$*" >&2
	exit 1
}

PYTHON="${PYTHON:-python3}"
VENV="$ROOT/.venv"

command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found; install Python 3.11 or newer"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
	die "PingTower needs Python 3.11 or newer; $("$PYTHON" --version 2>&1) found (set PYTHON=...)"

if [ ! -x "$VENV/bin/python" ]; then
	# Debian's own python3 ships venv without ensurepip until python3-venv is installed.
	if ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
		log "installing python3-venv (Debian)"
		[ "$(id -u)" -eq 0 ] || die "python3-venv is missing and installing it needs root"
		DEBIAN_FRONTEND=noninteractive apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
		export _PT_APT_UPDATED=1
	fi
	log "creating the virtualenv in .venv"
	"$PYTHON" -m venv "$VENV"
fi

# Reinstall only when the package's metadata changed since the last install.
STAMP="$VENV/.pingtower-install-stamp"
WANT="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null || true)" != "$WANT" ] ||
	! "$VENV/bin/python" -c 'import pingtower, pytest' >/dev/null 2>&1; then
	log "installing PingTower and its test tools into .venv (pip install -e '.[test]')"
	"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e '.[test]'
	printf '%s\n' "$WANT" >"$STAMP"
else
	log "virtualenv is up to date"
fi

log "setting up the test servers (PostgreSQL, RabbitMQ, nginx)"
# shellcheck source=scripts/test-env.sh
. "$ROOT/scripts/test-env.sh" || die "the test servers could not be set up (see above)"

# Every stage runs even when an earlier one failed, so one run shows every problem.
failed=()
stage() {
	local name="$1"
	shift
	log "$name"
	"$@" || failed+=("$name (exit $?)")
}
stage "ruff check" "$VENV/bin/ruff" check .
stage "ruff format --check" "$VENV/bin/ruff" format --check .
stage "mypy" "$VENV/bin/mypy"

# A hung test must not eat CI's whole time budget: the run is bounded, and says so.
PYTEST_LIMIT="${PINGTOWER_TEST_TIME_LIMIT:-3600}"
log "pytest $* (at most ${PYTEST_LIMIT}s)"
status=0
timeout --kill-after=30 "$PYTEST_LIMIT" "$VENV/bin/pytest" "$@" || status=$?
if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
	failed+=("pytest did not finish within ${PYTEST_LIMIT}s (PINGTOWER_TEST_TIME_LIMIT)")
elif [ "$status" -eq 5 ]; then
	failed+=("pytest collected no tests (exit 5): a run that runs nothing is a failure")
elif [ "$status" -ne 0 ]; then
	failed+=("pytest (exit $status)")
fi

if [ "${#failed[@]}" -gt 0 ]; then
	printf 'FAILED: %s\n' "${failed[@]}" >&2
	exit 1
fi
log "all checks and tests passed"
