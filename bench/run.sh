#!/usr/bin/env bash
# Tollgate's benchmark, run by hand (never in CI): see bench/README.md.
#
#   bash bench/run.sh                          # everything; ≈ 30 min; writes bench/RESULTS.md
#   DURATION=2s RUNS=1 SOAK=0 bash bench/run.sh  # a quick look (≈ 3 min after the installs)
#   TARGETS="tollgate-sqlite nginx" bash bench/run.sh
#   REPORT_FROM=bench/out bash bench/run.sh      # the report again from the last run's raw outputs
#
# Measures, in one run and back to back, the same requests against the mock
# upstream directly, nginx in front of it, Tollgate (SQLite, PostgreSQL, and
# SQLite with billing off) and the LiteLLM proxy: latency and throughput by
# concurrency, streaming (time to first token, stalls), memory (idle, 1,000
# open streams, a soak), what billing costs, and an accounting check.
#
# Everything listens on 127.0.0.1 only; every wait is bounded; every process
# started here is stopped on exit, whatever happens. Installs what it needs
# (Debian: wrk nginx gnuplot-nox postgresql; PyPI: litellm in a venv) once.
set -euo pipefail
export LC_ALL=C

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
# shellcheck source=lib/common.sh
source "$BENCH_DIR/lib/common.sh"
# shellcheck source=lib/targets.sh
source "$BENCH_DIR/lib/targets.sh"
# shellcheck source=lib/report.sh
source "$BENCH_DIR/lib/report.sh"

# --- settings -------------------------------------------------------------------
ALL_TARGETS="direct nginx tollgate-sqlite tollgate-postgres tollgate-billing-off litellm"
TARGETS=${TARGETS:-$ALL_TARGETS}
DURATION=${DURATION:-10s}             # one load run (one target, one concurrency)
RUNS=${RUNS:-3}                        # repetitions; the report shows medians
SOAK=${SOAK:-10m}                      # 0 skips the soak
CONCURRENCY=${CONCURRENCY:-"1 16 64 256"}
BILLING_OFF_C=${BILLING_OFF_C:-64}     # tollgate-billing-off is measured at this concurrency only
LITELLM_MAX_C=${LITELLM_MAX_C:-256}    # LiteLLM is skipped above this concurrency
STREAM_CONNECTIONS=${STREAM_CONNECTIONS:-64}
STREAM_DURATION=${STREAM_DURATION:-$DURATION}
CHUNKS=${CHUNKS:-64}
CHUNK_DELAY_MS=${CHUNK_DELAY_MS:-5}
STALL_MS=${STALL_MS:-$((CHUNK_DELAY_MS + 50))}
MOCK_DELAY_MS=${MOCK_DELAY_MS:-0}      # the mock's delay before every answer (0 or e.g. 20)
MEM_STREAMS=${MEM_STREAMS:-1000}       # 0 skips the open-streams memory test
MEM_CHUNK_DELAY_MS=${MEM_CHUNK_DELAY_MS:-100}
SOAK_CONNECTIONS=${SOAK_CONNECTIONS:-8}
WRK_CPU=${WRK_CPU:-1}                  # the core the load tools are pinned to
PORT_BASE=${PORT_BASE:-9100}
PG_PORT=${PG_PORT:-55433}
PG_DIR=${PG_DIR:-/tmp/tollgate-bench-pg}
LITELLM_VERSION=${LITELLM_VERSION:-1.108.7}
LITELLM_VENV=${LITELLM_VENV:-$HOME/.cache/tollgate-bench-litellm}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/tollgate-target}

MOCK_PORT=$PORT_BASE
MOCK_SLOW_PORT=$((PORT_BASE + 1))
NGINX_PORT=$((PORT_BASE + 10))
SQLITE_PORT=$((PORT_BASE + 20))
POSTGRES_PORT=$((PORT_BASE + 21))
BILLING_OFF_PORT=$((PORT_BASE + 22))
MEM_PORT=$((PORT_BASE + 23))
LITELLM_PORT=$((PORT_BASE + 40))
MOCK_URL=http://127.0.0.1:$MOCK_PORT
MOCK_SLOW_URL=http://127.0.0.1:$MOCK_SLOW_PORT
NGINX_WORKERS=$(nproc)
BIN=$CARGO_TARGET_DIR/release
ADMIN_TOKEN=bench-admin-token
LITELLM_MASTER_KEY=sk-bench-master
BALANCE_USD=1000000
COST_NANO=75000 # one answer: 10 prompt × 2.5 + 5 completion × 10 USD per 1M tokens
LUA=$BENCH_DIR/wrk-post.lua
# The mock paces a whole answer like its stream (--chunks × --chunk-delay-ms
# in all); the non-stream load request asks it, in the prompt, not to wait:
# the streaming runs alone are paced.
CHAT_BODY='{"model":"bench-model","messages":[{"role":"user","content":"Say hello. [mock-script:{\"chunk_delay_ms\":0}]"}],"max_tokens":16}'
OUT=$BENCH_DIR/out # raw outputs of the last run (git-ignored)

