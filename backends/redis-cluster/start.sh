#!/usr/bin/env bash
# Start a local 3-master Redis Cluster on loopback, without persistence (tests, development).
#
#   start.sh [DIR] [PORT1 PORT2 PORT3]
#
# DIR (or $STATEKIT_CLUSTER_DIR; default: a new temporary directory) holds one
# sub-directory per node (config, pid file, log). Ports come from the arguments, else
# $STATEKIT_CLUSTER_PORTS ("7000 7001 7002" by default). Prints the statekit URL of the
# cluster on stdout once every slot is served (cluster_state:ok); stop it with stop.sh DIR.
set -euo pipefail

DIR="${1:-${STATEKIT_CLUSTER_DIR:-}}"
[ -n "$DIR" ] || DIR="$(mktemp -d -t statekit-cluster.XXXXXX)"
shift || true
if [ "$#" -ge 3 ]; then
    PORTS=("$1" "$2" "$3")
else
    read -r -a PORTS <<<"${STATEKIT_CLUSTER_PORTS:-7000 7001 7002}"
fi
[ "${#PORTS[@]}" -eq 3 ] || { echo "need exactly 3 ports" >&2; exit 2; }

mkdir -p "$DIR"
: >"$DIR/ports"
for port in "${PORTS[@]}"; do
    mkdir -p "$DIR/$port"
    redis-server --port "$port" --bind 127.0.0.1 --protected-mode yes \
        --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 5000 \
        --dir "$DIR/$port" --save "" --appendonly no \
        --daemonize yes --pidfile "$DIR/$port/redis.pid" --logfile "$DIR/$port/redis.log"
    echo "$port" >>"$DIR/ports"
done

for port in "${PORTS[@]}"; do
    for _ in $(seq 1 100); do
        redis-cli -h 127.0.0.1 -p "$port" ping >/dev/null 2>&1 && break
        sleep 0.05
    done
done

redis-cli --cluster create "${PORTS[@]/#/127.0.0.1:}" --cluster-replicas 0 --cluster-yes \
    >"$DIR/create.log" 2>&1 || { cat "$DIR/create.log" >&2; exit 1; }

for port in "${PORTS[@]}"; do
    for attempt in $(seq 1 200); do
        redis-cli -h 127.0.0.1 -p "$port" cluster info 2>/dev/null | grep -q '^cluster_state:ok' && break
        [ "$attempt" -lt 200 ] || { echo "cluster not ok on port $port" >&2; exit 1; }
        sleep 0.05
    done
done

# cluster_state:ok on each node is not enough: a client that reads the slot map while the
# nodes still gossip gets MOVED replies. Wait until every node agrees on the slots.
for attempt in $(seq 1 200); do
    redis-cli --cluster check "127.0.0.1:${PORTS[0]}" 2>/dev/null \
        | grep -q 'All nodes agree about slots configuration' && break
    [ "$attempt" -lt 200 ] || { echo "cluster nodes do not agree on slots" >&2; exit 1; }
    sleep 0.05
done

nodes=""
for port in "${PORTS[@]}"; do nodes="${nodes:+$nodes,}127.0.0.1:$port"; done
echo "redis+cluster://$nodes"
