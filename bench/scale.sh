#!/usr/bin/env bash
# bench/scale.sh — issue 28 in one run on one topology (run as root):
#
# 1. A/B: sysbench oltp_point_select (--db-ps-mode=disable) at 4, 16, 64
#    and 256 threads through causeway with pipeline_depth = 1, causeway
#    with pipeline_depth = $SCALE_DEPTH, and MySQL Router (ro port), each
#    point in turn. Per proxy and point: QPS, p50/p99 (sysbench histogram),
#    proxy CPU µs per query (/proc/<pid>/stat), syscalls per query (all of
#    them, from `perf stat -e raw_syscalls:sys_enter -p <pid>`; without perf,
#    /proc/<pid>/io syscr + syscw, the read/write family only) and context
#    switches per query (perf's context-switches, else voluntary +
#    nonvoluntary of all threads from /proc).
# 2. 1,000 concurrent clients with think time (`scale --mode think`)
#    through each of the three.
# 3. 10,000 idle clients + 100 active (`scale --mode idle`) through
#    causeway (depth 1): memory per idle client (VmRSS), the active
#    clients' p99 alone and next to the idle ones. Not through Router: it
#    opens one server connection per client and the sandbox servers allow
#    1,000.
#
# Environment: SCALE_TIME (20 s per point), SCALE_DEPTH (16),
# SCALE_THREADS ("4 16 64 256"), SCALE_SKIP (ab|think|idle, space
# separated), CARGO_TARGET_DIR (binaries from `cargo build --release -p
# causeway -p causeway-bench --bins`; default target/). Output on stdout
# (markdown rows) and logs in /tmp/causeway-scale.*.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
TIME=${SCALE_TIME:-20}
DEPTH=${SCALE_DEPTH:-16}
THREADS=${SCALE_THREADS:-"4 16 64 256"}
SKIP=${SCALE_SKIP:-}
CHROOT=${CAUSEWAY_CHROOT:-/var/tmp/causeway/sid-root}
RDIR=/tmp/cws-router-$$
ulimit -n "$(ulimit -Hn)"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
bench_init causeway-scale
bench_on_exit() { rm -rf "${CHROOT:?}$RDIR"; }
start_topology "$BIN/topology"
PA=$FREE1; PB=$FREE2; PR=$FREE3

