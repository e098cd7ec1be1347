"""End-to-end: the real Codex CLI (`codex exec`) through Tollgate's
Responses API, emulated over an OpenAI chat-completions upstream.

    codex exec --json --> Tollgate POST /v1/responses (stream)
                      --> mock-upstream --scenario codex-chat
                          POST /v1/chat/completions (records)

The module starts its own chat-completions mock (the mock upstream's
`codex-chat` scenario, see codex_turns.py: it answers the first turn with
a call to Codex's shell tool `exec_command` and the turn that carries the
tool's result with a final text) and its own Tollgate (env TOLLGATE_BIN,
default /root/.cache/tollgate-target/debug/tollgate) with one `openai`-kind
provider on it, using the shared harness's helpers (start-up, users,
settling, expected_cost). The shared session gateway's mock (its built-in
answers) cannot be used: it answers every request that has tools with a
`get_weather` call, which Codex does not have.

Each model runs once (a fresh user each): `gpt-test` (harness.MODEL, unknown
to Codex, which then uses fallback metadata: function tools, a `namespace`
tool, `web_search`) and `gpt-5.5` (in Codex's bundled catalog: a `custom`
freeform `apply_patch` tool, `tool_search`, `web_search`, reasoning effort
and text verbosity). Both are served by the same upstream model at
harness.MODEL's prices.

The Codex CLI: $CODEX_BIN, or what e2e/codex/install.sh installed
(~/.cache/tollgate-codex). Without it the module is skipped, unless
TOLLGATE_REQUIRE_CODEX is set: then install.sh runs, and a failed install
fails the module.

Besides: a control run against the mock's `codex-responses` scenario (no Tollgate;
checks the CLI and the fixtures), a model Tollgate does not serve, a call to
a `namespace` tool, a call to the `custom` tool `apply_patch` (offered
upstream as a function with one string parameter, its call returned to
Codex as a `custom_tool_call`), and a replay of Codex's compaction request
(fixtures/request_compaction.json, no CLI needed).

Everything listens on 127.0.0.1, Codex's internet features are off (see
codex_cli.config_toml) and every wait is bounded. pytest's basetemp keeps
each run's folder (run.txt: Codex's output; summary.json: what went
upstream and what was charged), chat.jsonl and tollgate.log.
"""

import json
import os
import re
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import codex_cli  # noqa: E402
import harness  # noqa: E402  (e2e/, on the path via its conftest)
import mockbin  # noqa: E402  (e2e/)
import codex_turns as mock  # noqa: E402  (the scenarios' scripted answers)
from harness import MODEL, UPSTREAM_MODEL, expected_cost, stop, tail  # noqa: E402

KNOWN_MODEL = "gpt-5.5"  # a name in Codex's bundled model catalog
MODELS = [MODEL, KNOWN_MODEL]
UNKNOWN_MODEL = "no-such-model"  # not configured in Tollgate
FINAL_TEXT = mock.FINAL_PREFIX + mock.TOOL_OUTPUT
# OpenAI's rule for function names (a dotted name is refused with a 400).
FUNCTION_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
# Tool types of the Responses API that run on OpenAI's servers: a chat
# upstream cannot run them, so they must not reach it (as functions either).
HOSTED_TOOLS = {"web_search", "web_search_preview", "image_generation", "file_search", "code_interpreter"}


def fixture(name):
    return json.loads((HERE / "fixtures" / name).read_text())


# -- the Codex CLI ------------------------------------------------------------


@pytest.fixture(scope="module")
def codex(tmp_path_factory):
    """The codex executable; skips the module when it is absent and not required."""
    path = codex_cli.find_codex()
    if path:
        return path
    if os.environ.get("CODEX_BIN"):
        pytest.fail(f"CODEX_BIN={os.environ['CODEX_BIN']} is not executable")
    if not os.environ.get("TOLLGATE_REQUIRE_CODEX"):
        pytest.skip(
            f"Codex CLI not installed at {codex_cli.default_binary()}: run `bash e2e/codex/install.sh` "
            "(or set CODEX_BIN); set TOLLGATE_REQUIRE_CODEX=1 to install it here and fail when that fails"
        )
    log = tmp_path_factory.mktemp("codex-install") / "install.log"
    path, rc = codex_cli.install(log)
    if not path:
        pytest.fail(f"TOLLGATE_REQUIRE_CODEX is set but install.sh failed ({rc}):\n{tail(log, 30)}")
    return path


