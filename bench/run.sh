#!/usr/bin/env bash
# Tollgate's first benchmark, run by hand (never in CI): see bench/README.md.
#
#   bash bench/run.sh            # ~1 min of load after the build; writes bench/RESULTS.md
#
# Everything runs on 127.0.0.1; every wait loop is bounded; the mock upstream
# and the gateway started here are stopped on exit, whatever happens.
# Settings (environment): DURATION (10s), MOCK_PORT (9100), GW_PORT (9180),
# WRK_CPU (1), CARGO_TARGET_DIR, KEEP_WORK=1 to keep the temporary folder.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
DURATION=${DURATION:-10s}
MOCK_PORT=${MOCK_PORT:-9100}
GW_PORT=${GW_PORT:-9180}
WRK_CPU=${WRK_CPU:-1}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/tollgate-target}
BIN=$CARGO_TARGET_DIR/release
MOCK_URL=http://127.0.0.1:$MOCK_PORT
GW_URL=http://127.0.0.1:$GW_PORT
ADMIN_TOKEN=bench-admin-token
LUA=$BENCH_DIR/wrk-post.lua
CHAT_BODY='{"model":"bench-model","messages":[{"role":"user","content":"Say hello."}],"max_tokens":16}'
OUT=$ROOT/bench/out          # raw outputs of the last run (git-ignored)

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
now_ns() { date +%s%N; }

