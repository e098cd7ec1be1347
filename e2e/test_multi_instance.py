"""Two tollgate processes behind one PostgreSQL database and one Redis, the
load split between them with the official openai SDK: together they admit
exactly what one would.

- A balance covering N requests serves exactly N across both instances.
- A shared 60 requests-per-minute limit admits 60 in all, not 120.
- Redis killed mid-burst: with `on_failure = "closed"` requests are refused
  with a 503 (nothing charged for them, nothing charged twice), and served
  again once Redis is back.
- An instance killed (SIGKILL) while it holds a concurrency lease: the other
  instance is refused until the lease's TTL, then served.

Needs PostgreSQL (TOLLGATE_TEST_POSTGRES_URL, a server URL as the Rust tests
take it) and Debian's redis-server; skipped without them unless
TOLLGATE_REQUIRE_REDIS is set (CI sets it).
"""

import glob
import os
import shutil
import signal
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest

import mock_answers as mock
from harness import (
    ADMIN_TOKEN,
    MODEL,
    free_port,
    start_gateway,
    start_mock,
    stop,
    wait_for,
    write_config,
)

PG_SERVER = os.environ.get("TOLLGATE_TEST_POSTGRES_URL", "")
REQUIRED = bool(os.environ.get("TOLLGATE_REQUIRE_REDIS"))

# A model whose worst case is exactly its cost: no input price, and requests
# asking for exactly the output tokens the mock answers.
EXACT_MODEL = "exact"
EXACT_OUTPUT = len(mock.MOCK_TEXT_PIECES)
EXACT_COST_NANO = EXACT_OUTPUT * 10 * 1000  # 10 USD per 1M tokens


def need(condition, what):
    if not condition:
        if REQUIRED:
            pytest.fail(f"{what} is required (TOLLGATE_REQUIRE_REDIS is set)")
        pytest.skip(f"{what} is not available")


class Redis:
    """A throw-away redis-server on a free loopback port, no persistence."""

    def __init__(self, tmp):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}"
        self.log = tmp / "redis.log"
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=open(self.log, "ab"),
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

        def answers():
            try:
                with __import__("socket").create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return True
            except OSError:
                return False

        wait_for(answers, 10, "redis-server listening")

    def figures(self, user_id):
        """[balance, held, holds left] of a user in Redis, as text."""
        cli = ["redis-cli", "-p", str(self.port), "--raw"]
        user = "{tollgate}:u:" + str(user_id)
        bal_held = subprocess.run(cli + ["HMGET", user, "bal", "held"], capture_output=True, text=True).stdout.split()
        holds = subprocess.run(cli + ["ZCARD", "{tollgate}:uh:" + str(user_id)], capture_output=True, text=True)
        return bal_held + holds.stdout.split()

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def psql():
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/psql")) or [shutil.which("psql")]
    return found[-1]


@pytest.fixture
def deployment(tmp_path):
    """The mock, Redis, a fresh PostgreSQL database; yields a function
    starting two instances on a given configuration tail."""
    need(PG_SERVER, "PostgreSQL (TOLLGATE_TEST_POSTGRES_URL)")
    need(shutil.which("redis-server"), "redis-server")
    name = "tollgate_e2e_" + uuid.uuid4().hex[:12]
    subprocess.run([psql(), PG_SERVER, "-qc", f"CREATE DATABASE {name}"], check=True, capture_output=True)
    database_url = PG_SERVER.rsplit("/", 1)[0] + "/" + name
    redis = Redis(tmp_path)
    redis.start()
    mock_proc, mock_port = start_mock(tmp_path / "mock")
    procs = []

    def start(tail, instances=2):
        base = write_config(tmp_path, mock_port).read_text()
        base = base.replace(f'database_url = "sqlite://{tmp_path}/tollgate.db"', f'database_url = "{database_url}"')
        top = f'redis_url = "{redis.url}"\nhold_ttl_secs = 120\n'
        tables = (
            f"\n[models.{EXACT_MODEL}]\nprovider = \"mock\"\ninput_price = 0\n"
            "cached_input_price = 0\noutput_price = 10\n"
        )
        urls = []
        for i in range(instances):
            home = tmp_path / f"instance-{i}"
            home.mkdir(exist_ok=True)
            config = home / "tollgate.toml"
            # Each instance its own folder, hence its own journal.
            config.write_text(top + base + tables + tail)
            proc, url = start_gateway(home, config)
            procs.append(proc)
            urls.append(url)
            homes.append(home)
        return urls

    def restart(i):
        """Starts instance `i` again, in its folder (so on its journal)."""
        proc, url = start_gateway(homes[i], homes[i] / "tollgate.toml")
        procs.append(proc)
        return url

    homes = []
    start.redis = redis
    start.procs = procs
    start.restart = restart
    try:
        yield start
    finally:
        for proc in procs:
            stop(proc)
        stop(mock_proc)
        redis.kill()


