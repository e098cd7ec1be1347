#!/usr/bin/env bash
# Instructions a request costs, counted by callgrind, run by hand:
#
#   bash bench/instructions.sh BIN_DIR [BIN_DIR…]
#
# Each directory holds a release `tollgate` and `mock-upstream`. Tollgate
# runs under `valgrind --tool=callgrind` (the mock natively) with billing on
# and a fresh SQLite database; `ab` sends WARMUP requests, callgrind's
# counters are zeroed, `ab` sends REQUESTS more (the same small non-stream
# chat completion as bench/run.sh, CONC at a time, keep-alive), the
# settlement writer is given a moment to write them, and the counters are
# dumped. It prints user-space instructions per request for each build.
#
# Unlike req/s or CPU time on a shared 2-core VM (±15 %, and whole slow
# spells), the count repeats within ~2 % from one run to the next (the
# settlement writer's batches vary with timing), so two runs of each build
# tell a 3 % change apart. It sees no kernel work,
# no cache misses and no wake-up latency: a change meant to save those
# (fewer syscalls, fewer task hops) is judged by bench/ab.sh too.
# KEEP=DIR keeps each build's counts as DIR/callgrind.NAME.out, for
# `callgrind_annotate` (where the instructions go, function by function).
# MODE=stream counts a streamed chat completion instead (64 chunks, 5 ms
# apart, from `stream-probe`, which each directory then holds too): the
# instructions per stream.
set -euo pipefail
(($#)) || { echo "usage: bash bench/instructions.sh BIN_DIR [BIN_DIR…]" >&2; exit 2; }
REQUESTS=${REQUESTS:-2000}
WARMUP=${WARMUP:-300}
CONC=${CONC:-8}
MODE=${MODE:-chat}
case $MODE in chat | stream) ;; *) echo "MODE: chat or stream" >&2; exit 2 ;; esac
if [[ $MODE == stream ]]; then
  # Whole streams per connection: the counts must divide evenly.
  ((REQUESTS % CONC == 0 && WARMUP % CONC == 0)) || { echo "REQUESTS and WARMUP: multiples of CONC" >&2; exit 2; }
fi
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib/build.sh
source "$HERE/lib/build.sh"
MOCK_PORT=${MOCK_PORT:-9340}
GATE_PORT=${GATE_PORT:-9360}
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
for tool in valgrind callgrind_control ab jq curl; do
  command -v "$tool" > /dev/null || {
    echo "$tool missing (Debian: valgrind, apache2-utils, jq, curl)" >&2
    exit 1
  }
done
# The request body of bench/wrk-post.lua.
sed -n "s/^wrk.body = '\(.*\)'$/\1/p" "$HERE/wrk-post.lua" | sed 's/\\\\/\\/g' > "$WORK/body.json"
jq -e .model "$WORK/body.json" > /dev/null

# Instructions per request of build $1.
count() {
  local bin=$1 run=$WORK/run.$RANDOM mock_args="--chunks 16"
  [[ $MODE == chat ]] || mock_args="--chunks 64 --chunk-delay-ms 5"
  start_build "$bin" "$run" "$mock_args" \
    valgrind --tool=callgrind --compress-strings=no --compress-pos=no --callgrind-out-file="$run/callgrind.out"
  load() {
    if [[ $MODE == stream ]]; then
      "$bin/stream-probe" --url "$CHAT_URL" --key "$KEY" --connections "$CONC" --streams $(($1 / CONC)) \
        --expect-chunks 64 --stall-ms 60000 --timeout-secs 600 > "$run/probe.txt" 2>&1
      grep -q "^PROBE_RESULT streams=$1 ok=$1 errors=0 " "$run/probe.txt" ||
        { echo "streams failed: $(tail -3 "$run/probe.txt")" >&2; exit 1; }
      return
    fi
    ab -q -k -n "$1" -c "$CONC" -p "$WORK/body.json" -T application/json \
      -H "Authorization: Bearer $KEY" "$CHAT_URL" > "$run/ab.txt"
    grep -q "^Non-2xx responses" "$run/ab.txt" && { echo "non-2xx answers: $(cat "$run/ab.txt")" >&2; exit 1; }
    grep -q "^Failed requests: *0$" "$run/ab.txt" || { echo "failed requests: $(cat "$run/ab.txt")" >&2; exit 1; }
  }
  load "$WARMUP"
  sleep 1
  callgrind_control --zero "$GATE_PID" > /dev/null 2>&1
  load "$REQUESTS"
  # The settlement writer batches what the requests queued.
  sleep 2
  callgrind_control --dump=measured "$GATE_PID" > /dev/null 2>&1
  stop_build
  local dumped total
  dumped=$(grep -l "^desc: Trigger: dump measured" "$run"/callgrind.out.* | head -1)
  total=$(awk '/^summary:/ {print $2; exit}' "$dumped")
  if [[ -n ${KEEP:-} ]]; then
    mkdir -p "$KEEP"
    cp "$dumped" "$KEEP/callgrind.$(basename "$bin").out"
  fi
  echo $((total / REQUESTS))
}

for dir in "$@"; do
  echo "$dir: $(count "$dir") instructions per $([[ $MODE == chat ]] && echo request || echo stream) (REQUESTS=$REQUESTS CONC=$CONC)"
done
