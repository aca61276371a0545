#!/usr/bin/env bash
# bench/fresh.sh — consistency modes under writes: point selects with 0%,
# 1% and 10% writes to the same table or to another one, in eventual,
# causal and fresh modes, through one causeway on a sandbox topology
# (bench/src/bin/fresh.rs measures; see its doc). Run as root.
#
#   bench/fresh.sh BIN            # e.g. target/release/causeway
#
# Environment: FRESH_TIME (5 s per run), FRESH_THREADS (4), AB_TOPOLOGY
# (the `topology` bin of causeway-bench), FRESH_DRIVER (the `fresh` bin).
# Writes bench/results/<stamp>-fresh.md.
set -euo pipefail
BIN=$1
TIME=${FRESH_TIME:-5}
THREADS=${FRESH_THREADS:-4}
TOPOLOGY=${AB_TOPOLOGY:-${CARGO_TARGET_DIR:-/tmp/target-bench}/release/topology}
DRIVER=${FRESH_DRIVER:-$(dirname "$TOPOLOGY")/fresh}
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
bench_init causeway-fresh
OUT=$(dirname "$0")/results/$(date -u +%Y-%m-%dT%H-%M-%SZ)-fresh.md
start_topology "$TOPOLOGY"
cat >"$WORK/fresh.toml" <<CONF
[server]
listen = "127.0.0.1:$FREE1"
[admin]
enabled = false
[[users]]
name = "app"
password = "apppw"
$(topology_toml)
[binlog]
user = "root"
password = ""
CONF
sed -e "s/:$FREE1\"/:$FREE2\"/" "$WORK/fresh.toml" >"$WORK/sync.toml"
printf '[routing]\nfresh_sync = true\n' >>"$WORK/sync.toml"
CAUSEWAY_LOG=warn "$BIN" --config "$WORK/fresh.toml" >"$WORK/fresh.log" 2>&1 &
PID=$!
PIDS+=($!)
CAUSEWAY_LOG=warn "$BIN" --config "$WORK/sync.toml" >"$WORK/sync.log" 2>&1 &
SYNC_PID=$!
PIDS+=($!)
for port in "$FREE1" "$FREE2"; do
    for _ in $(seq 100); do (exec 9<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
done
{
    echo "# consistency modes under writes ($(date -u +%FT%TZ))"
    echo
    echo "point selects on fb.hot (1,000 rows), $THREADS connections, ${TIME}s per run; writes are"
    echo "single-row UPDATEs on a second connection per client to fb.hot (same table) or fb.cold (other table);"
    echo "routes sampled after every 4th read; $(nproc) vCPUs shared by the driver, 3 mysqld and causeway;"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg). Binary: $BIN"
    echo
    "$DRIVER" --proxy "$FREE1" --primary "$PRIMARY" --replicas "$R1" "$R2" --pid "$PID" --sync "$FREE2" "$SYNC_PID" \
        --time "$TIME" --threads "$THREADS"
} | tee "$OUT"
