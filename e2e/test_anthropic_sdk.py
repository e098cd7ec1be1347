"""End-to-end tests: the official `anthropic` Python SDK against Tollgate, and
the official `openai` SDK calling a model that an Anthropic upstream serves.

The fixtures (conftest.py, harness.py) start the mock upstream
(crates/mock-upstream, which speaks both OpenAI's and Anthropic's APIs; its
answers in mock_answers.py) and the tollgate binary once for the session, and give this module its own user,
credited 10 USD. Three paths are driven:

* the anthropic SDK -> /v1/messages -> `claude-test` (Anthropic upstream, as is);
* the anthropic SDK -> /v1/messages -> `gpt-test` (OpenAI upstream, translated);
* the openai SDK -> /v1/chat/completions -> `claude-test` (translated).

The last test checks that every usage record is charged exactly what the
prices say, and that the balance went down by exactly the sum.

Everything listens on 127.0.0.1 and every wait is bounded.
"""

import json
from decimal import Decimal

import anthropic
import openai
import pytest

from harness import (
    CLAUDE_MODEL,
    CLAUDE_UPSTREAM_MODEL,
    CREDITS_PER_USD,
    MODEL,
    REQUEST_TIMEOUT,
    UPSTREAM_MODEL,
    expected_cost,
    mock,
)

# What the raw requests below send; the SDK sends its own version.
ANTHROPIC_VERSION = "2023-06-01"
# What the gateway sends an Anthropic upstream when the client names no version.
GATEWAY_DEFAULT_VERSION = "2023-06-01"
BETA = "e2e-beta-2025-01-01"
MAX_TOKENS = 256
HELLO = [{"role": "user", "content": "Say hello."}]
WEATHER_QUESTION = [{"role": "user", "content": "Weather in Paris?"}]
TOOL_RESULT = "Sunny, 21 degrees"

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
OPENAI_WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": WEATHER_TOOL["name"],
        "description": WEATHER_TOOL["description"],
        "parameters": WEATHER_TOOL["input_schema"],
    },
}

# Tokens as the gateway meters them (every prompt token counts as input):
# model -> (input, cached, cache_write).
CLAUDE_PROMPT = mock.CLAUDE_INPUT_TOKENS + mock.CLAUDE_CACHE_READ_TOKENS + mock.CLAUDE_CACHE_WRITE_TOKENS
METERED_INPUT = {
    CLAUDE_MODEL: (CLAUDE_PROMPT, mock.CLAUDE_CACHE_READ_TOKENS, mock.CLAUDE_CACHE_WRITE_TOKENS),
    MODEL: (mock.PROMPT_TOKENS, mock.CACHED_TOKENS, 0),
}
UPSTREAM_MODELS = {CLAUDE_MODEL: CLAUDE_UPSTREAM_MODEL, MODEL: UPSTREAM_MODEL}


def meter(gw, model, stream, output_tokens, status=200):
    """Notes a request that must leave one usage record."""
    gw.metered.append((model, stream, output_tokens, status))


# -- checks --------------------------------------------------------------


def check_claude_usage(usage, output_tokens):
    """The mock's Anthropic usage, passed through untouched."""
    assert usage.input_tokens == mock.CLAUDE_INPUT_TOKENS
    assert usage.cache_read_input_tokens == mock.CLAUDE_CACHE_READ_TOKENS
    assert usage.cache_creation_input_tokens == mock.CLAUDE_CACHE_WRITE_TOKENS
    assert usage.output_tokens == output_tokens


def check_translated_usage(usage, output_tokens):
    """The OpenAI mock's usage (12 prompt, 2 of them cached) in Anthropic's
    terms: input_tokens excludes the cache reads."""
    assert usage.input_tokens == mock.PROMPT_TOKENS - mock.CACHED_TOKENS
    assert usage.cache_read_input_tokens == mock.CACHED_TOKENS
    assert (usage.cache_creation_input_tokens or 0) == 0
    assert usage.output_tokens == output_tokens