# --- 1. tools -------------------------------------------------------------
missing=()
for tool in wrk curl jq; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if ((${#missing[@]})); then
    log "installing ${missing[*]} from Debian"
    SUDO=; [[ $(id -u) == 0 ]] || SUDO=sudo
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" \
        || { $SUDO apt-get update && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"; }
fi
PIN=()
if command -v taskset >/dev/null && (($(nproc) > 1)); then PIN=(taskset -c "$WRK_CPU"); fi

# --- 2. build -------------------------------------------------------------
log "building release binaries into $CARGO_TARGET_DIR"
(cd "$ROOT" && cargo build --release -p tollgate -p mock-upstream)
[[ -x $BIN/tollgate && -x $BIN/mock-upstream ]] || die "binaries missing in $BIN"

# --- processes and clean-up -----------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-bench.XXXXXX")
MOCK_PID=
GW_PID=

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

cleanup() {
    local rc=$?
    stop_pid "$GW_PID"
    stop_pid "$MOCK_PID"
    mkdir -p "$OUT"
    cp -f "$WORK"/*.log "$WORK"/*.txt "$WORK"/*.toml "$OUT"/ 2>/dev/null || true
    if [[ ${KEEP_WORK:-0} == 1 ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for port in "$MOCK_PORT" "$GW_PORT"; do
    port_in_use "$port" && die "something already listens on 127.0.0.1:$port"
done

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; } # utime + stime
CLK_TCK=$(getconf CLK_TCK)
rss_kb() { awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status"; }

# --- 3. mock upstream -----------------------------------------------------
"$BIN/mock-upstream" --listen "127.0.0.1:$MOCK_PORT" >"$WORK/mock.log" 2>&1 &
MOCK_PID=$!
for ((i = 0; i < 400; i++)); do # up to ~10 s
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 -H 'Content-Type: application/json' \
        -d "$CHAT_BODY" "$MOCK_URL/v1/chat/completions" || true)
    [[ $code == 200 ]] && break
    kill -0 "$MOCK_PID" 2>/dev/null || die "mock-upstream exited: $(cat "$WORK/mock.log")"
    sleep 0.025
done
[[ $code == 200 ]] || die "mock-upstream not answering on $MOCK_URL"

# --- 4. gateway configuration ---------------------------------------------
CONFIG=$WORK/tollgate.toml
cat >"$CONFIG" <<EOF
listen = "127.0.0.1:$GW_PORT"
database_url = "sqlite://$WORK/tollgate.db"
admin_token = "$ADMIN_TOKEN"
log_level = "warn"
shutdown_grace_secs = 5

[providers.mock]
kind = "openai"
base_url = "$MOCK_URL/v1"
api_key = "sk-bench-upstream"

[models."bench-model"]
provider = "mock"
input_price = 2.5
output_price = 10
max_output_tokens = 64
EOF

start_gateway() { # start_gateway LOGFILE: sets GW_PID and SPAWN_NS
    SPAWN_NS=$(now_ns)
    "$BIN/tollgate" --config "$CONFIG" serve >>"$1" 2>&1 &
    GW_PID=$!
}

# wait_for NAME CMD...: runs CMD every 5 ms until it prints 200, for at most
# 30 s; sets WAIT_NS to the ns from SPAWN_NS to that 200. (Not run in a
# command substitution, so that a signal to this script is seen at once.)
wait_for() {
    local name=$1 code deadline
    shift
    deadline=$(($(now_ns) + 30000000000))
    while (($(now_ns) < deadline)); do
        code=$("$@" || true)
        if [[ $code == 200 ]]; then
            WAIT_NS=$(($(now_ns) - SPAWN_NS))
            return 0
        fi
        kill -0 "$GW_PID" 2>/dev/null || die "tollgate exited: $(tail -20 "$WORK/tollgate.log")"
        sleep 0.005
    done
    die "$name: no 200 from tollgate within 30 s; last status $code; log: $(tail -5 "$WORK/tollgate.log")"
}
healthz() { curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$GW_URL/healthz"; }
chat() {
    curl -s -o /dev/null -w '%{http_code}' --max-time 5 -H 'Content-Type: application/json' \
        -H "Authorization: Bearer $USER_KEY" -d "$CHAT_BODY" "$GW_URL/v1/chat/completions"
}
admin() { # admin METHOD PATH [JSON]
    local data=()
    [[ $# -ge 3 ]] && data=(-d "$3")
    curl -sf --max-time 10 -X "$1" -H "Authorization: Bearer $ADMIN_TOKEN" \
        -H 'Content-Type: application/json' "${data[@]}" "$GW_URL$2"
}

# --- 5. first start: fresh database, then a user with a large balance -----
log "first start (fresh SQLite database)"
start_gateway "$WORK/tollgate.log"
wait_for healthz healthz
COLD_NS=$WAIT_NS
created=$(admin POST /admin/users '{"name":"bench"}') || die "POST /admin/users failed"
USER_ID=$(jq -r '.user.id' <<<"$created")
USER_KEY=$(jq -r '.key' <<<"$created")
[[ $USER_ID =~ ^[0-9]+$ && -n $USER_KEY && $USER_KEY != null ]] || die "unexpected answer: $created"
admin POST "/admin/users/$USER_ID/balance" '{"amount_usd":"1000000","reason":"bench"}' >/dev/null \
    || die "crediting the user failed"
stop_pid "$GW_PID"
GW_PID=

# --- 6. restart: time to the first successful chat completion -------------
log "restart: time to first successful request"
start_gateway "$WORK/tollgate.log"
wait_for chat chat
FIRST_NS=$WAIT_NS
RSS_FIRST=$(rss_kb "$GW_PID" VmRSS)
# A gateway that answers but cannot settle would make every figure below
# meaningless (each request waits out the settlement retries): stop here.
if grep -q 'settlement failed' "$WORK/tollgate.log"; then
    die "tollgate cannot settle requests: $(grep -m1 'settlement failed' "$WORK/tollgate.log")"
fi

# --- 7. warm-up, then idle RSS --------------------------------------------
run_wrk() { # run_wrk NAME THREADS CONNECTIONS DURATION URL
    local name=$1 t=$2 c=$3 d=$4 url=$5
    "${PIN[@]}" wrk -t"$t" -c"$c" -d"$d" --timeout 5s --latency -s "$LUA" \
        -H "Authorization: Bearer $USER_KEY" "$url/v1/chat/completions" >"$WORK/wrk-$name.txt" 2>&1 \
        || die "wrk failed: $(cat "$WORK/wrk-$name.txt")"
    grep -q '^BENCH_RESULT ' "$WORK/wrk-$name.txt" || die "no result line in wrk-$name.txt"
}
# run_measured NAME THREADS CONNECTIONS DURATION URL: run_wrk, and also
# record the CPU time the gateway and the mock spent during the run.
run_measured() {
    local g0 m0
    g0=$(cpu_ticks "$GW_PID") m0=$(cpu_ticks "$MOCK_PID")
    run_wrk "$@"
    echo "BENCH_CPU gw_ticks=$(($(cpu_ticks "$GW_PID") - g0)) mock_ticks=$(($(cpu_ticks "$MOCK_PID") - m0))" \
        >>"$WORK/wrk-$1.txt"
}
log "warm-up (3 s at c=8 through tollgate)"
run_wrk warmup 2 8 3s "$GW_URL"
sleep 2
RSS_IDLE=$(rss_kb "$GW_PID" VmRSS)

# --- 8. load: direct and through tollgate, back to back -------------------
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for c in 1 64; do
    t=$((c == 1 ? 1 : 2))
    for target in direct tollgate; do
        url=$MOCK_URL; [[ $target == tollgate ]] && url=$GW_URL
        log "wrk -t$t -c$c -d$DURATION → $target"
        run_measured "$target-c$c" "$t" "$c" "$DURATION" "$url"
    done
done
RSS_AFTER=$(rss_kb "$GW_PID" VmRSS)
RSS_PEAK=$(rss_kb "$GW_PID" VmHWM)

# --- 9. consistency: every settled request charged, no hold left ----------
# Settlements are written in batches after the responses; under full load the
# writer trails by a few seconds. Wait (up to 30 s) until the key's count of
# settled requests stops moving, then check the money.
prev=-1
for ((i = 0; i < 30; i++)); do
    sleep 1
    keys_after=$(admin GET "/admin/users/$USER_ID/keys") || die "GET keys failed"
    used_now=$(jq -r '[.data[].used_times | tonumber] | add' <<<"$keys_after")
    [[ $used_now == "$prev" ]] && break
    prev=$used_now
done
user_after=$(admin GET "/admin/users/$USER_ID") || die "GET /admin/users/$USER_ID failed"
SPENT_NANO=$((1000000 * 1000000000 - $(jq -r '.balance_nano_usd' <<<"$user_after")))
HELD=$(jq -r '.held' <<<"$user_after")
HELD_NOTE=
awk -v h="$HELD" 'BEGIN { exit !(h + 0 != 0) }' \
    && HELD_NOTE=" — **not released $i s after the load: a hold leaked** (a request held money and never settled)"
USED_TIMES=$(jq -r '[.data[].used_times | tonumber] | add' <<<"$keys_after")
COST_NANO=75000 # 10 prompt × 2.5 + 5 completion × 10 USD per 1M tokens
CHARGED=$((SPENT_NANO / COST_NANO))
REMAINDER=$((SPENT_NANO % COST_NANO))
LOG_WARN=$(grep -c -E ' (WARN|ERROR) ' "$WORK/tollgate.log" || true)
LOG_SETTLE=$(grep -c 'settlement failed' "$WORK/tollgate.log" || true)
LOG_BUSY=$(grep -c -i -E 'database is locked|SQLITE_BUSY|busy' "$WORK/tollgate.log" || true)

# --- 10. report -----------------------------------------------------------
field() { sed -n 's/^BENCH_[A-Z]* .*\b'"$2"'=\([0-9.]*\).*/\1/p' "$WORK/wrk-$1.txt"; }
cpu_us() { # cpu_us RUN PROCESS: CPU µs per completed request
    awk -v t="$(field "$1" "$2_ticks")" -v n="$(field "$1" requests)" -v hz="$CLK_TCK" \
        'BEGIN { printf "%.0f", n ? t / hz * 1e6 / n : 0 }'
}
sum_field() { # total requests wrk saw through tollgate (warm-up included)
    local n=0 f
    for f in warmup tollgate-c1 tollgate-c64; do n=$((n + $(field "$f" requests))); done
    echo "$n"
}
ms() { awk -v ns="$1" 'BEGIN { printf "%.1f", ns / 1e6 }'; }
mib() { awk -v kb="$1" 'BEGIN { printf "%.1f", kb / 1024 }'; }

HEAD=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
DIRTY=$(git -C "$ROOT" status --porcelain -- . ':!bench' 2>/dev/null | awk '{print $NF}' | head -5 | paste -sd' ' -)
[[ -n $DIRTY ]] && DIRTY=" + uncommitted changes in: $DIRTY"
CPU_MODEL=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
{
    echo "# Tollgate benchmark results"
    echo
    echo "Produced by \`bench/run.sh\`; see \`bench/README.md\` for what each figure means."
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "- commit: \`$HEAD\`$DIRTY"
    echo "- nproc: $(nproc) ($CPU_MODEL); load average before the load: $LOAD_BEFORE"
    echo "- wrk: $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2), ${PIN[*]:-not pinned}, $DURATION per run, --timeout 5s, keep-alive"
    echo "- request: non-stream \`POST /v1/chat/completions\` \`$CHAT_BODY\`"
    echo "- mock upstream: \`mock-upstream --listen 127.0.0.1:$MOCK_PORT\` (no delay; usage 10 prompt + 5 completion tokens)"
    echo
    echo "## Latency and throughput"
    echo
    echo "| concurrency | target | p50 µs | p99 µs | p99.9 µs | req/s | requests | non-2xx | socket errors | tollgate CPU µs/req | mock CPU µs/req |"
    echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for c in 1 64; do
        for target in direct tollgate; do
            r=$target-c$c
            errs=$(($(field "$r" connect_err) + $(field "$r" read_err) + $(field "$r" write_err) + $(field "$r" timeout_err)))
            gcpu=–; [[ $target == tollgate ]] && gcpu=$(cpu_us "$r" gw)
            echo "| $c | $target | $(field "$r" p50_us) | $(field "$r" p99_us) | $(field "$r" p999_us) | $(field "$r" rps) | $(field "$r" requests) | $(field "$r" non2xx) | $errs | $gcpu | $(cpu_us "$r" mock) |"
        done
    done
    echo
    echo "| concurrency | added p50 µs (tollgate − direct) | added p99 µs | req/s ratio (tollgate / direct) |"
    echo "|---:|---:|---:|---:|"
    for c in 1 64; do
        d=direct-c$c g=tollgate-c$c
        echo "| $c | $(($(field $g p50_us) - $(field $d p50_us))) | $(($(field $g p99_us) - $(field $d p99_us))) | $(awk -v g="$(field $g rps)" -v d="$(field $d rps)" 'BEGIN { printf "%.2f", g / d }') |"
    done
    echo
    echo "## Start-up and memory (tollgate)"
    echo
    echo "| figure | value |"
    echo "|---|---:|"
    echo "| first start, fresh database: spawn → first \`GET /healthz\` 200 | $(ms "$COLD_NS") ms |"
    echo "| **time to first successful request**: spawn → first chat completion 200 (restart, migrated database) | $(ms "$FIRST_NS") ms |"
    echo "| RSS right after the first request | $(mib "$RSS_FIRST") MiB |"
    echo "| idle RSS after warm-up | $(mib "$RSS_IDLE") MiB |"
    echo "| RSS after the load | $(mib "$RSS_AFTER") MiB |"
    echo "| peak RSS (VmHWM) after the load | $(mib "$RSS_PEAK") MiB |"
    echo
    echo "## Accounting check"
    echo
    echo "- requests wrk completed through tollgate (warm-up included; the start-up probe adds 1): $(sum_field)"
    echo "- settlements recorded on the key (\`used_times\`): $USED_TIMES; charged at \$0.000075 each: $CHARGED (remainder $REMAINDER nano-USD); held after the run: $HELD credits$HELD_NOTE"
    echo "- tollgate log: $LOG_WARN WARN/ERROR lines, $LOG_SETTLE \"settlement failed\", $LOG_BUSY mentioning busy/locked"
    echo
    echo "## Configuration used"
    echo
    echo '```toml'
    sed "s|$WORK|<tmp>|g" "$CONFIG"
    echo '```'
} >"$WORK/RESULTS.md"
cp "$WORK/RESULTS.md" "$BENCH_DIR/RESULTS.md"
cat "$BENCH_DIR/RESULTS.md"
log "wrote bench/RESULTS.md; raw wrk output and logs in bench/out/"
