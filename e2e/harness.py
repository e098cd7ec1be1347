"""The end-to-end harness shared by the SDK test modules (fixtures: conftest.py).

One mock upstream (the `mock-upstream` binary of crates/mock-upstream, OpenAI
and Anthropic routes; env MOCK_UPSTREAM_BIN, default next to the tollgate
binary) and one tollgate binary (env TOLLGATE_BIN, default
/root/.cache/tollgate-target/debug/tollgate) serve the whole session. Each test
module gets its own user, credited START_USD, so that its balance check counts
only its own charges. What the mock answers is in mock_answers.py (`mock`).

Everything listens on 127.0.0.1 and every wait is bounded.
"""

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal
from pathlib import Path

import httpx
import openai

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import mock_answers as mock  # noqa: E402  (the mock's built-in answers)
import mockbin  # noqa: E402

DEFAULT_BIN = "/root/.cache/tollgate-target/debug/tollgate"
ADMIN_TOKEN = "e2e-admin-token-0123456789"
UPSTREAM_KEY = mock.UPSTREAM_KEY
CREDITS_PER_USD = 34_000
START_USD = Decimal("10")

# Models (see write_config).
MODEL = "gpt-test"  # OpenAI-compatible provider `mock`
UPSTREAM_MODEL = "mock-model"
BAD_UPSTREAM_MODEL = "gpt-badkey"  # the same upstream, with a key it refuses
CLAUDE_MODEL = "claude-test"  # Anthropic provider `anthropic-mock`
CLAUDE_UPSTREAM_MODEL = "claude-mock"

# USD per 1M tokens, as configured below: (input, output, cached input, cache write).
PRICES = {
    MODEL: (Decimal("1"), Decimal("2"), Decimal("0.5"), Decimal("1")),
    BAD_UPSTREAM_MODEL: (Decimal("1"), Decimal("2"), Decimal("1"), Decimal("1")),
    CLAUDE_MODEL: (Decimal("3"), Decimal("15"), Decimal("0.3"), Decimal("3.75")),
}

STARTUP_TIMEOUT = 30.0  # seconds for each process to come up
REQUEST_TIMEOUT = 30.0  # seconds for any single HTTP call
SETTLE_TIMEOUT = 15.0  # seconds for the gateway to settle streams after they end
STOP_TIMEOUT = 15.0  # seconds for a process to exit after SIGTERM


def expected_cost(model, input_tokens, cached, cache_write, output):
    """What the gateway must charge, in nano-USD (rounded up once, as it does).

    `input_tokens` counts every prompt token, cache reads and writes included.
    """
    input_price, output_price, cached_price, cache_write_price = PRICES[model]
    uncached = input_tokens - cached - cache_write
    usd_e6 = uncached * input_price + cached * cached_price + cache_write * cache_write_price + output * output_price
    nano = usd_e6 * 1000  # USD per 1M tokens -> nano-USD per token is x1000
    return int(nano.to_integral_value(rounding=ROUND_CEILING))


def new_marker(prefix="mk"):
    """A unique alphanumeric word to put in a prompt, to find the request in
    the mock's log (Gateway.mock_log) whatever else ran before."""
    return prefix + uuid.uuid4().hex[:16]


