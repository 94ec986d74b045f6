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
positional=()
while (($#)); do
    case "$1" in
    -h | --help) usage; exit 0 ;;
    --dir) (($# >= 2)) || { echo "stop.sh: error: --dir needs a value" >&2; usage >&2; exit 2; }
        dir="$2"; shift 2 ;;
    -*) echo "stop.sh: error: unknown option '$1'" >&2; usage >&2; exit 2 ;;
    *) positional+=("$1"); shift ;;
    esac
done
((${#positional[@]} <= 1)) || { echo "stop.sh: error: too many arguments" >&2; usage >&2; exit 2; }
((${#positional[@]} == 1)) && dir="${positional[0]}"
[[ -n "$dir" && -d "$dir/data" ]] || { echo "stop.sh: error: no data directory ${dir:-DIR}/data" >&2; usage >&2; exit 2; }
dir="$(cd "$dir" && pwd -P)"

if ! running="$(postgres_running "$dir/data")"; then
    echo "no postgres of $dir is running" >&2
    exit 0
fi
pg_find_bin
pg_run "$dir" "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null 2>&1 || true
pid="${running%% *}"
for _ in $(seq 1 100); do
    alive "$pid" || { echo "stopped postgres pid $pid (port ${running#* })" >&2; exit 0; }
    sleep 0.05
done
echo "error: postgres pid $pid did not exit" >&2
exit 1
