# shellcheck shell=bash
# One build of Tollgate beside its own mock upstream, for the hand-run
# comparisons of two builds (bench/ab.sh, bench/instructions.sh; sourced,
# not run). bench/run.sh starts its targets with bench/lib/targets.sh.

# start_build BIN_DIR RUN_DIR MOCK_ARGS [LAUNCHER…]: starts BIN_DIR's
# `mock-upstream` (on MOCK_PORT, with the words of MOCK_ARGS) and `tollgate`
# (on GATE_PORT, under LAUNCHER if given, e.g. valgrind) with billing on and
# a fresh SQLite database in RUN_DIR, waits until it answers (up to 2 min:
# under valgrind it starts slowly), and gives a new user 100,000 USD. Sets
# MOCK_PID, GATE_PID, KEY (the user's key) and CHAT_URL.
start_build() {
  local bin=$1 run=$2 mock_args=$3 admin=bench-admin-token
  shift 3
  mkdir -p "$run"
  # shellcheck disable=SC2086 # MOCK_ARGS is a list of words
  "$bin/mock-upstream" --listen "127.0.0.1:$MOCK_PORT" $mock_args > "$run/mock.log" 2>&1 &
  MOCK_PID=$!
  cat > "$run/tollgate.toml" << EOF
listen = "127.0.0.1:$GATE_PORT"
database_url = "sqlite://$run/tollgate.db"
admin_token = "$admin"
log_level = "warn"
billing = true

[providers.mock]
kind = "openai"
base_url = "http://127.0.0.1:$MOCK_PORT/v1"
api_key = "sk-bench-upstream"

[models."bench-model"]
provider = "mock"
input_price = 2.5
output_price = 10
max_output_tokens = 64
EOF
  "$@" "$bin/tollgate" --config "$run/tollgate.toml" serve > "$run/tollgate.log" 2>&1 &
  GATE_PID=$!
  local base=http://127.0.0.1:$GATE_PORT
  for _ in $(seq 600); do
    curl -sf "$base/healthz" > /dev/null && break
    sleep 0.2
  done
  KEY=$(curl -sf -H "Authorization: Bearer $admin" -H 'content-type: application/json' \
    -d '{"name":"bench"}' "$base/admin/users" | jq -r .key)
  curl -sf -H "Authorization: Bearer $admin" -H 'content-type: application/json' \
    -d '{"amount_usd":"100000","reason":"bench"}' "$base/admin/users/1/balance" > /dev/null
  CHAT_URL=$base/v1/chat/completions
}

# stop_build: stops what start_build started.
stop_build() {
  kill "$GATE_PID" "$MOCK_PID"
  wait "$GATE_PID" "$MOCK_PID" 2> /dev/null || true
}