def wait_for(predicate, timeout, what, interval=0.05):
    """Calls `predicate` until it returns something truthy (returned), at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"after {timeout}s: still waiting for {what}")
        time.sleep(interval)


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

# The same mock, spoken to in Anthropic's Messages API.
[providers.anthropic-mock]
kind = "anthropic"
base_url = "http://127.0.0.1:{mock_port}/v1"
api_key = "{UPSTREAM_KEY}"
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

# Search and Azure speech providers, on the same mock (issue 14).
[providers.google]
kind = "google_cse"
base_url = "http://127.0.0.1:{mock_port}/v1"
api_key = "{UPSTREAM_KEY}"
request_timeout_secs = 30
params = {{ cx = "e2e-engine" }}

[providers.serper]
kind = "serper"
base_url = "http://127.0.0.1:{mock_port}/v1"
api_key = "{UPSTREAM_KEY}"
request_timeout_secs = 30

[providers.azure]
kind = "azure_tts"
base_url = "http://127.0.0.1:{mock_port}/v1"
api_key = "{UPSTREAM_KEY}"
request_timeout_secs = 30

[models.google-search]
provider = "google"
unit = "calls"
price = "0.005"

[models.serper]
provider = "serper"
unit = "calls"
price = "0.001"

[models.azure-tts]
provider = "azure"
unit = "characters"
price = "16"

[models.flux-schnell]
provider = "mock"
unit = "images"
price = "0.003"

[models.nd-imagine]
provider = "mock"
unit = "images"
price = "0.02"

# Models metered in other units (issue 14), on the same mock.
[models.tts-test]
provider = "mock"
unit = "characters"
price = "15"

[models.whisper-test]
provider = "mock"
unit = "minutes"
price = "0.006"

[models.img-test]
provider = "mock"
unit = "images"
price = "0.04"
image_prices = {{ "1024x1792" = "0.08" }}

[models.mod-test]
provider = "mock"
unit = "calls"
price = "0.001"

[models.{CLAUDE_MODEL}]
provider = "anthropic-mock"
upstream_model = "{CLAUDE_UPSTREAM_MODEL}"
input_price = 3
output_price = 15
cached_input_price = 0.3
cache_write_price = 3.75
"""
    )
    return config


def start_mock(tmp, *args):
    """Starts the mock upstream (requests need UPSTREAM_KEY, and are
    recorded), with `args` added to its command line; checks its answers
    are what mock_answers.py says; returns (process, port)."""
    tmp.mkdir(parents=True, exist_ok=True)
    proc, port = mockbin.start(tmp / "mock.stderr.log", ["--key", UPSTREAM_KEY, "--record", *args], hermetic_env())
    try:
        check_mock_answers(f"http://127.0.0.1:{port}")
    except BaseException:
        stop(proc)
        raise
    return proc, port


def check_mock_answers(mock_url):
    """Asks the mock what it answers and compares with mock_answers.py; then
    empties its request log."""
    headers = {"Authorization": f"Bearer {UPSTREAM_KEY}", "x-api-key": UPSTREAM_KEY, "anthropic-version": "2023-06-01"}
    hello = [{"role": "user", "content": "Say hello"}]
    with httpx.Client(trust_env=False, timeout=REQUEST_TIMEOUT, headers=headers) as http:
        chat = http.post(mock_url + "/v1/chat/completions", json={"model": "m", "messages": hello}).json()
        assert chat["choices"][0]["message"]["content"] == mock.MOCK_TEXT, chat
        usage = chat["usage"]
        assert (usage["prompt_tokens"], usage["prompt_tokens_details"]["cached_tokens"], usage["completion_tokens"]) == (
            mock.PROMPT_TOKENS,
            mock.CACHED_TOKENS,
            len(mock.MOCK_TEXT_PIECES),
        ), chat
        tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
        stream = http.post(
            mock_url + "/v1/chat/completions", json={"model": "m", "messages": hello, "tools": tools, "stream": True}
        ).text
        chunks = [json.loads(line[6:]) for line in stream.splitlines() if line.startswith("data: {")]
        calls = [c["choices"][0]["delta"].get("tool_calls") for c in chunks if c["choices"]]
        calls = [c[0] for c in calls if c]
        assert (calls[0]["id"], calls[0]["function"]["name"]) == (mock.MOCK_TOOL_CALL_ID, mock.MOCK_TOOL_NAME), stream
        assert [c["function"]["arguments"] for c in calls[1:]] == mock.MOCK_ARGUMENT_PIECES, stream
        message = http.post(mock_url + "/v1/messages", json={"model": "c", "max_tokens": 5, "messages": hello}).json()
        assert message["id"] == mock.CLAUDE_MESSAGE_ID and message["content"][0]["text"] == mock.CLAUDE_TEXT, message
        assert message["usage"] == {
            "input_tokens": mock.CLAUDE_INPUT_TOKENS,
            "cache_read_input_tokens": mock.CLAUDE_CACHE_READ_TOKENS,
            "cache_creation_input_tokens": mock.CLAUDE_CACHE_WRITE_TOKENS,
            "output_tokens": len(mock.CLAUDE_TEXT_PIECES),
        }, message
        tool_use = http.post(
            mock_url + "/v1/messages",
            json={"model": "c", "max_tokens": 5, "messages": hello, "tools": [{"name": "f", "input_schema": {}}]},
        ).json()
        block = tool_use["content"][0]
        assert (block["id"], block["input"]) == (mock.CLAUDE_TOOL_USE_ID, mock.CLAUDE_TOOL_INPUT), tool_use
        assert tool_use["usage"]["output_tokens"] == len(mock.CLAUDE_ARGUMENT_PIECES), tool_use
        http.delete(mock_url + "/__mock/requests").raise_for_status()


