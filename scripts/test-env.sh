# shellcheck shell=bash
# Makes the servers the test suite needs available and exports where they are:
#   PINGTOWER_TEST_POSTGRES_URL  postgresql+asyncpg://user:pass@127.0.0.1:PORT (no database part)
#   PINGTOWER_TEST_RABBITMQ_URL  amqp://guest:guest@127.0.0.1:5672/
#   PINGTOWER_TEST_KEYCLOAK_URL  http://admin:PASSWORD@127.0.0.1:PORT (scripts/keycloak.sh)
#
# Source it (`. scripts/test-env.sh`) to get the variables in your shell; scripts/test.sh does.
# Run it (`bash scripts/test-env.sh`) to only set the servers up and print the export lines.
#
# - A URL already in the environment is used when it answers.
# - PostgreSQL: a PRIVATE instance for tests, data under .test-env/pg, listening on 127.0.0.1 only
#   on its own port (PINGTOWER_TEST_PG_PORT, default the first free one from 55432), so it never
#   touches a system cluster. Reused when it is already running.
# - RabbitMQ: whatever answers on 127.0.0.1:5672 (PINGTOWER_TEST_RABBITMQ_PORT), else the Debian
#   package's server started here (detached; it keeps running for the next run).
# - Keycloak: a private instance from Maven Central under .test-env/keycloak, on 127.0.0.1 and
#   its own port, realm from deploy/keycloak/ (scripts/keycloak.sh); reused while it runs.
# - nginx is installed (not started): the end-to-end test runs its own nginx with its own config.
# Missing Debian packages are installed with apt-get (root, or sudo without a password).
# Every wait is bounded and fails with a message saying what did not come up and where its log is.
#
# Written to be sourced into shells with or without `set -e`: every step checks its own result.

# Server tools (runuser, rabbitmq-server, nginx) live in sbin, which some environments leave out.
case ":${PATH}:" in
*:/usr/sbin:*) ;;
*) export PATH="${PATH}:/usr/local/sbin:/usr/sbin:/sbin" ;;
esac

_pt_log() { printf '==> %s\n' "$*" >&2; }
_pt_err() { printf 'ERROR: %s\n' "$*" >&2; }

_PT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_PT_STATE="${_PT_ROOT}/.test-env"
_PT_WAIT_SECONDS="${PINGTOWER_TEST_WAIT_SECONDS:-60}"

# True when something accepts TCP connections on host:port (within 3 s).
_pt_port_open() {
	timeout 3 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null
}

# host and port of a URL, printed as "host port" (default port given as $2).
_pt_url_host_port() {
	python3 - "$1" "$2" <<'PY'
import sys
from urllib.parse import urlsplit

parts = urlsplit(sys.argv[1])
print(parts.hostname or "127.0.0.1", parts.port or int(sys.argv[2]))
PY
}

_pt_url_answers() { # url default_port
	local host_port
	host_port="$(_pt_url_host_port "$1" "$2")" || return 1
	# shellcheck disable=SC2086 # two words on purpose
	_pt_port_open ${host_port}
}

_pt_as_root() {
	if [ "$(id -u)" -eq 0 ]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
		sudo -n "$@"
	else
		_pt_err "need root to run: $* (run as root, or install it yourself)"
		return 1
	fi
}

# apt-get install the given packages; `apt-get update` at most once per run. Services that a
# package's postinst would start are kept from starting (policy-rc.d exit 101, the usual way in
# containers): we start what we need ourselves, on our own terms, so both kinds of machine behave
# the same.
_pt_apt_install() {
	[ "$#" -gt 0 ] || return 0
	local policy=/usr/sbin/policy-rc.d added_policy=0 status=0
	if [ -z "${_PT_APT_UPDATED:-}" ]; then
		_pt_log "apt-get update"
		_pt_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq || return 1
		export _PT_APT_UPDATED=1
	fi
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\nexit 101\n' | _pt_as_root tee "$policy" >/dev/null &&
			_pt_as_root chmod +x "$policy" && added_policy=1
	fi
	_pt_log "installing Debian packages: $*"
	_pt_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@" ||
		status=$?
	if [ "$added_policy" -eq 1 ]; then
		_pt_as_root rm -f "$policy"
	fi
	if [ "$status" -ne 0 ]; then
		_pt_err "apt-get install $* failed (exit $status)"
		return 1
	fi
}

