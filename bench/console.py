#!/usr/bin/env python3
"""How long each console page takes with 100k usage records, run by hand:

    python3 bench/console.py BIN_DIR [RECORDS]

BIN_DIR holds a `tollgate` (release, for figures that mean something). A fresh
SQLite database gets one console admin and RECORDS (default 100000) usage
records, all theirs (the worst case for their own pages and for the admin's),
spread over 60 days, 5 models and 3 channels. Each page is then fetched 30
times on loopback with a logged-in session; the median and the slowest are
printed in ms, and the time of a static file (the stylesheet, no database) in
the same run as the baseline."""

import os
import random
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import http.cookiejar

BIN = sys.argv[1]
RECORDS = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
PORT = int(os.environ.get("GATE_PORT", "9341"))
BASE = f"http://127.0.0.1:{PORT}"
work = tempfile.mkdtemp(prefix="console-bench-")
config = os.path.join(work, "tollgate.toml")
with open(config, "w") as f:
    f.write(f'listen = "127.0.0.1:{PORT}"\ndatabase_url = "sqlite://{work}/tollgate.db"\n'
            'admin_token = "console-bench-admin"\nlog_level = "warn"\n')
env = dict(os.environ, TOLLGATE_CONFIG=config, TOLLGATE_PASSWORD="bench password 1")
tollgate = os.path.join(BIN, "tollgate")
subprocess.run([tollgate, "user", "create", "root", "--admin", "--password"], env=env, check=True,
               stdout=subprocess.DEVNULL)

db = sqlite3.connect(os.path.join(work, "tollgate.db"))
(user_id,) = db.execute("SELECT id FROM users WHERE name = 'root'").fetchone()
now_ms = int(time.time() * 1000)
rng = random.Random(7)
models = ["gpt-4o", "gpt-4o-mini", "claude-sonnet", "o3", "embed"]
rows = []
for i in range(RECORDS):
    at = now_ms - rng.randrange(60 * 86_400_000)
    rows.append((f"req_{i:08d}", user_id, "key_bench", "chat.completions", rng.choice(models),
                 rng.choice(["openai", "azure", "backup"]), "upstream", 0, rng.randrange(2000),
                 rng.randrange(800), 0, rng.randrange(10_000_000), rng.randrange(900), 200, None, at,
                 0, ""))
db.executemany("INSERT INTO usage_records (request_id, user_id, key_id, endpoint, model, provider, "
               "upstream_model, stream, input_tokens, output_tokens, cached_tokens, cost, latency_ms, "
               "status, error, created_at, cache_write_tokens, unit) VALUES "
               "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
# What settlement adds to the daily totals as it records (the migration
# filled them from an empty table).
db.execute("INSERT INTO usage_daily (user_id, day, model, provider, requests, cost, tokens) "
           "SELECT user_id, created_at / 86400000, model, provider, COUNT(*), SUM(cost), "
           "SUM(input_tokens + output_tokens) FROM usage_records "
           "GROUP BY user_id, created_at / 86400000, model, provider")
db.commit()
db.execute("ANALYZE")
db.close()

server = subprocess.Popen([tollgate, "serve"], env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
try:
    for _ in range(100):
        try:
            urllib.request.urlopen(f"{BASE}/healthz", timeout=1)
            break
        except Exception:
            time.sleep(0.1)
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(f"{BASE}/console/login").read().decode()
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    form = urllib.parse.urlencode({"login": "root", "password": "bench password 1", "csrf": csrf})
    opener.open(f"{BASE}/console/login", data=form.encode()).read()

    def timed(path):
        times = []
        for _ in range(30):
            start = time.perf_counter()
            with opener.open(BASE + path) as response:
                body = response.read()
                assert response.status == 200, (path, response.status)
            times.append((time.perf_counter() - start) * 1000)
        assert b"Tollgate" in body or path.endswith(".css"), path
        return statistics.median(times), max(times)

    pages = ["/console/static/console.css", "/console/", "/console/keys", "/console/usage",
             "/console/usage?model=o3", "/console/models", "/console/rules", "/console/files",
             "/console/settings", "/console/admin/users", f"/console/admin/users/{user_id}",
             "/console/admin/usage", "/console/admin/usage?user=root",
             "/console/admin/usage?channel=azure&model=o3", "/console/admin/status"]
    print(f"{RECORDS} usage records; ms per page (median, slowest of 30)")
    for path in pages:
        median, worst = timed(path)
        print(f"  {path:48} {median:7.2f} {worst:7.2f}")
finally:
    server.terminate()
    server.wait()
    shutil.rmtree(work, ignore_errors=True)
