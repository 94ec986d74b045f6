#!/usr/bin/env bash
# Start a throwaway PostgreSQL for statekit without Docker, then run init.sql.
#
#   backends/postgres/start.sh [PORT] [DIR]     (defaults: 55432, a new temp dir)
#
# Trust authentication, listening on 127.0.0.1 only. Prints the statekit URL; stop it with
#   pg_ctl -D DIR/data stop     (the exact command is printed too)
set -euo pipefail

port="${1:-55432}"
dir="${2:-$(mktemp -d -t statekit-pg.XXXXXX)}"
here="$(cd "$(dirname "$0")" && pwd)"

bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
if [[ -z "$bin" || ! -x "$bin/initdb" ]]; then
    bin="$(dirname "$(command -v initdb || true)")"
fi
[[ -x "$bin/initdb" ]] || { echo "initdb not found (install PostgreSQL)" >&2; exit 1; }

run() {
    # initdb and postgres refuse to run as root: use the postgres user when we are root.
    if [[ "$(id -u)" == 0 ]]; then
        chown -R postgres "$dir"
        su postgres -s /bin/bash -c "$(printf '%q ' "$@")"
    else
        "$@"
    fi
}

mkdir -p "$dir"
if [[ ! -f "$dir/data/PG_VERSION" ]]; then
    run "$bin/initdb" -D "$dir/data" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >"$dir/initdb.log"
fi
if ! run "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
    run "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w \
        -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir" start >/dev/null
fi
run "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -q -v ON_ERROR_STOP=1 \
    -f "$here/init.sql" >/dev/null

echo "postgresql+asyncpg://postgres@127.0.0.1:$port/statekit"
echo "stop: $bin/pg_ctl -D $dir/data stop" >&2