def check_openai_usage(usage, completion_tokens):
    """The Anthropic mock's usage in OpenAI's terms: every prompt token counts."""
    assert usage is not None
    assert usage.prompt_tokens == CLAUDE_PROMPT
    assert usage.completion_tokens == completion_tokens
    assert usage.total_tokens == CLAUDE_PROMPT + completion_tokens
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == mock.CLAUDE_CACHE_READ_TOKENS


def check_text_message(message, model, text):
    assert message.type == "message"
    assert message.role == "assistant"
    assert message.model == model
    assert [b.type for b in message.content] == ["text"]
    assert message.content[0].text == text
    assert message.stop_reason == "end_turn"


def check_tool_use_message(message, model, tool_id):
    assert message.type == "message"
    assert message.role == "assistant"
    assert message.model == model
    assert message.stop_reason == "tool_use"
    tools = [b for b in message.content if b.type == "tool_use"]
    assert len(tools) == 1, message.content
    assert [b.type for b in message.content if b.type != "text"] == ["tool_use"]
    assert tools[0].id == tool_id
    assert tools[0].name == "get_weather"
    assert tools[0].input == {"city": "Paris"}
    return tools[0]


def parse_sse(text):
    """[(event name, data as JSON)] of an SSE body."""
    events = []
    for raw in text.replace("\r\n", "\n").split("\n\n"):
        name, data = None, []
        for line in raw.split("\n"):
            if line.startswith("event:"):
                name = line[len("event:") :].strip()
            elif line.startswith("data:"):
                data.append(line[len("data:") :].lstrip())
        if name is not None or data:
            events.append((name, json.loads("\n".join(data))))
    return events


def check_anthropic_stream(events, block_type):
    """Anthropic's event grammar: names match types, one message, blocks opened,
    filled with their own kind of delta and closed in index order; returns the
    names (without pings) and the concatenated delta of each block."""
    for name, data in events:
        assert name == data.get("type"), (name, data)
    names = [n for n, _ in events]
    assert names[0] == "message_start", names
    assert names[-2:] == ["message_delta", "message_stop"], names
    assert names.count("message_start") == names.count("message_delta") == names.count("message_stop") == 1
    assert "error" not in names
    open_index, next_index, pieces = None, 0, []
    delta_type = {"text": "text_delta", "tool_use": "input_json_delta"}
    for name, data in events[1:-2]:
        if name == "ping":
            continue
        if name == "content_block_start":
            assert open_index is None, "a block started inside another"
            assert data["index"] == next_index
            assert data["content_block"]["type"] == block_type
            open_index, kind = data["index"], data["content_block"]["type"]
            pieces.append("")
        elif name == "content_block_delta":
            assert data["index"] == open_index
            assert data["delta"]["type"] == delta_type[kind]
            pieces[-1] += data["delta"].get("text", data["delta"].get("partial_json", ""))
        elif name == "content_block_stop":
            assert data["index"] == open_index
            open_index, next_index = None, next_index + 1
        else:
            pytest.fail(f"unexpected event {name!r} inside the message: {names}")
    assert open_index is None, "a block was never closed"
    return [n for n in names if n != "ping"], pieces


