# bench/lib.sh: sourced by the bench scripts (run.sh, ab.sh, cache.sh, modes.sh).
# Owns their work directory, the background processes they start (stopped
# on exit, last started first) and the throwaway MySQL topology they run on.

# bench_init PREFIX: a fresh $WORK under /tmp, an empty $PIDS, cleanup on exit.
bench_init() {
    WORK=$(mktemp -d "/tmp/$1.XXXXXX")
    PIDS=()
    trap bench_cleanup EXIT
}

# A script may define bench_on_exit: it runs after the processes stopped.
bench_cleanup() {
    set +e
    exec 3>&- 2>/dev/null
    for ((i=${#PIDS[@]}-1; i>=0; i--)); do kill "${PIDS[i]}" 2>/dev/null; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
    declare -F bench_on_exit >/dev/null && bench_on_exit
    echo "logs kept in $WORK" >&2
}

# start_topology BIN: runs the `topology` bin of causeway-bench (it lives
# while fd 3 stays open) and sets PRIMARY, R1, R2 (ports) and FREE1, FREE2,
# FREE3 (three free ports).
start_topology() {
    mkfifo "$WORK/topo.in"
    "$1" <"$WORK/topo.in" >"$WORK/topology.json" 2>"$WORK/topology.err" &
    PIDS+=($!)
    exec 3>"$WORK/topo.in"
    local pid=$!
    for _ in $(seq 600); do
        [[ -s $WORK/topology.json ]] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    [[ -s $WORK/topology.json ]] || { cat "$WORK/topology.err" >&2; echo "topology failed" >&2; exit 1; }
    read -r PRIMARY R1 R2 FREE1 FREE2 FREE3 < <(python3 -c '
import json,sys; t=json.load(open(sys.argv[1]))
print(t["primary"], *t["replicas"][:2], *t["free_ports"][:3])' "$WORK/topology.json")
}

# topology_toml: the [primary], [[replicas]] (weights 1:1) and [monitor]
# sections of a causeway config for the topology start_topology started.
topology_toml() {
    cat <<CONF
[primary]
name = "primary"
address = "127.0.0.1:$PRIMARY"
[[replicas]]
name = "r1"
address = "127.0.0.1:$R1"
weight = 1
[[replicas]]
name = "r2"
address = "127.0.0.1:$R2"
weight = 1
[monitor]
user = "monitor"
password = "monitorpw"
CONF
}
