#!/usr/bin/env bash
# bench/cache.sh — the cache tier on one sandbox topology:
#  1. sysbench oltp_point_select (--db-ps-mode=disable, uniform keys) through
#     two causeway processes of the same binary, one without a cache (U) and
#     one with `[cache] enabled` and a rule caching sbtest.sbtest1..4 (C),
#     alternating U, C, U, C, ... after a warm-up that fills the cache:
#     QPS, p50 latency, and proxy CPU µs per query (/proc/PID/stat
#     utime+stime before/after ÷ queries);
#  2. the binlog reader's cost: sysbench oltp_write_only directly on the
#     primary with C running (its reader follows the primary) and with C
#     stopped: the primary mysqld's CPU µs per transaction in both, and C's
#     own CPU µs per transaction while it follows.
# Run as root.
#
#   bench/cache.sh [BIN]        # BIN: causeway binary (default $CARGO_TARGET_DIR/release/causeway)
#
# Environment: CB_THREADS (4), CB_TIME (10 s per run), CB_ROUNDS (3), CB_CONSISTENCY (causal),
# CB_TABLE_SIZE (1000 rows per table; the keys the warm-up caches),
# CB_TOPOLOGY (the `topology` bin of causeway-bench). Writes
# bench/results/<UTC stamp>-cache.md.
set -euo pipefail
TARGET=${CARGO_TARGET_DIR:-/tmp/target-bench}
BIN=${1:-$TARGET/release/causeway}
THREADS=${CB_THREADS:-4}
TIME=${CB_TIME:-10}
ROUNDS=${CB_ROUNDS:-3}
CONSISTENCY=${CB_CONSISTENCY:-causal}
TABLE_SIZE=${CB_TABLE_SIZE:-1000}
TOPOLOGY=${CB_TOPOLOGY:-$TARGET/release/topology}
CHROOT=${CAUSEWAY_CHROOT:-/var/tmp/causeway/sid-root}
HERE=$(cd "$(dirname "$0")" && pwd)
STAMP=$(date -u +%Y-%m-%dT%H-%M-%SZ)
OUT="$HERE/results/$STAMP-cache.md"
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
bench_init causeway-cache-bench
start_topology "$TOPOLOGY"
PU=$FREE1
PC=$FREE2

config() { # port cache(0|1)
    cat <<CONF
[server]
listen = "127.0.0.1:$1"
[admin]
enabled = false
[[users]]
name = "app"
password = "apppw"
$(topology_toml)
[routing]
consistency = "$CONSISTENCY"
CONF
    if [[ $2 == 1 ]]; then
        cat <<CONF
[[users]]
name = "admin"
password = "adminpw"
admin = true
backend_user = "app"
backend_password = "apppw"
[cache]
enabled = true
max_memory_mb = 256
user = "repl"
password = "replpw"
[[rules]]
name = "sbtest"
match_tables = ["sbtest.sbtest1", "sbtest.sbtest2", "sbtest.sbtest3", "sbtest.sbtest4"]
cache_ttl_ms = 600000
CONF
    fi
}
start() { # port cache name -> sets LAST_PID
    config "$1" "$2" >"$WORK/$3.toml"
    CAUSEWAY_LOG=warn "$BIN" --config "$WORK/$3.toml" >"$WORK/$3.log" 2>&1 &
    LAST_PID=$!
    PIDS+=($LAST_PID)
    for _ in $(seq 100); do (exec 9<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
    echo "$3 does not listen" >&2; cat "$WORK/$3.log" >&2; exit 1
}
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)

SB=(--mysql-host=127.0.0.1 --mysql-user=app --mysql-password=apppw --mysql-db=sbtest
    --mysql-ssl=off --tables=4 --table-size="$TABLE_SIZE")
mysql_do() { chroot "$CHROOT" mysql -h127.0.0.1 -P"$1" -uapp -papppw -N -e "$2" 2>/dev/null; }
mysql_do "$PRIMARY" "CREATE DATABASE IF NOT EXISTS sbtest"
sysbench oltp_point_select "${SB[@]}" --mysql-port="$PRIMARY" --threads=4 prepare >/dev/null
G=$(mysql_do "$PRIMARY" "SELECT @@GLOBAL.gtid_executed" | tr -d '\n')
for r in "$R1" "$R2"; do
    [[ $(mysql_do "$r" "SELECT WAIT_FOR_EXECUTED_GTID_SET('$G', 120)") == 0 ]] || { echo "replica $r did not catch up" >&2; exit 1; }