def mock_requests(mock_url, marker=None):
    """Every request the mock at `mock_url` received, in arrival order; with
    `marker`, only those whose JSON body contains it. Each is {"seq", "api"
    ("openai" | "anthropic" | "responses"), "method", "path", "query",
    "headers", "body", "stream", "pieces" (of the answer), "sent" (pieces
    produced so far), "state" ("running", "done", "aborted", "broken",
    "rejected" or "failed"), "status"} (see crates/mock-upstream)."""
    params = {"marker": marker} if marker else None
    r = httpx.get(mock_url + "/__mock/requests", params=params, timeout=REQUEST_TIMEOUT, trust_env=False)
    r.raise_for_status()
    return r.json()["requests"]


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


@dataclass
class Server:
    """The running gateway and mock, shared by the session."""

    base_url: str  # http://127.0.0.1:PORT
    mock_url: str
    http: httpx.Client
    gateway_log: Path

    def admin(self, method, path, **kw):
        r = self.http.request(method, self.base_url + path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, **kw)
        assert r.status_code == 200, f"{method} {path}: {r.status_code} {r.text}"
        return r.json()


def start_gateway(tmp, config, binary=None):
    """Starts the gateway binary on `config` (a free loopback port, its log
    in tmp/tollgate.log) and waits until it is healthy; returns (process,
    base URL). The caller stops it."""
    binary = binary or os.environ.get("TOLLGATE_BIN", DEFAULT_BIN)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    log_path = tmp / "tollgate.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [binary, "--config", str(config), "serve"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=tmp,
            env=hermetic_env(TOLLGATE_LISTEN=f"127.0.0.1:{port}"),
        )
    try:
        wait_healthy(proc, base_url, log_path)
    except BaseException:
        stop(proc)
        raise
    return proc, base_url


def start_server(tmp, binary):
    """Starts the mock and the gateway; returns (Server, [processes to stop])."""
    procs = []
    http = httpx.Client(trust_env=False, timeout=REQUEST_TIMEOUT)
    try:
        mock_proc, mock_port = start_mock(tmp)
        procs.append(mock_proc)
        config = write_config(tmp, mock_port)
        log_path = tmp / "tollgate.log"
        gateway_proc, base_url = start_gateway(tmp, config, binary)
        procs.insert(0, gateway_proc)  # stopped first
    except BaseException:
        for p in procs:
            stop(p)
        http.close()
        raise
    server = Server(base_url=base_url, mock_url=f"http://127.0.0.1:{mock_port}", http=http, gateway_log=log_path)
    return server, procs