def admin(url):
    return httpx.Client(base_url=url, trust_env=False, timeout=30, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})


def new_user(url, name, usd):
    with admin(url) as http:
        created = http.post("/admin/users", json={"name": name})
        assert created.status_code == 200, created.text
        user_id, key = created.json()["user"]["id"], created.json()["key"]
        credited = http.post(f"/admin/users/{user_id}/balance", json={"amount_usd": usd, "reason": "e2e"})
        assert credited.status_code == 200, credited.text
    return user_id, key


def clients(urls, key):
    return [
        openai.OpenAI(api_key=key, base_url=url + "/v1", max_retries=0, http_client=httpx.Client(trust_env=False))
        for url in urls
    ]


def split(clients_, n, call):
    """`n` calls, alternating between the clients, 16 at a time; returns the
    outcome of each: "ok", or the refusal's status and error code."""

    def one(i):
        try:
            call(clients_[i % len(clients_)])
            return "ok"
        except openai.APIStatusError as e:
            code = (e.body or {}).get("code") if isinstance(e.body, dict) else None
            return (e.status_code, code)

    with ThreadPoolExecutor(16) as pool:
        return list(pool.map(one, range(n)))


def settled(url, user_id, n):
    """Waits until `n` usage records are written; returns (user, records),
    read at one moment: the records before and after the user are the same
    (a settlement committed between two reads would otherwise make the
    balance and the records disagree)."""
    state = {}

    def done():
        with admin(url) as http:
            usage = lambda: http.get(f"/admin/users/{user_id}/usage", params={"limit": 1000}).json()["data"]
            before = usage()
            state["user"] = http.get(f"/admin/users/{user_id}").json()
            state["records"] = usage()
        same = {r["request_id"] for r in before} == {r["request_id"] for r in state["records"]}
        return same and len(state["records"]) >= n

    wait_for(done, 15, f"{n} usage records")
    return state["user"], state["records"]


def balance_nano(user):
    return int(user["balance_nano_usd"]) + int(user["free_balance_nano_usd"])


def test_a_balance_covering_n_requests_serves_exactly_n_across_two_instances(deployment):
    urls = deployment("")
    n = 20
    usd = f"{n * EXACT_COST_NANO / 1e9:.9f}"
    user_id, key = new_user(urls[0], "split-balance", usd)
    both = clients(urls, key)
    hello = [{"role": "user", "content": "hello"}]
    outcomes = split(both, 4 * n, lambda c: c.chat.completions.create(model=EXACT_MODEL, messages=hello, max_tokens=EXACT_OUTPUT))
    served = outcomes.count("ok")
    refused = [o for o in outcomes if o != "ok"]
    assert served == n, outcomes
    assert set(refused) == {(429, "insufficient_quota")}, refused
    user, records = settled(urls[1], user_id, n)
    assert len(records) == n and all(int(r["cost_nano_usd"]) == EXACT_COST_NANO for r in records), records
    assert balance_nano(user) == 0, user
    # Redis released every hold with its committed charge, and keeps the
    # balance the database has.
    wait_for(
        lambda: deployment.redis.figures(user_id) == ["0", "0", "0"],
        10,
        "Redis to hold nothing for the user",
    )


