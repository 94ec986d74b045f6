# Sourced by the scripts under backends/: process checks and failure reports they share.

# The command line of process $1, spaces for NULs ("" when there is no such process).
process_args() {
    if [[ -r "/proc/$1/cmdline" ]]; then
        tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null || true
    else
        ps -ww -p "$1" -o args= 2>/dev/null || true
    fi
}

# alive PID: the process exists and is not a zombie (an exited server whose parent, init
# here, has not reaped it yet still answers kill -0).
alive() {
    local state
    kill -0 "$1" 2>/dev/null || return 1
    state="$(ps -o stat= -p "$1" 2>/dev/null || true)"
    [[ -n "$state" && "$state" != Z* ]]
}

# The pid in pid file $1 ("" when there is none or it is not a number).
read_pid() {
    local pid=""
    [[ -f "$1" ]] && read -r pid <"$1" 2>/dev/null || true
    [[ "$pid" =~ ^[1-9][0-9]*$ ]] && echo "$pid" || true
}

# bounded SECONDS CMD...: CMD, killed after SECONDS where coreutils' timeout exists.
bounded() {
    local seconds="$1"
    shift
    if command -v timeout >/dev/null; then timeout "$seconds" "$@"; else "$@"; fi
}

# detached CMD...: CMD in the background in a session of its own where setsid exists (so
# no terminal signal of the caller reaches it), else immune to hangups; sets DETACHED_PID.
detached() {
    if command -v setsid >/dev/null; then setsid "$@" & else nohup "$@" & fi
    DETACHED_PID=$!
}

# log_size LOG: its size in bytes (0 when it does not exist yet).
log_size() {
    if [[ -f "$1" ]]; then wc -c <"$1" | tr -d ' '; else echo 0; fi
}

# fail_with_log LOG OFFSET MESSAGE: MESSAGE and the last lines the log gained past byte
# OFFSET (this run's, not an earlier one's) on stderr, then exit 1.
fail_with_log() {
    {
        echo "error: $3"
        if [[ -s "$1" ]]; then
            echo "--- last lines of $1:"
            tail -c "+$(($2 + 1))" "$1" | tail -n 15
        fi
    } >&2
    exit 1
}