# -- the stack: chat mock + Tollgate ----------------------------------------------


def start_scenario(tmp, name, scenario, record, *args):
    """Starts the mock upstream on one of its Codex scenarios, recording to
    `record`; returns (process, the port it printed)."""
    return mockbin.start(
        tmp / f"{name}.stderr.log",
        ["--scenario", scenario, "--record-file", str(record), *args],
        harness.hermetic_env(),
    )


def write_config(tmp, mock_port):
    input_price, output_price, cached_price, _ = harness.PRICES[MODEL]
    models = "".join(
        f"""
[models."{name}"]
provider = "chatmock"
upstream_model = "{UPSTREAM_MODEL}"
input_price = "{input_price}"
output_price = "{output_price}"
cached_input_price = "{cached_price}"
max_output_tokens = 16384
"""
        for name in MODELS
    )
    config = tmp / "tollgate.toml"
    config.write_text(
        f"""\
database_url = "sqlite://{tmp / 'tollgate.db'}"
admin_token = "{harness.ADMIN_TOKEN}"
log_level = "info,gateway=debug"
shutdown_grace_secs = 5

# An OpenAI-compatible upstream that speaks chat completions only: Tollgate
# emulates the Responses API over it.
[providers.chatmock]
kind = "openai"
base_url = "http://127.0.0.1:{mock_port}/v1"
api_key = "{mock.UPSTREAM_KEY}"
connect_timeout_secs = 5
request_timeout_secs = 60
read_timeout_secs = 60
{models}"""
    )
    return config


@dataclass
class Stack:
    tmp: Path
    server: harness.Server
    chat_log: Path

    def chat_requests(self, marker=None):
        """What the chat mock received (answered requests), optionally only those mentioning `marker`."""
        r = self.server.http.get(self.server.mock_url + "/__requests")
        r.raise_for_status()
        records = r.json()["requests"]
        if marker:
            records = [rec for rec in records if marker in json.dumps(rec["body"])]
        return records


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    binary = os.environ.get("TOLLGATE_BIN", harness.DEFAULT_BIN)
    if not os.access(binary, os.X_OK):
        pytest.fail(f"no tollgate binary at {binary} (build it or set TOLLGATE_BIN)")
    tmp = tmp_path_factory.mktemp("codex-stack")
    chat_log = tmp / "chat.jsonl"
    procs = []
    http = httpx.Client(trust_env=False, timeout=harness.REQUEST_TIMEOUT)
    try:
        mock_proc, mock_port = start_scenario(tmp, "chat-mock", "codex-chat", chat_log, "--key", mock.UPSTREAM_KEY)
        procs.append(mock_proc)
        config = write_config(tmp, mock_port)
        gateway, base_url = harness.start_gateway(tmp, config, binary)
        procs.insert(0, gateway)  # stopped first
        gateway_log = tmp / "tollgate.log"
        server = harness.Server(
            base_url=base_url, mock_url=f"http://127.0.0.1:{mock_port}", http=http, gateway_log=gateway_log
        )
        yield Stack(tmp=tmp, server=server, chat_log=chat_log)
    finally:
        http.close()
        for proc in procs:
            stop(proc)


# -- one Codex run per model ------------------------------------------------------


@dataclass
class CodexRun:
    model: str
    marker: str
    run: codex_cli.Run
    upstream: list  # the chat mock's records of this run, in order
    gw: harness.Gateway
    elapsed: float

    def describe(self):
        ups = "\n".join(
            f"  {r['status']} {r['reply']} {r.get('error', '')} messages={roles(r['body'])}" for r in self.upstream
        )
        return f"{self.run.describe()}\n--- upstream (chat mock) requests\n{ups}\n--- tollgate.log\n" + tail(
            self.gw.gateway_log, 40
        )

    def turn(self, reply):
        found = [r for r in self.upstream if r["reply"] == reply]
        assert len(found) == 1, f"expected one upstream `{reply}` request\n{self.describe()}"
        return found[0]["body"]


def roles(body):
    return [m.get("role") for m in (body or {}).get("messages", []) if isinstance(m, dict)]


def text_of(content):
    return mock.text_of(content)


