"""End-to-end tests: OpenAI's Responses API (`/v1/responses`) through the
official `openai` SDK, served by Tollgate by emulation over the mock's chat
completions (`gpt-test`) and over the mock's Anthropic Messages
(`claude-test`).

What is checked: the Response objects and stream events the SDK sees, what
reached the upstream (the mock's request log, found by a unique marker in
each prompt), stored responses (retrieve, delete, input items,
`previous_response_id` chains, `store: false`), background runs (poll,
cancel, stream and resume from a sequence number), one user's responses
being invisible to another, OpenAI-shaped errors, and that every request is
charged exactly what the prices say.

Everything listens on 127.0.0.1 and every wait is bounded.
"""

import json
import time

import openai
import pytest

from harness import (
    CLAUDE_MODEL,
    CLAUDE_UPSTREAM_MODEL,
    MODEL,
    UPSTREAM_MODEL,
    anthropic_messages,
    assert_openai_error,
    assert_refused_free,
    chat_messages,
    content_text,
    expected_cost,
    item_text,
    mock,
    new_marker,
    new_user,
    wait_for,
)

# -- what the mock answers and what it costs ----------------------------------

CLAUDE_PROMPT = mock.CLAUDE_INPUT_TOKENS + mock.CLAUDE_CACHE_READ_TOKENS + mock.CLAUDE_CACHE_WRITE_TOKENS
GPT_TEXT_COST = expected_cost(MODEL, mock.PROMPT_TOKENS, mock.CACHED_TOKENS, 0, len(mock.MOCK_TEXT_PIECES))
GPT_TOOL_COST = expected_cost(MODEL, mock.PROMPT_TOKENS, mock.CACHED_TOKENS, 0, len(mock.MOCK_ARGUMENT_PIECES))
GPT_SLOW_COST = expected_cost(MODEL, mock.PROMPT_TOKENS, mock.CACHED_TOKENS, 0, mock.SLOW_PIECES)


def claude_cost(output_tokens):
    return expected_cost(
        CLAUDE_MODEL, CLAUDE_PROMPT, mock.CLAUDE_CACHE_READ_TOKENS, mock.CLAUDE_CACHE_WRITE_TOKENS, output_tokens
    )


CLAUDE_TEXT_COST = claude_cost(len(mock.CLAUDE_TEXT_PIECES))
CLAUDE_TOOL_COST = claude_cost(len(mock.CLAUDE_ARGUMENT_PIECES))

TOOL_RESULT = "Sunny, 21 degrees"
WEATHER_PARAMETERS = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}
# A function tool in the Responses API's (flat) shape.
WEATHER_TOOL = {
    "type": "function",
    "name": mock.MOCK_TOOL_NAME,
    "description": "The weather in a city.",
    "parameters": WEATHER_PARAMETERS,
}
WEATHER_ARGUMENTS = {"city": "Paris"}

# The events of a streamed text answer, consecutive deltas counted once.
TEXT_EVENTS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]
TOOL_EVENTS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.function_call_arguments.delta",
    "response.function_call_arguments.done",
    "response.output_item.done",
    "response.completed",
]

POLL_TIMEOUT = 20.0  # seconds for a background response to finish


@pytest.fixture(scope="module")
def other(tollgate):
    """A second user of the same gateway, for isolation tests."""
    gateway = new_user(tollgate, "e2e-test_responses-other")
    try:
        yield gateway
    finally:
        gateway.close()


# -- checks ---------------------------------------------------------------------


def meter(gw, model, output_tokens):
    """Notes a request that must leave one usage record."""
    gw.metered.append((model, output_tokens))


def check_gpt_usage(usage, output_tokens):
    assert usage is not None
    assert usage.input_tokens == mock.PROMPT_TOKENS
    assert usage.input_tokens_details.cached_tokens == mock.CACHED_TOKENS
    assert usage.output_tokens == output_tokens
    assert usage.total_tokens == mock.PROMPT_TOKENS + output_tokens


def check_claude_usage(usage, output_tokens):
    """Anthropic's usage in the Responses API's terms: every prompt token counts as input."""
    assert usage is not None
    assert usage.input_tokens == CLAUDE_PROMPT
    assert usage.input_tokens_details.cached_tokens == mock.CLAUDE_CACHE_READ_TOKENS
    assert usage.output_tokens == output_tokens
    assert usage.total_tokens == CLAUDE_PROMPT + output_tokens


