#!/usr/bin/env bash
# Stop the cluster that start.sh started in DIR and, with --delete, remove what start.sh
# wrote there (DIR itself once empty).
#
# Only the nodes listed in DIR/ports (recorded once they were running) are touched, each by
# its pid file, and a pid is signalled only if it is the redis-server start.sh started:
# alive, running redis-server on that port, in DIR/PORT. A foreign server on one of the
# ports, or a stale pid file, is left alone. Exits 1 if a node of ours did not stop.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=../redis/ownership.sh
source "$here/../redis/ownership.sh"

usage() {
    cat <<'EOF_USAGE'
usage: stop.sh [--dir DIR | DIR] [--delete]
  DIR       the directory given to (or printed by) start.sh (default: $STATEKIT_CLUSTER_DIR)
  --delete  then remove the nodes' files and DIR once it is empty
EOF_USAGE
}

dir="${STATEKIT_CLUSTER_DIR:-}"
delete=0
stop_args "$@"
[[ -n "$dir" ]] || usage_error "DIR is required"
[[ -f "$dir/ports" ]] || usage_error "$dir/ports not found: not a directory of start.sh"
dir="$(cd "$dir" && pwd -P)"

failed=0
while read -r port; do
    [[ "$port" =~ ^[0-9]+$ ]] || continue
    pid="$(read_pid "$dir/$port/redis.pid")"
    [[ -n "$pid" ]] || continue # the node already exited (it removes its pid file)
    if redis_stop "$pid" "$port" "$dir/$port"; then
        alive "$pid" && { echo "error: node pid $pid (port $port) did not exit" >&2; failed=1; }
    else
        echo "pid $pid of $dir/$port/redis.pid is not the node start.sh started on port $port;" \
            "left it alone" >&2
    fi
done <"$dir/ports"
((failed == 0)) || exit 1

if ((delete)); then
    # Node directories, including those of nodes that failed to start (not in DIR/ports).
    for node in "$dir"/*/; do
        node="${node%/}"
        if [[ "${node##*/}" =~ ^[0-9]+$ && -f "$node/redis.log" ]]; then
            rm -rf "${node:?}"
        fi
    done
    rm -f "$dir/ports" "$dir/create.log"
    rmdir "$dir" 2>/dev/null || echo "left $dir: it holds files start.sh did not write" >&2
fi
