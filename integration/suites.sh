#!/usr/bin/env bash
# suites.sh: the clients' own test suites, directly and through causeway.
#
# Runs PyMySQL's suite (0.10.1 sdist) and SQLAlchemy 2.0.59's backend tests
# (its sdist; PyMySQL 1.2.4 driver) against one sandbox topology (MySQL
# primary + 2 GTID replicas): directly against the primary, then through
# causeway with pool_mode = "transaction" and with pool_mode = "session".
# Fails if any test that passes directly does not pass through causeway in
# either mode, except those named in integration/suites-exclusions.txt.
#
# Environment:
#   CAUSEWAY_SUITES=0        skip (local runs; CI runs it)
#   CAUSEWAY_SUITES_DIR      work dir (default target/suites: venv, sdists, logs)
#   CAUSEWAY_SUITES_SQLA     SQLAlchemy test paths (default: the CI set below;
#                            "full" = test/dialect/mysql test/sql test/engine test/orm)
#   CAUSEWAY_SUITES_MODES    proxy targets (default: transaction,session,
#                            transaction-fresh,session-fresh; "-fresh" runs
#                            the pool mode with consistency = "fresh")
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '==> %s\n' "$*" >&2; }

if [ "${CAUSEWAY_SUITES:-1}" = "0" ]; then
  step "client suites skipped (CAUSEWAY_SUITES=0)"
  exit 0
fi

WORK="${CAUSEWAY_SUITES_DIR:-$PWD/target/suites}"
VENV="$WORK/venv"
DL="$WORK/dl"
SRC="$WORK/src"
RUN="$WORK/run"
# CI set: all of dialect/mysql, engine and sql; from orm (85% of the tests
# that reach the server, ~70% of the time) the files about transactions,
# savepoints, flush and DML. The full set took ~3x as long (README).
SQLA_CI="test/dialect/mysql test/engine test/sql test/orm/test_transaction.py
  test/orm/test_session.py test/orm/test_unitofwork.py test/orm/test_unitofworkv2.py
  test/orm/test_expire.py test/orm/test_versioning.py test/orm/test_naturalpks.py
  test/orm/dml"
SQLA_DIRS="${CAUSEWAY_SUITES_SQLA:-$SQLA_CI}"
if [ "$SQLA_DIRS" = "full" ]; then
  SQLA_DIRS="test/dialect/mysql test/sql test/engine test/orm"
fi
SQLA_DIRS="$(echo $SQLA_DIRS)"
mkdir -p "$WORK" "$DL"

if [ ! -x "$VENV/bin/python" ]; then
  step "Python venv for the client suites ($VENV)"
  python3 -m venv "$VENV" 2>/dev/null || {
    apt-get update -qq && apt-get install -y -qq python3-venv
    python3 -m venv "$VENV"
  }
fi
step "pinned Python packages (integration/suites-requirements.txt)"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
  -r integration/suites-requirements.txt

if [ ! -f "$DL/PyMySQL-0.10.1.tar.gz" ] || [ ! -f "$DL/sqlalchemy-2.0.59.tar.gz" ]; then
  step "sdists of PyMySQL 0.10.1 and SQLAlchemy 2.0.59 (integration/suites-sdists.txt)"
  "$VENV/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps \
    --no-binary :all: --no-build-isolation --require-hashes \
    -r integration/suites-sdists.txt -d "$DL"
fi
# fresh sources every run: the suites write files into their trees
rm -rf "$SRC" "$RUN"
mkdir -p "$SRC"
tar -xzf "$DL/PyMySQL-0.10.1.tar.gz" -C "$SRC"
tar -xzf "$DL/sqlalchemy-2.0.59.tar.gz" -C "$SRC"

step "causeway binary (debug)"
cargo build --locked --quiet --bin causeway

MODES="${CAUSEWAY_SUITES_MODES:-transaction,session,transaction-fresh,session-fresh}"
step "client suites: direct, then through causeway: $MODES"
start=$(date +%s)
"$VENV/bin/python" integration/suites.py \
  --causeway target/debug/causeway \
  --work "$RUN" \
  --pymysql-src "$SRC/PyMySQL-0.10.1" \
  --sqlalchemy-src "$SRC/sqlalchemy-2.0.59" \
  --sqla-dirs "$SQLA_DIRS" \
  --targets "direct,$MODES"
step "client suites ran in $(( $(date +%s) - start )) s; comparing outcomes"
"$VENV/bin/python" integration/suites_compare.py --work "$RUN" --modes "$MODES"