def raw_stream(gw, body):
    """POST /v1/messages with stream=true, bypassing the SDK: the SSE events."""
    r = gw.http.post(
        gw.base_url + "/v1/messages",
        json={**body, "stream": True},
        headers={"x-api-key": gw.key, "anthropic-version": ANTHROPIC_VERSION},
        timeout=REQUEST_TIMEOUT,
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/event-stream")
    return parse_sse(r.text)


def new_anthropic_requests(gw, before):
    return gw.anthropic_requests()[before:]


# -- the anthropic SDK, `claude-test` (Anthropic upstream) ------------------


def sdk_version(client):
    """The anthropic-version header the SDK sends."""
    version = client.default_headers["anthropic-version"]
    assert isinstance(version, str) and version
    return version


def test_claude_messages_create(gw):
    before = len(gw.anthropic_requests())
    client = gw.anthropic()
    message = client.messages.create(
        model=CLAUDE_MODEL, max_tokens=MAX_TOKENS, messages=HELLO, extra_headers={"anthropic-beta": BETA}
    )
    meter(gw, CLAUDE_MODEL, False, len(mock.CLAUDE_TEXT_PIECES))
    check_text_message(message, CLAUDE_MODEL, mock.CLAUDE_TEXT)
    assert message.id == mock.CLAUDE_MESSAGE_ID
    check_claude_usage(message.usage, len(mock.CLAUDE_TEXT_PIECES))
    sent = new_anthropic_requests(gw, before)
    assert len(sent) == 1
    assert sent[0]["path"] == "/v1/messages"
    assert sent[0]["authorized"] is True
    # The client's version and beta flags reach the upstream.
    assert sent[0]["anthropic_version"] == sdk_version(client)
    assert sent[0]["anthropic_beta"] == BETA
    assert sent[0]["body"] == {"model": CLAUDE_UPSTREAM_MODEL, "max_tokens": MAX_TOKENS, "messages": HELLO}


def test_claude_messages_stream(gw):
    with gw.anthropic().messages.stream(model=CLAUDE_MODEL, max_tokens=MAX_TOKENS, messages=HELLO) as stream:
        texts = list(stream.text_stream)
        message = stream.get_final_message()
    meter(gw, CLAUDE_MODEL, True, len(mock.CLAUDE_TEXT_PIECES))
    assert texts == mock.CLAUDE_TEXT_PIECES
    check_text_message(message, CLAUDE_MODEL, mock.CLAUDE_TEXT)
    check_claude_usage(message.usage, len(mock.CLAUDE_TEXT_PIECES))


def test_claude_raw_stream_is_the_upstream_event_sequence(gw):
    before = len(gw.anthropic_requests())
    events = raw_stream(gw, {"model": CLAUDE_MODEL, "max_tokens": MAX_TOKENS, "messages": HELLO})
    meter(gw, CLAUDE_MODEL, True, len(mock.CLAUDE_TEXT_PIECES))
    sent = new_anthropic_requests(gw, before)
    assert len(sent) == 1
    assert sent[0]["anthropic_version"] == ANTHROPIC_VERSION
    assert sent[0]["anthropic_beta"] is None
    assert sent[0]["body"]["stream"] is True
    names, pieces = check_anthropic_stream(events, "text")
    # Passed through: the mock's exact sequence, ping included, public model name.
    assert [n for n, _ in events] == (
        ["message_start", "content_block_start", "ping"]
        + ["content_block_delta"] * len(mock.CLAUDE_TEXT_PIECES)
        + ["content_block_stop", "message_delta", "message_stop"]
    )
    assert pieces == [mock.CLAUDE_TEXT]
    start = events[0][1]["message"]
    assert start["model"] == CLAUDE_MODEL
    assert start["usage"]["input_tokens"] == mock.CLAUDE_INPUT_TOKENS
    assert start["usage"]["cache_read_input_tokens"] == mock.CLAUDE_CACHE_READ_TOKENS
    assert start["usage"]["cache_creation_input_tokens"] == mock.CLAUDE_CACHE_WRITE_TOKENS
    delta = events[-2][1]
    assert delta["delta"]["stop_reason"] == "end_turn"
    assert delta["usage"]["output_tokens"] == len(mock.CLAUDE_TEXT_PIECES)


def test_claude_tool_use_round_trip(gw):
    client = gw.anthropic()
    before = len(gw.anthropic_requests())
    first = client.messages.create(
        model=CLAUDE_MODEL, max_tokens=MAX_TOKENS, messages=WEATHER_QUESTION, tools=[WEATHER_TOOL]
    )
    meter(gw, CLAUDE_MODEL, False, len(mock.CLAUDE_ARGUMENT_PIECES))
    tool = check_tool_use_message(first, CLAUDE_MODEL, mock.CLAUDE_TOOL_USE_ID)
    check_claude_usage(first.usage, len(mock.CLAUDE_ARGUMENT_PIECES))

    history = WEATHER_QUESTION + [
        {"role": "assistant", "content": first.content},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool.id, "content": TOOL_RESULT}]},
    ]
    final = client.messages.create(model=CLAUDE_MODEL, max_tokens=MAX_TOKENS, messages=history, tools=[WEATHER_TOOL])
    answer = mock.tool_result_pieces(TOOL_RESULT)
    meter(gw, CLAUDE_MODEL, False, len(answer))
    check_text_message(final, CLAUDE_MODEL, "".join(answer))
    assert TOOL_RESULT in final.content[0].text
    check_claude_usage(final.usage, len(answer))

    sent = new_anthropic_requests(gw, before)
    assert len(sent) == 2
    assert sent[0]["body"]["tools"] == [WEATHER_TOOL]
    assert sent[1]["body"]["model"] == CLAUDE_UPSTREAM_MODEL
    assert sent[1]["body"]["messages"][1] == {
        "role": "assistant",
        "content": [{"type": "tool_use", "id": tool.id, "name": "get_weather", "input": {"city": "Paris"}}],
    }


