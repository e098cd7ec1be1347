"""`kill -9` under load loses no charge and leaves no hold.

The real binary serves 32 concurrent clients (streams and whole answers)
against the mock upstream; it is killed with SIGKILL at a moment that varies
per round, restarted on the same database and journal, and then:

* every answer a client received whole has its usage record, charged exactly;
* every request the upstream completed is accounted for: charged, or recorded
  as interrupted (the documented rule: a request in flight when the process
  died is recorded and charged nothing);
* nothing is held, and the balance is the start minus the sum of the charges.
"""

import signal
import subprocess
import threading
import time

import httpx
import pytest

from harness import (
    ADMIN_TOKEN,
    MODEL,
    expected_cost,
    free_port,
    hermetic_env,
    mock_requests,
    new_marker,
    start_mock,
    stop,
    wait_healthy,
    write_config,
    DEFAULT_BIN,
)

CLIENTS = 32
ROUNDS = 3


class Gateway:
    def __init__(self, binary, tmp, mock_port, holds):
        self.binary = binary
        self.tmp = tmp
        self.config = write_config(tmp, mock_port)
        # Top-level keys come before the file's first table.
        self.config.write_text(f'holds = "{holds}"\n' + self.config.read_text())
        self.proc = None
        self.url = None

    def start(self):
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        log = self.tmp / "tollgate.log"
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [self.binary, "--config", str(self.config), "serve"],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.tmp,
                env=hermetic_env(TOLLGATE_LISTEN=f"127.0.0.1:{port}"),
            )
        wait_healthy(self.proc, self.url, log)

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)


def admin(http, gw, method, path, **kw):
    r = http.request(method, gw.url + path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, **kw)
    assert r.status_code == 200, f"{method} {path}: {r.status_code} {r.text}"
    return r.json()


def all_usage(http, gw, user_id):
    records, cursor = [], None
    while True:
        params = {"limit": 1000}
        if cursor:
            params["cursor"] = cursor
        page = admin(http, gw, "GET", f"/admin/users/{user_id}/usage", params=params)
        records += page["data"]
        if not page["has_more"]:
            return records
        cursor = page["next_cursor"]


def load(url, key, marker, stop_at, completed, lock):
    """One client: requests until `stop_at`; notes the ids of whole answers."""
    with httpx.Client(trust_env=False, timeout=10) as c:
        n = 0
        while time.monotonic() < stop_at:
            n += 1
            stream = n % 2 == 0
            body = {
                "model": MODEL,
                "stream": stream,
                "messages": [{"role": "user", "content": f"{marker} request {n}"}],
            }
            try:
                if stream:
                    with c.stream("POST", url + "/v1/chat/completions", json=body,
                                  headers={"Authorization": f"Bearer {key}"}) as r:
                        text = "".join(r.iter_text())
                        whole = r.status_code == 200 and text.rstrip().endswith("data: [DONE]")
                        rid = r.headers.get("x-request-id")
                else:
                    r = c.post(url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"})
                    whole = r.status_code == 200 and r.json()["choices"][0]["message"]["content"]
                    rid = r.headers.get("x-request-id")
            except (httpx.HTTPError, ValueError):
                return  # the gateway died
            if whole:
                with lock:
                    completed.append(rid)


@pytest.mark.parametrize("holds", ["memory", "database"])
def test_kill_9_under_load_loses_no_charge_and_leaves_no_hold(tmp_path, holds):
    import os

    binary = os.environ.get("TOLLGATE_BIN", DEFAULT_BIN)
    mock_proc, mock_port = start_mock(tmp_path)
    gw = Gateway(binary, tmp_path, mock_port, holds)
    http = httpx.Client(trust_env=False, timeout=30)
    try:
        gw.start()
        created = admin(http, gw, "POST", "/admin/users", json={"name": "crash"})
        user_id, key = created["user"]["id"], created["key"]
        start = admin(http, gw, "POST", f"/admin/users/{user_id}/balance",
                      json={"amount_usd": "100", "reason": "crash test"})["balance_nano_usd"]
        completed, lock = [], threading.Lock()
        marker = new_marker("crash")
        for round_ in range(ROUNDS):
            # Kill at 0.8 s, 1.3 s, 1.8 s into the load.
            run_for = 0.8 + 0.5 * round_
            stop_at = time.monotonic() + run_for + 5
            threads = [threading.Thread(target=load, args=(gw.url, key, marker, stop_at, completed, lock))
                       for _ in range(CLIENTS)]
            for t in threads:
                t.start()
            time.sleep(run_for)
            gw.kill9()
            for t in threads:
                t.join(timeout=30)
            gw.start()  # replays the journal before it serves

        records = {r["request_id"]: r for r in all_usage(http, gw, user_id)}
        charged = [r for r in records.values() if r["status"] == 200]
        interrupted = [r for r in records.values() if r["status"] == 0]
        # 1. Every whole answer is charged, exactly.
        missing = [rid for rid in completed if rid not in records or records[rid]["status"] != 200]
        assert not missing, f"{len(missing)} of {len(completed)} whole answers were not charged"
        for r in charged:
            assert r["cost_nano_usd"] == expected_cost(
                MODEL, r["input_tokens"], r["cached_tokens"], r["cache_write_tokens"], r["output_tokens"]
            ), r
        assert all(r["cost_nano_usd"] == 0 for r in interrupted)
        # 2. Every upstream completion is accounted for.
        log = mock_requests(f"http://127.0.0.1:{mock_port}", marker)
        done_upstream = sum(1 for e in log if e["state"] == "done")
        assert done_upstream <= len(charged) + len(interrupted), (done_upstream, len(charged), len(interrupted))
        # 3. No hold left; the balance is exact.
        user = admin(http, gw, "GET", f"/admin/users/{user_id}")
        user = user.get("user", user)
        assert user["held"] == "0", user
        spent = sum(r["cost_nano_usd"] for r in charged)
        assert user["balance_nano_usd"] + user["free_balance_nano_usd"] == start - spent
        assert len(completed) > 100, "the load was too light to mean anything"
        print(f"\ncrash ({holds} holds): {len(completed)} whole answers, {len(charged)} charged, "
              f"{len(interrupted)} interrupted, {done_upstream} completed upstream")
    finally:
        http.close()
        if gw.proc is not None:
            stop(gw.proc)
        stop(mock_proc)