def check_text_response(resp, model=MODEL, text=mock.MOCK_TEXT):
    assert resp.id.startswith("resp_"), resp.id
    assert resp.object == "response"
    assert resp.status == "completed", resp
    assert resp.model == model
    assert resp.error is None
    assert resp.output_text == text
    messages = [o for o in resp.output if o.type == "message"]
    assert len(messages) == 1, resp.output
    message = messages[0]
    assert message.role == "assistant"
    assert message.id
    assert [c.type for c in message.content] == ["output_text"]
    assert message.content[0].text == text


def check_function_call(resp, call_id):
    """The response's single function_call item (returned)."""
    assert resp.id.startswith("resp_")
    assert resp.status == "completed", resp
    calls = [o for o in resp.output if o.type == "function_call"]
    assert len(calls) == 1, resp.output
    call = calls[0]
    assert call.id
    assert call.call_id == call_id
    assert call.name == mock.MOCK_TOOL_NAME
    assert json.loads(call.arguments) == WEATHER_ARGUMENTS
    assert resp.output_text == ""
    return call


def only_entry(gw, marker, api="openai"):
    """The single upstream request marked `marker` (its body)."""
    entries = gw.mock_log(marker)
    assert len(entries) == 1, entries
    assert entries[0]["api"] == api, entries[0]
    assert entries[0]["state"] == "done", entries[0]
    return entries[0]["body"]


def collapse(types):
    """Event types with runs of the same delta event counted once."""
    out = []
    for t in types:
        if t.endswith(".delta") and out and out[-1] == t:
            continue
        out.append(t)
    return out


def without_queued(types):
    """A background stream may say `response.queued` before `response.in_progress`."""
    return [t for t in types if t != "response.queued"]


def check_sequence_numbers(events, start=0):
    assert [e.sequence_number for e in events] == list(range(start, start + len(events)))


def check_text_events(events, text_pieces, background=False):
    """The events of a streamed text answer, complete, from sequence number 0."""
    check_sequence_numbers(events)
    types = [e.type for e in events]
    assert collapse(without_queued(types) if background else types) == TEXT_EVENTS, types
    created = events[0].response
    assert created.id.startswith("resp_")
    assert created.status in (("queued", "in_progress") if background else ("in_progress",))
    added = next(e for e in events if e.type == "response.output_item.added")
    assert added.item.type == "message" and added.item.id
    deltas = [e for e in events if e.type == "response.output_text.delta"]
    assert [d.delta for d in deltas if d.delta] == text_pieces
    for e in deltas:
        assert (e.item_id, e.output_index, e.content_index) == (added.item.id, 0, 0)
    text = "".join(text_pieces)
    assert next(e for e in events if e.type == "response.output_text.done").text == text
    assert next(e for e in events if e.type == "response.content_part.done").part.text == text
    done = next(e for e in events if e.type == "response.output_item.done")
    assert done.item.id == added.item.id and item_text(done.item) == text
    completed = events[-1].response
    assert completed.id == created.id
    assert completed.status == "completed"
    assert completed.output_text == text
    return completed


def retrieve_until_done(client, response_id, timeout=POLL_TIMEOUT):
    """Polls a background response (bounded) until it leaves queued/in_progress."""

    def done():
        r = client.responses.retrieve(response_id)
        return r if r.status not in ("queued", "in_progress") else None

    return wait_for(done, timeout, f"background response {response_id} to finish", interval=0.1)


# -- text answers ---------------------------------------------------------------


def test_text_non_stream(gw):
    m = new_marker()
    before = gw.balance()
    resp = gw.client().responses.create(model=MODEL, input=f"Say hello ({m})")
    meter(gw, MODEL, len(mock.MOCK_TEXT_PIECES))
    check_text_response(resp)
    check_gpt_usage(resp.usage, len(mock.MOCK_TEXT_PIECES))
    body = only_entry(gw, m)
    assert body["model"] == UPSTREAM_MODEL
    assert chat_messages(body) == [{"role": "user", "text": f"Say hello ({m})"}]
    assert before - gw.balance() == GPT_TEXT_COST


