#!/usr/bin/env bash
# bench/modes.sh — `[server] pool_mode = "transaction"` vs `"session"`:
# sysbench oltp_point_select (4 tables x 10,000 rows, --db-ps-mode=disable)
# through one causeway binary started once per mode on one sandbox
# topology, at 4 and 256 client threads, alternating the modes. Reports
# QPS, proxy CPU µs per query (utime+stime from /proc/<pid>/stat, 10 ms
# ticks, before/after ÷ queries) and the most backend connections of the
# mode's backend account (`mux_transaction` / `mux_session`, created here)
# seen on one server (information_schema.processlist, sampled once a
# second). Run as root.
#
#   bench/modes.sh BIN            # e.g. $CARGO_TARGET_DIR/release/causeway
#
# Environment: MODES_THREADS ("4 256"), MODES_TIME (10 s per run),
# MODES_ROUNDS (2), MODES_POOL (256: pool_max_per_backend of both modes),
# MODES_MODES ("transaction session"; session mode needs a pool at least as
# large as the thread count),
# AB_TOPOLOGY (the `topology` bin of causeway-bench, default
# $CARGO_TARGET_DIR/release/topology). Writes bench/results/<stamp>-modes.md.
set -euo pipefail
BIN=$1
THREADS=${MODES_THREADS:-4 256}
TIME=${MODES_TIME:-10}
ROUNDS=${MODES_ROUNDS:-2}
POOL=${MODES_POOL:-256}
MODES=${MODES_MODES:-transaction session}
TOPOLOGY=${AB_TOPOLOGY:-${CARGO_TARGET_DIR:-/tmp/target-bench}/release/topology}
CHROOT=${CAUSEWAY_CHROOT:-/var/tmp/causeway/sid-root}
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
bench_init causeway-modes
OUT=$(dirname "$0")/results/$(date -u +%Y-%m-%dT%H-%M-%SZ)-modes.md
start_topology "$TOPOLOGY"
PT=$FREE1
PS=$FREE2

mysql_root() { chroot "$CHROOT" mysql -h127.0.0.1 -P"$1" -uroot -N -e "$2" 2>/dev/null; }
for m in transaction session; do
    mysql_root "$PRIMARY" "CREATE USER IF NOT EXISTS 'mux_$m'@'%' IDENTIFIED WITH caching_sha2_password BY 'apppw'; GRANT ALL ON *.* TO 'mux_$m'@'%'"
done

declare -A PID_OF
start() { # mode port
    cat >"$WORK/$1.toml" <<CONF
[server]
listen = "127.0.0.1:$2"
pool_mode = "$1"
pool_max_per_backend = $POOL
max_connections = 4096
connect_timeout_ms = 10000
[admin]
enabled = false
[[users]]
name = "app"
password = "apppw"
backend_user = "mux_$1"
backend_password = "apppw"
$(topology_toml)
[routing]
consistency = "causal"
CONF
    CAUSEWAY_LOG=warn "$BIN" --config "$WORK/$1.toml" >"$WORK/$1.log" 2>&1 &
    PID_OF[$1]=$!
    PIDS+=($!)
    for _ in $(seq 100); do (exec 9<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null && return 0; sleep 0.1; done
    echo "$1 does not listen" >&2; cat "$WORK/$1.log" >&2; exit 1
}
start transaction "$PT"
start session "$PS"

SB=(--mysql-host=127.0.0.1 --mysql-user=app --mysql-password=apppw --mysql-db=sbtest
    --mysql-ssl=off --tables=4 --table-size=10000)
mysql_do() { chroot "$CHROOT" mysql -h127.0.0.1 -P"$1" -uroot -N -e "$2" 2>/dev/null; }
mysql_do "$PRIMARY" "CREATE DATABASE IF NOT EXISTS sbtest"
sysbench oltp_point_select "${SB[@]}" --mysql-port="$PRIMARY" --threads=4 prepare >/dev/null
G=$(mysql_do "$PRIMARY" "SELECT @@GLOBAL.gtid_executed" | tr -d '\n')
for r in "$R1" "$R2"; do
    [[ $(mysql_do "$r" "SELECT WAIT_FOR_EXECUTED_GTID_SET('$G', 120)") == 0 ]] || { echo "replica $r did not catch up" >&2; exit 1; }
done

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
most_conns() { # mode: prints the largest count of its account's connections on one server
    local m=0 n
    for p in "$PRIMARY" "$R1" "$R2"; do
        n=$(mysql_do "$p" "SELECT COUNT(*) FROM information_schema.processlist WHERE user = 'mux_$1'")
        ((n > m)) && m=$n
    done
    echo "$m"
}
run() { # mode port threads seconds -> "qps us_per_query max_conns"
    local pid=${PID_OF[$1]} t0 t1 q max=0 n
    t0=$(ticks "$pid")
    sysbench oltp_point_select "${SB[@]}" --mysql-port="$2" --threads="$3" --time="$4" \
        --db-ps-mode=disable --rand-type=uniform --report-interval=0 run >"$WORK/run.out" &
    local sb=$!
    sleep 1
    while kill -0 "$sb" 2>/dev/null; do n=$(most_conns "$1"); ((n > max)) && max=$n; sleep 1; done
    wait "$sb"
    t1=$(ticks "$pid")
    awk -v t0="$t0" -v t1="$t1" -v hz="$(getconf CLK_TCK)" -v max="$max" \
        '/queries:/ && !q {q=$2} /total time:/ {t=$3+0}
         END {printf "%.0f %.1f %d\n", q/t, (t1-t0)/hz*1e6/q, max}' "$WORK/run.out"
}
{
    echo "# pool_mode: transaction vs session ($(date -u +%FT%TZ))"
    echo
    echo "oltp_point_select, --db-ps-mode=disable, 4 tables x 10,000 rows, ${TIME}s per run, $ROUNDS rounds (means),"
    echo "pool_max_per_backend = $POOL, consistency = causal; $(nproc) vCPUs shared by sysbench, 3 mysqld and causeway;"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg). Binary: $BIN"
    echo
    echo "| threads | mode | QPS | proxy CPU µs/query | most backend connections on one server |"
    echo "|---|---|---|---|---|"
} >"$OUT"
for th in $THREADS; do
    for m in $MODES; do   # warm
        port=$PT; [[ $m == session ]] && port=$PS
        run "$m" "$port" "$th" 3 >/dev/null
    done
    declare -A QPS=() CPU=() CONN=()
    for i in $(seq "$ROUNDS"); do
        for m in $MODES; do
            port=$PT; [[ $m == session ]] && port=$PS
            read -r q c n < <(run "$m" "$port" "$th" "$TIME")
            echo "threads $th round $i $m: $q qps, $c us/query, $n connections"
            QPS[$m]=$(( ${QPS[$m]:-0} + q )); CPU[$m]=$(awk -v a="${CPU[$m]:-0}" -v b="$c" 'BEGIN{print a+b}')
            (( n > ${CONN[$m]:-0} )) && CONN[$m]=$n
        done
    done
    for m in $MODES; do
        printf '| %s | %s | %d | %.1f | %d |\n' "$th" "$m" $(( QPS[$m] / ROUNDS )) \
            "$(awk -v a="${CPU[$m]}" -v r="$ROUNDS" 'BEGIN{print a/r}')" "${CONN[$m]}" >>"$OUT"
    done
    unset QPS CPU CONN
done
cat "$OUT"
