#!/usr/bin/env bash
# bench/ab.sh — A/B of two causeway binaries on one sandbox topology:
# sysbench oltp_point_select (4 tables x 10,000 rows, --db-ps-mode=disable)
# through each, alternating A, B, A, B, ... so both see the same machine
# load. Run as root.
#
#   bench/ab.sh BIN_A BIN_B            # e.g. a build of main, a build of a branch
#
# Environment: AB_THREADS (4), AB_TIME (10 s per run), AB_ROUNDS (3),
# AB_BALANCE (session), AB_TOPOLOGY (the `topology` bin of causeway-bench,
# default $CARGO_TARGET_DIR/release/topology), AB_EXTRA_A / AB_EXTRA_B (a
# file whose text is appended to that side's config, e.g. [[rules]]; the
# same binary may then be given twice), AB_SERVER_A / AB_SERVER_B (extra
# `[server]` lines for that side, e.g. "worker_threads = 1"). Prints one line per run (QPS and the
# proxy's CPU per query from /proc/<pid>/stat) and the means of each side.
set -euo pipefail
A=$1
B=$2
THREADS=${AB_THREADS:-4}
TIME=${AB_TIME:-10}
ROUNDS=${AB_ROUNDS:-3}
BALANCE=${AB_BALANCE:-session}
TOPOLOGY=${AB_TOPOLOGY:-${CARGO_TARGET_DIR:-/tmp/target-bench}/release/topology}
CHROOT=${CAUSEWAY_CHROOT:-/var/tmp/causeway/sid-root}
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
bench_init causeway-ab
start_topology "$TOPOLOGY"
PA=$FREE1
PB=$FREE2

start() { # bin port name
    local server_var="AB_SERVER_$3"
    cat >"$WORK/$3.toml" <<CONF
[server]
listen = "127.0.0.1:$2"
${!server_var:-}
[admin]
enabled = false
[[users]]
name = "app"
password = "apppw"
$(topology_toml)
[routing]
consistency = "causal"
read_balance = "$BALANCE"
CONF
    local extra_var="AB_EXTRA_$3"
    if [[ -n ${!extra_var:-} ]]; then cat "${!extra_var}" >>"$WORK/$3.toml"; fi
    CAUSEWAY_LOG=warn "$1" --config "$WORK/$3.toml" >"$WORK/$3.log" 2>&1 &
    PIDS+=($!)
    printf -v "PID_$3" '%s' "$!"
    for _ in $(seq 100); do (exec 9<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null && return 0; sleep 0.1; done
    echo "$3 does not listen" >&2; cat "$WORK/$3.log" >&2; exit 1
}
start "$A" "$PA" A
start "$B" "$PB" B

SB=(--mysql-host=127.0.0.1 --mysql-user=app --mysql-password=apppw --mysql-db=sbtest
    --mysql-ssl=off --tables=4 --table-size=10000)
mysql_do() { chroot "$CHROOT" mysql -h127.0.0.1 -P"$1" -uapp -papppw -N -e "$2" 2>/dev/null; }
mysql_do "$PRIMARY" "CREATE DATABASE IF NOT EXISTS sbtest"
sysbench oltp_point_select "${SB[@]}" --mysql-port="$PRIMARY" --threads=4 prepare >/dev/null
G=$(mysql_do "$PRIMARY" "SELECT @@GLOBAL.gtid_executed" | tr -d '\n')
for r in "$R1" "$R2"; do
    [[ $(mysql_do "$r" "SELECT WAIT_FOR_EXECUTED_GTID_SET('$G', 120)") == 0 ]] || { echo "replica $r did not catch up" >&2; exit 1; }
done

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
run() { # port pid [seconds]: prints "qps cpu_us_per_query"
    local t0 out
    t0=$(ticks "$2")
    out=$(sysbench oltp_point_select "${SB[@]}" --mysql-port="$1" --threads="$THREADS" --time="${3:-$TIME}" \
        --db-ps-mode=disable --rand-type=uniform --report-interval=0 run |
        awk '/queries:/ && !q {q=$2} /total time:/ {t=$3+0} END {printf "%.0f %d\n", q/t, q}')
    local dt=$(( $(ticks "$2") - t0 ))
    read -r qps q <<<"$out"
    awk -v qps="$qps" -v q="$q" -v dt="$dt" -v hz="$HZ" 'BEGIN {printf "%d %.1f\n", qps, dt * 1e6 / hz / q}'
}
run "$PA" "$PID_A" 3 >/dev/null; run "$PB" "$PID_B" 3 >/dev/null   # warm both
SA=0; SBQ=0; CA=0; CB=0
for i in $(seq "$ROUNDS"); do
    read -r qa ca < <(run "$PA" "$PID_A"); read -r qb cb < <(run "$PB" "$PID_B")
    echo "round $i: A $qa qps ${ca} us/q, B $qb qps ${cb} us/q"
    SA=$((SA + qa)); SBQ=$((SBQ + qb))
    CA=$(awk -v a="$CA" -v b="$ca" 'BEGIN {print a + b}'); CB=$(awk -v a="$CB" -v b="$cb" 'BEGIN {print a + b}')
done
echo "mean: A $((SA / ROUNDS)) qps $(awk -v c="$CA" -v r="$ROUNDS" 'BEGIN {printf "%.1f", c / r}') us/q, B $((SBQ / ROUNDS)) qps $(awk -v c="$CB" -v r="$ROUNDS" 'BEGIN {printf "%.1f", c / r}') us/q (oltp_point_select, $THREADS threads, ${TIME}s x $ROUNDS, read_balance=$BALANCE)"