def test_text_non_stream_claude(gw):
    m = new_marker()
    before = gw.balance()
    resp = gw.client().responses.create(model=CLAUDE_MODEL, input=f"Say hello ({m})", instructions="Be brief.")
    meter(gw, CLAUDE_MODEL, len(mock.CLAUDE_TEXT_PIECES))
    check_text_response(resp, model=CLAUDE_MODEL, text=mock.CLAUDE_TEXT)
    check_claude_usage(resp.usage, len(mock.CLAUDE_TEXT_PIECES))
    body = only_entry(gw, m, api="anthropic")
    assert body["model"] == CLAUDE_UPSTREAM_MODEL
    assert anthropic_messages(body) == [{"role": "user", "text": f"Say hello ({m})"}]
    assert content_text(body.get("system")) == "Be brief."
    assert before - gw.balance() == CLAUDE_TEXT_COST


def test_input_as_message_items(gw):
    """Input given as message items (easy and typed forms) reaches the upstream in order."""
    m = new_marker()
    resp = gw.client().responses.create(
        model=MODEL,
        input=[
            {"role": "user", "content": f"First ({m})"},
            {"role": "assistant", "content": "An earlier answer"},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": f"Second ({m})"}]},
        ],
    )
    meter(gw, MODEL, len(mock.MOCK_TEXT_PIECES))
    check_text_response(resp)
    assert chat_messages(only_entry(gw, m)) == [
        {"role": "user", "text": f"First ({m})"},
        {"role": "assistant", "text": "An earlier answer"},
        {"role": "user", "text": f"Second ({m})"},
    ]


def test_instructions_and_options(gw):
    """instructions, max_output_tokens, reasoning and metadata: translated for the
    upstream and echoed in the Response."""
    m = new_marker()
    resp = gw.client().responses.create(
        model=MODEL,
        input=f"Say hello ({m})",
        instructions="You are terse.",
        max_output_tokens=50,
        reasoning={"effort": "low"},
        metadata={"purpose": "e2e", "marker": m},
    )
    meter(gw, MODEL, len(mock.MOCK_TEXT_PIECES))
    check_text_response(resp)
    assert resp.instructions == "You are terse."
    assert resp.max_output_tokens == 50
    assert resp.metadata == {"purpose": "e2e", "marker": m}
    assert resp.reasoning is not None and resp.reasoning.effort == "low"
    body = only_entry(gw, m)
    assert chat_messages(body) == [
        {"role": "system", "text": "You are terse."},
        {"role": "user", "text": f"Say hello ({m})"},
    ]
    assert body.get("max_completion_tokens", body.get("max_tokens")) == 50
    assert body.get("reasoning_effort") == "low"


def test_text_format_json_schema(gw):
    m = new_marker()
    schema = {
        "type": "object",
        "properties": {"greeting": {"type": "string"}},
        "required": ["greeting"],
        "additionalProperties": False,
    }
    resp = gw.client().responses.create(
        model=MODEL,
        input=f"Greet me as JSON ({m})",
        text={"format": {"type": "json_schema", "name": "greeting", "schema": schema, "strict": True}},
    )
    meter(gw, MODEL, len(mock.MOCK_TEXT_PIECES))
    check_text_response(resp)
    assert resp.text.format.type == "json_schema"
    assert resp.text.format.name == "greeting"
    body = only_entry(gw, m)
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "greeting", "schema": schema, "strict": True},
    }


# -- function tools -------------------------------------------------------------


@pytest.mark.parametrize(
    "tool_choice, upstream_choice",
    [
        ("required", "required"),
        ({"type": "function", "name": mock.MOCK_TOOL_NAME}, {"type": "function", "function": {"name": mock.MOCK_TOOL_NAME}}),
    ],
    ids=["required", "named"],
)
def test_function_call(gw, tool_choice, upstream_choice):
    m = new_marker()
    before = gw.balance()
    resp = gw.client().responses.create(
        model=MODEL, input=f"Weather in Paris? ({m})", tools=[WEATHER_TOOL], tool_choice=tool_choice
    )
    meter(gw, MODEL, len(mock.MOCK_ARGUMENT_PIECES))
    check_function_call(resp, mock.MOCK_TOOL_CALL_ID)
    check_gpt_usage(resp.usage, len(mock.MOCK_ARGUMENT_PIECES))
    body = only_entry(gw, m)
    assert body["tool_choice"] == upstream_choice
    assert len(body["tools"]) == 1
    tool = body["tools"][0]
    assert tool["type"] == "function"
    assert tool["function"]["name"] == mock.MOCK_TOOL_NAME
    assert tool["function"]["description"] == WEATHER_TOOL["description"]
    assert tool["function"]["parameters"] == WEATHER_PARAMETERS
    assert before - gw.balance() == GPT_TOOL_COST