# The targets in their usual order; `direct` (the baseline) always.
ACTIVE_TARGETS=
for t in $TARGETS; do [[ " $ALL_TARGETS " == *" $t "* ]] || die "unknown target $t (known: $ALL_TARGETS)"; done
for t in $ALL_TARGETS; do
    [[ $t == direct || " $TARGETS " == *" $t "* ]] && ACTIVE_TARGETS+="${ACTIVE_TARGETS:+ }$t"
done
want() { [[ " $ACTIVE_TARGETS " == *" $1 "* ]]; }
DURATION_S=$(duration_secs "$DURATION")
STREAM_S=$(duration_secs "$STREAM_DURATION")
SOAK_S=$(duration_secs "$SOAK")
[[ $DURATION_S =~ ^[0-9]+$ && $STREAM_S =~ ^[0-9]+$ && $SOAK_S =~ ^[0-9]+$ && $RUNS =~ ^[1-9][0-9]*$ ]] ||
    die "DURATION, STREAM_DURATION, SOAK: like 10s, 2m or 600; RUNS: a positive number"
want tollgate-sqlite || { MEM_STREAMS=0; SOAK_S=0; }

# A rough estimate of the time the measurements take.
cells=0
for c in $CONCURRENCY; do
    for t in $ACTIVE_TARGETS; do
        [[ $t == tollgate-billing-off && $c != "$BILLING_OFF_C" ]] && continue
        [[ $t == litellm && $c -gt $LITELLM_MAX_C ]] && continue
        cells=$((cells + 1))
    done
done
streams=0
for t in direct nginx tollgate-sqlite litellm; do want "$t" && streams=$((streams + 1)); done
for t in direct nginx tollgate-sqlite; do want "$t" && streams=$((streams + 1)); done
estimate=$((RUNS * (cells * (DURATION_S + 1) + streams * (STREAM_S + 2)) + SOAK_S + 60))
log "targets: $ACTIVE_TARGETS; $RUNS × $cells load runs of $DURATION, $streams streaming runs; soak ${SOAK_S}s; ≈ $((estimate / 60)) min $((estimate % 60)) s of measurements"

# REPORT_FROM=bench/out bash bench/run.sh: measures nothing; writes the
# report again from the raw outputs a finished run left (give it that run's
# settings), e.g. after a change to the report itself. The date, commit and
# load average stay the run's, read from the RESULTS.md it wrote.
if [[ -n ${REPORT_FROM:-} ]]; then
    [[ -f $REPORT_FROM/results.txt && -f $REPORT_FROM/RESULTS.md ]] ||
        die "$REPORT_FROM holds no results.txt and RESULTS.md of a run"
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-bench.XXXXXX")
    trap 'rm -rf "$WORK"' EXIT
    cp -r "$REPORT_FROM"/. "$WORK"/
    mkdir -p "$WORK/nginx"
    if [[ -f $WORK/nginx.conf ]]; then cp "$WORK/nginx.conf" "$WORK/nginx/nginx.conf"; fi
    RESULTS=$WORK/results.txt
    from_header() { sed -n "s/^- $1: //p" "$REPORT_FROM/RESULTS.md" | head -n 1; }
    REPORT_DATE=$(from_header date)
    HEAD=$(from_header commit | cut -d'`' -f2)
    DIRTY=$(from_header commit | sed 's/^`[^`]*`//')
    LOAD_BEFORE=$(from_header machine | sed 's/.*load runs: //')
    NGINX=$(command -v nginx || echo /usr/sbin/nginx)
    PG_BIN=$(dirname "$(find /usr/lib/postgresql -path '*/bin/initdb' 2>/dev/null | sort -V | tail -n 1)")
    PIN=(taskset -c "$WRK_CPU")
    write_report "$WORK/RESULTS.md"
    write_chart "$WORK/added-latency.png"
    cp "$WORK/RESULTS.md" "$BENCH_DIR/RESULTS.md"
    if [[ -f $WORK/added-latency.png ]]; then cp "$WORK/added-latency.png" "$BENCH_DIR/added-latency.png"; fi
    log "wrote bench/RESULTS.md and bench/added-latency.png again from $REPORT_FROM"
    exit 0
