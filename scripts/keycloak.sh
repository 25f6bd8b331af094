#!/usr/bin/env bash
# A private Keycloak for the test suite, with the realm from deploy/keycloak/ imported.
#
#   bash scripts/keycloak.sh          start it (or reuse the running one); print its URL on stdout:
#                                     http://admin:PASSWORD@127.0.0.1:PORT (the master realm's
#                                     bootstrap admin in the user part, like the PostgreSQL URL)
#   bash scripts/keycloak.sh stop     stop the instance this checkout started
#
# - The distribution (org.keycloak:keycloak-quarkus-dist, a zip on Maven Central) is fetched with
#   Maven once and unpacked under .test-env/keycloak; Maven is installed from Debian if missing.
# - Java: PINGTOWER_TEST_JAVA_HOME, else the first JDK/JRE 21, 25 or 17 found under /usr/lib/jvm,
#   /opt or on PATH; openjdk-17-jre-headless is installed from Debian only when there is none.
# - Development mode (H2 file database, local caches, plain HTTP) listening on 127.0.0.1 only, on
#   its own port (PINGTOWER_TEST_KEYCLOAK_PORT, default the first free one from 58080).
# - Reused while it runs and the realm file is unchanged; a changed realm file gets a fresh
#   database and a fresh import. Every wait is bounded (PINGTOWER_TEST_KEYCLOAK_WAIT_SECONDS,
#   default 240) and fails with the tail of the log.
# Progress goes to stderr; stdout carries only the URL.
set -uo pipefail

KC_VERSION="${PINGTOWER_KEYCLOAK_VERSION:-26.5.6}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${ROOT}/.test-env/keycloak"
REALM_FILE="${ROOT}/deploy/keycloak/pingtower-realm.json"
REALM="pingtower"
WAIT_SECONDS="${PINGTOWER_TEST_KEYCLOAK_WAIT_SECONDS:-240}"
HOME_DIR="${STATE}/keycloak-${KC_VERSION}"

log() { printf '==> keycloak: %s\n' "$*" >&2; }
err() { printf 'ERROR: keycloak: %s\n' "$*" >&2; }

case ":${PATH}:" in
*:/usr/sbin:*) ;;
*) export PATH="${PATH}:/usr/local/sbin:/usr/sbin:/sbin" ;;
esac

port_open() { timeout 3 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }

as_root() {
	if [ "$(id -u)" -eq 0 ]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
		sudo -n "$@"
	else
		err "need root to run: $*"
		return 1
	fi
}