def run_through_tollgate(stack, codex, model, tag, call=None):
    """One `codex exec` run through Tollgate for a fresh user; returns a
    CodexRun. With `call`, the prompt directs the chat mock to call that
    tool instead of the shell (see codex_turns.py)."""
    gw = harness.new_user(stack.server, f"codex-{tag}")
    marker = "cx" + uuid.uuid4().hex[:12]
    prompt = codex_cli.PROMPT.format(marker=marker)
    if call:
        prompt = f"Use the {call} tool once, then stop. {mock.CALL_DIRECTIVE}{call} (run {marker})"
    started = time.monotonic()
    run = codex_cli.run_codex(codex, stack.tmp / f"run-{tag}", stack.server.base_url + "/v1", model, gw.key, prompt)
    elapsed = time.monotonic() - started
    upstream = stack.chat_requests(marker)
    gw.metered.extend(r["reply"] for r in upstream if r["status"] == 200)
    result = CodexRun(model=model, marker=marker, run=run, upstream=upstream, gw=gw, elapsed=elapsed)
    summary = {
        "model": model,
        "marker": marker,
        "returncode": run.returncode,
        "elapsed_s": round(elapsed, 2),
        "last_message": run.last_message,
        "events": run.events,
        "upstream": [
            {
                "status": r["status"],
                "reply": r["reply"],
                "error": r.get("error"),
                "headers": r["headers"],
                "fields": {k: v for k, v in (r["body"] or {}).items() if k not in ("messages", "tools")},
                "messages": [
                    {
                        **{k: v for k, v in m.items() if k != "content"},
                        "content_head": text_of(m.get("content"))[:300],
                    }
                    for m in (r["body"] or {}).get("messages", [])
                ],
                "tools": [t.get("function", {}).get("name", t.get("type")) for t in (r["body"] or {}).get("tools", [])],
            }
            for r in upstream
        ],
    }
    (run.folder / "summary.json").write_text(json.dumps(summary, indent=2))
    return result


@pytest.fixture(scope="module")
def runs():
    """The module's Codex runs, by model (each made once, on first use)."""
    return {}


@pytest.fixture(params=MODELS)
def codex_run(request, stack, codex, runs):
    model = request.param
    if model not in runs:
        runs[model] = run_through_tollgate(stack, codex, model, model)
    return runs[model]


# -- the control: Codex against a plain Responses mock, no Tollgate ------------------


def test_control_codex_speaks_responses_to_a_plain_mock(codex, tmp_path):
    """Codex itself works here and still sends what FINDINGS.md describes:
    against the mock's codex-responses scenario (no Tollgate) the same round trip
    succeeds, and the request's shape matches fixtures/request_turn*.json.
    If this fails, the problem is the CLI or the machine, not Tollgate."""
    record = tmp_path / "responses.jsonl"
    proc, port = start_scenario(tmp_path, "responses-mock", "codex-responses", record)
    try:
        run = codex_cli.run_codex(
            codex, tmp_path / "run", f"http://127.0.0.1:{port}/v1", MODEL, "sk-control",
            codex_cli.PROMPT.format(marker="control"),
        )
    finally:
        stop(proc)
    assert run.returncode == 0, run.describe()
    assert run.last_message.strip() == mock.FINAL_PREFIX + mock.TOOL_OUTPUT, run.describe()
    records = [json.loads(line) for line in record.read_text().splitlines() if line.strip()]
    assert [(r["method"], r["path"], r["reply"]) for r in records] == [
        ("POST", "/v1/responses", "tool"),
        ("POST", "/v1/responses", "final"),
    ], records
    have, recorded = codex_cli.version(codex), fixture("request_turn1.json")["codex_version"]
    if have != recorded:
        pytest.skip(f"round trip OK; request shape not compared: fixtures are from {recorded}, this is {have} "
                    "(re-record with e2e/codex/record_fixtures.py)")
    for record_, name in zip(records, ("request_turn1.json", "request_turn2.json")):
        want, got = fixture(name), record_
        assert got["headers"]["authorization"] == "Bearer sk-control"
        assert got["headers"]["accept"] == "text/event-stream"
        assert set(got["body"]) == set(want["body"]), "top-level fields changed"
        for key in ("stream", "store", "include", "tool_choice", "parallel_tool_calls", "reasoning"):
            assert got["body"][key] == want["body"][key], key
        assert [(t["type"], t.get("name")) for t in got["body"]["tools"]] == [
            (t["type"], t.get("name")) for t in want["body"]["tools"]
        ]
        assert [(i["type"], i.get("role")) for i in got["body"]["input"]] == [
            (i["type"], i.get("role")) for i in want["body"]["input"]
        ]


