#!/usr/bin/env bash
# Run redis-server with backends/redis/redis.conf (AOF on) without Docker.
#
# Prints the server's URL on stdout only once the server this script started answers PING
# as itself (INFO process_id is the pid it started) with the AOF on. Any failure (the port
# already taken by another server, a bad argument, a config error) exits non-zero with the
# reason and the log's last lines on stderr, and prints nothing to connect to.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=ownership.sh
source "$here/ownership.sh"

usage() {
    cat <<'EOF'
usage: start.sh [--port PORT] [--dir DIR] [PORT [DIR]] [-- REDIS-SERVER-ARGS...]
  PORT  loopback port (default: $STATEKIT_REDIS_PORT, else 6380)
  DIR   data directory: the AOF, redis.pid, redis.port, redis.log
        (default: $STATEKIT_REDIS_DIR, else ./redis-data)
Runs in the background; stop it with stop.sh --dir DIR. Starting it again on the same
DIR and PORT while it runs prints its URL again. It waits up to
$STATEKIT_REDIS_START_TIMEOUT seconds (default 60) for the server to load its AOF.
EOF
}

port="${STATEKIT_REDIS_PORT:-6380}"
dir="${STATEKIT_REDIS_DIR:-./redis-data}"
extra=()
start_args 1 "$@"

# The AOF setting this server must end up with: redis.conf's, unless overridden.
appendonly=yes
for ((i = 0; i < ${#extra[@]}; i++)); do
    [[ "${extra[i]}" == "--appendonly" ]] && ((i + 1 < ${#extra[@]})) && appendonly="${extra[i + 1]}"
done

mkdir -p "$dir"
dir="$(cd "$dir" && pwd -P)"
log="$dir/redis.log"
url="redis://127.0.0.1:$port/0"

running="$(read_pid "$dir/redis.pid")"
recorded_port="$(cat "$dir/redis.port" 2>/dev/null || true)"
if [[ -n "$running" && -n "$recorded_port" ]] && redis_is_ours "$running" "$recorded_port" "$dir"; then
    [[ "$recorded_port" == "$port" ]] ||
        fail_with_log /dev/null 0 "the server of $dir already runs on port $recorded_port (pid $running); stop it first: $here/stop.sh --dir $dir"
    redis_await_own "$running" "$port" 10 ||
        fail_with_log "$log" 0 "the server of $dir (pid $running) runs but does not answer on port $port"
    echo "already running (pid $running)" >&2
    echo "$url"
    exit 0
fi

offset="$(log_size "$log")"
echo "$port" >"$dir/redis.port"
redis_launch "$port" "$dir" "$here/redis.conf" ${extra[@]+"${extra[@]}"}
pid="$LAUNCHED_PID"

status=0
redis_await_own "$pid" "$port" "${STATEKIT_REDIS_START_TIMEOUT:-60}" || status=$?
if ((status == 1)); then
    fail_with_log "$log" "$offset" "$(why_exited "$log" "$offset" "$port")"
elif ((status != 0)); then
    redis_stop "$pid" "$port" "$dir" || true
    fail_with_log "$log" "$offset" "redis-server (pid $pid) did not answer on port $port in time; stopped it"
fi

actual="$(rcli -p "$port" config get appendonly | sed -n 2p)"
if [[ "$actual" != "$appendonly" ]]; then
    redis_stop "$pid" "$port" "$dir" || true
    fail_with_log "$log" "$offset" "redis-server on port $port has appendonly '$actual', not '$appendonly'; stopped it"
fi

echo "$url"
echo "started redis-server pid $pid on port $port (data: $dir); stop: $here/stop.sh --dir $dir" >&2
