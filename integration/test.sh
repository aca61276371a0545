#!/usr/bin/env bash
# The one test command (README, CI): installs what the tests need on a fresh
# Debian/Ubuntu machine (a MySQL 9.x server via integration/provide-mysql.sh,
# PyMySQL, Redis and Valkey), then runs every test of the workspace against real MySQL, then the
# clients' own suites (PyMySQL, SQLAlchemy) directly and through causeway
# (integration/suites.sh; CAUSEWAY_SUITES=0 skips them).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '==> %s\n' "$*" >&2; }

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install Rust (https://rustup.rs) first" >&2
  exit 1
fi

step "MySQL server (mysqld on PATH, \$CAUSEWAY_MYSQLD, or a Debian sid root)"
integration/provide-mysql.sh >/dev/null

if [[ "${CAUSEWAY_MARIADB:-1}" != 0 ]]; then
  # never installed on the host (its mysqld would shadow MySQL 9 on PATH)
  step "MariaDB server (mariadbd on PATH, \$CAUSEWAY_MARIADBD, or a Debian bookworm root)"
  integration/provide-mariadb.sh >/dev/null
fi

if ! python3 -c 'import pymysql' 2>/dev/null; then
  step "PyMySQL"
  python3 -m pip install --quiet pymysql 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages pymysql \
    || { apt-get update -qq && apt-get install -y -qq python3-pymysql; }
fi

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  step "Node.js + npm (mysql2 client test)"
  apt-get update -qq && apt-get install -y -qq nodejs npm
fi
if [ ! -f tests/node/node_modules/mysql2/package.json ]; then
  step "mysql2 (npm ci in tests/node)"
  (cd tests/node && npm ci --no-audit --no-fund --loglevel=error)
fi
# mysql_async's native-tls (the monitor's TLS) links a vendored OpenSSL; ring (rustls'
# provider) needs only the C compiler
if ! command -v cc >/dev/null 2>&1 || ! command -v make >/dev/null 2>&1 || ! command -v perl >/dev/null 2>&1; then
  step "a C compiler, make and perl (ring and the vendored OpenSSL build)"
  apt-get update -qq && apt-get install -y -qq build-essential perl
fi
# tests/hostile_clients.rs reads the proxy's sockets with `ss`
if ! command -v ss >/dev/null 2>&1; then
  step "ss (iproute2)"
  apt-get update -qq && apt-get install -y -qq iproute2
fi
if ! command -v sysbench >/dev/null 2>&1; then
  step "sysbench"
  apt-get update -qq && apt-get install -y -qq sysbench
fi
# tests/cache_shared.rs: the cache's shared level on Redis and on Valkey
if ! command -v redis-server >/dev/null 2>&1; then
  step "redis-server"
  apt-get update -qq && apt-get install -y -qq redis-server
fi
if ! command -v valkey-server >/dev/null 2>&1; then
  step "valkey-server"
  apt-get update -qq
  if apt-cache show valkey-server >/dev/null 2>&1; then
    apt-get install -y -qq valkey-server
  else
    # not in this release (bookworm): from the MySQL sid root, without systemd
    ROOT=${CAUSEWAY_MYSQL_ROOT:-/var/tmp/causeway/sid-root}
    if [ -d "$ROOT" ] && [ ! -e "$ROOT/usr/bin/valkey-server" ]; then
      mount -t proc proc "$ROOT/proc"
      chroot "$ROOT" env DEBIAN_FRONTEND=noninteractive sh -c \
        'apt-get install -y -qq --no-install-recommends valkey-server systemd-standalone-tmpfiles systemd-standalone-sysusers || { apt-get update -qq && apt-get install -y -qq --no-install-recommends valkey-server systemd-standalone-tmpfiles systemd-standalone-sysusers; }' \
        || { umount "$ROOT/proc"; exit 1; }
      umount "$ROOT/proc"
    fi
  fi
fi

step "cargo test --workspace --no-fail-fast"
# one test binary at a time: each starts its own MySQL topology (3 servers);
# every binary runs even after one fails, and the exit status is still nonzero
cargo test --workspace --locked --no-fail-fast -- --test-threads="${CAUSEWAY_TEST_THREADS:-8}"

step "client suites: PyMySQL's and SQLAlchemy's own tests, directly and through causeway"
# integration/suites.sh; CAUSEWAY_SUITES=0 skips it for local runs
integration/suites.sh
