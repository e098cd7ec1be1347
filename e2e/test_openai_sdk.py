"""End-to-end tests: the official `openai` Python SDK against Tollgate.

A session fixture starts the mock upstream (mock_upstream.py) and the tollgate
binary (env TOLLGATE_BIN, default /root/.cache/tollgate-target/debug/tollgate),
creates a user through the admin API and credits it 10 USD. The tests then
drive /v1/chat/completions through the SDK and finally check that the
balance went down by exactly the sum of the recorded charges.

Everything listens on 127.0.0.1 and every wait is bounded.
"""

import json
import os
import select
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal
from pathlib import Path

import httpx
import openai
import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import mock_upstream as mock  # noqa: E402  (its constants: the expected answers)

DEFAULT_BIN = "/root/.cache/tollgate-target/debug/tollgate"
ADMIN_TOKEN = "e2e-admin-token-0123456789"
UPSTREAM_KEY = mock.UPSTREAM_KEY
MODEL = "gpt-test"
UPSTREAM_MODEL = "mock-model"
BAD_UPSTREAM_MODEL = "gpt-badkey"
CREDITS_PER_USD = 34_000
START_USD = Decimal("10")

STARTUP_TIMEOUT = 30.0  # seconds for each process to come up
REQUEST_TIMEOUT = 30.0  # seconds for any single HTTP call
SETTLE_TIMEOUT = 15.0  # seconds for the gateway to settle streams after they end
STOP_TIMEOUT = 15.0  # seconds for a process to exit after SIGTERM


# Prices of `gpt-test` in USD per 1M tokens (see the config below).
INPUT_PRICE = Decimal("1")
OUTPUT_PRICE = Decimal("2")
CACHED_INPUT_PRICE = Decimal("0.5")


def expected_cost_nano(prompt, cached, completion):
    """What the gateway must charge, in nano-USD (rounded up, as it does)."""
    usd_e6 = (prompt - cached) * INPUT_PRICE + cached * CACHED_INPUT_PRICE + completion * OUTPUT_PRICE
    nano = usd_e6 * 1000  # USD per 1M tokens -> nano-USD per token is x1000
    return int(nano.to_integral_value(rounding=ROUND_CEILING))


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path, lines=60):
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "<no log>"


def stop(proc):
    """Terminates a process we started, then kills it if it lingers."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=STOP_TIMEOUT)


def hermetic_env(**extra):
    """The environment without inherited TOLLGATE_* settings or proxies."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("TOLLGATE_") and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")
    }
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env.update(extra)
    return env


@dataclass
class Gateway:
    base_url: str  # http://127.0.0.1:PORT
    mock_url: str
    user_id: int
    key: str
    start_balance_nano: int
    http: httpx.Client
    gateway_log: Path
    # Requests that reached the gateway's meter (each leaves one usage record).
    metered: list = field(default_factory=list)

    # SDK clients made by client(), closed at teardown.
    clients: dict = field(default_factory=dict)

    def client(self, api_key=None):
        """An SDK client for the gateway; no retries, so each call is one request."""
        api_key = api_key or self.key
        if api_key not in self.clients:
            self.clients[api_key] = openai.OpenAI(
                api_key=api_key,
                base_url=self.base_url + "/v1",
                max_retries=0,
                timeout=REQUEST_TIMEOUT,
                http_client=httpx.Client(trust_env=False, timeout=REQUEST_TIMEOUT),
            )
        return self.clients[api_key]

    def close(self):
        for c in self.clients.values():
            c.close()

    def admin(self, method, path, **kw):
        r = self.http.request(method, self.base_url + path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, **kw)
        assert r.status_code == 200, f"{method} {path}: {r.status_code} {r.text}"
        return r.json()

    def upstream_requests(self):
        r = self.http.get(self.mock_url + "/__requests")
        r.raise_for_status()
        return r.json()["requests"]


