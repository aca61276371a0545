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
#     own CPU µs per transaction while it follows;
#  3. the shared level (`[cache] redis_url`, a redis-server started here): a
#     second instance's cold start with a warm shared store vs a cold one.
#     Each round: FLUSHALL, a fresh instance S1 warms the store for
#     CB_WARM_TIME s; then a fresh instance S2 runs CB_COLD_TIME s right
#     after its start (warm store), then, after FLUSHALL, another fresh S2
#     (cold store): QPS, p50, S2's local/shared hits and misses, and the
#     SELECTs the replicas ran (Com_select, monitor probes included).
# Run as root.
#
#   bench/cache.sh [BIN]        # BIN: causeway binary (default $CARGO_TARGET_DIR/release/causeway)
#
# Environment: CB_PARTS (all; `shared`: part 3 only), CB_WARM_TIME (10), CB_COLD_TIME (5),
# CB_REDIS_TIMEOUT_MS (5: `redis_timeout_ms` of the part 3 instances),
# CB_THREADS (4), CB_TIME (10 s per run), CB_ROUNDS (3), CB_CONSISTENCY (causal),
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
PARTS=${CB_PARTS:-all}
WARM_TIME=${CB_WARM_TIME:-10}
COLD_TIME=${CB_COLD_TIME:-5}
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

config() { # port cache(0|1) [more [cache] lines]
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
${3:-}
[[rules]]
name = "sbtest"
match_tables = ["sbtest.sbtest1", "sbtest.sbtest2", "sbtest.sbtest3", "sbtest.sbtest4"]
cache_ttl_ms = 600000
CONF
    fi
}
start() { # port cache name [more [cache] lines] -> sets LAST_PID
    config "$1" "$2" "${4:-}" >"$WORK/$3.toml"
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
{
echo "# Cache tier (bench/cache.sh, $STAMP, parts: $PARTS)"
echo
} >"$OUT"
if [[ $PARTS == all ]]; then
start "$PU" 0 U; PID_U=$LAST_PID
start "$PC" 1 C; PID_C=$LAST_PID
sleep 2   # the reader connects, the monitor measures
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
} >>"$OUT"
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
kill "$PID_U"; wait "$PID_U" 2>/dev/null || true
fi

# 3. the shared level: a second instance's cold start, warm vs cold store
REDIS_PORT=$FREE3
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
    >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do [[ $(redis-cli -p "$REDIS_PORT" PING 2>/dev/null) == PONG ]] && break; sleep 0.1; done
SHARED="redis_url = \"redis://127.0.0.1:$REDIS_PORT\"
redis_timeout_ms = ${CB_REDIS_TIMEOUT_MS:-5}"
# a new port for each instance (a stopped one leaves TIME_WAIT sockets)
new_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
com_select() { # total Com_select of both replicas
    local n=0 r v
    for r in "$R1" "$R2"; do
        v=$(mysql_do "$r" "SHOW GLOBAL STATUS LIKE 'Com_select'" | awk '{print $2}')
        n=$((n + v))
    done
    echo "$n"
}
rule_row() { # port -> "hits misses local_hits shared_hits"
    chroot "$CHROOT" mysql -h127.0.0.1 -P"$1" -uadmin -padminpw -N -B -e "SHOW CAUSEWAY CACHE" 2>/dev/null |
        awk -F'\t' '$1 == "rule" {print $5, $6, $11, $12}'
}
fresh() { # port name -> runs COLD_TIME s on a fresh instance: "qps p50 hits misses local shared replica_selects"
    local pid s0 s1 q
    start "$1" 1 "$2" "$SHARED"; pid=$LAST_PID
    sleep 2   # the reader connects, the monitor measures
    s0=$(com_select)
    q=$(point "$1" "$pid" "$3")
    s1=$(com_select)
    echo "$(awk '{print $1, $2}' <<<"$q") $(rule_row "$1") $((s1 - s0))"
    chroot "$CHROOT" mysql -h127.0.0.1 -P"$1" -uadmin -padminpw -N -B -e "SHOW CAUSEWAY CACHE" 2>/dev/null |
        awk -F'\t' -v n="$2" '$1 == "shared" {print n ": breaker " $9 ", " $10}' >>"$WORK/shared.txt"
    kill "$pid"; wait "$pid" 2>/dev/null || true
}
{
echo
echo "Shared level: a fresh instance's first ${COLD_TIME} s (after its reader follows), with the shared"
echo "store warmed by another fresh instance for ${WARM_TIME} s (warm) or flushed (cold);"
echo "\`redis_timeout_ms = ${CB_REDIS_TIMEOUT_MS:-5}\`; redis-server"
echo "$(redis-server --version | awk '{print $3}'), sysbench as above. Replica SELECTs: Com_select on both"
echo "replicas during the run (monitor probes included)."
echo
echo "| round | store | qps | p50 ms | hits | misses | local hits | shared hits | replica SELECTs |"
echo "|---|---|---|---|---|---|---|---|---|"
} | tee -a "$OUT"
for i in $(seq "$ROUNDS"); do
    redis-cli -p "$REDIS_PORT" FLUSHALL >/dev/null
    fresh "$(new_port)" S1 "$WARM_TIME" >/dev/null
    keys=$(redis-cli -p "$REDIS_PORT" DBSIZE)
    read -r q p h m l sh rs < <(fresh "$(new_port)" S2warm "$COLD_TIME")
    echo "| $i | warm ($keys keys) | $q | $p | $h | $m | $l | $sh | $rs |" | tee -a "$OUT"
    redis-cli -p "$REDIS_PORT" FLUSHALL >/dev/null
    read -r q p h m l sh rs < <(fresh "$(new_port)" S2cold "$COLD_TIME")
    echo "| $i | cold | $q | $p | $h | $m | $l | $sh | $rs |" | tee -a "$OUT"
done
{
echo
echo "Each instance's \`shared\` row of SHOW CAUSEWAY CACHE at its end:"
echo
echo '```'
cat "$WORK/shared.txt"
echo '```'
} | tee -a "$OUT"
echo "results in $OUT"
