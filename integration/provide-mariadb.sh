#!/usr/bin/env bash
# provide-mariadb.sh: make a MariaDB server available for causeway's MariaDB
# tests and `causeway sandbox --flavor mariadb`, and print (last line of
# stdout) how to run mariadbd.
#
# MariaDB is NEVER installed on the host: Debian's mariadb-server puts a
# /usr/sbin/mysqld symlink on PATH, which would make the MySQL tests run on
# MariaDB. It lives in its own Debian root instead.
#
# Resolution order (the same as causeway_sandbox::MysqlDist::locate_mariadb):
#   1. $CAUSEWAY_MARIADBD (path to a mariadbd binary); the client is
#      $CAUSEWAY_MARIADB_CLIENT, else `mariadb` beside it (same dir or ../bin).
#   2. `mariadbd` on PATH.
#   3. A Debian bookworm root at ${CAUSEWAY_MARIADB_ROOT:-/var/tmp/causeway/mariadb-root}
#      (MariaDB 10.11), built with debootstrap when missing (needs root), into
#      "$ROOT.tmp" then renamed; concurrent runs serialize on "$ROOT.lock".
#
# The server must say MariaDB in its --version; anything else is refused.
#
# Output (stdout, last line), one of:
#   mysqld <path-to-mariadbd> mysql <path-to-mariadb-client>
#   chroot <root> mysqld /usr/sbin/mariadbd mysql /usr/bin/mariadb
set -euo pipefail

log() { echo "provide-mariadb: $*" >&2; }

require_mariadb() {
    local what="$1" out="$2"
    if ! printf '%s\n' "$out" | grep -q 'MariaDB'; then
        log "$what is not MariaDB: $out"
        exit 1
    fi
    log "$what: $(printf '%s\n' "$out" | head -n1)"
}

client_beside() {
    local d
    d="$(dirname "$1")"
    if [[ -n "${CAUSEWAY_MARIADB_CLIENT:-}" ]]; then echo "$CAUSEWAY_MARIADB_CLIENT"
    elif [[ -x "$d/mariadb" ]]; then echo "$d/mariadb"
    elif [[ -x "$d/../bin/mariadb" ]]; then echo "$d/../bin/mariadb"
    else command -v mariadb || echo mariadb
    fi
}

if [[ -n "${CAUSEWAY_MARIADBD:-}" ]]; then
    [[ -x "$CAUSEWAY_MARIADBD" ]] || { log "CAUSEWAY_MARIADBD=$CAUSEWAY_MARIADBD is not executable"; exit 1; }
    require_mariadb "$CAUSEWAY_MARIADBD" "$("$CAUSEWAY_MARIADBD" --version 2>&1 || true)"
    echo "mysqld $CAUSEWAY_MARIADBD mysql $(client_beside "$CAUSEWAY_MARIADBD")"
    exit 0
fi

if command -v mariadbd >/dev/null 2>&1; then
    m="$(command -v mariadbd)"
    require_mariadb "$m" "$("$m" --version 2>&1 || true)"
    echo "mysqld $m mysql $(client_beside "$m")"
    exit 0
fi

ROOT="${CAUSEWAY_MARIADB_ROOT:-/var/tmp/causeway/mariadb-root}"
MIRROR="${CAUSEWAY_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUITE="${CAUSEWAY_MARIADB_SUITE:-bookworm}"

print_chroot() { echo "chroot $ROOT mysqld /usr/sbin/mariadbd mysql /usr/bin/mariadb"; }

if [[ -x "$ROOT/usr/sbin/mariadbd" ]]; then
    print_chroot
    exit 0
fi
if [[ "$(id -u)" != 0 ]]; then
    log "no mariadbd found and building $ROOT needs root; set CAUSEWAY_MARIADBD"
    exit 1
fi
mkdir -p "$(dirname "$ROOT")"
exec 9>"$ROOT.lock"
log "waiting for lock $ROOT.lock"
flock 9
if [[ -x "$ROOT/usr/sbin/mariadbd" ]]; then
    print_chroot
    exit 0
fi
if ! command -v debootstrap >/dev/null 2>&1; then
    log "installing debootstrap"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq debootstrap >&2
fi
rm -rf "$ROOT.tmp"
log "building Debian $SUITE root with MariaDB into $ROOT.tmp (a minute or two)"
start=$(date +%s)
if ! debootstrap --variant=minbase \
    --include=mariadb-server-core,mariadb-client-core \
    "$SUITE" "$ROOT.tmp" "$MIRROR" >&2; then
    log "debootstrap failed; see $ROOT.tmp/debootstrap/debootstrap.log"
    exit 1
fi
[[ -x "$ROOT.tmp/usr/sbin/mariadbd" ]] || { log "$ROOT.tmp/usr/sbin/mariadbd is missing"; exit 1; }
mkdir -p "$ROOT.tmp/tmp"
chmod 1777 "$ROOT.tmp/tmp"
require_mariadb "$ROOT.tmp/usr/sbin/mariadbd" "$(chroot "$ROOT.tmp" /usr/sbin/mariadbd --version 2>&1)"
mv "$ROOT.tmp" "$ROOT"
log "built $ROOT in $(($(date +%s) - start))s"
print_chroot