def test_tool_round_trip(gw):
    """function_call, then its output sent back with previous_response_id: the
    upstream gets the whole history as chat messages."""
    client = gw.client()
    m = new_marker()
    first = client.responses.create(model=MODEL, input=f"Weather in Paris? ({m})", tools=[WEATHER_TOOL])
    meter(gw, MODEL, len(mock.MOCK_ARGUMENT_PIECES))
    call = check_function_call(first, mock.MOCK_TOOL_CALL_ID)

    m2 = new_marker()
    before = gw.balance()
    second = client.responses.create(
        model=MODEL,
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": f"{TOOL_RESULT} ({m2})"}],
    )
    meter(gw, MODEL, len(mock.MOCK_TEXT_PIECES))
    check_text_response(second)
    assert second.id != first.id
    assert second.previous_response_id == first.id
    assert chat_messages(only_entry(gw, m2)) == [
        {"role": "user", "text": f"Weather in Paris? ({m})"},
        {"role": "assistant", "text": "", "tool_calls": [(mock.MOCK_TOOL_CALL_ID, mock.MOCK_TOOL_NAME, WEATHER_ARGUMENTS)]},
        {"role": "tool", "text": f"{TOOL_RESULT} ({m2})", "tool_call_id": mock.MOCK_TOOL_CALL_ID},
    ]
    assert before - gw.balance() == GPT_TEXT_COST


def test_tool_round_trip_claude(gw):
    client = gw.client()
    m = new_marker()
    first = client.responses.create(model=CLAUDE_MODEL, input=f"Weather in Paris? ({m})", tools=[WEATHER_TOOL])
    meter(gw, CLAUDE_MODEL, len(mock.CLAUDE_ARGUMENT_PIECES))
    call = check_function_call(first, mock.CLAUDE_TOOL_USE_ID)
    check_claude_usage(first.usage, len(mock.CLAUDE_ARGUMENT_PIECES))

    m2 = new_marker()
    result = f"{TOOL_RESULT} ({m2})"
    before = gw.balance()
    second = client.responses.create(
        model=CLAUDE_MODEL,
        previous_response_id=first.id,
        tools=[WEATHER_TOOL],
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": result}],
    )
    answer = mock.tool_result_pieces(result)
    meter(gw, CLAUDE_MODEL, len(answer))
    check_text_response(second, model=CLAUDE_MODEL, text="".join(answer))
    assert anthropic_messages(only_entry(gw, m2, api="anthropic")) == [
        {"role": "user", "text": f"Weather in Paris? ({m})"},
        {"role": "assistant", "text": "", "tool_use": [(mock.CLAUDE_TOOL_USE_ID, mock.MOCK_TOOL_NAME, WEATHER_ARGUMENTS)]},
        {"role": "user", "text": "", "tool_result": [(mock.CLAUDE_TOOL_USE_ID, result)]},
    ]
    assert before - gw.balance() == claude_cost(len(answer))


# -- previous_response_id -------------------------------------------------------


def test_previous_response_chain_of_three_turns(gw):
    """Turn 3 carries turns 1 and 2 (inputs and outputs, in order) and its own
    input; only turn 3's instructions apply."""
    client = gw.client()
    marks = [new_marker() for _ in range(3)]
    previous = None
    responses = []
    for turn, m in enumerate(marks, 1):
        kw = {"previous_response_id": previous} if previous else {}
        resp = client.responses.create(
            model=MODEL, input=f"Turn {turn} ({m})", instructions=f"Instructions {turn} ({m})", **kw
        )
        meter(gw, MODEL, len(mock.MOCK_TEXT_PIECES))
        check_text_response(resp)
        assert resp.previous_response_id == previous
        assert resp.instructions == f"Instructions {turn} ({m})"
        responses.append(resp)
        previous = resp.id

    # The marker of turn N appears in turn N's request and in every later one.
    sent = [gw.mock_log(m) for m in marks]
    assert [len(s) for s in sent] == [3, 2, 1]
    turn2, turn3 = sent[1][0]["body"], sent[2][0]["body"]
    assert chat_messages(turn2) == [
        {"role": "system", "text": f"Instructions 2 ({marks[1]})"},
        {"role": "user", "text": f"Turn 1 ({marks[0]})"},
        {"role": "assistant", "text": mock.MOCK_TEXT},
        {"role": "user", "text": f"Turn 2 ({marks[1]})"},
    ]
    assert chat_messages(turn3) == [
        {"role": "system", "text": f"Instructions 3 ({marks[2]})"},
        {"role": "user", "text": f"Turn 1 ({marks[0]})"},
        {"role": "assistant", "text": mock.MOCK_TEXT},
        {"role": "user", "text": f"Turn 2 ({marks[1]})"},
        {"role": "assistant", "text": mock.MOCK_TEXT},
        {"role": "user", "text": f"Turn 3 ({marks[2]})"},
    ]
    assert "Instructions 1" not in json.dumps(turn3) and "Instructions 2" not in json.dumps(turn3)
    assert len({r.id for r in responses}) == 3