# -- through Tollgate ---------------------------------------------------------------


def test_codex_round_trip(codex_run):
    """`codex exec` exits 0 in bounded time, ran the mock's shell command,
    and printed the final answer the upstream gave after seeing its output."""
    r = codex_run
    assert r.run.returncode == 0, r.describe()
    assert r.run.last_message.strip() == FINAL_TEXT, r.describe()
    messages = r.run.items("agent_message")
    assert [m["text"] for m in messages] == [FINAL_TEXT], r.describe()
    commands = r.run.items("command_execution")
    assert len(commands) == 1, r.describe()
    assert mock.TOOL_COMMAND in commands[0]["command"], commands
    assert commands[0]["exit_code"] == 0 and commands[0]["status"] == "completed", commands
    assert commands[0]["aggregated_output"].strip() == mock.TOOL_OUTPUT, commands
    # The only "error" item allowed is Codex's note that it has no metadata for `gpt-test`.
    errors = [e for e in r.run.items("error") if not e.get("message", "").startswith("Model metadata for")]
    assert errors == [], r.describe()
    assert not [e for e in r.run.events if e.get("type") in ("error", "turn.failed")], r.describe()


def test_two_upstream_calls(codex_run):
    """The round trip took exactly two chat-completions calls, both accepted
    by the upstream (which checks them as OpenAI does), streamed with usage."""
    r = codex_run
    assert [(u["status"], u["reply"]) for u in r.upstream] == [(200, "tool"), (200, "final")], r.describe()
    for u in r.upstream:
        body = u["body"]
        assert body["model"] == UPSTREAM_MODEL, body["model"]
        assert u["headers"].get("authorization") == "Bearer " + mock.UPSTREAM_KEY
        assert body.get("stream") is True, "Codex streams; the upstream call should too"
        assert body.get("stream_options", {}).get("include_usage") is True, (
            "without stream_options.include_usage the upstream reports no usage to bill"
        )


def test_tools_reach_the_upstream_as_valid_functions(codex_run):
    """Every tool the upstream got is a well-formed chat function with a
    name OpenAI accepts; Codex's shell tool is there as it declared it;
    hosted tools (web_search) are not sent; namespace, custom and tool_search
    tools become functions or are left out, never sent in their own types."""
    r = codex_run
    assert r.upstream, r.describe()
    for u in r.upstream:
        tools = u["body"].get("tools") or []
        names = []
        for t in tools:
            assert t.get("type") == "function", t
            fn = t["function"]
            assert FUNCTION_NAME.match(fn["name"]), f"function name OpenAI refuses: {fn['name']!r}"
            assert isinstance(fn.get("parameters", {}), dict), t
            names.append(fn["name"])
        assert len(names) == len(set(names)), f"duplicate function names: {names}"
        assert mock.TOOL_NAME in names, names
        assert not HOSTED_TOOLS & set(names), f"hosted tools offered as functions: {names}"
        shell = next(t["function"] for t in tools if t["function"]["name"] == mock.TOOL_NAME)
        assert shell["parameters"]["required"] == ["cmd"], shell
        assert "cmd" in shell["parameters"]["properties"], shell
        if "tool_choice" in u["body"]:
            assert tools, "tool_choice without tools is refused by OpenAI"
            assert u["body"]["tool_choice"] in ("auto", "none", "required") or isinstance(
                u["body"]["tool_choice"], dict
            ), u["body"]["tool_choice"]


