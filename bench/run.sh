#!/usr/bin/env bash
# bench/run.sh — one command for causeway's benchmarks (run as root, from anywhere).
#
# Builds causeway and the bench binaries (--release), starts a sandbox MySQL
# topology (primary + 2 GTID replicas), causeway and MySQL Router (static
# routing, from the Debian sid chroot), then runs the sysbench matrix and the
# token workload. Results: bench/results/<UTC stamp>-{sysbench,tokens}.{md,json}.
#
# Environment:
#   BENCH_QUICK=1      ~2-minute sysbench subset (and a smaller token run)
#   BENCH_TIME=N       seconds per sysbench run (default 10; quick: 5)
#   BENCH_SKIP=sysbench|tokens   skip one part
#   BENCH_NOTE=text    free text stored with the results
#   CARGO_TARGET_DIR   default /tmp/target-bench
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/tmp/target-bench}
CHROOT=${CAUSEWAY_CHROOT:-/var/tmp/causeway/sid-root}
QUICK=${BENCH_QUICK:-0}
SKIP=${BENCH_SKIP:-}
NOTE=${BENCH_NOTE:-}
if [[ $QUICK == 1 ]]; then TIME=${BENCH_TIME:-5}; else TIME=${BENCH_TIME:-10}; fi
RDIR=/tmp/cwb-router-$$          # inside the chroot
mkdir -p bench/results

command -v sysbench >/dev/null || apt-get install -y sysbench
[[ -x $CHROOT/usr/bin/mysqlrouter ]] || { echo "no $CHROOT/usr/bin/mysqlrouter (run integration/provide-mysql.sh and apt-get install mysql-router in the chroot)" >&2; exit 1; }

echo "== building (release)" >&2
cargo build --release -p causeway -p causeway-bench --bins >&2
BIN=$CARGO_TARGET_DIR/release

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
bench_init causeway-bench
bench_on_exit() { rm -rf "$CHROOT$RDIR"; }

echo "== starting the topology" >&2
start_topology "$BIN/topology"
CW=$FREE1
RRO=$FREE2
RRW=$FREE3
echo "primary $PRIMARY replicas $R1 $R2; causeway $CW; router ro $RRO rw $RRW" >&2

cat >"$WORK/causeway.toml" <<CONF
[server]
listen = "127.0.0.1:$CW"
[admin]
enabled = false
[[users]]
name = "app"
password = "apppw"
$(topology_toml)
# like Router's server_ssl_mode = AS_CLIENT with sysbench's --mysql-ssl=off:
# both proxies talk plain TCP to MySQL here (backend TLS: bench/README.md)
[backend_tls]
mode = "disabled"
[routing]
consistency = "causal"
CONF
"$BIN/causeway" check-config "$WORK/causeway.toml" >&2
CAUSEWAY_LOG=${CAUSEWAY_LOG:-warn} "$BIN/causeway" --config "$WORK/causeway.toml" >"$WORK/causeway.log" 2>&1 &
CW_PID=$!
PIDS+=($CW_PID)

mkdir -p "$CHROOT$RDIR"/{log,run,data}
cat >"$CHROOT$RDIR/router.conf" <<CONF
[DEFAULT]
logging_folder=$RDIR/log
runtime_folder=$RDIR/run
data_folder=$RDIR/data
[logger]
level=WARNING
[routing:rw]
bind_address=127.0.0.1
bind_port=$RRW
destinations=127.0.0.1:$PRIMARY
routing_strategy=first-available
protocol=classic
[routing:ro]
bind_address=127.0.0.1
bind_port=$RRO
destinations=127.0.0.1:$R1,127.0.0.1:$R2
routing_strategy=round-robin
protocol=classic
CONF
chroot "$CHROOT" /usr/bin/mysqlrouter -c "$RDIR/router.conf" --user=root >"$WORK/router.log" 2>&1 &
ROUTER_PID=$!
PIDS+=($ROUTER_PID)

wait_port() {
    for _ in $(seq 100); do (exec 9<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
    echo "nothing listens on $1 ($2)" >&2; cat "$WORK/causeway.log" "$WORK/router.log" >&2; exit 1
}
wait_port "$CW" causeway; wait_port "$RRO" "router ro"; wait_port "$RRW" "router rw"
echo "causeway pid $CW_PID, router pid $ROUTER_PID" >&2

COMMON=(--primary "$PRIMARY" --replicas "$R1,$R2" --causeway "$CW" --out bench/results --note "$NOTE")
if [[ $SKIP != sysbench ]]; then
    echo "== sysbench matrix" >&2
    Q=(); [[ $QUICK == 1 ]] && Q=(--quick)
    "$BIN/matrix" "${COMMON[@]}" "${Q[@]}" --time "$TIME" --causeway-pid "$CW_PID" \
        --router-ro "$RRO" --router-rw "$RRW" --router-pid "$ROUTER_PID"
fi
if [[ $SKIP != tokens ]]; then
    echo "== token workload" >&2
    T=(); [[ $QUICK == 1 ]] && T=(--iters 1000)
    "$BIN/tokens" "${COMMON[@]}" "${T[@]}"
fi
kill -0 "$CW_PID" || { echo "causeway died; log: $WORK/causeway.log" >&2; exit 1; }
echo "== done; results in bench/results/" >&2