def test_claude_tool_use_stream(gw):
    with gw.anthropic().messages.stream(
        model=CLAUDE_MODEL, max_tokens=MAX_TOKENS, messages=WEATHER_QUESTION, tools=[WEATHER_TOOL]
    ) as stream:
        partials = [e.partial_json for e in stream if e.type == "input_json"]
        message = stream.get_final_message()
    meter(gw, CLAUDE_MODEL, True, len(mock.CLAUDE_ARGUMENT_PIECES))
    assert partials == mock.CLAUDE_ARGUMENT_PIECES
    check_tool_use_message(message, CLAUDE_MODEL, mock.CLAUDE_TOOL_USE_ID)
    check_claude_usage(message.usage, len(mock.CLAUDE_ARGUMENT_PIECES))


def test_claude_count_tokens(gw):
    before = len(gw.anthropic_requests())
    system = "Be brief."
    messages = [{"role": "user", "content": "Count the words in this sentence, please."}]
    client = gw.anthropic()
    count = client.messages.count_tokens(model=CLAUDE_MODEL, system=system, messages=messages)
    # The mock counts words: 2 in the system prompt, 7 in the message.
    assert count.input_tokens == 9
    sent = new_anthropic_requests(gw, before)
    assert len(sent) == 1
    assert sent[0]["path"] == "/v1/messages/count_tokens"
    assert sent[0]["anthropic_version"] == sdk_version(client)
    assert sent[0]["body"] == {"model": CLAUDE_UPSTREAM_MODEL, "system": system, "messages": messages}
    # Free: no usage record (checked by the balance test's count).


def test_claude_beta_messages(gw):
    """The SDK's beta namespace: /v1/messages?beta=true with anthropic-beta."""
    before = len(gw.anthropic_requests())
    message = gw.anthropic().beta.messages.create(
        model=CLAUDE_MODEL, max_tokens=MAX_TOKENS, messages=HELLO, betas=[BETA]
    )
    meter(gw, CLAUDE_MODEL, False, len(mock.CLAUDE_TEXT_PIECES))
    check_text_message(message, CLAUDE_MODEL, mock.CLAUDE_TEXT)
    check_claude_usage(message.usage, len(mock.CLAUDE_TEXT_PIECES))
    sent = new_anthropic_requests(gw, before)
    assert len(sent) == 1
    assert sent[0]["path"] == "/v1/messages"
    assert sent[0]["anthropic_beta"] == BETA
    assert sent[0]["body"]["model"] == CLAUDE_UPSTREAM_MODEL


def test_claude_upstream_refusal_is_anthropic_error(gw):
    """The upstream's 400 reaches the client as Anthropic's invalid_request_error."""
    dangling = [
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_unknown", "content": "?"}]}
    ]
    with pytest.raises(anthropic.BadRequestError) as info:
        gw.anthropic().messages.create(model=CLAUDE_MODEL, max_tokens=MAX_TOKENS, messages=dangling)
    meter(gw, CLAUDE_MODEL, False, 0, status=400)
    assert info.value.status_code == 400
    assert info.value.body["type"] == "error"
    assert info.value.body["error"]["type"] == "invalid_request_error"
    assert "toolu_unknown" in info.value.body["error"]["message"]
    assert mock.UPSTREAM_KEY not in info.value.response.text


