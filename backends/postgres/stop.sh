#!/usr/bin/env bash
# Stop the PostgreSQL that start.sh started in DIR (pg_ctl stop -m fast).
#
# Only if DIR/data/postmaster.pid names a live postgres working in DIR/data; a stale pid
# file is left alone. Exits 0 when DIR's server no longer runs, 1 if it did not stop.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=ownership.sh
source "$here/ownership.sh"

usage() {
    echo "usage: stop.sh [--dir DIR | DIR]   (DIR: the directory start.sh printed)"
}

dir=""
stop_args "$@"
[[ -n "$dir" && -d "$dir/data" ]] || usage_error "no data directory ${dir:-DIR}/data"
dir="$(cd "$dir" && pwd -P)"

if ! running="$(postgres_running "$dir/data")"; then
    echo "no postgres of $dir is running" >&2
    exit 0
fi
pg_find_bin
pg_run "$dir" "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null 2>&1 || true
pid="${running%% *}"
if ! within 5 gone "$pid"; then
    echo "error: postgres pid $pid did not exit" >&2
    exit 1
fi
echo "stopped postgres pid $pid (port ${running#* })" >&2
