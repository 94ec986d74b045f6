# Sourced by backends/redis/*.sh and backends/redis-cluster/*.sh: start a redis-server
# whose pid the script knows, and signal a pid only when it is that server.
#
# A server is "ours" when its process is alive, runs redis-server, listens on the port we
# gave it (its process title, "redis-server 127.0.0.1:PORT") and, where /proc exists,
# works in the directory we gave it (redis-server chdirs to --dir). A stale pid file whose
# pid now belongs to another process, or another redis-server on the same port, fails
# these checks and is never signalled.

# shellcheck source=../process.sh
source "$(dirname "${BASH_SOURCE[0]}")/../process.sh"

# redis_is_ours PID PORT DIR: PID is the redis-server on PORT working in DIR.
redis_is_ours() {
    owned "$1" "^([^ ]*/)?redis-server [^ ]*:$2( |$)" "$3"
}

# redis-cli on loopback, bounded: a port held by something that is not Redis never hangs.
rcli() {
    bounded 5 redis-cli -h 127.0.0.1 "$@" 2>/dev/null || true
}

# redis_launch PORT DIR ARGS...: run redis-server detached, not daemonized (so its pid is
# known at once, and whether it exited), with DIR/redis.pid and DIR/redis.log. Sets
# LAUNCHED_PID.
redis_launch() {
    local port="$1" dir="$2"
    shift 2
    rm -f "$dir/redis.pid"
    # stdout/stderr to the log: early errors (a bad config) land there, and a caller
    # reading this script's output through a pipe is not kept waiting by the server.
    detached redis-server "$@" --port "$port" --dir "$dir" --daemonize no \
        --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" \
        </dev/null >>"$dir/redis.log" 2>&1
    LAUNCHED_PID="$DETACHED_PID"
}

# redis_await_own PID PORT TIMEOUT_S: 0 once the server answering PING on PORT is PID
# (INFO server process_id), 1 if PID exited first, 2 on timeout. A server loading its
# AOF answers LOADING, which is waited for.
redis_await_own() {
    local pid="$1" port="$2" deadline=$((SECONDS + $3)) info
    while ((SECONDS < deadline)); do
        alive "$pid" || return 1
        if [[ "$(rcli -p "$port" ping)" == "PONG" ]]; then
            info="$(rcli -p "$port" info server | tr -d '\r')"
            [[ $'\n'"$info"$'\n' == *$'\n'"process_id:$pid"$'\n'* ]] && return 0
        fi
        sleep 0.05
    done
    return 2
}

# redis_stop PID PORT DIR: SIGTERM the server if it is ours (a clean shutdown: the AOF is
# flushed), SIGKILL it after 30 s. 0 when it is gone, 1 when PID was not ours (untouched).
redis_stop() {
    local pid="$1" port="$2" dir="$3"
    redis_is_ours "$pid" "$port" "$dir" || return 1
    kill -TERM "$pid" 2>/dev/null || true
    within 30 gone "$pid" && return 0
    echo "redis-server pid $pid (port $port) ignored SIGTERM for 30 s; sending SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
    within 5 gone "$pid" || true
    rm -f "$dir/redis.pid"
    return 0
}

# why_exited LOG OFFSET PORT: the reason a server that exited gave in this run's log lines.
why_exited() {
    local line
    line="$(tail -c "+$(($2 + 1))" "$1" 2>/dev/null | grep -m 1 'Address already in use' || true)"
    if [[ -n "$line" ]]; then
        echo "port $3: another process already listens on an address redis-server" \
            "needs, so nothing was started (${line#*\# })"
    else
        echo "redis-server exited before it served port $3"
    fi
}