def test_unknown_model_is_not_found_error(gw):
    before = (len(gw.anthropic_requests()), len(gw.upstream_requests()))
    with pytest.raises(anthropic.NotFoundError) as info:
        gw.anthropic().messages.create(model="no-such-model", max_tokens=MAX_TOKENS, messages=HELLO)
    assert info.value.status_code == 404
    assert info.value.body["error"]["type"] == "not_found_error"
    assert (len(gw.anthropic_requests()), len(gw.upstream_requests())) == before


def test_wrong_key_is_authentication_error(gw):
    before = (len(gw.anthropic_requests()), len(gw.upstream_requests()))
    bad = gw.anthropic(api_key="sk-not-a-tollgate-key")
    with pytest.raises(anthropic.AuthenticationError) as info:
        bad.messages.create(model=CLAUDE_MODEL, max_tokens=MAX_TOKENS, messages=HELLO)
    assert info.value.status_code == 401
    assert info.value.body["type"] == "error"
    assert info.value.body["error"]["type"] == "authentication_error"
    with pytest.raises(anthropic.AuthenticationError) as info:
        with bad.messages.stream(model=MODEL, max_tokens=MAX_TOKENS, messages=HELLO) as stream:
            stream.get_final_message()
    assert info.value.status_code == 401
    with pytest.raises(anthropic.AuthenticationError):
        bad.messages.count_tokens(model=CLAUDE_MODEL, messages=HELLO)
    # Refused before anything was forwarded.
    assert (len(gw.anthropic_requests()), len(gw.upstream_requests())) == before


# -- the anthropic SDK, `gpt-test` (OpenAI upstream, translated) ------------


def test_gpt_messages_create(gw):
    before = len(gw.upstream_requests())
    message = gw.anthropic().messages.create(
        model=MODEL, max_tokens=MAX_TOKENS, system="Be brief.", messages=HELLO
    )
    meter(gw, MODEL, False, len(mock.MOCK_TEXT_PIECES))
    check_text_message(message, MODEL, mock.MOCK_TEXT)
    assert message.id.startswith("msg_")
    check_translated_usage(message.usage, len(mock.MOCK_TEXT_PIECES))
    sent = gw.upstream_requests()[before:]
    assert len(sent) == 1
    assert sent[0]["model"] == UPSTREAM_MODEL
    assert sent[0]["max_tokens"] == MAX_TOKENS
    assert sent[0]["messages"] == [{"role": "system", "content": "Be brief."}] + HELLO
    assert "stream" not in sent[0]


def test_gpt_messages_stream(gw):
    before = len(gw.upstream_requests())
    with gw.anthropic().messages.stream(model=MODEL, max_tokens=MAX_TOKENS, messages=HELLO) as stream:
        texts = list(stream.text_stream)
        message = stream.get_final_message()
    meter(gw, MODEL, True, len(mock.MOCK_TEXT_PIECES))
    assert texts == mock.MOCK_TEXT_PIECES
    check_text_message(message, MODEL, mock.MOCK_TEXT)
    check_translated_usage(message.usage, len(mock.MOCK_TEXT_PIECES))
    sent = gw.upstream_requests()[before:]
    assert len(sent) == 1
    assert sent[0]["stream"] is True
    assert sent[0]["stream_options"] == {"include_usage": True}