def write_config(tmp, mock_port):
    db = tmp / "tollgate.db"
    config = tmp / "tollgate.toml"
    config.write_text(
        f"""\
database_url = "sqlite://{db}"
admin_token = "{ADMIN_TOKEN}"
log_level = "info"
shutdown_grace_secs = 5

[providers.mock]
kind = "openai"
base_url = "http://127.0.0.1:{mock_port}/v1"
api_key = "{UPSTREAM_KEY}"
connect_timeout_secs = 5
request_timeout_secs = 30
read_timeout_secs = 30

# The same upstream with a key it refuses: the gateway must not blame the client.
[providers.mock-badkey]
kind = "openai"
base_url = "http://127.0.0.1:{mock_port}/v1"
api_key = "sk-not-the-upstream-key"
connect_timeout_secs = 5
request_timeout_secs = 30
read_timeout_secs = 30

[models.{MODEL}]
provider = "mock"
upstream_model = "{UPSTREAM_MODEL}"
input_price = 1
output_price = 2
cached_input_price = 0.5

[models.{BAD_UPSTREAM_MODEL}]
provider = "mock-badkey"
upstream_model = "{UPSTREAM_MODEL}"
input_price = 1
output_price = 2
"""
    )
    return config


def start_mock(tmp):
    log = open(tmp / "mock.stderr.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "mock_upstream.py"), "0"],
        stdout=subprocess.PIPE,
        stderr=log,
        stdin=subprocess.DEVNULL,
        env=hermetic_env(),
    )
    log.close()
    ready, _, _ = select.select([proc.stdout], [], [], STARTUP_TIMEOUT)
    line = proc.stdout.readline().decode().strip() if ready else ""
    if not line.isdigit():
        stop(proc)
        raise RuntimeError(f"mock upstream did not report its port: {line!r}\n{tail(tmp / 'mock.stderr.log')}")
    return proc, int(line)


def wait_healthy(proc, url, log):
    deadline = time.monotonic() + STARTUP_TIMEOUT
    last = None
    with httpx.Client(trust_env=False, timeout=1.0) as c:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"tollgate exited with {proc.returncode}:\n{tail(log)}")
            try:
                r = c.get(url + "/healthz")
                if r.status_code == 200:
                    return
                last = f"{r.status_code} {r.text}"
            except httpx.HTTPError as e:
                last = repr(e)
            time.sleep(0.1)
    raise RuntimeError(f"tollgate not healthy after {STARTUP_TIMEOUT}s ({last}):\n{tail(log)}")


@pytest.fixture(scope="session")
def gw(tmp_path_factory):
    binary = os.environ.get("TOLLGATE_BIN", DEFAULT_BIN)
    if not os.access(binary, os.X_OK):
        pytest.fail(f"no tollgate binary at {binary} (build it or set TOLLGATE_BIN)")
    tmp = tmp_path_factory.mktemp("tollgate")
    mock_proc = gateway_proc = None
    http = httpx.Client(trust_env=False, timeout=REQUEST_TIMEOUT)
    try:
        mock_proc, mock_port = start_mock(tmp)
        config = write_config(tmp, mock_port)
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        log_path = tmp / "tollgate.log"
        with open(log_path, "wb") as log:
            gateway_proc = subprocess.Popen(
                [binary, "--config", str(config), "serve"],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=tmp,
                env=hermetic_env(TOLLGATE_LISTEN=f"127.0.0.1:{port}"),
            )
        wait_healthy(gateway_proc, base_url, log_path)

        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        r = http.post(base_url + "/admin/users", json={"name": "e2e-user"}, headers=headers)
        assert r.status_code == 200, r.text
        created = r.json()
        user_id, key = created["user"]["id"], created["key"]
        r = http.post(
            f"{base_url}/admin/users/{user_id}/balance",
            json={"amount_usd": str(START_USD), "reason": "e2e"},
            headers=headers,
        )
        assert r.status_code == 200, r.text
        start_balance = r.json()["balance_nano_usd"]
        assert start_balance == int(START_USD * 10**9), r.json()

        gateway = Gateway(
            base_url=base_url,
            mock_url=f"http://127.0.0.1:{mock_port}",
            user_id=user_id,
            key=key,
            start_balance_nano=start_balance,
            http=http,
            gateway_log=log_path,
        )
        try:
            yield gateway
        finally:
            gateway.close()
    finally:
        try:
            stop(gateway_proc)
        finally:
            stop(mock_proc)
            http.close()