def test_second_turn_carries_the_whole_history(codex_run):
    """Turn 2 (after the command ran) sends Codex's instructions, the user's
    messages, the assistant's tool call and the tool's real output, in that
    order; turn 1's messages are its unchanged prefix."""
    r = codex_run
    first, second = r.turn("tool"), r.turn("final")
    msgs = second["messages"]
    role_list = roles(second)

    # Codex's developer messages (base instructions, skills) lead, as system or developer.
    leading = [m for m in msgs if m["role"] in ("system", "developer")]
    assert leading, role_list
    instructions = "\n".join(text_of(m.get("content")) for m in leading)
    assert "Codex" in instructions and "<skills_instructions>" in instructions, instructions[:500]
    prompt_at = next(
        i for i, m in enumerate(msgs) if m["role"] == "user" and r.marker in text_of(m.get("content"))
    )
    assert role_list.index(leading[0]["role"]) < prompt_at, role_list
    assert any(
        m["role"] == "user" and "<environment_context>" in text_of(m.get("content")) for m in msgs[:prompt_at]
    ), role_list

    # Then the assistant's call and the tool's answer, last.
    assert role_list[prompt_at + 1 :] == ["assistant", "tool"], role_list
    call_msg, tool_msg = msgs[-2], msgs[-1]
    calls = call_msg.get("tool_calls") or []
    assert len(calls) == 1, call_msg
    assert calls[0]["type"] == "function" and calls[0]["function"]["name"] == mock.TOOL_NAME, calls
    assert json.loads(calls[0]["function"]["arguments"]) == {"cmd": mock.TOOL_COMMAND}, calls
    assert tool_msg["tool_call_id"] == calls[0]["id"], (tool_msg, calls)
    output = text_of(tool_msg.get("content"))
    assert mock.TOOL_OUTPUT in output and "Process exited with code 0" in output, output

    # The history is stable: what turn 1 sent is the start of turn 2.
    assert msgs[: len(first["messages"])] == first["messages"], "turn 1's messages changed in turn 2"


def test_reasoning_content_passed_back(codex_run):
    """The upstream's `reasoning_content` before its tool call went to Codex
    as a reasoning item, came back in turn 2's input, and reaches the
    upstream again as the assistant message's `reasoning_content`
    (DeepSeek-style thinking models refuse a tool loop without it)."""
    r = codex_run
    call_msg = r.turn("final")["messages"][-2]
    assert call_msg.get("reasoning_content") == mock.REASONING_TEXT, call_msg


def test_usage_reported_to_codex(codex_run):
    """Codex's own token count for the turn (summed from each response's
    `usage`) is what the upstream reported."""
    r = codex_run
    usage = r.run.turn_usage()
    assert usage, r.describe()
    assert usage["input_tokens"] == 2 * mock.PROMPT_TOKENS, usage
    assert usage["cached_input_tokens"] == 2 * mock.CACHED_TOKENS, usage
    assert usage["output_tokens"] == mock.TOOL_COMPLETION_TOKENS + mock.FINAL_COMPLETION_TOKENS, usage


def test_charged_exactly_for_the_two_upstream_calls(codex_run):
    """The run's user was charged exactly for the two upstream answers (at
    harness.MODEL's prices), one usage record each, and nothing is left held."""
    r = codex_run
    records, user = r.gw.settled()
    expected = sorted(
        [
            expected_cost(MODEL, mock.PROMPT_TOKENS, mock.CACHED_TOKENS, 0, mock.TOOL_COMPLETION_TOKENS),
            expected_cost(MODEL, mock.PROMPT_TOKENS, mock.CACHED_TOKENS, 0, mock.FINAL_COMPLETION_TOKENS),
        ]
    )
    assert len(records) == 2, records
    for rec in records:
        assert rec["model"] == r.model and rec["upstream_model"] == UPSTREAM_MODEL, rec
        assert rec["status"] == 200 and rec["error"] is None, rec
        assert rec["input_tokens"] == mock.PROMPT_TOKENS and rec["cached_tokens"] == mock.CACHED_TOKENS, rec
    assert sorted(rec["cost_nano_usd"] for rec in records) == expected, records
    assert user["balance_nano_usd"] == r.gw.start_balance_nano - sum(expected), user


def test_unknown_model_fails_cleanly(stack, codex):
    """A model Tollgate does not serve: Codex stops at once with an error
    (no retries configured), nothing reaches the upstream, nothing is charged."""
    r = run_through_tollgate(stack, codex, UNKNOWN_MODEL, "unknown-model")
    assert r.run.returncode not in (0, "timeout"), r.describe()
    assert r.elapsed < codex_cli.CODEX_TIMEOUT
    failures = [e for e in r.run.events if e.get("type") in ("error", "turn.failed")]
    assert failures, r.describe()
    assert r.upstream == [], r.upstream
    records, user = r.gw.settled()
    assert all(rec["cost_nano_usd"] == 0 for rec in records), records
    assert user["balance_nano_usd"] == r.gw.start_balance_nano, user


# -- the other tool shapes Codex uses ------------------------------------------------


