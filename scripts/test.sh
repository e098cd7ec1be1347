#!/usr/bin/env bash
# Runs every test suite: formatting and lints, unit and integration tests on
# SQLite and on PostgreSQL (file storage on a folder and on the moto S3
# server), and the end-to-end suite with the official Python SDKs. Installs
# what it needs (PostgreSQL and Redis from Debian, a Python venv with moto)
# on the first run; later runs reuse them. Safe to run on a fresh machine as root.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tollgate-target}"
VENV="${TOLLGATE_VENV:-$HOME/.cache/tollgate-venv}"
PG_PORT="${TOLLGATE_TEST_PG_PORT:-55432}"
PG_DIR="${TOLLGATE_TEST_PG_DIR:-/tmp/tollgate-test-pg}"
S3_PORT="${TOLLGATE_TEST_S3_PORT:-55500}"
MOTO_PID_FILE="${TMPDIR:-/tmp}/tollgate-moto.pid"

step() { guard_dev_null; printf '\n==> %s\n' "$*"; }

# Something run as root on this machine has been seen to replace /dev/null
# with a regular file, which then breaks every later `>/dev/null` of an
# unprivileged user (initdb runs as postgres). Say so, and put the device back.
guard_dev_null() {
  if [ ! -c /dev/null ] && [ "$(id -u)" = 0 ]; then
    printf 'warning: /dev/null was not a character device (before: %s); restoring it\n' "${LAST_STEP:-start}" >&2
    rm -f /dev/null && mknod -m 666 /dev/null c 1 3
  fi
  LAST_STEP="$*"
}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

install_postgres() {
  if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    step "installing PostgreSQL from Debian packages"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq postgresql >/dev/null
  fi
}

# Starts a throw-away PostgreSQL cluster on 127.0.0.1:$PG_PORT (trust auth).
start_postgres() {
  local bin
  bin=$(dirname "$(ls -d /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n 1)")
  local run=()
  if [ "$(id -u)" = 0 ]; then run=(runuser -u postgres --); fi
  if [ -f "$PG_DIR/postmaster.pid" ] && "${run[@]}" "$bin/pg_ctl" -D "$PG_DIR" status >/dev/null 2>&1; then
    # Already running (an earlier run): its port is line 4 of the pid file.
    PG_PORT=$(sed -n 4p "$PG_DIR/postmaster.pid")
    return 0
  fi
  rm -rf "$PG_DIR"
  mkdir -p "$PG_DIR"
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$PG_DIR"
  "${run[@]}" "$bin/initdb" -D "$PG_DIR" -U postgres --auth=trust >/dev/null
  # A server left listening on the port by something else (another clone's
  # cluster, a hand-started one) would make pg_ctl fail: take the next free port.
  local first=$PG_PORT
  while port_in_use "$PG_PORT"; do
    PG_PORT=$((PG_PORT + 1))
    if [ "$PG_PORT" -gt $((first + 50)) ]; then
      echo "no free port for PostgreSQL in $first..$PG_PORT" >&2
      exit 1
    fi
  done
  [ "$PG_PORT" = "$first" ] || echo "port $first is taken: PostgreSQL listens on $PG_PORT" >&2
  if ! "${run[@]}" "$bin/pg_ctl" -D "$PG_DIR" -l "$PG_DIR/server.log" -w -t 60 \
    -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off" start >/dev/null; then
    echo "PostgreSQL did not start; its log:" >&2
    cat "$PG_DIR/server.log" >&2 || true
    exit 1
  fi
}

# True when something accepts connections on 127.0.0.1:$1.
port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Debian's redis-server: the tests that share limits between instances
# start their own throw-away servers on loopback ports.
install_redis() {
  if ! command -v redis-server >/dev/null 2>&1; then
    step "installing Redis from Debian packages"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq redis-server >/dev/null
  fi
}

# The moto S3 server (from PyPI, in the venv) on 127.0.0.1:$S3_PORT, fresh
# for each run (it keeps objects in memory): the file storage tests run on
# it as well as on a local folder.
start_moto() {
  if [ -f "$MOTO_PID_FILE" ]; then
    kill "$(cat "$MOTO_PID_FILE")" 2>/dev/null || true
    rm -f "$MOTO_PID_FILE"
  fi
  nohup "$VENV/bin/moto_server" -H 127.0.0.1 -p "$S3_PORT" >"${TMPDIR:-/tmp}/tollgate-moto.log" 2>&1 &
  echo $! >"$MOTO_PID_FILE"
  for _ in $(seq 1 100); do
    if "$VENV/bin/python" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$S3_PORT/moto-api/', timeout=1)" 2>/dev/null; then
      return 0
    fi
    sleep 0.2
  done
  echo "the moto S3 server did not start on port $S3_PORT" >&2
  cat "${TMPDIR:-/tmp}/tollgate-moto.log" >&2 || true
  exit 1
}

stop_moto() {
  if [ -f "$MOTO_PID_FILE" ]; then
    kill "$(cat "$MOTO_PID_FILE")" 2>/dev/null || true
    rm -f "$MOTO_PID_FILE"
  fi
}

# espeak-ng (Debian) makes the real recordings the transcription tests send.
install_audio_tools() {
  if ! command -v espeak-ng >/dev/null 2>&1; then
    step "installing espeak-ng from Debian packages"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq espeak-ng >/dev/null
  fi
}

# Chromium and its WebDriver (Debian), for the console's browser tests.
install_browser() {
  if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    step "installing chromium and chromium-driver from Debian packages"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq chromium chromium-driver >/dev/null
  fi
}

install_python() {
  if [ ! -x "$VENV/bin/python" ]; then
    step "creating the Python venv at $VENV"
    python3 -m venv "$VENV"
  fi
  "$VENV/bin/pip" install -q --disable-pip-version-check -r e2e/requirements.txt
}

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings

# Each test gateway leaves its SQLite database and settlement journal in the
# temporary folder (some tests read them after the gateway stopped): those of
# earlier runs are removed, so that repeated runs do not fill the disk.
TMP_ROOT="${TMPDIR:-/tmp}"
rm -rf "$TMP_ROOT/tollgate-tests" "$TMP_ROOT"/tollgate-journal-*

install_redis
# A missing redis-server fails the Redis tests instead of skipping them.
export TOLLGATE_REQUIRE_REDIS=1

install_python
install_audio_tools
install_browser
start_moto
trap stop_moto EXIT
# A missing S3 server fails the S3 tests instead of skipping them.
export TOLLGATE_TEST_S3_URL="http://127.0.0.1:$S3_PORT" TOLLGATE_REQUIRE_S3=1

step "tests on SQLite"
cargo test --workspace

install_postgres
start_postgres
step "store and gateway tests on PostgreSQL (127.0.0.1:$PG_PORT), holds in the database"
TOLLGATE_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres" TOLLGATE_TEST_HOLDS=database \
  cargo test -p store -p gateway

step "end-to-end tests with the official SDKs"
cargo build -p tollgate -p mock-upstream -p fake-stripe --quiet
# The Codex CLI test installs the CLI from npm and fails (not skips) if it cannot.
# The multi-instance tests run two gateways on a database of this PostgreSQL.
TOLLGATE_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres" \
  TOLLGATE_REQUIRE_CODEX=1 TOLLGATE_BIN="$CARGO_TARGET_DIR/debug/tollgate" "$VENV/bin/python" -m pytest -q e2e
guard_dev_null "end"
