#!/usr/bin/env bash
# bench/flavors.sh — sysbench oltp_point_select through causeway on MySQL and
# on MariaDB, the same causeway binary in front of each `causeway sandbox
# --flavor X` (primary + 2 GTID replicas). Prints QPS and causeway's CPU
# time per query (utime+stime of the causeway process, /proc, which does
# not include the mysqld children), and QPS directly on one replica.
#
#   BIN=target/release/causeway bench/flavors.sh      (default: target/debug/causeway)
#   TIME=10 THREADS=4 FLAVORS="mysql mariadb"
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/debug/causeway}
TIME=${TIME:-10}
THREADS=${THREADS:-4}
FLAVORS=${FLAVORS:-"mysql mariadb"}
TCK=$(getconf CLK_TCK)
command -v sysbench >/dev/null || apt-get install -y sysbench
for flavor in $FLAVORS; do
  out=$(mktemp); err=$(mktemp)
  "$BIN" sandbox --flavor "$flavor" --no-tls --listen 127.0.0.1:0 --admin-listen off >"$out" 2>"$err" &
  pid=$!
  for _ in $(seq 600); do grep -q "^Press Ctrl-C" "$out" && break; sleep 0.2; done
  port=$(grep -oE 'DSN: +mysql://app:apppw@127\.0\.0\.1:[0-9]+' "$out" | grep -oE '[0-9]+$')
  sb=(sysbench oltp_point_select --db-driver=mysql --mysql-host=127.0.0.1 --mysql-user=app
      --mysql-password=apppw --mysql-db=sbtest --tables=1 --table-size=10000 --mysql-ssl=off)
  # the printed client command line (through causeway) creates the schema
  cli=$(grep -A1 '^Connect through causeway:' "$out" | tail -1)
  eval "$cli --batch -e 'CREATE DATABASE IF NOT EXISTS sbtest'"
  "${sb[@]}" --mysql-port="$port" --db-ps-mode=disable prepare >/dev/null 2>&1 || {
    echo "$flavor: prepare failed (create schema sbtest first?)" >&2; }
  sleep 2
  t0=$(awk '{print $14+$15}' /proc/$pid/stat)
  res=$("${sb[@]}" --mysql-port="$port" --threads="$THREADS" --time="$TIME" run)
  t1=$(awk '{print $14+$15}' /proc/$pid/stat)
  q=$(echo "$res" | awk '/queries:/{print $2; exit}')
  qps=$(echo "$res" | awk -F'[()]' '/queries:/{print $2; exit}' | awk '{print $1}')
  cpu_us=$(awk -v a="$t0" -v b="$t1" -v q="$q" -v t="$TCK" 'BEGIN{printf "%.1f", (b-a)/t*1e6/q}')
  r1=$(grep -E '^\s+r1\s+127\.0\.0\.1:' "$out" | grep -oE ':[0-9]+' | head -1 | tr -d :)
  direct=$("${sb[@]}" --mysql-port="$r1" --threads="$THREADS" --time="$TIME" run |
    awk -F'[()]' '/queries:/{print $2; exit}' | awk '{print $1}')
  echo "$flavor: $direct QPS directly on replica r1"
  echo "$flavor: $qps QPS through causeway, $cpu_us us causeway CPU per query ($q queries, $THREADS threads, ${TIME}s, $BIN)"
  kill -INT "$pid"; wait "$pid" || true
  rm -f "$out" "$err"
done