start_causeway() { # port depth name
    cat >"$WORK/$3.toml" <<CONF
[server]
listen = "127.0.0.1:$1"
max_connections = 20000
max_pending_logins = 4096
pipeline_depth = $2
[admin]
enabled = false
[[users]]
name = "app"
password = "apppw"
$(topology_toml)
[backend_tls]
mode = "disabled"
[routing]
consistency = "causal"
CONF
    CAUSEWAY_LOG=warn "$BIN/causeway" --config "$WORK/$3.toml" >"$WORK/$3.log" 2>&1 &
    PIDS+=($!)
    printf -v "PID_$3" '%s' "$!"
}
start_causeway "$PA" 1 A
start_causeway "$PB" "$DEPTH" B
mkdir -p "$CHROOT$RDIR"/{log,run,data}
cat >"$CHROOT$RDIR/router.conf" <<CONF
[DEFAULT]
logging_folder=$RDIR/log
runtime_folder=$RDIR/run
data_folder=$RDIR/data
max_total_connections=20000
[logger]
level=WARNING
[routing:ro]
bind_address=127.0.0.1
bind_port=$PR
destinations=127.0.0.1:$R1,127.0.0.1:$R2
routing_strategy=round-robin
protocol=classic
max_connections=5000
CONF
chroot "$CHROOT" /usr/bin/mysqlrouter -c "$RDIR/router.conf" --user=root >"$WORK/router.log" 2>&1 &
PIDS+=($!)
PID_R=$!
for p in "$PA" "$PB" "$PR"; do
    for _ in $(seq 100); do (exec 9<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && break; sleep 0.1; done
done

SB=(--mysql-host=127.0.0.1 --mysql-user=app --mysql-password=apppw --mysql-db=sbtest
    --mysql-ssl=off --tables=4 --table-size=10000)
mysql_do() { chroot "$CHROOT" mysql -h127.0.0.1 -P"$1" -uapp -papppw -N -e "$2" 2>/dev/null; }
# Router opens one server connection per client: room for 1,000 of them
for s in "$PRIMARY" "$R1" "$R2"; do mysql_do "$s" "SET GLOBAL max_connections = 4000"; done
mysql_do "$PRIMARY" "CREATE DATABASE IF NOT EXISTS sbtest"
sysbench oltp_point_select "${SB[@]}" --mysql-port="$PRIMARY" --threads=4 prepare >/dev/null
G=$(mysql_do "$PRIMARY" "SELECT @@GLOBAL.gtid_executed" | tr -d '\n')
for r in "$R1" "$R2"; do
    [[ $(mysql_do "$r" "SELECT WAIT_FOR_EXECUTED_GTID_SET('$G', 120)") == 0 ]] || { echo "replica $r behind" >&2; exit 1; }
done

HZ=$(getconf CLK_TCK)
# counters of a pid: cpu ticks, read/write-family syscalls (/proc io
# syscr + syscw: read(2)/write(2)/readv/writev, not recvfrom/sendto or
# epoll_wait), context switches of all its threads
counters() {
    local t s c
    t=$(awk '{print $14 + $15}' "/proc/$1/stat")
    s=$(awk '/^syscr|^syscw/ {n += $2} END {print n}' "/proc/$1/io")
    c=$(cat /proc/"$1"/task/*/status | awk '/ctxt_switches/ {n += $2} END {print n}')
    echo "$t $s $c"
}
# all syscalls and context switches of a pid's threads while "$@" runs,
# from perf's raw_syscalls tracepoint (when perf works here), else the /proc
# counters above; prints "syscalls switches" on fd 3
perf_while() { # pid cmd...
    local pid=$1 pf=$WORK/perf.out pp
    shift
    if command -v perf >/dev/null && perf stat -e raw_syscalls:sys_enter -x, -p "$pid" -- true >/dev/null 2>&1; then
        perf stat -e raw_syscalls:sys_enter,context-switches -x, -o "$pf" -p "$pid" &
        pp=$!
        "$@"
        kill -INT "$pp"; wait "$pp" || true
        awk -F, '/raw_syscalls/ {s = $1} /context-switches/ {c = $1} END {print s + 0, c + 0}' "$pf" >&3
    else
        "$@"
        echo "-1 -1" >&3
    fi
}
point() { # port pid threads -> one markdown row tail
    local before after out perfc
    read -r -a before < <(counters "$2")
    out=$(perf_while "$2" sysbench oltp_point_select "${SB[@]}" --mysql-port="$1" --threads="$3" --time="$TIME" \
        --db-ps-mode=disable --rand-type=uniform --histogram=on --percentile=99 --report-interval=0 run 2>&1 3>"$WORK/perfc")
    read -r -a perfc <"$WORK/perfc"
    read -r -a after < <(counters "$2")
    if [[ ${perfc[0]} -ge 0 ]]; then
        after[1]=$((before[1] + perfc[0]))
        after[2]=$((before[2] + perfc[1]))
    fi
    awk -v hz="$HZ" -v dt="$((after[0] - before[0]))" -v ds="$((after[1] - before[1]))" \
        -v dc="$((after[2] - before[2]))" '
        /queries:/ && !q {q = $2} /total time:/ {t = $3 + 0} /99th percentile:/ {p99 = $3}
        /^ *[0-9.]+ \|/ {lat = $1 + 0; n = $NF + 0; cum += n; hist[++h] = lat; cnt[h] = cum}
        END {
            for (i = 1; i <= h; i++) if (cnt[i] >= cum / 2) {p50 = hist[i]; break}
            printf "%d | %.0f | %.0f | %.1f | %.2f | %.2f", q / t, p50 * 1000, p99 * 1000, dt * 1e6 / hz / q, ds / q, dc / q
        }' <<<"$out"
}
# warm every path (logins, caches)
for p in "$PA" "$PB" "$PR"; do
    sysbench oltp_point_select "${SB[@]}" --mysql-port="$p" --threads=4 --time=3 --db-ps-mode=disable run >/dev/null
done

echo "load: $(cut -d' ' -f1-3 /proc/loadavg), $TIME s per point, depth $DEPTH"
if [[ " $SKIP " != *" ab "* ]]; then
    echo
    echo "| threads | proxy | QPS | p50 µs | p99 µs | CPU µs/query | syscalls/query | ctx switches/query |"
    echo "|---:|---|---:|---:|---:|---:|---:|---:|"
    for th in $THREADS; do
        echo "| $th | causeway depth 1 | $(point "$PA" "$PID_A" "$th") |"
        echo "| $th | causeway depth $DEPTH | $(point "$PB" "$PID_B" "$th") |"
        echo "| $th | Router | $(point "$PR" "$PID_R" "$th") |"
    done
fi
if [[ " $SKIP " != *" think "* ]]; then
    echo
    for x in "A $PA $PID_A causeway-depth-1" "B $PB $PID_B causeway-depth-$DEPTH" "R $PR $PID_R router"; do
        read -r _ port pid name <<<"$x"
        echo "think $name: $("$BIN/scale" --port "$port" --pid "$pid" --mode think --clients 1000 --think-ms 10 --secs "$TIME")"
    done
fi
if [[ " $SKIP " != *" idle "* ]]; then
    echo
    echo "idle causeway-depth-1: $("$BIN/scale" --port "$PA" --pid "$PID_A" --mode idle --idle 10000 --active 100 --secs "$TIME")"
fi
