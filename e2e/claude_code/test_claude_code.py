"""End-to-end: the real Claude Code CLI (`claude -p`) through Tollgate.

    Claude Code --> front proxy (records) --> Tollgate --> recording mock upstream

A module fixture installs the CLI from npm (install.sh, into a cache folder
outside the repository; the test is skipped only when that install fails),
starts the recording mock upstream (`mock-upstream --scenario claude-code`,
Anthropic Messages and OpenAI chat completions; see claude_code_turns.py),
Tollgate (env TOLLGATE_BIN, default
/root/.cache/tollgate-target/debug/tollgate) with two providers on that mock
(`anth`, kind anthropic; `oai`, kind openai) and a recording front proxy
before Tollgate (`mock-upstream --scenario claude-code-front`), then creates
a user through the admin API and credits it.

Claude Code then runs one scripted Bash round trip twice: with the model
`claude-native` (Anthropic upstream, key sent as x-api-key) and with
`claude-via-openai` (OpenAI upstream through translation, key sent as
Authorization: Bearer). The recordings on both sides of Tollgate show what
Claude Code sent and what Tollgate made of it; /v1/usage shows the charges.

Everything listens on 127.0.0.1 and every wait is bounded.
"""

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import mockbin  # noqa: E402  (e2e/, on the path via its conftest)
import claude_code_turns as mock  # noqa: E402  (the scenario's scripted answers)
from harness import start_gateway, stop, tail  # noqa: E402

DEFAULT_BIN = "/root/.cache/tollgate-target/debug/tollgate"
ADMIN_TOKEN = "e2e-admin-token-claude-code-0123456789"
START_USD = Decimal("100")

INSTALL_TIMEOUT = 900  # seconds for install.sh (npm)
REQUEST_TIMEOUT = 30.0  # seconds for any single HTTP call of the test
CLAUDE_TIMEOUT = 240  # seconds for one `claude -p` run
SETTLE_TIMEOUT = 15.0  # seconds for the gateway to settle streams

PROMPT = "Run `echo tollgate-tool-ok` with the Bash tool, then tell me what it printed."
FINAL_TEXT = mock.FINAL_PREFIX + mock.TOOL_OUTPUT

# Models (public name -> provider, upstream name, USD per 1M tokens).
NATIVE = "claude-native"
VIA_OPENAI = "claude-via-openai"
# On an OpenAI-compatible provider configured for servers that refuse late
# system messages (late_system_messages = "as_user").
VIA_STRICT = "claude-via-strict"
MODELS = {
    NATIVE: {
        "provider": "anth",
        "upstream": "mock-claude",
        "input": Decimal("3"),
        "output": Decimal("15"),
        "cached": Decimal("0.3"),
        "cache_write": Decimal("3.75"),
    },
    VIA_OPENAI: {
        "provider": "oai",
        "upstream": "mock-gpt",
        "input": Decimal("1"),
        "output": Decimal("2"),
        "cached": Decimal("0.5"),
        "cache_write": Decimal("1.25"),
    },
    VIA_STRICT: {
        "provider": "strict",
        "upstream": "mock-qwen",
        "input": Decimal("1"),
        "output": Decimal("2"),
        "cached": Decimal("0.5"),
        "cache_write": Decimal("1.25"),
    },
}


# -- processes and HTTP ---------------------------------------------------------