_pt_pg_bin() {
	local dir
	dir="$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
	if [ -n "$dir" ] && [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
		printf '%s\n' "$dir"
		return 0
	fi
	return 1
}

# Runs a PostgreSQL server program as the owner of the test cluster: initdb and postgres refuse
# to run as root, so root hands them to the `postgres` OS user; anyone else runs them as itself.
_pt_pg_run() {
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

# Where the cluster lives: .test-env/pg, unless the postgres user cannot reach the checkout
# (a clone under /root, say); then a folder of its own under /var/tmp, named after the checkout.
_pt_pg_datadir() {
	local preferred="${_PT_STATE}/pg" fallback
	if [ "$(id -u)" -ne 0 ] || runuser -u postgres -- test -x "${_PT_STATE}"; then
		printf '%s\n' "$preferred"
		return 0
	fi
	fallback="/var/tmp/pingtower-test-pg-$(printf '%s' "$_PT_ROOT" | sha256sum | cut -c1-12)"
	printf '%s\n' "$fallback"
}

# The first of `count` ports from `first` on that nothing listens on.
_pt_free_port() {
	local port="$1" last=$(($1 + $2 - 1))
	while [ "$port" -le "$last" ]; do
		if ! _pt_port_open 127.0.0.1 "$port"; then
			printf '%s\n' "$port"
			return 0
		fi
		port=$((port + 1))
	done
	return 1
}

_pt_setup_postgres() {
	if [ -n "${PINGTOWER_TEST_POSTGRES_URL:-}" ]; then
		if _pt_url_answers "$PINGTOWER_TEST_POSTGRES_URL" 5432; then
			_pt_log "using PostgreSQL from PINGTOWER_TEST_POSTGRES_URL"
			return 0
		fi
		_pt_log "PINGTOWER_TEST_POSTGRES_URL does not answer; starting a private PostgreSQL instead"
	fi
	local port="${PINGTOWER_TEST_PG_PORT:-55432}" bin datadir password_file password
	bin="$(_pt_pg_bin)" || {
		_pt_err "no PostgreSQL server binaries in /usr/lib/postgresql/*/bin after installing"
		return 1
	}
	mkdir -p "$_PT_STATE" || return 1
	datadir="$(_pt_pg_datadir)" || return 1
	password_file="${_PT_STATE}/pg.password"
	if [ ! -s "$password_file" ] && [ -s "${datadir}/PG_VERSION" ]; then
		# A cluster whose password is lost cannot be used: make a new one.
		_pt_log "the private cluster's password is gone; recreating ${datadir}"
		_pt_pg_run "${bin}/pg_ctl" -D "$datadir" -m fast -w -t "$_PT_WAIT_SECONDS" stop \
			>/dev/null 2>&1
		rm -rf "$datadir" || return 1
	fi
	if [ ! -s "$password_file" ]; then
		(umask 077 && python3 -c 'import secrets; print(secrets.token_hex(16))' >"$password_file") ||
			return 1
	fi
	password="$(cat "$password_file")"

	if [ ! -s "${datadir}/PG_VERSION" ]; then
		_pt_log "creating a private PostgreSQL cluster in ${datadir}"
		rm -rf "$datadir" && mkdir -p "$datadir" || return 1
		local pwfile="${datadir}.pwfile"
		(umask 077 && printf '%s\n' "$password" >"$pwfile") || return 1
		if [ "$(id -u)" -eq 0 ]; then
			chown postgres: "$datadir" "$pwfile" || return 1
		fi
		# Password auth over TCP; the server listens on 127.0.0.1 only and has no Unix socket.
		if ! _pt_pg_run "${bin}/initdb" -D "$datadir" -U postgres --pwfile="$pwfile" \
			--auth-host=scram-sha-256 --auth-local=peer -E UTF8 --locale=C.UTF-8 \
			>"${_PT_STATE}/pg-initdb.log" 2>&1; then
			rm -f "$pwfile"
			_pt_err "initdb failed; see ${_PT_STATE}/pg-initdb.log"
			tail -n 20 "${_PT_STATE}/pg-initdb.log" >&2
			return 1
		fi
		rm -f "$pwfile"
		# A throwaway cluster: durability traded for speed; room for several test processes.
		_pt_pg_run tee -a "${datadir}/postgresql.conf" >/dev/null <<EOF || return 1

# --- PingTower test instance (scripts/test-env.sh) ---
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
max_connections = 300
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
	fi

	if _pt_pg_run "${bin}/pg_ctl" -D "$datadir" status >/dev/null 2>&1; then
		# Line 4 of postmaster.pid is the port it listens on (it may predate a port change).
		port="$(sed -n 4p "${datadir}/postmaster.pid")"
		_pt_log "private PostgreSQL already running (${datadir}, port ${port})"
	else
		if [ -n "${PINGTOWER_TEST_PG_PORT:-}" ]; then
			if _pt_port_open 127.0.0.1 "$port"; then
				_pt_err "port ${port} (PINGTOWER_TEST_PG_PORT) is taken by another program"
				return 1
			fi
		else
			# Another checkout's test cluster may hold the default port: take the next free one.
			port="$(_pt_free_port "$port" 100)" || {
				_pt_err "no free port in ${port}-$((port + 99)); set PINGTOWER_TEST_PG_PORT"
				return 1
			}
		fi
		_pt_log "starting PostgreSQL (${datadir}, 127.0.0.1:${port})"
		if ! _pt_pg_run "${bin}/pg_ctl" -D "$datadir" -l "${datadir}/server.log" \
			-o "-p ${port}" -w -t "$_PT_WAIT_SECONDS" start >/dev/null; then
			_pt_err "PostgreSQL did not start within ${_PT_WAIT_SECONDS}s; see ${datadir}/server.log"
			_pt_pg_run tail -n 20 "${datadir}/server.log" >&2
			return 1
		fi
	fi
	local waited=0
	until _pt_port_open 127.0.0.1 "$port"; do
		if [ "$waited" -ge "$_PT_WAIT_SECONDS" ]; then
			_pt_err "PostgreSQL runs but 127.0.0.1:${port} does not answer; see ${datadir}/server.log"
			return 1
		fi
		sleep 1
		waited=$((waited + 1))
	done
	export PINGTOWER_TEST_POSTGRES_URL="postgresql+asyncpg://postgres:${password}@127.0.0.1:${port}"
}

# The node name must resolve; a container whose hostname does not would never finish booting.
_pt_rabbitmq_env() {
	if [ -z "${RABBITMQ_NODENAME:-}" ] && ! getent hosts "$(hostname)" >/dev/null 2>&1; then
		export RABBITMQ_NODENAME=rabbit@localhost
	fi
}

# rabbitmq-server and rabbitmqctl as root (Debian's wrappers then switch to the rabbitmq user),
# with the node name passed explicitly because sudo would drop it from the environment.
_pt_rabbitmq_as_root() {
	_pt_as_root env ${RABBITMQ_NODENAME:+RABBITMQ_NODENAME="$RABBITMQ_NODENAME"} \
		${RABBITMQ_NODE_PORT:+RABBITMQ_NODE_PORT="$RABBITMQ_NODE_PORT"} "$@"
}

# Queues earlier test runs left on a RabbitMQ of this machine. Each test names its queues after
# a namespace of its own ("t" and 10 hex digits) and not every path deletes them all (buses in
# subprocesses, interrupted runs). A quorum queue reserves file handles in RabbitMQ's own
# accounting: after a day of whole and interrupted runs (300 quorum queues; a whole run
# leaves about 10) the broker took no connection more (its file_handle_cache full at the
# 1,024 files `su` leaves it), and the next run hung in a connect. So each setup deletes those without consumers: listed by rabbitmqctl (AMQP
# cannot list queues) and deleted by it in one call, which works even on a broker that takes
# no AMQP connection any more. Quorum queues cannot be deleted "if unused": the listing is
# what leaves a queue with consumers alone. The call uses RabbitMQ's internal functions;
# where they differ (another RabbitMQ version), it says so and deletes nothing.
_pt_sweep_rabbitmq() {
	local ctl="$1" names deleted
	# rabbitmqctl needs root (or the rabbitmq user); without it, nothing is swept.
	[ "$(id -u)" -eq 0 ] || sudo -n true 2>/dev/null || return 0
	names="$(_pt_rabbitmq_as_root timeout 60 "$ctl" -q list_queues name consumers \
		--no-table-headers 2>/dev/null | grep -E '^t[0-9a-f]{10}[.][A-Za-z0-9._-]+[[:space:]]+0$' |
		awk '{ printf "%s<<\"%s\">>", sep, $1; sep = "," }')" || return 0
	[ -n "$names" ] || return 0
	if deleted="$(_pt_rabbitmq_as_root timeout 120 "$ctl" -q eval "
		Delete = fun(Name) ->
			case rabbit_amqqueue:lookup(rabbit_misc:r(<<\"/\">>, queue, Name)) of
				{ok, Q} ->
					case rabbit_amqqueue:delete(Q, false, false, <<\"pingtower-tests\">>) of
						{ok, _} -> 1;
						_ -> 0
					end;
				_ -> 0
			end
		end,
		lists:sum([Delete(N) || N <- [${names}]])." 2>&1)"; then
		_pt_log "deleted ${deleted} queues earlier test runs left on RabbitMQ"
	else
		_pt_log "could not delete the queues earlier test runs left on RabbitMQ: ${deleted}"
	fi
}

_pt_setup_rabbitmq() {
	if [ -n "${PINGTOWER_TEST_RABBITMQ_URL:-}" ]; then
		if _pt_url_answers "$PINGTOWER_TEST_RABBITMQ_URL" 5672; then
			_pt_log "using RabbitMQ from PINGTOWER_TEST_RABBITMQ_URL"
			return 0
		fi
		_pt_log "PINGTOWER_TEST_RABBITMQ_URL does not answer; using a local RabbitMQ instead"
	fi
	local port="${PINGTOWER_TEST_RABBITMQ_PORT:-5672}"
	local url="amqp://guest:guest@127.0.0.1:${port}/"
	local ctl
	ctl="$(command -v rabbitmqctl || echo /usr/sbin/rabbitmqctl)"
	if _pt_port_open 127.0.0.1 "$port"; then
		_pt_log "RabbitMQ already answers on 127.0.0.1:${port}"
		[ -x "$ctl" ] && _pt_rabbitmq_env && _pt_sweep_rabbitmq "$ctl"
		export PINGTOWER_TEST_RABBITMQ_URL="$url"
		return 0
	fi
	if ! command -v rabbitmq-server >/dev/null 2>&1 && [ ! -x /usr/sbin/rabbitmq-server ]; then
		_pt_err "rabbitmq-server is not installed"
		return 1
	fi
	_pt_rabbitmq_env
	local log="${_PT_STATE}/rabbitmq.log" server
	server="$(command -v rabbitmq-server || echo /usr/sbin/rabbitmq-server)"
	mkdir -p "$_PT_STATE" || return 1
	# The package's postinst may already have started it (where services may start): then it
	# is booting and we only wait. Otherwise start it here, detached from this shell so that it
	# outlives the script (and holds none of its output open).
	if ! _pt_rabbitmq_as_root timeout 30 "$ctl" -q status >/dev/null 2>&1; then
		_pt_log "starting RabbitMQ (log: ${log})"
		RABBITMQ_NODE_PORT="$port" _pt_rabbitmq_as_root setsid nohup "$server" \
			</dev/null >"$log" 2>&1 &
		disown 2>/dev/null || true
	else
		_pt_log "RabbitMQ node is running; waiting for it to boot"
	fi
	_pt_log "waiting up to ${_PT_WAIT_SECONDS}s for RabbitMQ on 127.0.0.1:${port}"
	local waited=0
	until _pt_port_open 127.0.0.1 "$port"; do
		if [ "$waited" -ge "$_PT_WAIT_SECONDS" ]; then
			_pt_err "RabbitMQ did not answer on 127.0.0.1:${port} within ${_PT_WAIT_SECONDS}s;" \
				"see ${log} and /var/log/rabbitmq/"
			tail -n 20 "$log" >&2 2>/dev/null || true
			return 1
		fi
		sleep 1
		waited=$((waited + 1))
	done
	# The AMQP port opens a moment before the node has finished booting its applications.
	if ! _pt_rabbitmq_as_root timeout "$_PT_WAIT_SECONDS" "$ctl" -q await_startup \
		>/dev/null 2>&1; then
		_pt_log "rabbitmqctl await_startup did not confirm; going on since the port answers"
	fi
	_pt_sweep_rabbitmq "$ctl"
	export PINGTOWER_TEST_RABBITMQ_URL="$url"
}

# Keycloak for the OIDC tests: scripts/keycloak.sh fetches, starts or reuses a private instance
# (realm deploy/keycloak/pingtower-realm.json) and prints its URL, admin credentials included.
_pt_setup_keycloak() {
	if [ -n "${PINGTOWER_TEST_KEYCLOAK_URL:-}" ]; then
		if _pt_url_answers "$PINGTOWER_TEST_KEYCLOAK_URL" 8080; then
			_pt_log "using Keycloak from PINGTOWER_TEST_KEYCLOAK_URL"
			return 0
		fi
		_pt_log "PINGTOWER_TEST_KEYCLOAK_URL does not answer; using a local Keycloak instead"
	fi
	local url
	url="$(bash "${_PT_ROOT}/scripts/keycloak.sh")" || url=""
	if [ -z "$url" ]; then
		_pt_err "Keycloak could not be set up (see above)"
		return 1
	fi
	export PINGTOWER_TEST_KEYCLOAK_URL="$url"
}

_pt_test_env_main() {
	local missing=()
	local need_pg=1 need_rabbit=1
	if [ -n "${PINGTOWER_TEST_POSTGRES_URL:-}" ] &&
		_pt_url_answers "$PINGTOWER_TEST_POSTGRES_URL" 5432; then
		need_pg=0
	fi
	if { [ -n "${PINGTOWER_TEST_RABBITMQ_URL:-}" ] &&
		_pt_url_answers "$PINGTOWER_TEST_RABBITMQ_URL" 5672; } ||
		_pt_port_open 127.0.0.1 "${PINGTOWER_TEST_RABBITMQ_PORT:-5672}"; then
		need_rabbit=0
	fi
	if [ "$need_pg" -eq 1 ] && ! _pt_pg_bin >/dev/null; then
		missing+=(postgresql)
	fi
	if [ "$need_rabbit" -eq 1 ] && ! command -v rabbitmq-server >/dev/null 2>&1 &&
		[ ! -x /usr/sbin/rabbitmq-server ]; then
		missing+=(rabbitmq-server)
	fi
	if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
		missing+=(nginx)
	fi
	# One apt-get run for everything that is missing.
	_pt_apt_install "${missing[@]}" || return 1
	_pt_setup_postgres || return 1
	_pt_setup_rabbitmq || return 1
	_pt_setup_keycloak || return 1
	_pt_log "PINGTOWER_TEST_POSTGRES_URL=$(printf '%s' "$PINGTOWER_TEST_POSTGRES_URL" |
		sed -E 's#(//[^:/@]+):[^@]*@#\1:***@#')"
	_pt_log "PINGTOWER_TEST_RABBITMQ_URL=${PINGTOWER_TEST_RABBITMQ_URL}"
	_pt_log "PINGTOWER_TEST_KEYCLOAK_URL=$(printf '%s' "$PINGTOWER_TEST_KEYCLOAK_URL" |
		sed -E 's#(//[^:/@]+):[^@]*@#\1:***@#')"
}

if (return 0 2>/dev/null); then
	# Sourced: leave the variables in the caller's shell.
	_pt_test_env_main || return 1
else
	set -uo pipefail
	_pt_test_env_main || exit 1
	printf 'export PINGTOWER_TEST_POSTGRES_URL=%q\n' "$PINGTOWER_TEST_POSTGRES_URL"
	printf 'export PINGTOWER_TEST_RABBITMQ_URL=%q\n' "$PINGTOWER_TEST_RABBITMQ_URL"
	printf 'export PINGTOWER_TEST_KEYCLOAK_URL=%q\n' "$PINGTOWER_TEST_KEYCLOAK_URL"
fi

# --- web dashboard (issue 7): Debian's chromium for the Playwright browser tests -------------
# Playwright drives the system browser (never `playwright install`); tests/e2e/web skips locally
# without it and fails under CI=true.
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1; then
	_pt_sudo=""
	[ "$(id -u)" = 0 ] || _pt_sudo="sudo -n"
	_pt_log "installing chromium for the browser tests"
	{ $_pt_sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium ||
		{ $_pt_sudo apt-get update -q &&
			$_pt_sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }; } \
		>/dev/null 2>&1 ||
		_pt_log "could not install chromium: the browser tests fail under CI=true"
fi
if [ -x /usr/bin/chromium ]; then
	export PINGTOWER_TEST_CHROMIUM=/usr/bin/chromium
	if ! (return 0 2>/dev/null); then
		printf 'export PINGTOWER_TEST_CHROMIUM=%q\n' "$PINGTOWER_TEST_CHROMIUM"
	fi
fi
# --- end of the web dashboard block -----------------------------------------------------------
