#!/usr/bin/env bash
# A/B of two Tollgate builds on this machine, run by hand:
#
#   bash bench/ab.sh OLD_BIN_DIR NEW_BIN_DIR [PAIRS]
#
# Each directory holds a release `tollgate` and `mock-upstream`. The two
# builds run alternately (A, B, A, B, …), each against its own fresh SQLite
# database with billing on, under `wrk` at CONC connections (default 64)
# for DURATION (default 5s) with the same small non-stream chat completion
# as bench/run.sh. A shared 2-core machine drifts by ±15 % from one minute
# to the next, so a figure means something only next to the other build's,
# measured seconds apart: the script prints each run, then the medians, the
# median of the B/A ratios of each pair, and Tollgate's own CPU time per
# request (from /proc), which drifts less than throughput.
#
# MODE=stream measures streams instead: `stream-probe` (crates/mock-upstream)
# keeps CONC streams of 64 chunks, 5 ms apart, in flight for DURATION; each
# run prints the time to first token's p50 and p99 and the CPU per stream,
# and the summary compares the p50s. The mock's own TTFT is not subtracted:
# both builds share it.
set -euo pipefail
A=${1:?old build directory}
B=${2:?new build directory}
PAIRS=${3:-6}
CONC=${CONC:-64}
DURATION=${DURATION:-5s}
MODE=${MODE:-chat}
case $MODE in chat | stream) ;; *) echo "MODE: chat or stream" >&2; exit 2 ;; esac
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib/build.sh
source "$HERE/lib/build.sh"
MOCK_PORT=${MOCK_PORT:-9300}
GATE_PORT=${GATE_PORT:-9320}
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

# One run of build $1: prints "rps cpu_us_per_request" (chat) or
# "ttft_p50_us ttft_p99_us cpu_us_per_stream" (stream).
run_once() {
  local bin=$1 mock_args="--chunks 16"
  [ "$MODE" = chat ] || mock_args="--chunks 64 --chunk-delay-ms 5"
  start_build "$bin" "$WORK/run.$RANDOM" "$mock_args"
  local ticks_before ticks_after result threads=2
  [ "$CONC" -gt 1 ] || threads=1
  ticks_before=$(awk '{print $14 + $15}' "/proc/$GATE_PID/stat")
  if [ "$MODE" = stream ]; then
    result=$(taskset -c 1 "$bin/stream-probe" --url "$CHAT_URL" --key "$KEY" --connections "$CONC" \
      --duration "${DURATION%s}" --expect-chunks 64 | grep PROBE_RESULT)
  else
    result=$(taskset -c 1 wrk -t$threads -c"$CONC" -d"$DURATION" -H "Authorization: Bearer $KEY" \
      -s "$HERE/wrk-post.lua" "$CHAT_URL" | grep BENCH_RESULT)
  fi
  ticks_after=$(awk '{print $14 + $15}' "/proc/$GATE_PID/stat")
  stop_build
  field() { grep -o " $1=[0-9.]*" <<< " $result" | cut -d= -f2; }
  # /proc counts CPU time in ticks of 1/100 s.
  if [ "$MODE" = stream ]; then
    echo "$(field ttft_p50_us) $(field ttft_p99_us) $(( (ticks_after - ticks_before) * 10000 / $(field ok) ))"
  else
    echo "$(field rps) $(( (ticks_after - ticks_before) * 10000 / $(field requests) ))"
  fi
}

: > "$WORK/results"
for pair in $(seq "$PAIRS"); do
  for side in A B; do
    dir=$A
    [ $side = A ] || dir=$B
    line=$(run_once "$dir")
    if [ "$MODE" = stream ]; then
      read -r p50 p99 cpu <<< "$line"
      echo "pair $pair $side ttft_p50_us=$p50 ttft_p99_us=$p99 cpu_us_per_stream=$cpu"
    else
      echo "pair $pair $side rps=${line% *} cpu_us_per_request=${line#* }"
    fi
    echo "$side $line" >> "$WORK/results"
  done
done
if [ "$MODE" = stream ]; then
  python3 - "$WORK/results" "$CONC" <<'EOF'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
col = lambda s, i: [float(r[i]) for r in rows if r[0] == s]
ratios = [b / a for a, b in zip(col("A", 1), col("B", 1))]
print(f"streams c={sys.argv[2]}: median TTFT p50 µs A={statistics.median(col('A', 1)):.0f} B={statistics.median(col('B', 1)):.0f}; "
      f"median of pair ratios B/A={statistics.median(ratios):.3f} (from {min(ratios):.3f} to {max(ratios):.3f}); "
      f"TTFT p99 µs A={statistics.median(col('A', 2)):.0f} B={statistics.median(col('B', 2)):.0f}; "
      f"CPU µs per stream A={statistics.median(col('A', 3)):.0f} B={statistics.median(col('B', 3)):.0f}")
EOF
  exit
fi
python3 - "$WORK/results" "$CONC" <<'EOF'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
rps = {s: [float(r[1]) for r in rows if r[0] == s] for s in "AB"}
cpu = {s: [float(r[2]) for r in rows if r[0] == s] for s in "AB"}
ratios = [b / a for a, b in zip(rps["A"], rps["B"])]
print(f"c={sys.argv[2]}: median rps A={statistics.median(rps['A']):.0f} B={statistics.median(rps['B']):.0f}; "
      f"median of pair ratios B/A={statistics.median(ratios):.3f} (from {min(ratios):.3f} to {max(ratios):.3f}); "
      f"CPU µs per request A={statistics.median(cpu['A']):.0f} B={statistics.median(cpu['B']):.0f}")
EOF