fi

# --- tools, build, work folder -------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-bench.XXXXXX")
RESULTS=$WORK/results.txt
: >"$RESULTS"
PG_STARTED=0

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_all
    stop_postgres
    mkdir -p "$OUT"
    rm -rf "${OUT:?}"
    mkdir -p "$OUT"
    cp -rf "$WORK"/*.log "$WORK"/*.toml "$WORK"/*.yaml "$WORK"/*.txt "$WORK"/*.tsv "$WORK"/*.md "$WORK"/*.png \
        "$WORK"/wrk "$WORK"/probe "$OUT"/ 2>/dev/null || true
    [[ -f $WORK/nginx/nginx.conf ]] && cp -f "$WORK/nginx/nginx.conf" "$WORK/nginx/error.log" "$OUT"/ 2>/dev/null
    if [[ ${KEEP_WORK:-0} == 1 ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$WORK/wrk" "$WORK/probe"

install_tools
log "building release binaries into $CARGO_TARGET_DIR"
(cd "$ROOT" && cargo build --release -p tollgate -p mock-upstream)
for b in tollgate mock-upstream stream-probe; do [[ -x $BIN/$b ]] || die "$BIN/$b missing"; done

PIN=()
if command -v taskset >/dev/null && (($(nproc) > 1)); then PIN=(taskset -c "$WRK_CPU"); fi
# 1,000 streams through a gateway are 2,000 sockets; wrk at 256 and the rest.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
(($(ulimit -n) >= 4 * MEM_STREAMS + 1024)) || log "warning: only $(ulimit -n) open files allowed"

check_port_free "$MOCK_PORT" PORT_BASE
((MEM_STREAMS > 0)) && check_port_free "$MOCK_SLOW_PORT" PORT_BASE
want nginx && check_port_free "$NGINX_PORT" PORT_BASE
want tollgate-sqlite && check_port_free "$SQLITE_PORT" PORT_BASE
want tollgate-postgres && { check_port_free "$POSTGRES_PORT" PORT_BASE; check_port_free "$PG_PORT" PG_PORT; }
want tollgate-billing-off && check_port_free "$BILLING_OFF_PORT" PORT_BASE
((MEM_STREAMS > 0)) && check_port_free "$MEM_PORT" PORT_BASE
want litellm && check_port_free "$LITELLM_PORT" PORT_BASE

# --- start everything ------------------------------------------------------------------
log "starting the mock upstream and the targets"
start_mock mock "$MOCK_PORT" --chunks "$CHUNKS" --chunk-delay-ms "$CHUNK_DELAY_MS" --delay-ms "$MOCK_DELAY_MS"
URL[direct]=$MOCK_URL KEY[direct]=sk-bench-upstream PID[direct]=${PID[mock]}
((MEM_STREAMS > 0)) && start_mock mock-slow "$MOCK_SLOW_PORT" --chunks "$CHUNKS" --chunk-delay-ms "$MEM_CHUNK_DELAY_MS"
want nginx && start_nginx
want tollgate-sqlite && start_tollgate tollgate-sqlite "$SQLITE_PORT" "sqlite://$WORK/sqlite.db" true
if want tollgate-postgres; then
    start_postgres
    start_tollgate tollgate-postgres "$POSTGRES_PORT" "postgres://postgres@127.0.0.1:$PG_PORT/tollgate_bench" true
fi
want tollgate-billing-off && start_tollgate tollgate-billing-off "$BILLING_OFF_PORT" "sqlite://$WORK/billing-off.db" false
want litellm && start_litellm

# --- load runs ---------------------------------------------------------------------------
# run_wrk KIND TARGET CONNECTIONS DURATION RUN: one wrk run, recorded as a
# KIND line with the target's CPU time per request.
run_wrk() {
    local kind=$1 t=$2 c=$3 d=$4 run=$5 threads ticks file line errors cpu
    threads=$((c == 1 ? 1 : 2))
    file=$WORK/wrk/$kind-$t-c$c-r$run.txt
    ticks=$(cpu_ticks "${PID[$t]}")
    if ! "${PIN[@]}" wrk -t"$threads" -c"$c" -d"$d" --timeout 5s --latency -s "$LUA" \
        -H "Authorization: Bearer ${KEY[$t]}" "${URL[$t]}/v1/chat/completions" >"$file" 2>&1; then
        log "warning: wrk failed against $t at c=$c: $(tail -2 "$file")"
        record "$kind target=$t c=$c run=$run failed=1 errors=$c"
        return 0
    fi
    ticks=$(($(cpu_ticks "${PID[$t]}") - ticks))
    line=$(sed -n 's/^BENCH_RESULT //p' "$file")
    [[ -n $line ]] || die "no result line in $file"
    eval "local $line" # p50_us=… rps=… non2xx=… (numbers only, from wrk-post.lua)
    errors=$((non2xx + connect_err + read_err + write_err + timeout_err))
    cpu=$(awk -v t="$ticks" -v n="$requests" -v hz="$CLK_TCK" 'BEGIN { printf "%.0f", n ? t / hz * 1e6 / n : 0 }')
    record "$kind target=$t c=$c run=$run $line errors=$errors cpu_us_per_req=$cpu"
    count_requests "$t" "$requests" "$c" "$non2xx"
    ((errors == 0)) || log "  $t c=$c: $errors errors"
}

log "warm-up: 3 s at c=8 through each target"
for t in $ACTIVE_TARGETS; do run_wrk WARMUP "$t" 8 3s 1; done
sleep 2
for t in $ACTIVE_TARGETS; do record "IDLE target=$t run=1 rss_kb=$(rss_kb "${PID[$t]}" VmRSS)"; done

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for ((run = 1; run <= RUNS; run++)); do
    for c in $CONCURRENCY; do
        for t in $ACTIVE_TARGETS; do
            [[ $t == tollgate-billing-off && $c != "$BILLING_OFF_C" ]] && continue
            [[ $t == litellm && $c -gt $LITELLM_MAX_C ]] && continue
            log "run $run/$RUNS: wrk -c$c -d$DURATION → $t"
            run_wrk WRK "$t" "$c" "$DURATION" "$run"
            sleep 1
        done
    done
done
for t in $ACTIVE_TARGETS; do
    record "PEAK target=$t run=1 rss_kb=$(rss_kb "${PID[$t]}" VmRSS) hwm_kb=$(rss_kb "${PID[$t]}" VmHWM)"
done

# --- streaming ---------------------------------------------------------------------------
# run_probe API TARGET RUN: STREAM_CONNECTIONS streams in flight for STREAM_DURATION.
run_probe() {
    local api=$1 t=$2 run=$3 path=/v1/chat/completions model=bench-model file line
    [[ $api == anthropic ]] && path=/v1/messages model=bench-claude
    file=$WORK/probe/$api-$t-r$run.txt
    "${PIN[@]}" "$BIN/stream-probe" --url "${URL[$t]}$path" --api "$api" --key "${KEY[$t]}" --model "$model" \
        --connections "$STREAM_CONNECTIONS" --duration "$STREAM_S" --expect-chunks "$CHUNKS" \
        --stall-ms "$STALL_MS" --timeout-secs 60 >"$file" 2>&1 || log "warning: stream-probe: $(tail -2 "$file")"
    line=$(sed -n 's/^PROBE_RESULT //p' "$file")
    [[ -n $line ]] || die "no result line in $file"
    record "STREAM api=$api target=$t run=$run $line"
    eval "local $line"
    count_requests "$t" "$ok" 0 "$http_errors"
    ((errors == 0)) || log "  $t ($api): $errors stream errors: $(grep -m1 'first error' "$file")"
}

for ((run = 1; run <= RUNS; run++)); do
    for t in direct nginx tollgate-sqlite litellm; do
        want "$t" || continue
        log "run $run/$RUNS: $STREAM_CONNECTIONS streams for $STREAM_DURATION → $t (openai)"
        run_probe openai "$t" "$run"
        sleep 1
    done
    for t in direct nginx tollgate-sqlite; do
        want "$t" || continue
        log "run $run/$RUNS: $STREAM_CONNECTIONS streams for $STREAM_DURATION → $t (anthropic)"
        run_probe anthropic "$t" "$run"
        sleep 1
    done
done

# --- memory: 1,000 open streams through a fresh gateway ----------------------------------
if ((MEM_STREAMS > 0)); then
    # The same probe against the slow mock directly first: what the client,
    # the mock and the machine alone do with that many streams.
    log "memory: $MEM_STREAMS concurrent streams straight to the slow mock (baseline)"
    file=$WORK/probe/memory-direct.txt
    "${PIN[@]}" "$BIN/stream-probe" --url "$MOCK_SLOW_URL/v1/chat/completions" --model bench-slow \
        --connections "$MEM_STREAMS" --streams 1 --expect-chunks "$CHUNKS" \
        --stall-ms $((MEM_CHUNK_DELAY_MS + 50)) --timeout-secs 120 >"$file" 2>&1 || log "warning: $(tail -2 "$file")"
    line=$(sed -n 's/^PROBE_RESULT //p' "$file")
    [[ -n $line ]] && record "MEM target=direct run=1 peak_kb=$(rss_kb "${PID[mock-slow]}" VmHWM) $line"
    sleep 1
    log "memory: $MEM_STREAMS concurrent streams through a fresh tollgate"
    start_tollgate tollgate-mem "$MEM_PORT" "sqlite://$WORK/mem.db" true
    run_wrk WARMUP tollgate-mem 8 3s 1
    sleep 2
    mem_idle=$(rss_kb "${PID[tollgate-mem]}" VmRSS)
    file=$WORK/probe/memory-tollgate-mem.txt
    "${PIN[@]}" "$BIN/stream-probe" --url "${URL[tollgate-mem]}/v1/chat/completions" --key "${KEY[tollgate-mem]}" \
        --model bench-slow --connections "$MEM_STREAMS" --streams 1 --expect-chunks "$CHUNKS" \
        --stall-ms $((MEM_CHUNK_DELAY_MS + 50)) --timeout-secs 120 >"$file" 2>&1 &
    probe=$!
    register mem-probe "$probe"
    peak=0
    deadline=$(($(now_ns) + 180 * 1000000000))
    while kill -0 "$probe" 2>/dev/null && (($(now_ns) < deadline)); do
        v=$(rss_kb "${PID[tollgate-mem]}" VmRSS)
        ((v > peak)) && peak=$v
        sleep 0.2
    done
    unregister_stop mem-probe
    sleep 5
    line=$(sed -n 's/^PROBE_RESULT //p' "$file")
    [[ -n $line ]] || die "memory probe: no result ($(tail -2 "$file"))"
    record "MEM target=tollgate-mem run=1 idle_kb=$mem_idle peak_kb=$peak hwm_kb=$(rss_kb "${PID[tollgate-mem]}" VmHWM) after_kb=$(rss_kb "${PID[tollgate-mem]}" VmRSS) $line"
    eval "$line"
    count_requests tollgate-mem "$ok" 0 "$http_errors"
    log "  peak RSS $(mb "$peak") MB with $max_open streams open; $errors errors"
fi

# --- soak --------------------------------------------------------------------------------
if ((SOAK_S > 0)); then
    log "soak: ${SOAK_S}s at c=$SOAK_CONNECTIONS through tollgate-sqlite"
    t=tollgate-sqlite
    rss_before=$(rss_kb "${PID[$t]}" VmRSS)
    file=$WORK/wrk/SOAK-$t.txt
    "${PIN[@]}" wrk -t2 -c"$SOAK_CONNECTIONS" -d"${SOAK_S}s" --timeout 5s --latency -s "$LUA" \
        -H "Authorization: Bearer ${KEY[$t]}" "${URL[$t]}/v1/chat/completions" >"$file" 2>&1 &
    soak=$!
    register soak-wrk "$soak"
    echo -e "seconds\trss_kb" >"$WORK/soak-rss.tsv"
    start_ns=$(now_ns)
    deadline=$((start_ns + (SOAK_S + 60) * 1000000000))
    next=10
    while kill -0 "$soak" 2>/dev/null && (($(now_ns) < deadline)); do
        sleep 1
        elapsed=$((($(now_ns) - start_ns) / 1000000000))
        if ((elapsed >= next)) && kill -0 "$soak" 2>/dev/null; then
            echo -e "$elapsed\t$(rss_kb "${PID[$t]}" VmRSS)" >>"$WORK/soak-rss.tsv"
            next=$((next + 10))
        fi
    done
    wait "$soak" 2>/dev/null || log "warning: soak wrk failed: $(tail -2 "$file")"
    unregister_stop soak-wrk
    echo -e "end\t$(rss_kb "${PID[$t]}" VmRSS)" >>"$WORK/soak-rss.tsv"
    line=$(sed -n 's/^BENCH_RESULT //p' "$file")
    [[ -n $line ]] || die "soak: no result line in $file"
    eval "$line"
    rss_start=$(awk 'NR == 2 { print $2 }' "$WORK/soak-rss.tsv")
    rss_end=$(awk 'END { print $2 }' "$WORK/soak-rss.tsv")
    rss_max=$(awk 'NR > 1 { print $2 }' "$WORK/soak-rss.tsv" | max)
    growth=$(awk -v a="$rss_start" -v b="$rss_end" 'BEGIN { printf "%.1f", a ? (b - a) * 100 / a : 0 }')
    record "SOAK target=$t run=1 rss_before_kb=$rss_before rss_start_kb=$rss_start rss_end_kb=$rss_end rss_max_kb=$rss_max growth_pct=$growth $line errors=$((non2xx + connect_err + read_err + write_err + timeout_err))"
    count_requests "$t" "$requests" "$SOAK_CONNECTIONS" "$non2xx"
    log "  RSS $(mb "$rss_start") → $(mb "$rss_end") MB ($growth %)"
fi

# --- accounting: every settled request charged exactly, nothing held ------------------------
account() { # account TARGET
    local t=$1 id=${USER_ID[$1]} prev=-1 i keys used user spent held charged rem verdict lo hi logf=$WORK/$1.log
    # Settlements are written in batches after the answers: wait (≤ 30 s)
    # until the key's count of settled requests stops moving.
    for ((i = 0; i < 30; i++)); do
        sleep 1
        keys=$(admin "$t" GET "/admin/users/$id/keys") || die "$t: GET keys failed"
        used=$(jq -r '[.data[].used_times | tonumber] | add' <<<"$keys")
        [[ $used == "$prev" ]] && break
        prev=$used
    done
    user=$(admin "$t" GET "/admin/users/$id") || die "$t: GET user failed"
    spent=$((BALANCE_USD * 1000000000 - $(jq -r '.balance_nano_usd' <<<"$user")))
    held=$(jq -r '.held' <<<"$user")
    charged=$((spent / COST_NANO)) rem=$((spent % COST_NANO))
    lo=$((CLIENT_REQS[$t] - CLIENT_NON2XX[$t])) hi=$((CLIENT_REQS[$t] + INFLIGHT_MAX[$t]))
    verdict=ok
    if ((rem != 0 || charged != used || used < lo || used > hi)) || awk -v h="$held" 'BEGIN { exit !(h + 0 != 0) }'; then
        verdict=MISMATCH
    fi
    record "ACCOUNT target=$t client=${CLIENT_REQS[$t]} non2xx=${CLIENT_NON2XX[$t]} inflight=${INFLIGHT_MAX[$t]} settled=$used charged=$charged remainder=$rem held=$held verdict=$verdict log_warn=$(grep -c -E ' (WARN|ERROR) ' "$logf" || true) log_settle=$(grep -c 'settlement failed' "$logf" || true)"
    log "accounting $t: client $((CLIENT_REQS[$t])), settled $used, charged $charged (remainder $rem), held $held: $verdict"
}
log "accounting check"
for t in tollgate-sqlite tollgate-postgres tollgate-mem; do
    [[ -n ${USER_ID[$t]:-} ]] && account "$t"
done

# --- report ---------------------------------------------------------------------------------
HEAD=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
DIRTY=$(git -C "$ROOT" status --porcelain -- . ':!bench' 2>/dev/null | awk '{print $NF}' | head -5 | paste -sd' ' -)
[[ -n $DIRTY ]] && DIRTY=" + uncommitted changes in: $DIRTY"
write_report "$WORK/RESULTS.md"
write_chart "$WORK/added-latency.png"
cp "$WORK/RESULTS.md" "$BENCH_DIR/RESULTS.md"
[[ -f $WORK/added-latency.png ]] && cp "$WORK/added-latency.png" "$BENCH_DIR/added-latency.png"
cat "$BENCH_DIR/RESULTS.md"
log "wrote bench/RESULTS.md and bench/added-latency.png; raw outputs and logs in bench/out/"
