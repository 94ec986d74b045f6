# Sourced by backends/postgres/*.sh: find the PostgreSQL binaries, run them as the right
# user, and recognise the postmaster of a data directory.
#
# The postmaster of DATA is "ours" when the pid on the first line of DATA/postmaster.pid is
# alive, runs postgres, and (where /proc exists) works in DATA (the postmaster chdirs to
# its data directory). A stale pid file whose pid now belongs to another process fails
# these checks and is never signalled.

# shellcheck source=../process.sh
source "$(dirname "${BASH_SOURCE[0]}")/../process.sh"

# Sets PG_BIN to the newest PostgreSQL bin directory (Debian layout, else $PATH).
pg_find_bin() {
    PG_BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
    if [[ -z "$PG_BIN" || ! -x "$PG_BIN/initdb" ]]; then
        PG_BIN="$(dirname "$(command -v initdb || echo /nonexistent/initdb)")"
    fi
    [[ -x "$PG_BIN/initdb" ]] || { echo "error: initdb not found (install PostgreSQL)" >&2; exit 1; }
}

# pg_run DIR CMD...: run CMD; as the postgres user when we are root (initdb and postgres
# refuse to run as root), which must then own DIR.
pg_run() {
    local dir="$1"
    shift
    if [[ "$(id -u)" == 0 ]]; then
        chown -R postgres "$dir"
        su postgres -s /bin/bash -c "cd / && $(printf '%q ' "$@")"
    else
        "$@"
    fi
}

# postgres_running DATA: prints "PID PORT" of DATA's postmaster if it runs and is ours.
postgres_running() {
    local data="$1" pid="" port=""
    [[ -f "$data/postmaster.pid" ]] || return 1
    { read -r pid; read -r _; read -r _; read -r port; } <"$data/postmaster.pid" || true
    [[ "$port" =~ ^[0-9]+$ ]] && owned "$pid" postgres "$data" || return 1
    echo "$pid $port"
}