def hermetic_env(**extra):
    """The environment without inherited Tollgate/Anthropic/Claude settings or proxies."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TOLLGATE_", "ANTHROPIC_", "CLAUDE", "OTEL_"))
        and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")
    }
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env.update(extra)
    return env


_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http(method, url, body=None, headers=None):
    """(status, headers, parsed JSON or text) of one request."""
    data = None
    headers = dict(headers or {})
    if body is not None:
        data = json.dumps(body).encode()
        headers.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with _opener.open(req, timeout=REQUEST_TIMEOUT) as r:
            status, rh, raw = r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        status, rh, raw = e.code, dict(e.headers), e.read()
    try:
        return status, {k.lower(): v for k, v in rh.items()}, json.loads(raw)
    except ValueError:
        return status, {k.lower(): v for k, v in rh.items()}, raw.decode("utf-8", "replace")


def start_recorder(tmp, name, scenario, record, *args):
    """Starts the mock upstream on a Claude Code scenario, recording to
    `record`; returns (process, the port it printed)."""
    return mockbin.start(
        tmp / f"{name}.stderr.log",
        ["--scenario", scenario, "--record-file", str(record), *args],
        hermetic_env(),
    )


def install_claude(tmp):
    """The `claude` executable: $CLAUDE_BIN, or what install.sh installs.

    Skips the module when the CLI cannot be installed on this machine."""
    given = os.environ.get("CLAUDE_BIN")
    if given:
        if not os.access(given, os.X_OK):
            pytest.fail(f"CLAUDE_BIN={given} is not executable")
        return given
    if shutil.which("bash") is None:
        pytest.skip("Claude Code CLI cannot be installed: no bash")
    log = tmp / "install.log"
    try:
        with open(log, "wb") as err:
            done = subprocess.run(
                ["bash", str(HERE / "install.sh")],
                stdout=subprocess.PIPE,
                stderr=err,
                stdin=subprocess.DEVNULL,
                timeout=INSTALL_TIMEOUT,
                env={k: v for k, v in os.environ.items() if not k.startswith("CLAUDE_BIN")},
            )
    except subprocess.TimeoutExpired:
        pytest.skip(f"Claude Code CLI could not be installed: install.sh took over {INSTALL_TIMEOUT}s\n{tail(log)}")
    path = done.stdout.decode().strip().splitlines()[-1] if done.stdout.strip() else ""
    if done.returncode != 0 or not path or not os.access(path, os.X_OK):
        pytest.skip(
            f"Claude Code CLI could not be installed (install.sh exit {done.returncode}):\n{tail(log, 30)}"
        )
    return path


def write_config(tmp, mock_port):
    db = tmp / "tollgate.db"
    config = tmp / "tollgate.toml"
    models = ""
    for name, m in MODELS.items():
        models += f"""
[models.{name}]
provider = "{m['provider']}"
upstream_model = "{m['upstream']}"
input_price = "{m['input']}"
output_price = "{m['output']}"
cached_input_price = "{m['cached']}"
cache_write_price = "{m['cache_write']}"
max_output_tokens = 32000
"""
    providers = ""
    for name, kind, extra in (
        ("anth", "anthropic", ""),
        ("oai", "openai", ""),
        ("strict", "openai", 'late_system_messages = "as_user"\n'),
    ):
        providers += f"""
[providers.{name}]
kind = "{kind}"
base_url = "http://127.0.0.1:{mock_port}/v1"
api_key = "{mock.UPSTREAM_KEY}"
connect_timeout_secs = 5
request_timeout_secs = 60
read_timeout_secs = 60
{extra}"""
    config.write_text(
        f"""\
database_url = "sqlite://{db}"
admin_token = "{ADMIN_TOKEN}"
log_level = "info,gateway=debug"
shutdown_grace_secs = 5
{providers}{models}"""
    )
    return config


def read_records(path):
    """The records of a recorder's JSON-lines file, last line per seq."""
    records = {}
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    for line in lines:
        if line.strip():
            r = json.loads(line)
            records[r["seq"]] = r
    return [records[k] for k in sorted(records)]


@dataclass
class Run:
    model: str
    returncode: int
    stdout: str
    stderr: str
    client: list  # what Claude Code sent to Tollgate (front proxy records)
    upstream: list  # what Tollgate sent to the mock

    def describe(self):
        return (
            f"claude exit {self.returncode}\n--- stdout\n{self.stdout[-3000:]}\n--- stderr\n{self.stderr[-3000:]}\n"
            f"--- client requests\n"
            + "\n".join(
                f"{r['method']} {r['path']} -> {r.get('status')} {str(r.get('response_body', ''))[:300]!r}"
                for r in self.client
            )
            + "\n--- upstream requests\n"
            + "\n".join(f"{r['method']} {r['path']} -> {r.get('status')} {r.get('reply')}" for r in self.upstream)
        )


