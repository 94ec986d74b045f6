#!/usr/bin/env bash
# Start a throwaway PostgreSQL for statekit without Docker, then run init.sql.
#
# Trust authentication, listening on 127.0.0.1 only. Prints the statekit URL on stdout only
# once the server of DIR answers on PORT as itself (its data_directory is DIR/data); any
# failure (the port already taken, DIR's server running on another port) exits non-zero
# with the reason and the log's last lines on stderr, and prints nothing to connect to.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=ownership.sh
source "$here/ownership.sh"

usage() {
    cat <<'EOF_USAGE'
usage: start.sh [--port PORT] [--dir DIR] [PORT [DIR]]
  PORT  loopback port (default: 55432)
  DIR   holds the data directory DIR/data and DIR/postgres.log (default: a new temporary
        directory, printed on stderr)
Stop it with stop.sh --dir DIR. Starting it again on the same DIR and PORT while it runs
prints its URL again.
EOF_USAGE
}

port=55432
dir=""
start_args 0 "$@"

pg_find_bin
[[ -n "$dir" ]] || dir="$(mktemp -d -t statekit-pg.XXXXXX)"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd -P)"
data="$dir/data"
log="$dir/postgres.log"

if [[ ! -f "$data/PG_VERSION" ]]; then
    pg_run "$dir" "$PG_BIN/initdb" -D "$data" -U postgres --auth=trust --encoding=UTF8 \
        --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 ||
        fail_with_log "$dir/initdb.log" 0 "initdb failed in $data"
fi

if running="$(postgres_running "$data")"; then
    [[ "${running#* }" == "$port" ]] ||
        fail_with_log /dev/null 0 "the server of $dir already runs on port ${running#* } (pid ${running%% *}); stop it first: $here/stop.sh --dir $dir"
    echo "already running (pid ${running%% *})" >&2
else
    offset="$(log_size "$log")"
    if ! pg_run "$dir" "$PG_BIN/pg_ctl" -D "$data" -l "$log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir" \
        start >/dev/null 2>&1; then
        reason="postgres did not start on port $port"
        if tail -c "+$((offset + 1))" "$log" 2>/dev/null | grep -q 'Address already in use'; then
            reason="port $port is already in use by another process; nothing was started"
        fi
        fail_with_log "$log" "$offset" "$reason"
    fi
    running="$(postgres_running "$data")" ||
        fail_with_log "$log" "$offset" "postgres started but $data/postmaster.pid names no live server"
fi

# The server on 127.0.0.1:PORT must be this one, not one that had the port already.
served="$("$PG_BIN/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -XAtq \
    -c 'SHOW data_directory' 2>/dev/null || true)"
[[ "$served" == "$data" ]] ||
    fail_with_log /dev/null 0 "127.0.0.1:$port is not served by the server of $data (data_directory: '${served:-no answer}')"

PGOPTIONS="-c client_min_messages=warning" \
    "$PG_BIN/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -Xq -v ON_ERROR_STOP=1 \
    -f "$here/init.sql" >/dev/null

echo "postgresql+asyncpg://postgres@127.0.0.1:$port/statekit"
echo "postgres pid ${running%% *} on port $port (data: $data); stop: $here/stop.sh --dir $dir" >&2
