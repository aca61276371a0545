#!/usr/bin/env bash
# provide-mysql.sh: make a MySQL server available for causeway's tests and
# sandbox, and print (last line of stdout) how to run mysqld.
#
# Resolution order (the same as causeway_sandbox::MysqlDist::locate):
#   1. $CAUSEWAY_MYSQLD (path to a mysqld binary); the client is $CAUSEWAY_MYSQL,
#      else `mysql` beside mysqld (same dir or ../bin), else `mysql` on PATH.
#   2. `mysqld` on PATH.
#   3. A Debian sid chroot at ${CAUSEWAY_MYSQL_ROOT:-/var/tmp/causeway/sid-root},
#      built with debootstrap when missing (needs root). It is built into
#      "$ROOT.tmp" and renamed, so a half-built root is never used; concurrent
#      invocations are serialized with flock on "$ROOT.lock".
#
# The server must be MySQL 9.x (what causeway is built and tested against):
# any other version is refused, loudly, with the version found.
#
# Output (stdout, last line), one of:
#   mysqld <path-to-mysqld> mysql <path-to-mysql>
#   chroot <root> mysqld /usr/sbin/mysqld mysql /usr/bin/mysql
# Progress goes to stderr. Idempotent and fast when MySQL is already there.
set -euo pipefail

log() { echo "provide-mysql: $*" >&2; }

# require_9x WHAT VERSION-OUTPUT: exits unless the output names a 9.x server.
require_9x() {
    local what="$1" out="$2" ver
    ver="$(printf '%s\n' "$out" | sed -n 's/.*Ver \([0-9][0-9.]*\).*/\1/p' | head -n1)"
    if [[ -z "$ver" ]]; then
        log "cannot read a version from $what: $out"
        exit 1
    fi
    if [[ "$ver" != 9.* ]]; then
        log "$what is MySQL $ver; causeway needs MySQL 9.x (set CAUSEWAY_MYSQLD to a 9.x mysqld)"
        exit 1
    fi
    log "$what: MySQL $ver"
}

# check_chroot ROOT: the chroot's mysqld must be 9.x (via chroot as root,
# else from the chroot's dpkg database).
check_chroot() {
    local root="$1" out
    if [[ "$(id -u)" == 0 ]]; then
        out="$(chroot "$root" /usr/sbin/mysqld --version 2>&1)" || true
    else
        out="Ver $(dpkg-query --admindir="$root/var/lib/dpkg" -W -f='${Version}' mysql-server-core 2>/dev/null)"
    fi
    require_9x "$root/usr/sbin/mysqld" "$out"
}

find_client_beside() {
    local mysqld="$1" dir
    dir="$(dirname "$mysqld")"
    if [[ -n "${CAUSEWAY_MYSQL:-}" ]]; then
        echo "$CAUSEWAY_MYSQL"
    elif [[ -x "$dir/mysql" ]]; then
        echo "$dir/mysql"
    elif [[ -x "$dir/../bin/mysql" ]]; then
        echo "$dir/../bin/mysql"
    elif command -v mysql >/dev/null 2>&1; then
        command -v mysql
    else
        echo "mysql"
    fi
}

# 1. Explicit binary.
if [[ -n "${CAUSEWAY_MYSQLD:-}" ]]; then
    if [[ ! -x "$CAUSEWAY_MYSQLD" ]]; then
        log "CAUSEWAY_MYSQLD=$CAUSEWAY_MYSQLD is not an executable file"
        exit 1
    fi
    require_9x "$CAUSEWAY_MYSQLD" "$("$CAUSEWAY_MYSQLD" --version 2>&1 || true)"
    echo "mysqld $CAUSEWAY_MYSQLD mysql $(find_client_beside "$CAUSEWAY_MYSQLD")"
    exit 0
fi

# 2. mysqld on PATH.
if command -v mysqld >/dev/null 2>&1; then
    m="$(command -v mysqld)"
    require_9x "$m" "$("$m" --version 2>&1 || true)"
    echo "mysqld $m mysql $(find_client_beside "$m")"
    exit 0
fi

# 3. Debian sid chroot.
ROOT="${CAUSEWAY_MYSQL_ROOT:-/var/tmp/causeway/sid-root}"
MIRROR="${CAUSEWAY_DEBIAN_MIRROR:-http://deb.debian.org/debian}"

print_chroot() {
    echo "chroot $ROOT mysqld /usr/sbin/mysqld mysql /usr/bin/mysql"
}

if [[ -x "$ROOT/usr/sbin/mysqld" ]]; then
    check_chroot "$ROOT"
    print_chroot
    exit 0
fi

if [[ "$(id -u)" != 0 ]]; then
    log "no mysqld found and building the chroot at $ROOT needs root"
    log "set CAUSEWAY_MYSQLD to a mysqld binary, or run this script as root"
    exit 1
fi

mkdir -p "$(dirname "$ROOT")"
exec 9>"$ROOT.lock"
log "waiting for lock $ROOT.lock"
flock 9

# Another invocation may have finished while we waited.
if [[ -x "$ROOT/usr/sbin/mysqld" ]]; then
    check_chroot "$ROOT"
    print_chroot
    exit 0
fi

if ! command -v debootstrap >/dev/null 2>&1; then
    log "installing debootstrap"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq debootstrap >&2
fi

if [[ -e "$ROOT.tmp" ]]; then
    log "removing stale partial root $ROOT.tmp"
    rm -rf "$ROOT.tmp"
fi

log "building Debian sid root with MySQL into $ROOT.tmp (takes a minute or two)"
start=$(date +%s)
if ! debootstrap --variant=minbase \
    --include=mysql-server-core,mysql-client-core,mysql-router \
    sid "$ROOT.tmp" "$MIRROR" >&2; then
    log "debootstrap failed; see $ROOT.tmp/debootstrap/debootstrap.log"
    exit 1
fi
if [[ ! -x "$ROOT.tmp/usr/sbin/mysqld" ]]; then
    log "debootstrap finished but $ROOT.tmp/usr/sbin/mysqld is missing"
    exit 1
fi
mkdir -p "$ROOT.tmp/tmp"
chmod 1777 "$ROOT.tmp/tmp"
check_chroot "$ROOT.tmp"
mv "$ROOT.tmp" "$ROOT"
log "built $ROOT in $(($(date +%s) - start))s: $(chroot "$ROOT" /usr/sbin/mysqld --version)"
print_chroot