@dataclass
class Stack:
    tmp: Path
    claude: str
    base_url: str  # Tollgate
    front_url: str  # the recording proxy before Tollgate
    mock_url: str
    client_log: Path
    upstream_log: Path
    gateway_log: Path
    user_id: int
    key: str
    start_balance_nano: int
    runs: dict = field(default_factory=dict)

    def admin(self, method, path, body=None):
        status, _, out = http(method, self.base_url + path, body, {"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert status == 200, f"{method} {path}: {status} {out}"
        return out

    def settled(self, timeout=SETTLE_TIMEOUT):
        """Waits until every recorded request got its answer."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pending = [
                r for r in read_records(self.client_log) + read_records(self.upstream_log) if "status" not in r
            ]
            if not pending:
                return
            time.sleep(0.1)

    def run_claude(self, model, auth, prompt=PROMPT, tag=None):
        """One `claude -p` run; the records it caused on both sides."""
        tag = tag or model
        n_client = len(read_records(self.client_log))
        n_upstream = len(read_records(self.upstream_log))
        home = self.tmp / f"home-{tag}"
        work = self.tmp / f"work-{tag}"
        home.mkdir()
        work.mkdir()
        env = hermetic_env(
            HOME=str(home),
            ANTHROPIC_BASE_URL=self.front_url,
            CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
            DISABLE_TELEMETRY="1",
            DISABLE_AUTOUPDATER="1",
            DISABLE_ERROR_REPORTING="1",
            # Side requests (titles, topics, ...) go to the same Tollgate model.
            ANTHROPIC_SMALL_FAST_MODEL=model,
            ANTHROPIC_DEFAULT_HAIKU_MODEL=model,
            ANTHROPIC_DEFAULT_SONNET_MODEL=model,
            ANTHROPIC_DEFAULT_OPUS_MODEL=model,
            API_TIMEOUT_MS="60000",
            # A failing request must fail the run, not be retried for minutes.
            CLAUDE_CODE_MAX_RETRIES="0",
        )
        if auth == "api_key":
            env["ANTHROPIC_API_KEY"] = self.key
        else:
            env["ANTHROPIC_AUTH_TOKEN"] = self.key
        cmd = [
            self.claude,
            "-p",
            prompt,
            "--model",
            model,
            # As root, --dangerously-skip-permissions is refused; allowing the
            # one tool is enough for -p to run it without a prompt.
            "--allowedTools",
            "Bash",
            "--no-session-persistence",
        ]
        try:
            done = subprocess.run(
                cmd,
                cwd=work,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                timeout=CLAUDE_TIMEOUT,
            )
            rc, out, err = done.returncode, done.stdout, done.stderr
        except subprocess.TimeoutExpired as e:
            rc, out, err = "timeout", e.stdout or b"", e.stderr or b""
        self.settled()
        run = Run(
            model=model,
            returncode=rc,
            stdout=out.decode("utf-8", "replace"),
            stderr=err.decode("utf-8", "replace"),
            client=read_records(self.client_log)[n_client:],
            upstream=read_records(self.upstream_log)[n_upstream:],
        )
        (self.tmp / f"run-{tag}.txt").write_text(run.describe())
        self.runs[tag] = run
        return run


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("claude-code")
    claude = install_claude(tmp)
    binary = os.environ.get("TOLLGATE_BIN", DEFAULT_BIN)
    if not os.access(binary, os.X_OK):
        pytest.fail(f"no tollgate binary at {binary} (build it or set TOLLGATE_BIN)")
    procs = []
    try:
        upstream_log = tmp / "upstream.jsonl"
        client_log = tmp / "client.jsonl"
        mock_proc, mock_port = start_recorder(
            tmp, "upstream", "claude-code", upstream_log, "--key", mock.UPSTREAM_KEY
        )
        procs.append(mock_proc)
        config = write_config(tmp, mock_port)
        gateway, base_url = start_gateway(tmp, config, binary)
        procs.append(gateway)
        gateway_log = tmp / "tollgate.log"
        front_proc, front_port = start_recorder(tmp, "front", "claude-code-front", client_log, "--target", base_url)
        procs.append(front_proc)

        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        status, _, created = http("POST", base_url + "/admin/users", {"name": "claude-code-e2e"}, headers)
        assert status == 200, created
        user_id, key = created["user"]["id"], created["key"]
        status, _, credited = http(
            "POST",
            f"{base_url}/admin/users/{user_id}/balance",
            {"amount_usd": str(START_USD), "reason": "e2e"},
            headers,
        )
        assert status == 200, credited
        assert credited["balance_nano_usd"] == int(START_USD * 10**9), credited
        yield Stack(
            tmp=tmp,
            claude=claude,
            base_url=base_url,
            front_url=f"http://127.0.0.1:{front_port}",
            mock_url=f"http://127.0.0.1:{mock_port}",
            client_log=client_log,
            upstream_log=upstream_log,
            gateway_log=gateway_log,
            user_id=user_id,
            key=key,
            start_balance_nano=credited["balance_nano_usd"],
        )
    finally:
        for proc in reversed(procs):
            stop(proc)


@pytest.fixture(scope="module")
def native_run(stack):
    return stack.run_claude(NATIVE, auth="api_key")


@pytest.fixture(scope="module")
def openai_run(stack):
    return stack.run_claude(VIA_OPENAI, auth="auth_token")


# -- helpers over the records -------------------------------------------------


def sse_events(text):
    """[(event name or None, parsed data or raw string)] of an SSE body."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        name, data = None, []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip())
        if data:
            joined = "\n".join(data)
            try:
                events.append((name, json.loads(joined)))
            except ValueError:
                events.append((name, joined))
    return events


def check_anthropic_stream(text, model):
    """The events an Anthropic client expects, in order; returns them."""
    events = sse_events(text)
    names = [n for n, _ in events if n != "ping"]
    assert names and names[0] == "message_start", names
    assert names[-1] == "message_stop", names
    assert names[-2] == "message_delta", names
    for name, data in events:
        assert isinstance(data, dict) and data.get("type") == name, (name, data)
    start = events[0][1]["message"]
    assert start["model"] == model, start
    assert start["role"] == "assistant" and start["type"] == "message"
    open_index = None
    for name, data in events:
        if name == "content_block_start":
            assert open_index is None, "a block started before the previous one stopped"
            open_index = data["index"]
        elif name == "content_block_delta":
            assert data["index"] == open_index, data
        elif name == "content_block_stop":
            assert data["index"] == open_index, data
            open_index = None
    assert open_index is None
    delta = [d for n, d in events if n == "message_delta"][-1]
    assert delta["usage"]["output_tokens"] > 0, delta
    return events


def messages_posts(run):
    return [r for r in run.client if r["method"] == "POST" and r["path"].split("?")[0] == "/v1/messages"]


def main_turns(records):
    """The upstream requests of the agent loop (those offering Bash)."""
    return [r for r in records if r.get("reply") in ("tool", "final")]


def check_client_side(run, auth, key):
    """What Claude Code sent to Tollgate, and that Tollgate answered it all."""
    assert run.returncode == 0, run.describe()
    assert FINAL_TEXT in run.stdout, run.describe()
    for r in run.client:
        assert r.get("status") is not None and r["status"] < 400, (
            f"Tollgate answered {r['method']} {r['path']} with {r.get('status')}: "
            f"{str(r.get('response_body'))[:1000]}\n{run.describe()}"
        )
        assert r["method"] in ("HEAD", "GET", "POST"), r["method"]
        if r["method"] == "HEAD":
            assert r["path"] == "/", r["path"]
    posts = messages_posts(run)
    assert len(posts) >= 2, run.describe()
    for r in posts:
        assert r["path"] == "/v1/messages?beta=true", r["path"]
        h = r["headers"]
        assert h["anthropic-version"] == "2023-06-01"
        betas = h.get("anthropic-beta", "").split(",")
        assert "claude-code-20250219" in betas, betas
        assert h["user-agent"].startswith("claude-cli/"), h["user-agent"]
        assert h.get("x-app") == "cli"
        if auth == "api_key":
            assert h.get("x-api-key") == key and "authorization" not in h
        else:
            assert h.get("authorization") == f"Bearer {key}" and "x-api-key" not in h
        body = r["body"]
        assert body["model"] == run.model
        assert body["stream"] is True
        assert isinstance(body["max_tokens"], int) and body["max_tokens"] > 0
        assert isinstance(body["system"], list) and body["system"], body["system"]
        assert any("cache_control" in block for block in body["system"]), "no cache_control on system"
        names = [t.get("name") for t in body.get("tools", [])]
        assert "Bash" in names and len(names) >= 5, names
        assert r["response_headers"]["content-type"].startswith("text/event-stream")
        check_anthropic_stream(r["response_body"], run.model)
    # The answer to the tool turn carried the Bash call, under the public name.
    tool_answers = [
        r
        for r in posts
        if any(
            n == "content_block_start" and d["content_block"]["type"] == "tool_use"
            for n, d in sse_events(r["response_body"])
        )
    ]
    assert len(tool_answers) == 1, run.describe()
    starts = [d["content_block"] for n, d in sse_events(tool_answers[0]["response_body"]) if n == "content_block_start"]
    tool = [b for b in starts if b["type"] == "tool_use"][0]
    assert tool["name"] == "Bash", tool
    return posts


def tool_result_of(body):
    """(tool_use_id, text) of the Anthropic tool_result in a Messages body."""
    for m in body["messages"]:
        if m["role"] == "user" and isinstance(m["content"], list):
            for b in m["content"]:
                if b.get("type") == "tool_result":
                    return b["tool_use_id"], mock.text_of(b.get("content"))
    return None


# -- the tests ------------------------------------------------------------------


def test_claude_code_native_anthropic_upstream(stack, native_run):
    run = native_run
    posts = check_client_side(run, "api_key", stack.key)

    upstream = run.upstream
    assert upstream, run.describe()
    assert all(r["path"] == "/v1/messages" and r["method"] == "POST" for r in upstream), run.describe()
    assert len(upstream) == len(posts), run.describe()
    for client, up in zip(posts, upstream):
        h = up["headers"]
        assert h["x-api-key"] == mock.UPSTREAM_KEY and "authorization" not in h
        assert h["anthropic-version"] == client["headers"]["anthropic-version"]
        # Every beta Claude Code asked for reaches Anthropic unchanged.
        assert h["anthropic-beta"] == client["headers"]["anthropic-beta"]
        # The body goes through as is but for the model name.
        assert up["body"]["model"] == MODELS[NATIVE]["upstream"]
        assert {k: v for k, v in up["body"].items() if k != "model"} == {
            k: v for k, v in client["body"].items() if k != "model"
        }

    turns = main_turns(upstream)
    assert [r["reply"] for r in turns] == ["tool", "final"], run.describe()
    final = turns[1]["body"]
    assert tool_result_of(final) == (mock.TOOL_CALL_ID_ANTHROPIC, mock.TOOL_OUTPUT), final["messages"][-1]
    # The assistant turn Claude Code sent back holds the tool call and, when
    # thinking was on, the thinking block with its signature intact.
    assistant = [m for m in final["messages"] if m["role"] == "assistant"][-1]
    blocks = {b["type"]: b for b in assistant["content"]}
    assert blocks["tool_use"]["id"] == mock.TOOL_CALL_ID_ANTHROPIC
    assert blocks["tool_use"]["input"] == mock.TOOL_INPUT
    if (turns[0]["body"].get("thinking") or {}).get("type") in ("enabled", "adaptive"):
        assert blocks["thinking"]["signature"] == mock.THINKING_SIGNATURE, assistant


def test_claude_code_via_openai_upstream(stack, openai_run):
    run = openai_run
    posts = check_client_side(run, "auth_token", stack.key)

    upstream = run.upstream
    assert upstream, run.describe()
    assert all(r["path"] == "/v1/chat/completions" and r["method"] == "POST" for r in upstream), run.describe()
    assert len(upstream) == len(posts), run.describe()
    for client, up in zip(posts, upstream):
        h = up["headers"]
        assert h["authorization"] == f"Bearer {mock.UPSTREAM_KEY}" and "x-api-key" not in h
        assert "anthropic-beta" not in h and "anthropic-version" not in h
        body = up["body"]
        assert body["model"] == MODELS[VIA_OPENAI]["upstream"]
        assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
        assert body["max_tokens"] == client["body"]["max_tokens"]
        # Anthropic-only fields are dropped, not forwarded.
        for name in ("thinking", "output_config", "context_management", "metadata", "system", "cache_control"):
            assert name not in body, name
        assert body["messages"][0]["role"] == "system"
        assert isinstance(body["messages"][0]["content"], str)
        assert "cache_control" not in json.dumps(body["messages"])
        functions = [t["function"]["name"] for t in body["tools"] if t["type"] == "function"]
        # Deferred placeholders (tool search) are not callable tools: dropped.
        client_tools = [t["name"] for t in client["body"]["tools"]
                        if "input_schema" in t and not t.get("defer_loading")]
        assert functions == client_tools
        for t in body["tools"]:
            assert set(t["function"]) <= {"name", "description", "parameters"}, t

    turns = main_turns(upstream)
    assert [r["reply"] for r in turns] == ["tool", "final"], run.describe()
    final = turns[1]["body"]["messages"]
    calls = [m for m in final if m["role"] == "assistant" and m.get("tool_calls")]
    assert len(calls) == 1, final
    call = calls[0]["tool_calls"][0]
    assert call["id"] == mock.TOOL_CALL_ID_OPENAI and call["type"] == "function"
    assert call["function"]["name"] == "Bash"
    assert json.loads(call["function"]["arguments"]) == mock.TOOL_INPUT
    results = [m for m in final if m["role"] == "tool"]
    assert [(m["tool_call_id"], m["content"]) for m in results] == [(mock.TOOL_CALL_ID_OPENAI, mock.TOOL_OUTPUT)]
    assert final.index(results[0]) == final.index(calls[0]) + 1, "the tool message must follow the tool call"

    # Tollgate turned reasoning_content into a thinking block for Claude Code.
    events = sse_events(next(r for r in posts if "tool_use" in r["response_body"])["response_body"])
    kinds = [d["content_block"]["type"] for n, d in events if n == "content_block_start"]
    assert kinds == ["thinking", "tool_use"], kinds
    delta = [d for n, d in events if n == "message_delta"][-1]
    assert delta["delta"]["stop_reason"] == "tool_use"
    assert delta["usage"]["output_tokens"] == mock.TOOL_OUTPUT_TOKENS
    assert delta["usage"]["input_tokens"] + delta["usage"]["cache_read_input_tokens"] == mock.INPUT_TOKENS


def test_claude_code_endpoints_and_betas(stack, native_run, openai_run):
    """Everything Claude Code sent was one of the endpoints Tollgate serves."""
    requests = native_run.client + openai_run.client
    seen = {(r["method"], r["path"]) for r in requests}
    assert seen <= {("HEAD", "/"), ("GET", "/"), ("POST", "/v1/messages?beta=true"),
                    ("POST", "/v1/messages/count_tokens?beta=true")}, seen
    betas = set()
    for r in requests:
        betas.update(b for b in r["headers"].get("anthropic-beta", "").split(",") if b)
    assert "claude-code-20250219" in betas, betas
    summary = {
        "claude_version": subprocess.run(
            [stack.claude, "--version"], capture_output=True, timeout=60, env=hermetic_env(HOME=str(stack.tmp))
        ).stdout.decode().strip(),
        "endpoints": sorted(f"{m} {p}" for m, p in seen),
        "anthropic_beta": sorted(betas),
        "body_fields": sorted({k for r in messages_posts(native_run) for k in r["body"]}),
        "tools": [t["name"] for t in messages_posts(native_run)[0]["body"]["tools"]],
    }
    (stack.tmp / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


def test_count_tokens_with_claude_code_body(stack, native_run):
    """count_tokens on Claude Code's real first request, for both upstream kinds."""
    body = messages_posts(native_run)[0]["body"]
    countable = {k: body[k] for k in ("messages", "system", "tools", "thinking") if k in body}
    headers = {
        "x-api-key": stack.key,
        "anthropic-version": "2023-06-01",
        "anthropic-beta": messages_posts(native_run)[0]["headers"]["anthropic-beta"],
    }
    before = len(read_records(stack.upstream_log))
    status, rh, out = http(
        "POST", stack.base_url + "/v1/messages/count_tokens", {"model": NATIVE, **countable}, headers
    )
    assert status == 200, out
    assert out["input_tokens"] > 1000, out
    forwarded = read_records(stack.upstream_log)[before:]
    assert [(r["path"], r["reply"]) for r in forwarded] == [("/v1/messages/count_tokens", "count_tokens")]
    assert forwarded[0]["body"]["model"] == MODELS[NATIVE]["upstream"]

    status, rh, out = http(
        "POST", stack.base_url + "/v1/messages/count_tokens", {"model": VIA_OPENAI, **countable}, headers
    )
    assert status == 200, out
    assert out["input_tokens"] > 1000, out
    assert rh.get("x-tollgate-token-count") == "estimate"


@pytest.mark.parametrize("model", [NATIVE, VIA_OPENAI])
def test_non_stream_replay_of_claude_code_body(stack, native_run, model):
    """Claude Code's first request, sent again without streaming (as its
    non-streaming fallback does): a complete Anthropic Message with the call."""
    first = messages_posts(native_run)[0]
    body = {**first["body"], "model": model, "stream": False}
    headers = {k: v for k, v in first["headers"].items() if k in ("anthropic-version", "anthropic-beta")}
    headers["x-api-key"] = stack.key
    status, _, out = http("POST", stack.base_url + "/v1/messages?beta=true", body, headers)
    assert status == 200, out
    assert out["type"] == "message" and out["role"] == "assistant" and out["model"] == model
    assert out["stop_reason"] == "tool_use", out
    tool = [b for b in out["content"] if b["type"] == "tool_use"]
    assert len(tool) == 1 and tool[0]["name"] == "Bash" and tool[0]["input"] == mock.TOOL_INPUT, out
    assert out["usage"]["output_tokens"] == mock.TOOL_OUTPUT_TOKENS
    thinking = [b for b in out["content"] if b["type"] == "thinking"]
    assert thinking and thinking[0]["thinking"] == mock.THINKING_TEXT, out


def expected_cost_nano(model, usage):
    """The charge for one upstream answer, in nano-USD, rounded up once."""
    p = MODELS[model]
    if "prompt_tokens" in usage:  # OpenAI: prompt_tokens includes the cached ones
        cached = usage["prompt_tokens_details"]["cached_tokens"]
        usd_e6 = (usage["prompt_tokens"] - cached) * p["input"] + cached * p["cached"]
        usd_e6 += usage["completion_tokens"] * p["output"]
    else:  # Anthropic: input_tokens excludes cache reads and writes
        usd_e6 = (
            usage["input_tokens"] * p["input"]
            + usage["cache_read_input_tokens"] * p["cached"]
            + usage["cache_creation_input_tokens"] * p["cache_write"]
            + usage["output_tokens"] * p["output"]
        )
    return int((usd_e6 * 1000).to_integral_value(rounding=ROUND_CEILING))


def test_usage_charged(stack, native_run, openai_run):
    """Every metered upstream answer left one usage record, charged exactly,
    and the balance went down by their sum (count_tokens is free)."""
    by_model = {MODELS[m]["upstream"]: m for m in MODELS}
    metered = [
        r
        for r in read_records(stack.upstream_log)
        if r["path"] in ("/v1/messages", "/v1/chat/completions") and r.get("status") == 200
    ]
    expected = sorted((by_model[r["body"]["model"]], expected_cost_nano(by_model[r["body"]["model"]], r["usage"]))
                      for r in metered)
    assert len([m for m, _ in expected if m == NATIVE]) >= 2
    assert len([m for m, _ in expected if m == VIA_OPENAI]) >= 2

    deadline = time.monotonic() + SETTLE_TIMEOUT
    while True:
        status, _, page = http("GET", stack.base_url + "/v1/usage?limit=1000", headers={"x-api-key": stack.key})
        assert status == 200, page
        all_records = page["data"]
        records = [r for r in all_records if r["status"] == 200]
        if len(records) >= len(expected) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    got = sorted((r["model"], r["cost_nano_usd"]) for r in records)
    assert got == expected, f"usage records {got}\nexpected {expected}\n{tail(stack.gateway_log)}"
    for r in all_records:
        if r["status"] != 200:  # failed upstream requests cost nothing
            assert r["cost_nano_usd"] == 0, r
    for r in records:
        assert r["error"] is None, r
        assert r["endpoint"] == "messages", r
        assert r["cost_nano_usd"] > 0, r
        assert r["upstream_model"] == MODELS[r["model"]]["upstream"]
        assert r["provider"] == MODELS[r["model"]]["provider"]
    claude_runs = [r for r in records if r["stream"]]
    assert {NATIVE, VIA_OPENAI} <= {r["model"] for r in claude_runs}

    user = stack.admin("GET", f"/admin/users/{stack.user_id}")
    user = user.get("user", user)
    assert user["balance_nano_usd"] == stack.start_balance_nano - sum(c for _, c in got), user
    assert str(user.get("held", "0")) in ("0", "0.0"), user


# -- upstream errors, as Claude Code sees them --------------------------------


@pytest.mark.parametrize("model", [NATIVE, VIA_OPENAI])
def test_prompt_too_long_reaches_claude_code(stack, model):
    """An upstream context-overflow 400 reaches Claude Code in Anthropic's
    shape with the upstream's message, which Claude Code recognises."""
    run = stack.run_claude(
        model, auth="api_key", prompt="Say hi. " + mock.ERROR_TRIGGER + "too-long", tag=f"too-long-{model}"
    )
    assert run.returncode not in (0, "timeout"), run.describe()
    assert "prompt is too long" in (run.stdout + run.stderr).lower(), run.describe()
    posts = messages_posts(run)
    assert posts and all(r["status"] == 400 for r in posts), run.describe()
    for r in posts:
        body = json.loads(r["response_body"])
        assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error", body
        if model == NATIVE:
            assert body["error"]["message"] == "prompt is too long: 250000 tokens > 200000 maximum", body
        else:
            assert body["error"]["message"].startswith("This model's maximum context length"), body
    assert all(r["reply"] == "error" for r in run.upstream), run.describe()


@pytest.fixture(scope="module")
def rate_limited_run(stack):
    return stack.run_claude(
        NATIVE, auth="api_key", prompt="Say hi. " + mock.ERROR_TRIGGER + "rate-limit", tag="rate-limit"
    )


def test_rate_limit_reaches_claude_code(rate_limited_run):
    run = rate_limited_run
    assert run.returncode not in (0, "timeout"), run.describe()
    assert "429" in run.stdout + run.stderr, run.describe()
    posts = messages_posts(run)
    assert posts and all(r["status"] == 429 for r in posts), run.describe()
    body = json.loads(posts[0]["response_body"])
    assert body == {"type": "error", "error": {"type": "rate_limit_error",
                                               "message": "Number of requests has exceeded your rate limit"}}


# -- gaps found by this test, since fixed (see FINDINGS.md) ---------------------------


def test_rate_limit_retry_after_reaches_claude_code(rate_limited_run):
    posts = messages_posts(rate_limited_run)
    assert posts[0]["response_headers"].get("retry-after") == "1", posts[0]["response_headers"]



def test_openai_user_field_fits_upstream_limits(openai_run):
    for r in openai_run.upstream:
        user = r["body"].get("user")
        assert user is None or len(user) <= 64, f"`user` is {len(user)} characters: {user!r}"


def test_reasoning_content_passed_back_with_tool_calls(openai_run):
    final = main_turns(openai_run.upstream)[1]["body"]["messages"]
    call = [m for m in final if m["role"] == "assistant" and m.get("tool_calls")][0]
    assert call.get("reasoning_content") == mock.THINKING_TEXT, call


def test_native_body_reaches_anthropic_in_client_order(native_run):
    for client, up in zip(messages_posts(native_run), native_run.upstream):
        assert list(up["body"]) == list(client["body"])
        assert json.dumps(up["body"]["tools"]) == json.dumps(client["body"]["tools"])
        assert json.dumps(up["body"]["messages"]) == json.dumps(client["body"]["messages"])


def late_system_texts(messages, text=mock.text_of):
    """The texts of the system messages after the first non-system one."""
    roles = [m["role"] for m in messages]
    first_other = next(i for i, role in enumerate(roles) if role != "system")
    return [text(m["content"]) for m in messages[first_other:] if m["role"] == "system"]


def test_openai_system_messages_stay_where_claude_code_put_them(openai_run):
    """OpenAI accepts system messages anywhere: a mid-conversation one stays
    a system message (as user text the model would answer it instead of
    the prompt; see the next test)."""
    for client, up in zip(messages_posts(openai_run), openai_run.upstream):
        sent = late_system_texts(client["body"]["messages"])
        assert sent, "Claude Code sent no mid-conversation system message"
        assert late_system_texts(up["body"]["messages"]) == sent


@pytest.mark.parametrize("model", [VIA_OPENAI, VIA_STRICT])
def test_claude_code_on_an_openai_model_answers_the_prompt(stack, model):
    """`claude -p "say hi"` on a model behind an OpenAI-compatible upstream
    gets the answer to its prompt. The mock answers as a chat model does,
    the last user message; Claude Code's environment section (a system
    message after the first user turn) once went upstream as that last user
    message, and was answered instead of the prompt. With
    late_system_messages = "as_user" it goes ahead of the prompt instead."""
    prompt = f"say hi ({mock.ANSWER_TRIGGER})"
    run = stack.run_claude(model, auth="api_key", prompt=prompt, tag=f"say-hi-{model}")
    assert run.returncode == 0, run.describe()
    assert mock.ANSWER_PREFIX + prompt in run.stdout, run.describe()
    answered = [r for r in run.upstream if r.get("reply") == "answer"]
    assert answered, run.describe()
    for r in answered:
        messages = r["body"]["messages"]
        late = late_system_texts(messages)
        if model == VIA_STRICT:
            assert late == [], [m["role"] for m in messages]
            assert "<system-reminder>" in json.dumps(messages)
        else:
            assert late, [m["role"] for m in messages]
