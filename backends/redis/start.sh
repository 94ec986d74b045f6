#!/usr/bin/env bash
# Run redis-server with backends/redis/redis.conf (AOF on) without Docker.
#
#   start.sh [PORT] [DIR] [extra redis-server arguments...]
#
# PORT defaults to $STATEKIT_REDIS_PORT or 6380, DIR (data: the AOF lives here) to
# $STATEKIT_REDIS_DIR or ./redis-data. Runs daemonized with DIR/redis.pid and
# DIR/redis.log, and returns once the server answers PING.
set -euo pipefail

CONF="$(cd "$(dirname "$0")" && pwd)/redis.conf"
PORT="${1:-${STATEKIT_REDIS_PORT:-6380}}"
DIR="${2:-${STATEKIT_REDIS_DIR:-./redis-data}}"
shift $(( $# < 2 ? $# : 2 ))

mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
redis-server "$CONF" --port "$PORT" --dir "$DIR" \
    --daemonize yes --pidfile "$DIR/redis.pid" --logfile "$DIR/redis.log" "$@"

for _ in $(seq 1 200); do
    # A server replaying a large AOF answers LOADING until it is done.
    if [ "$(redis-cli -h 127.0.0.1 -p "$PORT" ping 2>/dev/null)" = "PONG" ]; then
        echo "redis://127.0.0.1:$PORT/0"
        exit 0
    fi
    sleep 0.05
done
echo "redis-server did not answer on port $PORT; see $DIR/redis.log" >&2
exit 1
