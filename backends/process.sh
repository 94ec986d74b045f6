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

# owned PID REGEX DIR: PID is alive, its command line matches REGEX and, where /proc exists,
# it works in DIR (a server chdirs to its data directory). A stale pid file whose pid now
# belongs to another process fails these checks.
owned() {
    local pid="$1" title="$2" dir="$3" args cwd
    [[ "$pid" =~ ^[1-9][0-9]*$ ]] || return 1
    alive "$pid" || return 1
    args="$(process_args "$pid")"
    [[ "$args" =~ $title ]] || return 1
    if [[ -d "/proc/$pid" ]]; then
        cwd="$(readlink "/proc/$pid/cwd" 2>/dev/null || true)"
        [[ "$cwd" == "$(cd "$dir" && pwd -P)" ]] || return 1
    fi
    return 0
}

# gone PID: the process has exited.
gone() {
    ! alive "$1"
}

# within SECONDS CMD...: 0 as soon as CMD succeeds (tried every 0.05 s), 1 when it has not
# within SECONDS.
within() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.05
    done
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

# usage_error MESSAGE: MESSAGE and the calling script's usage on stderr, then exit 2.
usage_error() {
    echo "${0##*/}: error: $1" >&2
    usage >&2
    exit 2
}

# port_number PORT [MAX]: PORT is a port number from 1 to MAX (default 65535).
port_number() {
    [[ "$1" =~ ^[1-9][0-9]{0,4}$ ]] && (($1 <= ${2:-65535}))
}

# start_args ALLOW_EXTRA ARGS...: a start script's [--port PORT] [--dir DIR] [PORT [DIR]]
# [-- EXTRA...] into port, dir and extra (the caller's defaults kept for what is not
# given); "--" and what follows it only when ALLOW_EXTRA is 1. A second PORT-like
# positional is refused: `start.sh 6380 6381` is a second port, not a directory named 6381.
start_args() {
    local allow_extra="$1" positional=()
    shift
    while (($#)); do
        case "$1" in
        -h | --help) usage; exit 0 ;;
        --port) (($# >= 2)) || usage_error "--port needs a value"; port="$2"; shift 2 ;;
        --dir) (($# >= 2)) || usage_error "--dir needs a value"; dir="$2"; shift 2 ;;
        --) ((allow_extra)) || usage_error "unknown option '$1'"; shift; extra=("$@"); break ;;
        -*) usage_error "unknown option '$1'" ;;
        *) positional+=("$1"); shift ;;
        esac
    done
    ((${#positional[@]} <= 2)) || usage_error "too many arguments: ${positional[*]}"
    ((${#positional[@]} == 0)) || port="${positional[0]}"
    if ((${#positional[@]} == 2)); then
        [[ ! "${positional[1]}" =~ ^[0-9]+$ ]] ||
            usage_error "DIR '${positional[1]}' looks like a port; use --dir ./${positional[1]} for a directory of that name"
        dir="${positional[1]}"
    fi
    port_number "$port" || usage_error "PORT '$port' is not a port number"
}

# stop_args ARGS...: a stop script's [--dir DIR | DIR] [--delete] into dir (the caller's
# default kept when neither is given) and delete (1 with --delete, which is refused unless
# the caller set delete=0 first).
stop_args() {
    local positional=()
    while (($#)); do
        case "$1" in
        -h | --help) usage; exit 0 ;;
        --delete) [[ -n "${delete:-}" ]] || usage_error "unknown option '$1'"; delete=1; shift ;;
        --dir) (($# >= 2)) || usage_error "--dir needs a value"; dir="$2"; shift 2 ;;
        -*) usage_error "unknown option '$1'" ;;
        *) positional+=("$1"); shift ;;
        esac
    done
    ((${#positional[@]} <= 1)) || usage_error "too many arguments: ${positional[*]}"
    ((${#positional[@]} == 0)) || dir="${positional[0]}"
}