@dataclass
class Gateway:
    """One user of the gateway (a test module's own), with its admin-capable key."""

    server: Server
    user_id: int
    key: str
    start_balance_nano: int
    # Requests that reached the gateway's meter (each leaves one usage record).
    metered: list = field(default_factory=list)
    # SDK clients made by client() / anthropic(), closed at teardown.
    clients: dict = field(default_factory=dict)

    @property
    def base_url(self):
        return self.server.base_url

    @property
    def http(self):
        return self.server.http

    @property
    def gateway_log(self):
        return self.server.gateway_log

    def client(self, api_key=None):
        """An openai SDK client for the gateway; no retries, so each call is one request."""
        import openai

        api_key = api_key or self.key
        if ("openai", api_key) not in self.clients:
            self.clients["openai", api_key] = openai.OpenAI(
                api_key=api_key,
                base_url=self.base_url + "/v1",
                max_retries=0,
                timeout=REQUEST_TIMEOUT,
                http_client=httpx.Client(trust_env=False, timeout=REQUEST_TIMEOUT),
            )
        return self.clients["openai", api_key]

    def anthropic(self, api_key=None):
        """An anthropic SDK client for the gateway; no retries, so each call is one request."""
        import anthropic

        api_key = api_key or self.key
        if ("anthropic", api_key) not in self.clients:
            self.clients["anthropic", api_key] = anthropic.Anthropic(
                api_key=api_key,
                base_url=self.base_url,
                max_retries=0,
                timeout=REQUEST_TIMEOUT,
                # The SDK's own HTTP client type, without proxies from the environment.
                http_client=anthropic.DefaultHttpxClient(trust_env=False, timeout=REQUEST_TIMEOUT),
            )
        return self.clients["anthropic", api_key]

    def close(self):
        for c in self.clients.values():
            c.close()
        self.clients.clear()

    def admin(self, method, path, **kw):
        return self.server.admin(method, path, **kw)

    def upstream_requests(self):
        """The chat-completions bodies the mock answered (every module's)."""
        return [
            e["body"]
            for e in self.mock_log()
            if e["path"] == "/v1/chat/completions" and e["state"] != "rejected"
        ]

    def anthropic_requests(self):
        """The Messages and count_tokens requests the mock received (every
        module's), each {"path", "anthropic_version", "anthropic_beta",
        "authorized", "body"}."""
        out = []
        for e in self.mock_log():
            if e["path"] not in ("/v1/messages", "/v1/messages/count_tokens"):
                continue
            h = e["headers"]
            out.append(
                {
                    "path": e["path"],
                    "anthropic_version": h.get("anthropic-version"),
                    "anthropic_beta": h.get("anthropic-beta"),
                    "authorized": h.get("x-api-key") == UPSTREAM_KEY and bool(h.get("anthropic-version")),
                    "body": e["body"] if isinstance(e["body"], dict) else None,
                }
            )
        return out

    def mock_log(self, marker=None):
        """Every request the mock received (both APIs, every module's), in
        arrival order; with `marker`, only those whose body contains it (see
        mock_requests)."""
        return mock_requests(self.server.mock_url, marker)

    def wait_mock_log(self, marker, predicate=None, timeout=SETTLE_TIMEOUT, what=None):
        """Waits (bounded) until there are entries for `marker` and they
        satisfy `predicate` (if given); returns them. The predicate only ever
        sees a non-empty list (a background run may not have reached the
        upstream yet)."""

        def check():
            entries = self.mock_log(marker)
            if not entries:
                return None
            return entries if (predicate is None or predicate(entries)) else None

        return wait_for(check, timeout, what or f"upstream requests marked {marker}")

    def balance(self):
        """The user's balance in nano-USD once every metered request has
        settled and no hold is left (see settled())."""
        _, user = self.settled()
        return user["balance_nano_usd"]

    def gateway_idle(self):
        """No upstream exchange running and no charge waiting to be written
        (held balances live in memory by default, so `held` alone cannot say)."""
        text = self.http.get(self.base_url + "/metrics").text
        gauges = {}
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if name in ("tollgate_in_flight", "tollgate_settlements_pending"):
                gauges[name] = int(value)
        return gauges == {"tollgate_in_flight": 0, "tollgate_settlements_pending": 0}

    def usage_records(self):
        records, cursor = [], None
        while True:
            params = {"limit": 100}
            if cursor:
                params["cursor"] = cursor
            r = self.http.get(
                self.base_url + "/v1/usage", params=params, headers={"Authorization": f"Bearer {self.key}"}
            )
            assert r.status_code == 200, r.text
            page = r.json()
            records.extend(page["data"])
            if not page["has_more"]:
                return records
            cursor = page["next_cursor"]
            assert cursor

    def settled(self):
        """Waits (bounded) until every metered request has its usage record and
        no hold is left; returns (records, user)."""
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while True:
            records = self.usage_records()
            user = self.admin("GET", f"/admin/users/{self.user_id}")
            if len(records) >= len(self.metered) and Decimal(user["held"]) == 0 and self.gateway_idle():
                # Idle now: re-read, since a charge may have landed meanwhile.
                return self.usage_records(), self.admin("GET", f"/admin/users/{self.user_id}")
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"after {SETTLE_TIMEOUT}s: {len(records)} usage records for {len(self.metered)} "
                    f"metered requests, held {user['held']}\n{tail(self.gateway_log)}"
                )
            time.sleep(0.1)