def test_a_shared_60_rpm_limit_admits_60_in_all_not_120(deployment):
    urls = deployment(f'\n[rate_limits.models."{MODEL}"]\nrpm = 60\n')
    user_id, key = new_user(urls[0], "split-rpm", "10")
    hello = [{"role": "user", "content": "hello"}]
    started = time.monotonic()
    outcomes = split(clients(urls, key), 200, lambda c: c.chat.completions.create(model=MODEL, messages=hello))
    elapsed = time.monotonic() - started
    # 60 at once, and one more for each whole second the burst took (the
    # limit refills at 1 a second; a loaded machine once took over one):
    # never the 120 two separate limits would admit.
    served = outcomes.count("ok")
    assert 60 <= served <= 60 + int(elapsed), (served, elapsed, outcomes)
    assert set(o for o in outcomes if o != "ok") == {(429, "rate_limit_exceeded")}
    user, records = settled(urls[0], user_id, served)
    assert len(records) == served
    assert balance_nano(user) == 10 * 10**9 - sum(int(r["cost_nano_usd"]) for r in records)


def test_redis_killed_mid_burst_refuses_and_charges_nothing_twice(deployment):
    urls = deployment("")
    user_id, key = new_user(urls[0], "split-redis-down", "10")
    both = clients(urls, key)
    hello = [{"role": "user", "content": "hello"}]
    outcomes = []

    def burst(n):
        got = split(both, n, lambda c: c.chat.completions.create(model=MODEL, messages=hello))
        outcomes.extend(got)
        return got

    assert burst(40).count("ok") == 40
    deployment.redis.kill()
    assert set(burst(40)) == {(503, "limits_unavailable")}
    deployment.redis.start()
    # Each instance reconnects by itself.
    wait_for(lambda: burst(2) == ["ok", "ok"], 15, "both instances served again")
    assert burst(40).count("ok") == 40
    served = outcomes.count("ok")
    user, records = settled(urls[1], user_id, served)
    ids = [r["request_id"] for r in records]
    assert len(ids) == served and len(set(ids)) == served, "each request served recorded once"
    assert all(int(r["status"]) == 200 for r in records), "the refused were never recorded"
    assert balance_nano(user) == 10 * 10**9 - sum(int(r["cost_nano_usd"]) for r in records)


def test_a_killed_instances_lease_is_freed_after_its_ttl(deployment):
    tail = f'\n[rate_limits]\nlease_ttl_secs = 3\n[rate_limits.models."{MODEL}"]\nconcurrency = 1\n'
    urls = deployment(tail)
    new_user_id, key = new_user(urls[0], "split-lease", "10")
    first, second = clients(urls, key)
    slow = [{"role": "user", "content": 'hello [mock-script:{"first_piece_delay_ms": 60000}]'}]
    hello = [{"role": "user", "content": "hello"}]
    stream = first.chat.completions.create(model=MODEL, messages=slow, stream=True)
    # Instance 0 holds the lease while its upstream is slow; then it dies.
    with pytest.raises(openai.RateLimitError) as refused:
        second.chat.completions.create(model=MODEL, messages=hello)
    assert "concurrent requests" in refused.value.message
    killed_at = time.monotonic()
    deployment.procs[0].send_signal(signal.SIGKILL)
    deployment.procs[0].wait(timeout=10)
    stream.close()

    def served():
        try:
            second.chat.completions.create(model=MODEL, messages=hello)
            return True
        except openai.RateLimitError:
            return False

    wait_for(served, 15, "the dead instance's lease to expire", interval=0.2)
    waited = time.monotonic() - killed_at
    assert 1.0 <= waited <= 10, waited

    # The dead instance's hold is still in Redis (holds outlive a lease);
    # restarted on its journal, it replays the interrupted request — charged
    # nothing — and releases that hold at once.
    user_id = new_user_id
    assert deployment.redis.figures(user_id)[1] != "0", deployment.redis.figures(user_id)
    deployment.restart(0)
    wait_for(lambda: deployment.redis.figures(user_id)[1:] == ["0", "0"], 10, "the replayed hold released")