def check_usage(usage, completion_tokens):
    assert usage is not None
    assert usage.prompt_tokens == mock.PROMPT_TOKENS
    assert usage.completion_tokens == completion_tokens
    assert usage.total_tokens == mock.PROMPT_TOKENS + completion_tokens
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == mock.CACHED_TOKENS


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}

HELLO = [{"role": "user", "content": "Say hello."}]


def test_models_list(gw):
    ids = [m.id for m in gw.client().models.list()]
    assert MODEL in ids and BAD_UPSTREAM_MODEL in ids


def test_chat_non_stream(gw):
    before = len(gw.upstream_requests())
    resp = gw.client().chat.completions.create(model=MODEL, messages=HELLO)
    gw.metered.append("chat")
    assert resp.choices[0].message.content == mock.MOCK_TEXT
    assert resp.choices[0].finish_reason == "stop"
    check_usage(resp.usage, len(mock.MOCK_TEXT_PIECES))
    sent = gw.upstream_requests()[before:]
    assert len(sent) == 1
    assert sent[0]["model"] == UPSTREAM_MODEL
    assert sent[0]["messages"] == HELLO


def test_chat_stream_with_usage(gw):
    stream = gw.client().chat.completions.create(
        model=MODEL, messages=HELLO, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    gw.metered.append("stream+usage")
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == mock.MOCK_TEXT
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    last = chunks[-1]
    assert last.choices == []
    check_usage(last.usage, len(mock.MOCK_TEXT_PIECES))
    assert all(c.usage is None for c in chunks[:-1])


def test_chat_stream_without_usage(gw):
    before = len(gw.upstream_requests())
    stream = gw.client().chat.completions.create(model=MODEL, messages=HELLO, stream=True)
    chunks = list(stream)
    gw.metered.append("stream")
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == mock.MOCK_TEXT
    assert [c for c in chunks if c.usage is not None] == []
    assert all(c.choices for c in chunks), "a usage-only chunk reached a client that did not ask for it"
    # The gateway still asked the upstream for usage, to meter the stream.
    sent = gw.upstream_requests()[before:]
    assert len(sent) == 1
    assert sent[0]["stream"] is True
    assert sent[0]["stream_options"]["include_usage"] is True
    assert sent[0]["model"] == UPSTREAM_MODEL


def test_tool_call_non_stream(gw):
    resp = gw.client().chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER_TOOL],
    )
    gw.metered.append("tools")
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert calls is not None and len(calls) == 1
    assert calls[0].id == mock.MOCK_TOOL_CALL_ID
    assert calls[0].type == "function"
    assert calls[0].function.name == "get_weather"
    assert json.loads(calls[0].function.arguments) == {"city": "Paris"}
    check_usage(resp.usage, len(mock.MOCK_ARGUMENT_PIECES))


def test_tool_call_stream(gw):
    stream = gw.client().chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER_TOOL],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    gw.metered.append("tools+stream")
    names, args, ids = {}, {}, {}
    argument_deltas = 0
    finish = None
    for c in chunks:
        for choice in c.choices:
            finish = choice.finish_reason or finish
            for tc in choice.delta.tool_calls or []:
                if tc.id:
                    ids[tc.index] = tc.id
                if tc.function and tc.function.name:
                    names[tc.index] = names.get(tc.index, "") + tc.function.name
                if tc.function and tc.function.arguments:
                    args[tc.index] = args.get(tc.index, "") + tc.function.arguments
                    argument_deltas += 1
    assert finish == "tool_calls"
    assert names == {0: "get_weather"}
    assert ids == {0: mock.MOCK_TOOL_CALL_ID}
    assert argument_deltas == len(mock.MOCK_ARGUMENT_PIECES)
    assert json.loads(args[0]) == {"city": "Paris"}
    check_usage(chunks[-1].usage, len(mock.MOCK_ARGUMENT_PIECES))


