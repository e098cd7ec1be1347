# shellcheck shell=bash
# Helpers for bench/run.sh (sourced, not run): logging, processes, ports,
# /proc readings, and the medians the report is made of.

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}
now_ns() { date +%s%N; }

as_root() { if [[ $(id -u) == 0 ]]; then "$@"; else sudo "$@"; fi; }

# apt_install PACKAGE...: installs what is missing from Debian. Services a
# package would start (nginx, PostgreSQL) are kept from starting: nothing of
# theirs may listen beyond what this script starts itself.
apt_install() {
    local policy=/usr/sbin/policy-rc.d made_policy=0 rc=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
        as_root chmod 755 "$policy"
        made_policy=1
    fi
    log "installing $* from Debian"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1 ||
        { as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null; } ||
        rc=$?
    ((made_policy)) && as_root rm -f "$policy"
    return "$rc"
}

# --- processes ----------------------------------------------------------------
# Every long-running process this script starts is registered here and
# stopped on exit, in reverse order of start.
STARTED=() # "name pid"

register() { STARTED+=("$1 $2"); }

stop_pid() { # stop_pid PID: SIGTERM, up to 10 s of grace, then SIGKILL
    local pid=$1 i
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null || true
}

stop_all() {
    local i entry
    for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do
        entry=${STARTED[i]}
        stop_pid "${entry#* }"
    done
    STARTED=()
}

# unregister_stop NAME: stops the process registered under NAME now.
unregister_stop() {
    local i entry keep=()
    for ((i = 0; i < ${#STARTED[@]}; i++)); do
        entry=${STARTED[i]}
        if [[ ${entry%% *} == "$1" ]]; then stop_pid "${entry#* }"; else keep+=("$entry"); fi
    done
    STARTED=("${keep[@]}")
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
check_port_free() { port_in_use "$1" && die "something already listens on 127.0.0.1:$1 (set $2)" || true; }

# wait_http NAME PID SECONDS CURL-ARGS...: polls with curl every 25 ms until
# it answers 200; dies after SECONDS or when PID exits.
wait_http() {
    local name=$1 pid=$2 secs=$3 code='' deadline
    shift 3
    deadline=$(($(now_ns) + secs * 1000000000))
    while (($(now_ns) < deadline)); do
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$@" || true)
        [[ $code == 200 ]] && return 0
        kill -0 "$pid" 2>/dev/null || die "$name exited while starting (see bench/out/)"
        sleep 0.025
    done
    die "$name: no 200 within $secs s (last status $code)"
}

# --- /proc ------------------------------------------------------------------
CLK_TCK=$(getconf CLK_TCK)

tree_pids() { # tree_pids PID: PID and all its descendants
    ps -e -o pid=,ppid= | awk -v root="$1" '
        { parent[$1] = $2; pids[NR] = $1 }
        END {
            keep[root] = 1; print root
            do { added = 0
                for (i in pids) { p = pids[i]
                    if (!(p in keep) && (parent[p] in keep)) { keep[p] = 1; print p; added = 1 } }
            } while (added)
        }'
}

# cpu_ticks PID: user + system ticks of PID and its descendants.
cpu_ticks() {
    local pid sum=0 t
    for pid in $(tree_pids "$1"); do
        t=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null) || continue
        sum=$((sum + ${t:-0}))
    done
    echo "$sum"
}

# rss_kb PID FIELD: VmRSS or VmHWM in kB, summed over PID and its descendants.
rss_kb() {
    local pid sum=0 v
    for pid in $(tree_pids "$1"); do
        v=$(awk -v f="$2:" '$1 == f {print $2}' "/proc/$pid/status" 2>/dev/null) || continue
        sum=$((sum + ${v:-0}))
    done
    echo "$sum"
}

mb() { # kB → MB (10^6 bytes); "–" when not measured
    awk -v kb="$1" 'BEGIN { if (kb == "" || kb == "–") print "–"; else printf "%.1f\n", kb * 1024 / 1e6 }'
}

# duration_secs 10m | 90s | 600 → seconds
duration_secs() {
    local v=$1
    case $v in
    *h) echo $((${v%h} * 3600)) ;;
    *m) echo $((${v%m} * 60)) ;;
    *s) echo "${v%s}" ;;
    *) echo "$v" ;;
    esac
}

# --- results ------------------------------------------------------------------
# Every measurement is one line of $RESULTS: `KIND key=value …`. The report
# reads them back with these helpers.

record() { echo "$*" >>"$RESULTS"; }

# vals KIND FIELD [key=value…]: FIELD of every line of KIND matching the filters.
vals() {
    local kind=$1 field=$2
    shift 2
    awk -v kind="$kind" -v field="$field" -v filters="$*" '
        BEGIN { n = split(filters, f, " ") }
        $1 == kind {
            delete kv
            for (i = 2; i <= NF; i++) { split($i, p, "="); kv[p[1]] = substr($i, length(p[1]) + 2) }
            for (i = 1; i <= n; i++) { split(f[i], p, "="); if (kv[p[1]] != substr(f[i], length(p[1]) + 2)) next }
            if (field in kv) print kv[field]
        }' "$RESULTS"
}

# pairs KIND FIELD [filters]: "run value" of the matching lines that have FIELD.
pairs() {
    local kind=$1 field=$2
    shift 2
    awk -v kind="$kind" -v field="$field" -v filters="$*" '
        BEGIN { n = split(filters, f, " ") }
        $1 == kind {
            delete kv
            for (i = 2; i <= NF; i++) { split($i, p, "="); kv[p[1]] = substr($i, length(p[1]) + 2) }
            for (i = 1; i <= n; i++) { split(f[i], p, "="); if (kv[p[1]] != substr(f[i], length(p[1]) + 2)) next }
            if ((field in kv) && kv[field] != "") print kv["run"], kv[field]
        }' "$RESULTS" | sort
}

# median [DIGITS]: the median of the numbers on stdin (mean of the middle
# two for an even count), to DIGITS decimals (default: a whole number as
# such, else one decimal); nothing for no input.
median() {
    sort -g | awk -v d="${1:-}" '{ a[NR] = $1 } END {
        if (NR == 0) exit
        m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
        if (d != "") printf "%." d "f\n", m
        else if (m == int(m)) printf "%d\n", m
        else printf "%.1f\n", m }'
}
sum() { awk '{ s += $1 } END { printf "%d\n", s }'; }
max() { sort -g | tail -n 1; }

# med KIND FIELD [filters]: median of a field over the runs.
med() { vals "$@" | median; }

# added KIND FIELD BASE_TARGET TARGET [filters]: for each run, TARGET's FIELD
# minus BASE_TARGET's in the same run (and same filters); their median.
added() {
    local kind=$1 field=$2 base=$3 target=$4
    shift 4
    join <(pairs "$kind" "$field" target="$base" "$@") <(pairs "$kind" "$field" target="$target" "$@") |
        awk '{ print $3 - $2 }' | median
}

# ratio A B [digits]: A / B, or "–" when either is missing or B is 0.
ratio() {
    awk -v a="$1" -v b="$2" -v d="${3:-2}" 'BEGIN {
        if (a == "" || b == "" || b + 0 == 0) { print "–"; exit }
        printf "%." d "f\n", a / b }'
}
or_dash() { if [[ -n $1 ]]; then echo "$1"; else echo "–"; fi; }
