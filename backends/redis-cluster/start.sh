#!/usr/bin/env bash
# Start a local Redis Cluster of 3 (or more) masters on loopback, without persistence
# (tests, development).
#
# Each node runs in DIR/PORT (nodes.conf, redis.pid, redis.log). A port is recorded in
# DIR/ports only once the node this script started answers on it as itself, so stop.sh
# never touches a server it did not start. If any node fails (a port or its bus port,
# PORT + 10000, already taken, say), the nodes already started are stopped, the reason and
# the log's last lines go to stderr, the exit status is 1, and nothing is printed on stdout.
# On success the cluster's statekit URL is printed once every slot is served and all nodes
# agree on the slot map.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=../redis/ownership.sh
source "$here/../redis/ownership.sh"

usage() {
    cat <<'EOF'
usage: start.sh [--dir DIR] [PORT PORT PORT...]
       start.sh DIR [PORT PORT PORT...]
  DIR   holds one sub-directory per node (default: $STATEKIT_CLUSTER_DIR, else a new
        temporary directory); a first argument that is not a number is DIR
  PORT  at least 3 loopback ports, each with PORT + 10000 free for the cluster bus
        (default: $STATEKIT_CLUSTER_PORTS, else 7000 7001 7002)
Stop it with stop.sh --dir DIR [--delete].
EOF
}

dir="${STATEKIT_CLUSTER_DIR:-}"
ports=()
while (($#)); do
    case "$1" in
    -h | --help) usage; exit 0 ;;
    --dir) (($# >= 2)) || usage_error "--dir needs a value"; dir="$2"; dir_given=1; shift 2 ;;
    -*) usage_error "unknown option '$1'" ;;
    *)
        if [[ "$1" =~ ^[0-9]+$ ]]; then
            ports+=("$1")
        elif ((${#ports[@]} == 0)) && [[ "${dir_given:-}" != 1 ]]; then
            dir="$1"
        else
            usage_error "'$1' is not a port number"
        fi
        dir_given=1
        shift
        ;;
    esac
done
((${#ports[@]})) || read -r -a ports <<<"${STATEKIT_CLUSTER_PORTS:-7000 7001 7002}"
for port in "${ports[@]}"; do
    # PORT + 10000 is its cluster bus port, which must be a port too.
    port_number "$port" 55535 ||
        usage_error "port '$port' is not a port number from 1 to 55535"
done
((${#ports[@]} >= 3)) || usage_error "need at least 3 ports, got ${#ports[@]}: ${ports[*]}"
[[ "$(printf '%s\n' "${ports[@]}" | sort | uniq -d)" == "" ]] || usage_error "ports repeat: ${ports[*]}"

[[ -n "$dir" ]] || dir="$(mktemp -d -t statekit-cluster.XXXXXX)"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd -P)"
if [[ -s "$dir/ports" ]]; then
    while read -r port; do
        pid="$(read_pid "$dir/$port/redis.pid")"
        if [[ -n "$pid" ]] && redis_is_ours "$pid" "$port" "$dir/$port"; then
            fail_with_log /dev/null 0 "a cluster of $dir still runs (port $port, pid $pid); stop it first: $here/stop.sh --dir $dir"
        fi
    done <"$dir/ports"
fi
: >"$dir/ports"

started=()
# Stop the nodes this run started, then report MESSAGE with LOG's lines past OFFSET.
abort() {
    for entry in ${started[@]+"${started[@]}"}; do
        redis_stop "${entry#*:}" "${entry%%:*}" "$dir/${entry%%:*}" || true
    done
    : >"$dir/ports"
    fail_with_log "$1" "$2" "$3"
}

for port in "${ports[@]}"; do
    node="$dir/$port"
    mkdir -p "$node"
    rm -f "$node/nodes.conf" # a fresh cluster: no slots or peers from an earlier run
    offset="$(log_size "$node/redis.log")"
    redis_launch "$port" "$node" --bind 127.0.0.1 --protected-mode yes \
        --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 5000 \
        --save "" --appendonly no
    pid="$LAUNCHED_PID"
    status=0
    redis_await_own "$pid" "$port" 30 || status=$?
    if ((status == 1)); then
        abort "$node/redis.log" "$offset" "$(why_exited "$node/redis.log" "$offset" "$port")"
    elif ((status != 0)); then
        started+=("$port:$pid")
        abort "$node/redis.log" "$offset" "the node on port $port (pid $pid) did not answer in time"
    fi
    started+=("$port:$pid")
    echo "$port" >>"$dir/ports"
done

if ! bounded 60 redis-cli --cluster create "${ports[@]/#/127.0.0.1:}" --cluster-replicas 0 \
    --cluster-yes >"$dir/create.log" 2>&1; then
    abort "$dir/create.log" 0 "redis-cli --cluster create failed"
fi

node_ok() {
    [[ "$(rcli -p "$1" cluster info)" == *cluster_state:ok* ]]
}
slots_agree() {
    local check
    check="$(bounded 10 redis-cli --cluster check "127.0.0.1:$1" 2>/dev/null || true)"
    [[ "$check" == *"All nodes agree about slots configuration"* ]]
}

for port in "${ports[@]}"; do
    within 15 node_ok "$port" || abort /dev/null 0 "cluster not ok on port $port"
done
# cluster_state:ok on each node is not enough: a client that reads the slot map while the
# nodes still gossip gets MOVED replies. Wait until every node agrees on the slots.
within 30 slots_agree "${ports[0]}" || abort /dev/null 0 "cluster nodes do not agree on slots"

nodes=""
for port in "${ports[@]}"; do nodes="${nodes:+$nodes,}127.0.0.1:$port"; done
echo "redis+cluster://$nodes"
echo "started ${#ports[@]} nodes in $dir; stop: $here/stop.sh --dir $dir --delete" >&2