def test_gpt_raw_stream_is_well_formed(gw):
    events = raw_stream(gw, {"model": MODEL, "max_tokens": MAX_TOKENS, "messages": HELLO})
    meter(gw, MODEL, True, len(mock.MOCK_TEXT_PIECES))
    names, pieces = check_anthropic_stream(events, "text")
    assert names == (
        ["message_start", "content_block_start"]
        + ["content_block_delta"] * len(mock.MOCK_TEXT_PIECES)
        + ["content_block_stop", "message_delta", "message_stop"]
    )
    assert pieces == [mock.MOCK_TEXT]
    assert events[0][1]["message"]["model"] == MODEL
    delta = events[-2][1]
    assert delta["delta"]["stop_reason"] == "end_turn"
    assert delta["usage"]["output_tokens"] == len(mock.MOCK_TEXT_PIECES)
    assert delta["usage"]["input_tokens"] == mock.PROMPT_TOKENS - mock.CACHED_TOKENS
    assert delta["usage"]["cache_read_input_tokens"] == mock.CACHED_TOKENS


def test_gpt_tool_use(gw):
    client = gw.anthropic()
    message = client.messages.create(model=MODEL, max_tokens=MAX_TOKENS, messages=WEATHER_QUESTION, tools=[WEATHER_TOOL])
    meter(gw, MODEL, False, len(mock.MOCK_ARGUMENT_PIECES))
    tool = check_tool_use_message(message, MODEL, mock.MOCK_TOOL_CALL_ID)
    check_translated_usage(message.usage, len(mock.MOCK_ARGUMENT_PIECES))

    # The tool result goes back as OpenAI's assistant tool_calls + tool message.
    # (The OpenAI mock answers any request with tools by calling the tool.)
    before = len(gw.upstream_requests())
    history = WEATHER_QUESTION + [
        {"role": "assistant", "content": message.content},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool.id, "content": TOOL_RESULT}]},
    ]
    again = client.messages.create(model=MODEL, max_tokens=MAX_TOKENS, messages=history, tools=[WEATHER_TOOL])
    meter(gw, MODEL, False, len(mock.MOCK_ARGUMENT_PIECES))
    check_tool_use_message(again, MODEL, mock.MOCK_TOOL_CALL_ID)
    sent = gw.upstream_requests()[before:]
    assert len(sent) == 1
    forwarded = sent[0]["messages"]
    assert forwarded[0] == WEATHER_QUESTION[0]
    assert forwarded[1]["role"] == "assistant"
    assert not forwarded[1].get("content")
    assert len(forwarded[1]["tool_calls"]) == 1
    call = forwarded[1]["tool_calls"][0]
    assert call["id"] == tool.id and call["type"] == "function"
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}
    assert forwarded[2] == {"role": "tool", "tool_call_id": tool.id, "content": TOOL_RESULT}
    assert len(forwarded) == 3
    assert sent[0]["tools"] == [OPENAI_WEATHER_TOOL]


def test_gpt_tool_use_stream(gw):
    with gw.anthropic().messages.stream(
        model=MODEL, max_tokens=MAX_TOKENS, messages=WEATHER_QUESTION, tools=[WEATHER_TOOL]
    ) as stream:
        partials = [e.partial_json for e in stream if e.type == "input_json"]
        message = stream.get_final_message()
    meter(gw, MODEL, True, len(mock.MOCK_ARGUMENT_PIECES))
    assert partials == mock.MOCK_ARGUMENT_PIECES
    check_tool_use_message(message, MODEL, mock.MOCK_TOOL_CALL_ID)
    check_translated_usage(message.usage, len(mock.MOCK_ARGUMENT_PIECES))


def test_gpt_raw_tool_stream_is_well_formed(gw):
    events = raw_stream(
        gw, {"model": MODEL, "max_tokens": MAX_TOKENS, "messages": WEATHER_QUESTION, "tools": [WEATHER_TOOL]}
    )
    meter(gw, MODEL, True, len(mock.MOCK_ARGUMENT_PIECES))
    names, pieces = check_anthropic_stream(events, "tool_use")
    assert json.loads(pieces[0]) == {"city": "Paris"}
    assert len(pieces) == 1
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"


def test_gpt_count_tokens_is_estimated(gw):
    count = gw.anthropic().messages.count_tokens(model=MODEL, messages=HELLO)
    assert isinstance(count.input_tokens, int) and count.input_tokens > 0


# -- the openai SDK, `claude-test` (Anthropic upstream, translated) --------


OPENAI_HELLO = [{"role": "user", "content": "Say hello."}]