def test_namespace_tool_round_trip(stack, codex):
    """A call to a tool inside Codex's `multi_agent_v1` namespace reaches
    Codex in the namespace form it requires (`function_call` with
    `namespace` + `name`; a bare or joined name gets "unsupported call"),
    and the call goes upstream again under the name it was offered."""
    r = run_through_tollgate(stack, codex, MODEL, "namespace", call="close_agent")
    assert r.run.returncode == 0, r.describe()
    assert [u["reply"] for u in r.upstream] == ["tool", "final"], r.describe()
    offered = [t["function"]["name"] for t in r.upstream[0]["body"]["tools"]]
    flat = [n for n in offered if n.endswith("close_agent")]
    assert len(flat) == 1, offered
    msgs = r.turn("final")["messages"]
    call_msg, tool_msg = msgs[-2], msgs[-1]
    assert [c["function"]["name"] for c in call_msg.get("tool_calls") or []] == flat, call_msg
    output = text_of(tool_msg.get("content"))
    assert output and "unsupported call" not in output, output


def test_apply_patch_round_trip(stack, codex):
    """Codex's file-editing tool: for a catalog model it is a `custom`
    freeform tool (a lark grammar, raw-text input). It reaches the chat
    upstream as a function with one string parameter, the upstream's call
    comes back to Codex as `custom_tool_call` (a `function_call` would be a
    fatal "incompatible payload"), Codex applies the patch, and its
    `custom_tool_call_output` goes upstream as the tool message."""
    r = run_through_tollgate(stack, codex, KNOWN_MODEL, "apply-patch", call="apply_patch")
    assert r.run.returncode == 0, r.describe()
    offered = [t["function"]["name"] for t in r.upstream[0]["body"].get("tools") or []]
    assert "apply_patch" in offered, offered
    assert [u["reply"] for u in r.upstream] == ["tool", "final"], r.describe()
    patched = r.run.folder / "work" / mock.PATCH_FILE
    assert patched.is_file(), r.describe()
    assert patched.read_text() == mock.PATCH_LINE + "\n"
    tool_msg = r.turn("final")["messages"][-1]
    assert tool_msg["role"] == "tool" and "Success" in text_of(tool_msg.get("content")), tool_msg


def test_compaction_request_through_tollgate(stack):
    """Codex's inline compaction request (fixtures/request_compaction.json:
    the whole history with a tool call and its output, then the compaction
    prompt, with `tools: []`, `tool_choice: "auto"`,
    `parallel_tool_calls: false`) replayed to Tollgate: the upstream gets the
    history without tool_choice/parallel_tool_calls (OpenAI refuses them
    without tools), and the stream completes with the summary text."""
    gw = harness.new_user(stack.server, "codex-compaction")
    marker = "cx" + uuid.uuid4().hex[:12]
    body = fixture("request_compaction.json")["body"]
    assert body["tools"] == [] and body["tool_choice"] == "auto" and body["parallel_tool_calls"] is False
    body["input"][-1]["content"][0]["text"] += f" (run {marker})"
    events = []
    with stack.server.http.stream(
        "POST",
        stack.server.base_url + "/v1/responses",
        json=body,
        headers={"Authorization": f"Bearer {gw.key}", "Accept": "text/event-stream"},
        timeout=harness.REQUEST_TIMEOUT,
    ) as resp:
        if resp.status_code != 200:
            pytest.fail(f"{resp.status_code} {resp.read().decode()[:2000]}\n{tail(stack.server.gateway_log, 30)}")
        for line in resp.iter_lines():
            if line.startswith("data:") and line[5:].strip() not in ("", "[DONE]"):
                events.append(json.loads(line[5:]))
    upstream = stack.chat_requests(marker)
    assert [(u["status"], u["reply"]) for u in upstream] == [(200, "side")], upstream
    sent = upstream[0]["body"]
    assert "tools" not in sent or sent["tools"], sent.get("tools")
    assert roles(sent)[-3:] == ["assistant", "tool", "user"], roles(sent)
    done = [e for e in events if e.get("type") == "response.completed"]
    assert len(done) == 1, [e.get("type") for e in events]
    texts = [
        part.get("text")
        for item in done[0]["response"]["output"]
        if item.get("type") == "message"
        for part in item.get("content", [])
    ]
    assert texts == [mock.SIDE_TEXT], done[0]["response"]["output"]
    gw.metered.append("compaction")
    records, _ = gw.settled()
    assert [rec["cost_nano_usd"] for rec in records] == [
        expected_cost(MODEL, mock.PROMPT_TOKENS, mock.CACHED_TOKENS, 0, mock.SIDE_COMPLETION_TOKENS)
    ], records