def test_wrong_key_is_authentication_error(gw):
    before = len(gw.upstream_requests())
    bad = gw.client(api_key="sk-not-a-tollgate-key")
    with pytest.raises(openai.AuthenticationError) as info:
        bad.chat.completions.create(model=MODEL, messages=HELLO)
    assert info.value.status_code == 401
    assert info.value.code == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError) as info:
        bad.chat.completions.create(model=MODEL, messages=HELLO, stream=True)
    assert info.value.status_code == 401
    assert info.value.code == "invalid_api_key"
    # Refused before anything was forwarded.
    assert len(gw.upstream_requests()) == before


def test_upstream_refusing_gateway_key_is_not_client_auth_error(gw):
    """The mock's 401 (to the gateway's key) must not reach the client as its own 401."""
    with pytest.raises(openai.APIStatusError) as info:
        gw.client().chat.completions.create(model=BAD_UPSTREAM_MODEL, messages=HELLO)
    gw.metered.append("upstream-401")
    assert not isinstance(info.value, openai.AuthenticationError)
    assert info.value.status_code == 502
    assert info.value.code == "upstream_auth_failed"
    assert "sk-not-the-upstream-key" not in info.value.response.text


def usage_records(gw):
    records, cursor = [], None
    while True:
        params = {"limit": 100}
        if cursor:
            params["cursor"] = cursor
        r = gw.http.get(gw.base_url + "/v1/usage", params=params, headers={"Authorization": f"Bearer {gw.key}"})
        assert r.status_code == 200, r.text
        page = r.json()
        records.extend(page["data"])
        if not page["has_more"]:
            return records
        cursor = page["next_cursor"]
        assert cursor


def test_balance_went_down_by_exactly_the_charges(gw):
    # One request of its own, so this test means something even when run alone.
    gw.client().chat.completions.create(model=MODEL, messages=HELLO)
    gw.metered.append("chat")

    # Streams settle just after their last byte: wait (bounded) until every
    # metered request has its record and no hold is left.
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while True:
        records = usage_records(gw)
        user = gw.admin("GET", f"/admin/users/{gw.user_id}")
        if len(records) >= len(gw.metered) and Decimal(user["held"]) == 0:
            break
        if time.monotonic() > deadline:
            pytest.fail(
                f"after {SETTLE_TIMEOUT}s: {len(records)} usage records for {len(gw.metered)} "
                f"metered requests, held {user['held']}\n{tail(gw.gateway_log)}"
            )
        time.sleep(0.1)

    assert len(records) == len(gw.metered), records
    ok = [r for r in records if r["status"] == 200]
    failed = [r for r in records if r["status"] != 200]
    assert len(failed) == gw.metered.count("upstream-401")
    for r in failed:
        assert r["cost_nano_usd"] == 0, r
    for r in ok:
        assert r["model"] == MODEL and r["upstream_model"] == UPSTREAM_MODEL, r
        assert r["input_tokens"] == mock.PROMPT_TOKENS, r
        assert r["cached_tokens"] == mock.CACHED_TOKENS, r
        assert r["output_tokens"] in (len(mock.MOCK_TEXT_PIECES), len(mock.MOCK_ARGUMENT_PIECES)), r
        assert r["error"] is None, r
        assert r["cost_nano_usd"] == expected_cost_nano(r["input_tokens"], r["cached_tokens"], r["output_tokens"]), r
        assert r["cost_nano_usd"] > 0
    streamed = [m for m in gw.metered if m in ("stream", "stream+usage", "tools+stream")]
    assert len([r for r in ok if r["stream"]]) == len(streamed)

    charged = sum(r["cost_nano_usd"] for r in records)
    assert charged > 0
    assert user["balance_nano_usd"] == gw.start_balance_nano - charged
    assert user["free_balance_nano_usd"] == 0

    # OhMyGPT's balance, in credits, says the same (34000 credits = 1 USD).
    r = gw.http.post(gw.base_url + "/api/v1/user/admin/balance", headers={"Authorization": f"Bearer {gw.key}"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["statusCode"] == 200, body
    credits = Decimal(body["data"]["balance"])
    assert credits == Decimal(user["balance_nano_usd"]) * CREDITS_PER_USD / Decimal(10**9)
