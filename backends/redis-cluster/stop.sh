#!/usr/bin/env bash
# Stop the cluster that start.sh started in DIR (or $STATEKIT_CLUSTER_DIR) and, with
# --delete, remove DIR. Only the nodes listed in DIR/ports are touched.
set -euo pipefail

DIR="${1:-${STATEKIT_CLUSTER_DIR:-}}"
[ -n "$DIR" ] && [ -f "$DIR/ports" ] || { echo "usage: stop.sh DIR [--delete]" >&2; exit 2; }

while read -r port; do
    redis-cli -h 127.0.0.1 -p "$port" shutdown nosave >/dev/null 2>&1 || true
    pidfile="$DIR/$port/redis.pid"
    if [ -f "$pidfile" ]; then
        pid="$(cat "$pidfile")"
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
        kill -9 "$pid" 2>/dev/null || true
    fi
done <"$DIR/ports"

if [ "${2:-}" = "--delete" ]; then
    rm -rf "$DIR"
fi
