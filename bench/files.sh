#!/usr/bin/env bash
# File storage throughput on the local backend, run by hand:
#
#   bash bench/files.sh BIN_DIR [SIZE_MIB]
#
# BIN_DIR holds a release `tollgate`. A file of SIZE_MIB (default 2048) random
# MiB is uploaded to a fresh gateway with curl (multipart, streamed) and
# downloaded back, and the same file is copied with `cp` and `dd … conv=fsync`
# (an upload is made durable before it is acknowledged) and read with `cat`,
# on the same filesystem, in the same run: the figures mean something next to
# each other only. Prints MB/s, the ratios, and the gateway's peak RSS (VmHWM)
# before and after the upload.
set -euo pipefail
BIN=${1:?directory of a release tollgate}
SIZE_MIB=${2:-2048}
PORT=${GATE_PORT:-9340}
ADMIN=files-bench-admin
WORK=$(mktemp -d -p "${BENCH_DIR:-/var/tmp}")
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

mbps() { python3 -c "print(f'{$1 / 1e6 / $2:.0f}')"; }
now() { date +%s.%N; }
elapsed() { python3 -c "print($2 - $1)"; }
peak_kb() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }

BYTES=$((SIZE_MIB * 1024 * 1024))
echo "making a $SIZE_MIB MiB file of random bytes"
head -c "$BYTES" /dev/urandom > "$WORK/source.bin"
sync

cat > "$WORK/tollgate.toml" <<EOF
listen = "127.0.0.1:$PORT"
database_url = "sqlite://$WORK/tollgate.db"
admin_token = "$ADMIN"
log_level = "warn"

[storage]
dir = "$WORK/files"
max_file_bytes = $((BYTES * 2))
max_total_bytes = $((BYTES * 4))
EOF
"$BIN/tollgate" --config "$WORK/tollgate.toml" serve > "$WORK/tollgate.log" 2>&1 &
GATE=$!
for _ in $(seq 1 100); do
  curl -fs "http://127.0.0.1:$PORT/healthz" > /dev/null && break
  sleep 0.1
done
KEY=$(curl -fs -H "Authorization: Bearer $ADMIN" -H 'content-type: application/json' \
  -d '{"name":"bench"}' "http://127.0.0.1:$PORT/admin/users" | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')

# Baselines, the cache dropped where the kernel lets us.
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true; }
drop_caches
t0=$(now); cp "$WORK/source.bin" "$WORK/cp.bin"; t1=$(now)
CP=$(elapsed "$t0" "$t1"); rm -f "$WORK/cp.bin"
drop_caches
t0=$(now); dd if="$WORK/source.bin" of="$WORK/dd.bin" bs=1M conv=fsync status=none; t1=$(now)
DD=$(elapsed "$t0" "$t1"); rm -f "$WORK/dd.bin"

drop_caches
RSS_BEFORE=$(peak_kb "$GATE")
t0=$(now)
ID=$(curl -fs -H "Authorization: Bearer $KEY" -F purpose=0 -F "file=@$WORK/source.bin" \
  "http://127.0.0.1:$PORT/api/v1/user/files/upload" | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["fileUniqueID"])')
t1=$(now)
UP=$(elapsed "$t0" "$t1")
RSS_AFTER=$(peak_kb "$GATE")

drop_caches
t0=$(now); cat "$WORK/source.bin" > /dev/null; t1=$(now)
CAT=$(elapsed "$t0" "$t1")
drop_caches
t0=$(now)
curl -fs -H "Authorization: Bearer $KEY" "http://127.0.0.1:$PORT/api/v1/user/files/download/$ID" -o /dev/null
t1=$(now)
DOWN=$(elapsed "$t0" "$t1")

echo
echo "file: $SIZE_MIB MiB"
printf 'cp                    %6s MB/s\n' "$(mbps "$BYTES" "$CP")"
printf 'dd conv=fsync         %6s MB/s\n' "$(mbps "$BYTES" "$DD")"
printf 'upload (curl -F)      %6s MB/s   = %s x cp, %s x dd fsync\n' "$(mbps "$BYTES" "$UP")" \
  "$(python3 -c "print(f'{$CP / $UP:.2f}')")" "$(python3 -c "print(f'{$DD / $UP:.2f}')")"
printf 'cat > /dev/null       %6s MB/s\n' "$(mbps "$BYTES" "$CAT")"
printf 'download (curl -o)    %6s MB/s   = %s x cat\n' "$(mbps "$BYTES" "$DOWN")" \
  "$(python3 -c "print(f'{$CAT / $DOWN:.2f}')")"
echo "gateway peak RSS: $RSS_BEFORE kB before the upload, $RSS_AFTER kB after"