def test_openai_sdk_claude_non_stream(gw):
    before = len(gw.anthropic_requests())
    resp = gw.client().chat.completions.create(model=CLAUDE_MODEL, messages=OPENAI_HELLO, max_tokens=MAX_TOKENS)
    meter(gw, CLAUDE_MODEL, False, len(mock.CLAUDE_TEXT_PIECES))
    assert resp.model == CLAUDE_MODEL
    assert resp.choices[0].message.role == "assistant"
    assert resp.choices[0].message.content == mock.CLAUDE_TEXT
    assert resp.choices[0].finish_reason == "stop"
    check_openai_usage(resp.usage, len(mock.CLAUDE_TEXT_PIECES))
    sent = new_anthropic_requests(gw, before)
    assert len(sent) == 1
    assert sent[0]["path"] == "/v1/messages"
    # The openai SDK sends no anthropic-version: the gateway supplies its default.
    assert sent[0]["anthropic_version"] == GATEWAY_DEFAULT_VERSION
    assert sent[0]["body"]["model"] == CLAUDE_UPSTREAM_MODEL
    assert sent[0]["body"]["max_tokens"] == MAX_TOKENS
    assert sent[0]["body"]["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Say hello."}]}]


def test_openai_sdk_claude_stream_with_usage(gw):
    stream = gw.client().chat.completions.create(
        model=CLAUDE_MODEL, messages=OPENAI_HELLO, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    meter(gw, CLAUDE_MODEL, True, len(mock.CLAUDE_TEXT_PIECES))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == mock.CLAUDE_TEXT
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert all(c.model == CLAUDE_MODEL for c in chunks)
    last = chunks[-1]
    assert last.choices == []
    check_openai_usage(last.usage, len(mock.CLAUDE_TEXT_PIECES))
    assert all(c.usage is None for c in chunks[:-1])


def test_openai_sdk_claude_stream_without_usage(gw):
    stream = gw.client().chat.completions.create(model=CLAUDE_MODEL, messages=OPENAI_HELLO, stream=True)
    chunks = list(stream)
    meter(gw, CLAUDE_MODEL, True, len(mock.CLAUDE_TEXT_PIECES))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == mock.CLAUDE_TEXT
    assert [c for c in chunks if c.usage is not None] == []
    assert all(c.choices for c in chunks), "a usage-only chunk reached a client that did not ask for it"


def test_openai_sdk_claude_tool_call(gw):
    client = gw.client()
    resp = client.chat.completions.create(
        model=CLAUDE_MODEL,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[OPENAI_WEATHER_TOOL],
    )
    meter(gw, CLAUDE_MODEL, False, len(mock.CLAUDE_ARGUMENT_PIECES))
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert calls is not None and len(calls) == 1
    assert calls[0].id == mock.CLAUDE_TOOL_USE_ID
    assert calls[0].type == "function"
    assert calls[0].function.name == "get_weather"
    assert json.loads(calls[0].function.arguments) == {"city": "Paris"}
    check_openai_usage(resp.usage, len(mock.CLAUDE_ARGUMENT_PIECES))

    # The round trip: the tool's answer goes back as a `tool` message.
    before = len(gw.anthropic_requests())
    history = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [c.model_dump(exclude_none=True) for c in calls]},
        {"role": "tool", "tool_call_id": calls[0].id, "content": TOOL_RESULT},
    ]
    final = client.chat.completions.create(model=CLAUDE_MODEL, messages=history, tools=[OPENAI_WEATHER_TOOL])
    answer = mock.tool_result_pieces(TOOL_RESULT)
    meter(gw, CLAUDE_MODEL, False, len(answer))
    assert final.choices[0].finish_reason == "stop"
    assert final.choices[0].message.content == "".join(answer)
    assert not final.choices[0].message.tool_calls
    check_openai_usage(final.usage, len(answer))
    sent = new_anthropic_requests(gw, before)
    assert len(sent) == 1
    forwarded = sent[0]["body"]["messages"]
    assert forwarded[1] == {
        "role": "assistant",
        "content": [{"type": "tool_use", "id": calls[0].id, "name": "get_weather", "input": {"city": "Paris"}}],
    }
    assert forwarded[2] == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": calls[0].id, "content": TOOL_RESULT}],
    }
    assert sent[0]["body"]["tools"] == [WEATHER_TOOL]