def test_unknown_previous_response_id(gw):
    assert_refused_free(
        gw,
        lambda m: gw.client().responses.create(
            model=MODEL, input=f"Hello ({m})", previous_response_id="resp_doesnotexist0000000000000000"
        ),
        (400, 404),
    )


# -- streaming ------------------------------------------------------------------


def test_stream_events(gw):
    m = new_marker()
    before = gw.balance()
    stream = gw.client().responses.create(model=MODEL, input=f"Say hello ({m})", stream=True)
    events = list(stream)
    meter(gw, MODEL, len(mock.MOCK_TEXT_PIECES))
    completed = check_text_events(events, mock.MOCK_TEXT_PIECES)
    check_text_response(completed)
    check_gpt_usage(completed.usage, len(mock.MOCK_TEXT_PIECES))
    assert chat_messages(only_entry(gw, m)) == [{"role": "user", "text": f"Say hello ({m})"}]
    assert before - gw.balance() == GPT_TEXT_COST
    # A streamed response is stored like any other.
    stored = gw.client().responses.retrieve(completed.id)
    check_text_response(stored)
    check_gpt_usage(stored.usage, len(mock.MOCK_TEXT_PIECES))


def test_stream_helper(gw):
    """client.responses.stream(): the SDK's own accumulation of the events."""
    m = new_marker()
    with gw.client().responses.stream(model=MODEL, input=f"Say hello ({m})", instructions="Be brief.") as stream:
        events = list(stream)
        final = stream.get_final_response()
    meter(gw, MODEL, len(mock.MOCK_TEXT_PIECES))
    check_text_events(events, mock.MOCK_TEXT_PIECES)
    check_text_response(final)
    check_gpt_usage(final.usage, len(mock.MOCK_TEXT_PIECES))
    assert final.id == events[0].response.id


def test_stream_claude(gw):
    m = new_marker()
    before = gw.balance()
    with gw.client().responses.stream(model=CLAUDE_MODEL, input=f"Say hello ({m})") as stream:
        events = list(stream)
        final = stream.get_final_response()
    meter(gw, CLAUDE_MODEL, len(mock.CLAUDE_TEXT_PIECES))
    check_text_events(events, mock.CLAUDE_TEXT_PIECES)
    check_text_response(final, model=CLAUDE_MODEL, text=mock.CLAUDE_TEXT)
    check_claude_usage(final.usage, len(mock.CLAUDE_TEXT_PIECES))
    assert anthropic_messages(only_entry(gw, m, api="anthropic")) == [{"role": "user", "text": f"Say hello ({m})"}]
    assert before - gw.balance() == CLAUDE_TEXT_COST


def test_stream_function_call(gw):
    m = new_marker()
    before = gw.balance()
    events = list(
        gw.client().responses.create(model=MODEL, input=f"Weather in Paris? ({m})", tools=[WEATHER_TOOL], stream=True)
    )
    meter(gw, MODEL, len(mock.MOCK_ARGUMENT_PIECES))
    check_sequence_numbers(events)
    types = [e.type for e in events]
    assert collapse(types) == TOOL_EVENTS, types
    added = next(e for e in events if e.type == "response.output_item.added")
    assert added.item.type == "function_call"
    assert added.item.call_id == mock.MOCK_TOOL_CALL_ID and added.item.name == mock.MOCK_TOOL_NAME
    deltas = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    assert "".join(deltas) == "".join(mock.MOCK_ARGUMENT_PIECES)
    done = next(e for e in events if e.type == "response.function_call_arguments.done")
    assert json.loads(done.arguments) == WEATHER_ARGUMENTS
    completed = events[-1].response
    check_function_call(completed, mock.MOCK_TOOL_CALL_ID)
    check_gpt_usage(completed.usage, len(mock.MOCK_ARGUMENT_PIECES))
    assert before - gw.balance() == GPT_TOOL_COST


