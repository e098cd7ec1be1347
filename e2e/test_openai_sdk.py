"""End-to-end tests: the official `openai` Python SDK against Tollgate.

The fixtures (conftest.py, harness.py) start the mock upstream
(crates/mock-upstream; its answers in mock_answers.py) and the tollgate binary (env TOLLGATE_BIN, default
/root/.cache/tollgate-target/debug/tollgate) once for the session, and give
this module its own user, credited 10 USD, through the admin API. The tests
then drive /v1/chat/completions through the SDK and finally check that the
balance went down by exactly the sum of the recorded charges.

Everything listens on 127.0.0.1 and every wait is bounded.
"""

import json
from decimal import Decimal

import openai
import pytest

from harness import BAD_UPSTREAM_MODEL, CREDITS_PER_USD, MODEL, UPSTREAM_MODEL, expected_cost, mock


def expected_cost_nano(prompt, cached, completion):
    """What the gateway must charge for `gpt-test`, in nano-USD (rounded up, as it does)."""
    return expected_cost(MODEL, prompt, cached, 0, completion)


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


def test_balance_went_down_by_exactly_the_charges(gw):
    # One request of its own, so this test means something even when run alone.
    gw.client().chat.completions.create(model=MODEL, messages=HELLO)
    gw.metered.append("chat")

    # Streams settle just after their last byte: wait (bounded) until every
    # metered request has its record and no hold is left.
    records, user = gw.settled()

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
