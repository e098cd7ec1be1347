#!/usr/bin/env bash
# Where a request's CPU goes: Tollgate on SQLite (auth, billing, usage
# records, metrics: the bench's tollgate-sqlite) under wrk at one
# concurrency, sampled by `perf record` (cpu-clock, DWARF call graphs).
# Writes bench/flamegraph.svg (inferno) and prints the share of the
# process's samples by thread and by the parts named in PARTS.
#
#   bash bench/profile.sh                 # c=64 for 8 s
#   CONC=1 SECS=8 bash bench/profile.sh
#
# Needs perf (Debian: linux-perf), wrk, jq, curl, and inferno
# (`cargo install inferno`); the release binaries of bench/run.sh.
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib/common.sh
source "$BENCH_DIR/lib/common.sh"
# shellcheck source=lib/targets.sh
source "$BENCH_DIR/lib/targets.sh"

CONC=${CONC:-64}
SECS=${SECS:-8}
CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/tollgate-target}
BIN=$CARGO_TARGET_DIR/release
PORT=${PORT_BASE:-9100}
MOCK_URL=http://127.0.0.1:$PORT
MOCK_SLOW_URL=$MOCK_URL
ADMIN_TOKEN=bench-admin-token
BALANCE_USD=1000000
CHAT_BODY='{"model":"bench-model","messages":[{"role":"user","content":"Say hello. [mock-script:{\"chunk_delay_ms\":0}]"}],"max_tokens":16}'
PIN=(taskset -c "${WRK_CPU:-1}")
declare -A URL PID KEY USER_ID

for tool in perf wrk jq curl inferno-collapse-perf inferno-flamegraph; do
    command -v "$tool" >/dev/null || die "$tool is missing (see the top of this script)"
done
for b in tollgate mock-upstream; do [[ -x $BIN/$b ]] || die "$BIN/$b missing (cargo build --release)"; done
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-profile.XXXXXX")
trap 'stop_all; rm -rf "$WORK"' EXIT
count_requests() { :; }
record() { :; }

check_port_free "$PORT" PORT_BASE
check_port_free $((PORT + 20)) PORT_BASE
start_mock mock "$PORT" --chunks 64 --chunk-delay-ms 5
start_tollgate tollgate $((PORT + 20)) "sqlite://$WORK/sqlite.db" true
target=${URL[tollgate]}/v1/chat/completions
wrk_run() { # wrk_run SECONDS
    "${PIN[@]}" wrk -t1 -c"$CONC" -d"$1" -s "$BENCH_DIR/wrk-post.lua" \
        -H "Authorization: Bearer ${KEY[tollgate]}" "$target" | grep BENCH_RESULT
}
log "warming up (c=$CONC, 3 s)"
wrk_run 3s >/dev/null
log "sampling $SECS s at c=$CONC"
perf record -q -e cpu-clock -F 999 -g --call-graph dwarf,16384 -p "${PID[tollgate]}" \
    -o "$WORK/perf.data" -- sleep "$SECS" >/dev/null 2>&1 &
perf_pid=$!
ticks_before=$(cpu_ticks "${PID[tollgate]}")
result=$(wrk_run "${SECS}s")
ticks_after=$(cpu_ticks "${PID[tollgate]}")
wait "$perf_pid" || true
requests=$(grep -o 'requests=[0-9]*' <<<"$result" | cut -d= -f2)
log "$result"
log "CPU per request (under perf): $(((ticks_after - ticks_before) * 1000000 / CLK_TCK / requests)) µs"

perf script -i "$WORK/perf.data" 2>/dev/null >"$WORK/perf.txt"
inferno-collapse-perf --all <"$WORK/perf.txt" >"$WORK/folded.txt"
inferno-flamegraph --minwidth 0.5 \
    --title "Tollgate, c=$CONC, non-stream chat completions (SQLite, billing on)" \
    <"$WORK/folded.txt" >"$BENCH_DIR/flamegraph.svg"
mkdir -p "$BENCH_DIR/out"
cp "$WORK/folded.txt" "$BENCH_DIR/out/profile-folded.txt"
log "wrote bench/flamegraph.svg (the folded stacks: bench/out/profile-folded.txt)"
python3 "$BENCH_DIR/lib/shares.py" "$WORK/folded.txt"