done
start "$PU" 0 U; PID_U=$LAST_PID
start "$PC" 1 C; PID_C=$LAST_PID
sleep 2   # the reader connects, the monitor measures

point() { # port pid seconds -> "qps p50_ms cpu_us_per_query"
    local t0 t1 out
    t0=$(ticks "$2")
    out=$(sysbench oltp_point_select "${SB[@]}" --mysql-port="$1" --threads="$THREADS" --time="$3" \
        --db-ps-mode=disable --rand-type=uniform --percentile=50 --report-interval=0 run)
    t1=$(ticks "$2")
    awk -v dt=$((t1 - t0)) -v hz="$HZ" '/queries:/ && !q {q=$2} /total time:/ {t=$3+0}
        /50th percentile:/ {p=$3}
        END {printf "%.0f %s %.1f\n", q/t, p, dt * 1e6 / hz / q}' <<<"$out"
}
point "$PU" "$PID_U" 5 >/dev/null
point "$PC" "$PID_C" 10 >/dev/null   # fills the cache (4 x TABLE_SIZE keys)
{
echo "# Cache tier: cached vs uncached point select, binlog reader cost"
echo
echo "\`bench/cache.sh\` ($STAMP): primary + 2 replicas, \`consistency = \"$CONSISTENCY\"\`,"
echo "sysbench \`oltp_point_select\`, 4 tables x $TABLE_SIZE rows, \`--db-ps-mode=disable\`,"
echo "uniform keys, $THREADS threads, ${TIME} s per run, U (no cache) and C (cache on, rule"
echo "on sbtest.sbtest1..4, TTL 600 s) alternating after warm-up. Host: $(nproc) vCPUs, load"
echo "average at start $(cut -d' ' -f1-3 /proc/loadavg)."
echo
echo "| round | U qps | U p50 ms | U CPU µs/query | C qps | C p50 ms | C CPU µs/query |"
echo "|---|---|---|---|---|---|---|"
} >"$OUT"
for i in $(seq "$ROUNDS"); do
    read -r uq up uc < <(point "$PU" "$PID_U" "$TIME")
    read -r cq cp cc < <(point "$PC" "$PID_C" "$TIME")
    echo "| $i | $uq | $up | $uc | $cq | $cp | $cc |" | tee -a "$OUT"
done

{
echo
echo "\`SHOW CAUSEWAY CACHE\` on C after the rounds:"
echo
echo '```'
chroot "$CHROOT" mysql -h127.0.0.1 -P"$PC" -uadmin -padminpw -t -e "SHOW CAUSEWAY CACHE" 2>/dev/null
echo '```'
} | tee -a "$OUT"

# the binlog reader's cost
PRIMARY_PID=$(ss -ltnpH "sport = :$PRIMARY" | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -1)
write() { # seconds -> "tps primary_cpu_us_per_tx C_cpu_us_per_tx"
    local p0 p1 c0 c1 out
    p0=$(ticks "$PRIMARY_PID"); c0=$( [[ -e /proc/$PID_C ]] && ticks "$PID_C" || echo 0)
    out=$(sysbench oltp_write_only "${SB[@]}" --mysql-port="$PRIMARY" --threads="$THREADS" --time="$1" \
        --report-interval=0 run)
    p1=$(ticks "$PRIMARY_PID"); c1=$( [[ -e /proc/$PID_C ]] && ticks "$PID_C" || echo 0)
    awk -v dp=$((p1 - p0)) -v dc=$((c1 - c0)) -v hz="$HZ" '/transactions:/ {n=$2} /total time:/ {t=$3+0}
        END {printf "%.0f %.1f %.1f\n", n/t, dp * 1e6 / hz / n, dc * 1e6 / hz / n}' <<<"$out"
}
read -r on_tps on_p on_c < <(write "$TIME")
kill "$PID_C"; wait "$PID_C" 2>/dev/null || true
read -r off_tps off_p _ < <(write "$TIME")
{
echo
echo "Binlog reader: sysbench \`oltp_write_only\` directly on the primary, $THREADS threads, ${TIME} s."
echo
echo "| C (reader) | tps | primary CPU µs/tx | causeway C CPU µs/tx |"
echo "|---|---|---|---|"
echo "| running | $on_tps | $on_p | $on_c |"
echo "| stopped | $off_tps | $off_p | — |"
} | tee -a "$OUT"
echo "results in $OUT"