def test_openai_sdk_claude_tool_call_stream(gw):
    stream = gw.client().chat.completions.create(
        model=CLAUDE_MODEL,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[OPENAI_WEATHER_TOOL],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    meter(gw, CLAUDE_MODEL, True, len(mock.CLAUDE_ARGUMENT_PIECES))
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
    assert ids == {0: mock.CLAUDE_TOOL_USE_ID}
    assert argument_deltas == len(mock.CLAUDE_ARGUMENT_PIECES)
    assert json.loads(args[0]) == {"city": "Paris"}
    check_openai_usage(chunks[-1].usage, len(mock.CLAUDE_ARGUMENT_PIECES))


def test_openai_sdk_claude_upstream_refusal_is_openai_error(gw):
    """The Anthropic upstream's 400 reaches an OpenAI client in OpenAI's shape."""
    dangling = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "tool", "tool_call_id": "call_unknown", "content": "?"},
    ]
    with pytest.raises(openai.BadRequestError) as info:
        gw.client().chat.completions.create(model=CLAUDE_MODEL, messages=dangling)
    meter(gw, CLAUDE_MODEL, False, 0, status=400)
    assert info.value.status_code == 400
    assert info.value.type == "invalid_request_error"
    assert "call_unknown" in info.value.message
    assert mock.UPSTREAM_KEY not in info.value.response.text


def test_openai_sdk_wrong_key_on_claude_model(gw):
    with pytest.raises(openai.AuthenticationError) as info:
        gw.client(api_key="sk-not-a-tollgate-key").chat.completions.create(model=CLAUDE_MODEL, messages=OPENAI_HELLO)
    assert info.value.status_code == 401


# -- money -----------------------------------------------------------------


def test_balance_went_down_by_exactly_the_charges(gw):
    # One request of its own, so this test means something even when run alone.
    gw.anthropic().messages.create(model=CLAUDE_MODEL, max_tokens=MAX_TOKENS, messages=HELLO)
    meter(gw, CLAUDE_MODEL, False, len(mock.CLAUDE_TEXT_PIECES))

    records, user = gw.settled()
    assert len(records) == len(gw.metered), records
    seen = []
    for r in records:
        model = r["model"]
        assert model in METERED_INPUT, r
        assert r["upstream_model"] == UPSTREAM_MODELS[model], r
        seen.append((model, r["stream"], r["output_tokens"], r["status"]))
        if r["status"] != 200:
            # Failed upstream requests cost nothing.
            assert r["cost_nano_usd"] == 0, r
            assert r["error"], r
            continue
        assert r["error"] is None, r
        assert (r["input_tokens"], r["cached_tokens"], r["cache_write_tokens"]) == METERED_INPUT[model], r
        assert r["cost_nano_usd"] == expected_cost(
            model, r["input_tokens"], r["cached_tokens"], r["cache_write_tokens"], r["output_tokens"]
        ), r
        assert r["cost_nano_usd"] > 0, r
    assert sorted(seen) == sorted(gw.metered)
    endpoints = {r["endpoint"] for r in records}
    assert endpoints <= {"messages", "chat.completions"}, endpoints

    charged = sum(r["cost_nano_usd"] for r in records)
    assert user["balance_nano_usd"] == gw.start_balance_nano - charged
    assert user["free_balance_nano_usd"] == 0

    # OhMyGPT's balance, in credits, says the same (34000 credits = 1 USD).
    r = gw.http.post(gw.base_url + "/api/v1/user/admin/balance", headers={"Authorization": f"Bearer {gw.key}"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["statusCode"] == 200, body
    credits = Decimal(body["data"]["balance"])
    assert credits == Decimal(user["balance_nano_usd"]) * CREDITS_PER_USD / Decimal(10**9)