apt_install() {
	if [ -z "${_PT_APT_UPDATED:-}" ]; then
		as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq || return 1
		export _PT_APT_UPDATED=1
	fi
	log "installing Debian packages: $*"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

# HTTP status of a GET (000 when nothing answers), within 5 s.
http_status() {
	python3 - "$1" <<'PY'
import sys
import urllib.error
import urllib.request

try:
    with urllib.request.urlopen(sys.argv[1], timeout=5) as response:  # noqa: S310
        print(response.status)
except urllib.error.HTTPError as exc:
    print(exc.code)
except Exception:
    print("000")
PY
}

realm_ready() { [ "$(http_status "http://127.0.0.1:$1/realms/${REALM}/.well-known/openid-configuration")" = 200 ]; }

java_major() { # java binary -> major version number
	"$1" -XshowSettings:properties -version 2>&1 |
		sed -n 's/^ *java\.specification\.version = \([0-9]*\).*/\1/p' | head -n 1
}

find_java_home() {
	local candidates=() dir major want
	if [ -n "${PINGTOWER_TEST_JAVA_HOME:-}" ]; then
		major="$(java_major "${PINGTOWER_TEST_JAVA_HOME}/bin/java" 2>/dev/null)"
		case "$major" in
		17 | 21 | 25)
			printf '%s\n' "$PINGTOWER_TEST_JAVA_HOME"
			return 0
			;;
		esac
		err "PINGTOWER_TEST_JAVA_HOME=${PINGTOWER_TEST_JAVA_HOME} is not a Java 17, 21 or 25"
		return 1
	fi
	for dir in /usr/lib/jvm/* /opt/*jdk* /opt/*jre* /opt/java/*; do
		[ -x "${dir}/bin/java" ] && candidates+=("$dir")
	done
	if command -v java >/dev/null 2>&1; then
		candidates+=("$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")")
	fi
	# Keycloak 26 supports 17 and 21; 25 works too. Prefer the current LTS.
	for want in 21 25 17; do
		for dir in "${candidates[@]}"; do
			[ -x "${dir}/bin/java" ] || continue
			major="$(java_major "${dir}/bin/java")"
			if [ "$major" = "$want" ]; then
				printf '%s\n' "$dir"
				return 0
			fi
		done
	done
	return 1
}

ensure_distribution() {
	if [ -x "${HOME_DIR}/bin/kc.sh" ]; then
		return 0
	fi
	local download="${STATE}/download" zip
	zip="${download}/keycloak-quarkus-dist-${KC_VERSION}.zip"
	mkdir -p "$download" || return 1
	if [ ! -s "$zip" ]; then
		if ! command -v mvn >/dev/null 2>&1; then
			apt_install maven || return 1
		fi
		log "fetching org.keycloak:keycloak-quarkus-dist:${KC_VERSION}:zip with Maven"
		if ! mvn -q -B dependency:copy \
			"-Dartifact=org.keycloak:keycloak-quarkus-dist:${KC_VERSION}:zip" \
			"-DoutputDirectory=${download}" >"${STATE}/mvn.log" 2>&1; then
			err "Maven could not fetch Keycloak ${KC_VERSION}; see ${STATE}/mvn.log"
			tail -n 20 "${STATE}/mvn.log" >&2
			return 1
		fi
	fi
	log "unpacking Keycloak ${KC_VERSION}"
	rm -rf "${STATE}/unpack" && mkdir -p "${STATE}/unpack" || return 1
	python3 -m zipfile -e "$zip" "${STATE}/unpack" || return 1
	rm -rf "$HOME_DIR" && mv "${STATE}/unpack/keycloak-${KC_VERSION}" "$HOME_DIR" || return 1
	rm -rf "${STATE}/unpack"
	# zipfile drops the execute bits.
	chmod +x "${HOME_DIR}"/bin/*.sh || return 1
}

stop_instance() {
	local pid
	pid="$(cat "${STATE}/pid" 2>/dev/null || true)"
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		log "stopping Keycloak (pid ${pid})"
		kill -- "-${pid}" 2>/dev/null || kill "$pid" 2>/dev/null
		local waited=0
		while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt 30 ]; do
			sleep 1
			waited=$((waited + 1))
		done
		kill -0 "$pid" 2>/dev/null && kill -9 -- "-${pid}" 2>/dev/null
	fi
	rm -f "${STATE}/pid" "${STATE}/port"
}

print_url() {
	printf 'http://admin:%s@127.0.0.1:%s\n' "$(cat "${STATE}/admin.password")" "$1"
}

main() {
	mkdir -p "$STATE" || return 1
	if [ "${1:-}" = "stop" ]; then
		stop_instance
		return 0
	fi
	[ -s "$REALM_FILE" ] || {
		err "realm file ${REALM_FILE} is missing"
		return 1
	}
	local realm_hash pid port
	realm_hash="$(sha256sum "$REALM_FILE" | cut -d' ' -f1)-${KC_VERSION}"
	pid="$(cat "${STATE}/pid" 2>/dev/null || true)"
	port="$(cat "${STATE}/port" 2>/dev/null || true)"
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && [ -n "$port" ]; then
		if [ "$(cat "${STATE}/realm.sha256" 2>/dev/null)" = "$realm_hash" ] && realm_ready "$port"; then
			log "reusing the running Keycloak (pid ${pid}, 127.0.0.1:${port})"
			print_url "$port"
			return 0
		fi
		log "the running Keycloak is out of date or not answering; restarting it"
		stop_instance
	fi

	ensure_distribution || return 1
	local java_home
	java_home="$(find_java_home)" || {
		[ -z "${PINGTOWER_TEST_JAVA_HOME:-}" ] || return 1
		apt_install openjdk-17-jre-headless || return 1
		java_home="$(find_java_home)" || {
			err "no Java 17, 21 or 25 found even after installing openjdk-17-jre-headless"
			return 1
		}
	}

	# A changed realm file (or a first run) gets a fresh database, so the import is the file.
	if [ "$(cat "${STATE}/realm.sha256" 2>/dev/null)" != "$realm_hash" ]; then
		rm -rf "${HOME_DIR}/data"
	fi
	mkdir -p "${HOME_DIR}/data/import" || return 1
	cp "$REALM_FILE" "${HOME_DIR}/data/import/${REALM}-realm.json" || return 1
	if [ ! -s "${STATE}/admin.password" ] || [ ! -d "${HOME_DIR}/data/h2" ]; then
		# The bootstrap admin is created with the database; a new database gets a new password.
		(umask 077 && python3 -c 'import secrets; print(secrets.token_hex(16))' \
			>"${STATE}/admin.password") || return 1
	fi

	if [ -n "${PINGTOWER_TEST_KEYCLOAK_PORT:-}" ]; then
		port="$PINGTOWER_TEST_KEYCLOAK_PORT"
		if port_open 127.0.0.1 "$port"; then
			err "port ${port} (PINGTOWER_TEST_KEYCLOAK_PORT) is taken by another program"
			return 1
		fi
	else
		port=58080
		while port_open 127.0.0.1 "$port"; do
			port=$((port + 1))
			if [ "$port" -ge 58180 ]; then
				err "no free port in 58080-58179; set PINGTOWER_TEST_KEYCLOAK_PORT"
				return 1
			fi
		done
	fi

	local logfile="${STATE}/keycloak.log"
	log "starting Keycloak ${KC_VERSION} on 127.0.0.1:${port} with $(basename "$java_home") (log: ${logfile})"
	# Detached in its own session so it outlives this script and can be stopped as a group.
	# Dev mode: H2 file database, local caches (no cluster discovery), HTTP; nothing listens
	# beyond 127.0.0.1 and nothing reaches out to the internet.
	JAVA_HOME="$java_home" \
		JAVA_OPTS_KC_HEAP="-Xms64m -Xmx512m" \
		JAVA_OPTS_APPEND="-Djava.net.preferIPv4Stack=true -XX:TieredStopAtLevel=1" \
		KC_BOOTSTRAP_ADMIN_USERNAME=admin \
		KC_BOOTSTRAP_ADMIN_PASSWORD="$(cat "${STATE}/admin.password")" \
		setsid nohup "${HOME_DIR}/bin/kc.sh" start-dev \
		--import-realm \
		--http-host=127.0.0.1 \
		--http-port="$port" \
		--hostname-strict=false \
		--cache=local \
		--health-enabled=false \
		--metrics-enabled=false \
		</dev/null >"$logfile" 2>&1 &
	pid=$!
	disown 2>/dev/null || true
	printf '%s\n' "$pid" >"${STATE}/pid"
	printf '%s\n' "$port" >"${STATE}/port"

	local waited=0 started
	started="$(date +%s)"
	until realm_ready "$port"; do
		if ! kill -0 "$pid" 2>/dev/null; then
			err "Keycloak exited while starting; see ${logfile}"
			tail -n 30 "$logfile" >&2
			rm -f "${STATE}/pid" "${STATE}/port"
			return 1
		fi
		waited=$(($(date +%s) - started))
		if [ "$waited" -ge "$WAIT_SECONDS" ]; then
			err "realm ${REALM} not served on 127.0.0.1:${port} within ${WAIT_SECONDS}s; see ${logfile}"
			tail -n 30 "$logfile" >&2
			stop_instance
			return 1
		fi
		sleep 2
	done
	printf '%s\n' "$realm_hash" >"${STATE}/realm.sha256"
	log "Keycloak is up after $(($(date +%s) - started))s"
	print_url "$port"
}

main "$@"
