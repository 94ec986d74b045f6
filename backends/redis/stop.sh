#!/usr/bin/env bash
# Stop the redis-server that start.sh started in DIR, by its pid file.
#
# The pid is signalled (SIGTERM: a clean shutdown, the AOF flushed) only if that process is
# the redis-server start.sh started: alive, running redis-server on the port recorded in
# DIR/redis.port, in DIR. Anything else (a stale pid file, another server on that port) is
# left alone. Exits 0 when no server of DIR runs any more, 1 when it could not be stopped.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=ownership.sh
source "$here/ownership.sh"

usage() {
    cat <<'EOF_USAGE'
usage: stop.sh [--dir DIR | DIR]
  DIR  the data directory given to start.sh (default: $STATEKIT_REDIS_DIR, else ./redis-data)
EOF_USAGE
}

dir="${STATEKIT_REDIS_DIR:-./redis-data}"
stop_args "$@"
[[ -d "$dir" ]] || usage_error "no directory $dir"
dir="$(cd "$dir" && pwd -P)"

pid="$(read_pid "$dir/redis.pid")"
port="$(cat "$dir/redis.port" 2>/dev/null || true)"
if [[ -z "$pid" || -z "$port" ]]; then
    echo "no redis-server of $dir is running (no pid file)" >&2
    exit 0
fi
if ! redis_stop "$pid" "$port" "$dir"; then
    echo "pid $pid of $dir/redis.pid is not the redis-server start.sh started on port $port;" \
        "left it alone (stale pid file removed)" >&2
    rm -f "$dir/redis.pid"
    exit 0
fi
if alive "$pid"; then
    echo "error: redis-server pid $pid did not exit" >&2
    exit 1
fi
echo "stopped redis-server pid $pid (port $port)" >&2