def new_user(server, name):
    """Creates a user credited START_USD; returns its Gateway.

    Call it again (another name) for a second user of the same gateway, e.g.
    for isolation tests; close() its Gateway when done."""
    r = server.http.post(
        server.base_url + "/admin/users", json={"name": name}, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert r.status_code == 200, r.text
    created = r.json()
    user_id, key = created["user"]["id"], created["key"]
    balance = server.admin("POST", f"/admin/users/{user_id}/balance", json={"amount_usd": str(START_USD), "reason": "e2e"})
    start_balance = balance["balance_nano_usd"]
    assert start_balance == int(START_USD * 10**9), balance
    return Gateway(server=server, user_id=user_id, key=key, start_balance_nano=start_balance)


# -- helpers of the stored-object modules (responses, conversations, stored
#    chat completions) ------------------------------------------------------


def content_text(content):
    """The text of a chat or Anthropic message content: a string, or a list of
    parts/blocks whose `text` fields are joined; None when there is none."""
    if content is None:
        return None
    if isinstance(content, str):
        return content
    texts = [p.get("text") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
    return "".join(texts) if texts else None


def chat_messages(body):
    """The `messages` of a chat-completions request body, normalised so a test
    can compare them whatever content form the gateway chose: each becomes
    {"role", "text"} plus, when present, "tool_calls" as [(id, name, arguments
    parsed as JSON)] and "tool_call_id". A `developer` message counts as
    `system` (both carry instructions)."""
    import json

    out = []
    for m in body.get("messages") or []:
        role = "system" if m.get("role") == "developer" else m.get("role")
        n = {"role": role, "text": content_text(m.get("content")) or ""}
        calls = m.get("tool_calls")
        if calls:
            n["tool_calls"] = [
                (c.get("id"), c["function"]["name"], json.loads(c["function"].get("arguments") or "{}")) for c in calls
            ]
        if m.get("tool_call_id") is not None:
            n["tool_call_id"] = m["tool_call_id"]
        out.append(n)
    return out


def anthropic_messages(body):
    """The `messages` of a Messages request body, normalised: each becomes
    {"role", "text"} plus, when present, "tool_use" as [(id, name, input)] and
    "tool_result" as [(tool_use_id, text)]."""
    out = []
    for m in body.get("messages") or []:
        content = m.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else list(content or [])
        n = {
            "role": m.get("role"),
            "text": "".join(b.get("text", "") for b in blocks if b.get("type") == "text"),
        }
        uses = [(b.get("id"), b.get("name"), b.get("input")) for b in blocks if b.get("type") == "tool_use"]
        if uses:
            n["tool_use"] = uses
        results = [
            (b.get("tool_use_id"), content_text(b.get("content")) or "")
            for b in blocks
            if b.get("type") == "tool_result"
        ]
        if results:
            n["tool_result"] = results
        out.append(n)
    return out


def item_text(item):
    """The text of a Responses/Conversations message item (an SDK object or a dict)."""
    if hasattr(item, "to_dict"):
        item = item.to_dict()
    return content_text(item.get("content"))


def assert_refused_free(gw, create, statuses, payer=None):
    """`create(marker)` — a request carrying a fresh marker — is refused with
    one of `statuses` in OpenAI's error shape, reaches no upstream, and
    `payer` (default: gw) is charged nothing. Returns the error object."""
    payer = payer or gw
    marker = new_marker()
    before = payer.balance()
    try:
        create(marker)
    except openai.APIStatusError as e:
        error = assert_openai_error(e, statuses)
    else:
        raise AssertionError("the request was not refused")
    assert gw.mock_log(marker) == []
    assert payer.balance() == before
    return error


def assert_openai_error(exc, statuses):
    """`exc` (an openai.APIStatusError) has one of `statuses` and OpenAI's
    error body: {"error": {"message", "type", "param", "code"}}."""
    assert exc.status_code in statuses, (exc.status_code, exc.response.text)
    body = exc.response.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), body
    error = body["error"]
    assert isinstance(error.get("message"), str) and error["message"], body
    assert isinstance(error.get("type"), str) and error["type"], body
    assert "param" in error and "code" in error, body
    return error