# -- stored responses -----------------------------------------------------------


def test_retrieve_and_delete(gw):
    client = gw.client()
    m = new_marker()
    resp = client.responses.create(model=MODEL, input=f"Say hello ({m})", metadata={"m": m})
    meter(gw, MODEL, len(mock.MOCK_TEXT_PIECES))
    stored = client.responses.retrieve(resp.id)
    check_text_response(stored)
    assert stored.id == resp.id
    assert stored.created_at == resp.created_at
    assert stored.metadata == {"m": m}
    check_gpt_usage(stored.usage, len(mock.MOCK_TEXT_PIECES))
    assert [o.id for o in stored.output] == [o.id for o in resp.output]

    before = gw.balance()
    assert client.responses.delete(resp.id) is None
    with pytest.raises(openai.NotFoundError) as info:
        client.responses.retrieve(resp.id)
    assert_openai_error(info.value, (404,))
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(resp.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.input_items.list(resp.id)
    # A deleted response cannot be continued either.
    assert_refused_free(
        gw, lambda m: client.responses.create(model=MODEL, input=f"Again ({m})", previous_response_id=resp.id), (400, 404)
    )
    assert gw.balance() == before


def test_retrieve_unknown_id(gw):
    with pytest.raises(openai.NotFoundError) as info:
        gw.client().responses.retrieve("resp_doesnotexist0000000000000000")
    assert_openai_error(info.value, (404,))


def test_store_false_is_not_kept(gw):
    client = gw.client()
    m = new_marker()
    before = gw.balance()
    resp = client.responses.create(model=MODEL, input=f"Say hello ({m})", store=False)
    meter(gw, MODEL, len(mock.MOCK_TEXT_PIECES))
    check_text_response(resp)
    assert before - gw.balance() == GPT_TEXT_COST
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(resp.id)
    # Nor can it be continued.
    assert_refused_free(
        gw, lambda m: client.responses.create(model=MODEL, input=f"Again ({m})", previous_response_id=resp.id), (400, 404)
    )


def test_input_items(gw):
    client = gw.client()
    m = new_marker()
    texts = [f"Item {i} ({m})" for i in range(5)]
    roles = ["user", "assistant", "user", "assistant", "user"]
    resp = client.responses.create(
        model=MODEL, input=[{"role": role, "content": text} for role, text in zip(roles, texts)]
    )
    meter(gw, MODEL, len(mock.MOCK_TEXT_PIECES))
    check_text_response(resp)

    page = client.responses.input_items.list(resp.id, order="asc")
    items = page.data
    assert [i.type for i in items] == ["message"] * 5
    assert [i.role for i in items] == roles
    assert [item_text(i) for i in items] == texts
    ids = [i.id for i in items]
    assert all(ids) and len(set(ids)) == 5
    assert page.has_more is False
    assert items[0].content[0].type == "input_text"

    # The default order is newest first.
    assert [i.id for i in client.responses.input_items.list(resp.id).data] == ids[::-1]

    # Pages of two: has_more, first_id, last_id, after.
    page1 = client.responses.input_items.list(resp.id, order="asc", limit=2)
    assert [i.id for i in page1.data] == ids[:2]
    assert page1.has_more is True
    assert page1.first_id == ids[0] and page1.last_id == ids[1]
    page2 = client.responses.input_items.list(resp.id, order="asc", limit=2, after=page1.last_id)
    assert [i.id for i in page2.data] == ids[2:4]
    assert page2.has_more is True
    page3 = client.responses.input_items.list(resp.id, order="asc", limit=2, after=page2.last_id)
    assert [i.id for i in page3.data] == ids[4:]
    assert page3.has_more is False
    # The SDK's auto-pagination walks the same pages.
    assert [i.id for i in client.responses.input_items.list(resp.id, order="asc", limit=2)] == ids
    page = client.responses.input_items.list(resp.id, order="desc", limit=2, after=ids[2])
    assert [i.id for i in page.data] == [ids[1], ids[0]]


def test_input_items_of_a_continued_turn(gw):
    """The current turn's input items are listed (after any earlier context)."""
    client = gw.client()
    m1, m2 = new_marker(), new_marker()
    first = client.responses.create(model=MODEL, input=f"First ({m1})")
    second = client.responses.create(model=MODEL, input=f"Second ({m2})", previous_response_id=first.id)
    meter(gw, MODEL, len(mock.MOCK_TEXT_PIECES))
    meter(gw, MODEL, len(mock.MOCK_TEXT_PIECES))
    items = list(client.responses.input_items.list(second.id, order="asc"))
    assert items, "no input items"
    assert items[-1].type == "message" and items[-1].role == "user"
    assert item_text(items[-1]) == f"Second ({m2})"
    newest = client.responses.input_items.list(second.id, limit=1)
    assert item_text(newest.data[0]) == f"Second ({m2})"


# -- background -----------------------------------------------------------------


def test_background_completes(gw):
    client = gw.client()
    m = new_marker()
    before = gw.balance()
    resp = client.responses.create(model=MODEL, input=f"Say hello ({m})", background=True)
    assert resp.id.startswith("resp_")
    assert resp.status in ("queued", "in_progress"), resp.status
    assert resp.background is True
    done = retrieve_until_done(client, resp.id)
    meter(gw, MODEL, len(mock.MOCK_TEXT_PIECES))
    check_text_response(done)
    assert done.background is True
    check_gpt_usage(done.usage, len(mock.MOCK_TEXT_PIECES))
    assert chat_messages(only_entry(gw, m)) == [{"role": "user", "text": f"Say hello ({m})"}]
    assert before - gw.balance() == GPT_TEXT_COST


def test_background_cancel(gw):
    """Cancelling a slow background response stops it; it is charged for what
    was produced only."""
    client = gw.client()
    m = new_marker()
    before = gw.balance()
    resp = client.responses.create(model=MODEL, input=f"[slow] Count slowly ({m})", background=True)
    assert resp.status in ("queued", "in_progress"), resp.status
    # Cancel in the middle of the upstream's answer.
    gw.wait_mock_log(m, lambda es: es[0]["sent"] >= 3, what="the slow answer to start")
    cancelled = client.responses.cancel(resp.id)
    assert cancelled.id == resp.id
    assert cancelled.status == "cancelled"
    # The upstream request ends well before the whole answer.
    entry = gw.wait_mock_log(m, lambda es: es[0]["state"] != "running", what="the upstream request to end")[0]
    if entry["stream"]:
        assert entry["state"] == "aborted", entry
        assert entry["sent"] < mock.SLOW_PIECES, entry
    # It stays cancelled.
    assert client.responses.retrieve(resp.id).status == "cancelled"
    time.sleep(0.5)
    assert client.responses.retrieve(resp.id).status == "cancelled"
    charged = before - gw.balance()
    assert 0 <= charged < GPT_SLOW_COST, charged
    # Cancelling again is harmless (OpenAI: idempotent) or refused in OpenAI's shape.
    try:
        again = client.responses.cancel(resp.id)
        assert again.status == "cancelled"
    except openai.APIStatusError as e:
        assert_openai_error(e, (400, 409))
    assert gw.balance() == before - charged


def test_background_stream_resume(gw):
    """A background stream dropped by the client goes on; retrieve(stream=True,
    starting_after=N) yields the events after N."""
    client = gw.client()
    m = new_marker()
    before = gw.balance()
    stream = client.responses.create(model=MODEL, input=f"[slow] Count slowly ({m})", background=True, stream=True)
    head = []
    for event in stream:
        head.append(event)
        if event.sequence_number >= 5:
            break
    stream.close()
    check_sequence_numbers(head)
    response_id = head[0].response.id
    assert head[0].type == "response.created"
    assert head[0].response.background is True

    resumed = list(client.responses.retrieve(response_id, stream=True, starting_after=5))
    assert resumed, "no events after sequence number 5"
    assert resumed[0].sequence_number == 6
    events = head + resumed
    check_text_events(events, mock.SLOW_TEXT_PIECES, background=True)
    meter(gw, MODEL, mock.SLOW_PIECES)

    # The run went on to the end although the first stream was closed.
    entry = gw.wait_mock_log(m, lambda es: es[0]["state"] != "running")[0]
    assert entry["state"] == "done" and entry["sent"] == mock.SLOW_PIECES, entry
    done = retrieve_until_done(client, response_id)
    check_text_response(done, text=mock.SLOW_TEXT)
    check_gpt_usage(done.usage, mock.SLOW_PIECES)
    assert before - gw.balance() == GPT_SLOW_COST


def test_background_stream_replay_after_completion(gw):
    """The events of a finished background response can be streamed again, from any point."""
    client = gw.client()
    m = new_marker()
    events = list(client.responses.create(model=MODEL, input=f"Say hello ({m})", background=True, stream=True))
    meter(gw, MODEL, len(mock.MOCK_TEXT_PIECES))
    completed = check_text_events(events, mock.MOCK_TEXT_PIECES, background=True)
    done = retrieve_until_done(client, completed.id)
    check_text_response(done)

    replay = list(client.responses.retrieve(completed.id, stream=True, starting_after=2))
    assert [(e.sequence_number, e.type) for e in replay] == [(e.sequence_number, e.type) for e in events[3:]]
    assert "".join(e.delta for e in replay if e.type == "response.output_text.delta") == mock.MOCK_TEXT

    # The SDK's helper for an existing response rebuilds it from the events.
    with client.responses.stream(response_id=completed.id, starting_after=2) as stream:
        seen = list(stream)
        final = stream.get_final_response()
    assert seen and all(e.sequence_number > 2 for e in seen)
    check_text_response(final)
    # Nothing of this was charged again.
    assert len(gw.mock_log(m)) == 1


# -- isolation ------------------------------------------------------------------


def test_other_user_cannot_see_or_touch_responses(gw, other):
    mine = gw.client()
    m = new_marker()
    resp = mine.responses.create(model=MODEL, input=f"Private ({m})", metadata={"owner": "first"})
    meter(gw, MODEL, len(mock.MOCK_TEXT_PIECES))
    theirs = other.client()
    other_before = other.balance()

    with pytest.raises(openai.NotFoundError) as info:
        theirs.responses.retrieve(resp.id)
    assert_openai_error(info.value, (404,))
    with pytest.raises(openai.NotFoundError):
        theirs.responses.delete(resp.id)
    with pytest.raises(openai.NotFoundError):
        theirs.responses.input_items.list(resp.id)
    with pytest.raises(openai.NotFoundError):
        theirs.responses.cancel(resp.id)
    with pytest.raises(openai.NotFoundError):
        list(theirs.responses.retrieve(resp.id, stream=True))
    assert_refused_free(
        gw,
        lambda m: theirs.responses.create(model=MODEL, input=f"Steal ({m})", previous_response_id=resp.id),
        (400, 404),
        payer=other,
    )
    assert other.balance() == other_before

    # The owner's response is intact.
    stored = mine.responses.retrieve(resp.id)
    check_text_response(stored)
    assert stored.metadata == {"owner": "first"}
    assert [item_text(i) for i in mine.responses.input_items.list(resp.id).data] == [f"Private ({m})"]


# -- money ----------------------------------------------------------------------


def test_balance_went_down_by_exactly_the_charges(gw):
    # One request of its own, so this test means something even when run alone.
    gw.client().responses.create(model=MODEL, input="Say hello.")
    meter(gw, MODEL, len(mock.MOCK_TEXT_PIECES))
    records, user = gw.settled()
    assert len(records) >= len(gw.metered), records
    for r in records:
        if r["status"] != 200:
            assert r["cost_nano_usd"] == 0, r
            continue
        assert r["cost_nano_usd"] == expected_cost(
            r["model"], r["input_tokens"], r["cached_tokens"], r["cache_write_tokens"], r["output_tokens"]
        ), r
    # Every completed request is there with the mock's exact usage (a
    # cancelled one may add a record of its own).
    complete = sorted(
        (r["model"], r["output_tokens"])
        for r in records
        if r["status"] == 200
        and (r["input_tokens"], r["cached_tokens"])
        in ((mock.PROMPT_TOKENS, mock.CACHED_TOKENS), (CLAUDE_PROMPT, mock.CLAUDE_CACHE_READ_TOKENS))
    )
    for expected in set(gw.metered):
        assert complete.count(expected) >= gw.metered.count(expected), (expected, complete)
    charged = sum(r["cost_nano_usd"] for r in records)
    assert charged > 0
    assert user["balance_nano_usd"] == gw.start_balance_nano - charged
