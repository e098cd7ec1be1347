"""End-to-end tests: OpenAI's Conversations API (`/v1/conversations` and its
items) through the official `openai` SDK, and Responses that run in a
conversation (`responses.create(conversation=...)`).

What is checked: the Conversation and item objects the SDK sees (create,
retrieve, update, delete; items create, list with order/limit/after,
retrieve, delete), that a response in a conversation sends the
conversation's items to the upstream as context (the mock's request log,
found by a unique marker in each prompt) and appends its input and output
items to it, that one user's conversations are invisible to another,
OpenAI-shaped errors, and exact charges.

Everything listens on 127.0.0.1 and every wait is bounded.
"""

import json
import time

import openai
import pytest

from harness import (
    CLAUDE_MODEL,
    MODEL,
    anthropic_messages,
    assert_openai_error,
    assert_refused_free,
    chat_messages,
    expected_cost,
    item_text,
    mock,
    new_marker,
    new_user,
)

CLAUDE_PROMPT = mock.CLAUDE_INPUT_TOKENS + mock.CLAUDE_CACHE_READ_TOKENS + mock.CLAUDE_CACHE_WRITE_TOKENS
GPT_TEXT_COST = expected_cost(MODEL, mock.PROMPT_TOKENS, mock.CACHED_TOKENS, 0, len(mock.MOCK_TEXT_PIECES))
CLAUDE_TEXT_COST = expected_cost(
    CLAUDE_MODEL,
    CLAUDE_PROMPT,
    mock.CLAUDE_CACHE_READ_TOKENS,
    mock.CLAUDE_CACHE_WRITE_TOKENS,
    len(mock.CLAUDE_TEXT_PIECES),
)
TOOL_RESULT = "Sunny, 21 degrees"
WEATHER_TOOL = {
    "type": "function",
    "name": mock.MOCK_TOOL_NAME,
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
UNKNOWN_CONVERSATION = "conv_doesnotexist00000000000000000"


@pytest.fixture(scope="module")
def other(tollgate):
    """A second user of the same gateway, for isolation tests."""
    gateway = new_user(tollgate, "e2e-test_conversations-other")
    try:
        yield gateway
    finally:
        gateway.close()


def meter(gw, model, output_tokens):
    """Notes a request that must leave one usage record."""
    gw.metered.append((model, output_tokens))


def user_item(text):
    return {"type": "message", "role": "user", "content": text}


def assistant_item(text):
    return {"type": "message", "role": "assistant", "content": text}


def texts(items):
    """(type, role, text) of message items; (type, call_id) of tool items."""
    out = []
    for i in items:
        if i.type == "message":
            out.append((i.type, i.role, item_text(i)))
        else:
            out.append((i.type, i.call_id))
    return out


def all_items(client, conversation_id):
    """Every item of the conversation, oldest first."""
    return list(client.conversations.items.list(conversation_id, order="asc", limit=100))


def check_conversation(conv, metadata):
    assert conv.id.startswith("conv_"), conv.id
    assert conv.object == "conversation"
    assert conv.metadata == metadata
    # Seconds since the epoch, as OpenAI's created_at.
    assert abs(conv.created_at - time.time()) < 3600, conv.created_at


# -- conversations --------------------------------------------------------------


def test_create_retrieve_update_delete(gw):
    client = gw.client()
    m = new_marker()
    conv = client.conversations.create(metadata={"topic": "demo", "m": m}, items=[user_item(f"Hello ({m})")])
    check_conversation(conv, {"topic": "demo", "m": m})

    got = client.conversations.retrieve(conv.id)
    check_conversation(got, {"topic": "demo", "m": m})
    assert got.id == conv.id and got.created_at == conv.created_at

    updated = client.conversations.update(conv.id, metadata={"topic": "changed"})
    assert updated.id == conv.id
    assert updated.metadata == {"topic": "changed"}
    assert client.conversations.retrieve(conv.id).metadata == {"topic": "changed"}

    deleted = client.conversations.delete(conv.id)
    assert deleted.id == conv.id
    assert deleted.deleted is True
    assert deleted.object == "conversation.deleted"
    with pytest.raises(openai.NotFoundError) as info:
        client.conversations.retrieve(conv.id)
    assert_openai_error(info.value, (404,))
    with pytest.raises(openai.NotFoundError):
        client.conversations.items.list(conv.id)
    with pytest.raises(openai.NotFoundError):
        client.conversations.update(conv.id, metadata={"topic": "again"})
    with pytest.raises(openai.NotFoundError):
        client.conversations.delete(conv.id)

    # A deleted conversation cannot be used for a response.
    assert_refused_free(
        gw, lambda m: client.responses.create(model=MODEL, input=f"Hi ({m})", conversation=conv.id), (400, 404)
    )


def test_create_empty(gw):
    client = gw.client()
    conv = client.conversations.create()
    assert conv.id.startswith("conv_")
    assert conv.metadata in ({}, None)
    page = client.conversations.items.list(conv.id)
    assert page.data == []
    assert page.has_more is False


def test_retrieve_unknown(gw):
    with pytest.raises(openai.NotFoundError) as info:
        gw.client().conversations.retrieve(UNKNOWN_CONVERSATION)
    assert_openai_error(info.value, (404,))


# -- items ----------------------------------------------------------------------


def test_items_create_list_retrieve_delete(gw):
    client = gw.client()
    m = new_marker()
    conv = client.conversations.create(items=[user_item(f"One ({m})")])

    added = client.conversations.items.create(
        conv.id, items=[assistant_item(f"Two ({m})"), user_item(f"Three ({m})")]
    )
    assert added.object == "list"
    assert [item_text(i) for i in added.data] == [f"Two ({m})", f"Three ({m})"]
    assert all(i.id for i in added.data)
    assert added.first_id == added.data[0].id and added.last_id == added.data[-1].id
    assert added.has_more is False

    page = client.conversations.items.list(conv.id, order="asc")
    assert texts(page.data) == [
        ("message", "user", f"One ({m})"),
        ("message", "assistant", f"Two ({m})"),
        ("message", "user", f"Three ({m})"),
    ]
    assert [i.id for i in page.data][1:] == [i.id for i in added.data]
    assert page.data[0].content[0].type == "input_text"
    assert page.has_more is False
    ids = [i.id for i in page.data]
    assert len(set(ids)) == 3
    # The default order is newest first.
    assert [i.id for i in client.conversations.items.list(conv.id).data] == ids[::-1]

    one = client.conversations.items.retrieve(ids[1], conversation_id=conv.id)
    assert one.id == ids[1]
    assert (one.type, one.role, item_text(one)) == ("message", "assistant", f"Two ({m})")

    after_delete = client.conversations.items.delete(ids[1], conversation_id=conv.id)
    assert after_delete.id == conv.id
    assert after_delete.object == "conversation"
    assert [i.id for i in all_items(client, conv.id)] == [ids[0], ids[2]]
    with pytest.raises(openai.NotFoundError) as info:
        client.conversations.items.retrieve(ids[1], conversation_id=conv.id)
    assert_openai_error(info.value, (404,))
    with pytest.raises(openai.NotFoundError):
        client.conversations.items.delete(ids[1], conversation_id=conv.id)
    # An item is found only in its own conversation.
    elsewhere = client.conversations.create()
    with pytest.raises(openai.NotFoundError):
        client.conversations.items.retrieve(ids[0], conversation_id=elsewhere.id)
    with pytest.raises(openai.NotFoundError):
        client.conversations.items.create(UNKNOWN_CONVERSATION, items=[user_item("lost")])


def test_items_pagination(gw):
    client = gw.client()
    m = new_marker()
    conv = client.conversations.create(items=[user_item(f"Item {i} ({m})") for i in range(5)])
    ids = [i.id for i in client.conversations.items.list(conv.id, order="asc").data]
    assert len(ids) == 5

    page1 = client.conversations.items.list(conv.id, order="asc", limit=2)
    assert [i.id for i in page1.data] == ids[:2]
    assert page1.has_more is True
    assert page1.first_id == ids[0] and page1.last_id == ids[1]
    page2 = client.conversations.items.list(conv.id, order="asc", limit=2, after=page1.last_id)
    assert [i.id for i in page2.data] == ids[2:4]
    assert page2.has_more is True
    page3 = client.conversations.items.list(conv.id, order="asc", limit=2, after=page2.last_id)
    assert [i.id for i in page3.data] == ids[4:]
    assert page3.has_more is False
    # The SDK's auto-pagination (it follows last_id) walks the same pages.
    assert [i.id for i in client.conversations.items.list(conv.id, order="asc", limit=2)] == ids
    assert [i.id for i in client.conversations.items.list(conv.id, order="desc", limit=2)] == ids[::-1]
    page = client.conversations.items.list(conv.id, order="desc", limit=2, after=ids[2])
    assert [i.id for i in page.data] == [ids[1], ids[0]]


# -- responses in a conversation ------------------------------------------------


def test_response_uses_and_extends_the_conversation(gw):
    client = gw.client()
    m0, m1, m2 = new_marker(), new_marker(), new_marker()
    conv = client.conversations.create(items=[user_item(f"My name is Ada ({m0})"), assistant_item("Noted.")])

    before = gw.balance()
    first = client.responses.create(model=MODEL, input=f"What is my name? ({m1})", conversation=conv.id)
    meter(gw, MODEL, len(mock.MOCK_TEXT_PIECES))
    assert first.status == "completed"
    assert first.output_text == mock.MOCK_TEXT
    assert first.conversation is not None and first.conversation.id == conv.id
    assert before - gw.balance() == GPT_TEXT_COST
    sent = gw.mock_log(m1)
    assert len(sent) == 1
    assert chat_messages(sent[0]["body"]) == [
        {"role": "user", "text": f"My name is Ada ({m0})"},
        {"role": "assistant", "text": "Noted."},
        {"role": "user", "text": f"What is my name? ({m1})"},
    ]
    items = all_items(client, conv.id)
    assert texts(items) == [
        ("message", "user", f"My name is Ada ({m0})"),
        ("message", "assistant", "Noted."),
        ("message", "user", f"What is my name? ({m1})"),
        ("message", "assistant", mock.MOCK_TEXT),
    ]
    # The output item keeps its id in the conversation.
    assert items[-1].id == first.output[0].id

    # The second turn sees the first one.
    second = client.responses.create(model=MODEL, input=f"And again? ({m2})", conversation={"id": conv.id})
    meter(gw, MODEL, len(mock.MOCK_TEXT_PIECES))
    assert second.output_text == mock.MOCK_TEXT
    sent = gw.mock_log(m2)
    assert len(sent) == 1
    assert chat_messages(sent[0]["body"]) == [
        {"role": "user", "text": f"My name is Ada ({m0})"},
        {"role": "assistant", "text": "Noted."},
        {"role": "user", "text": f"What is my name? ({m1})"},
        {"role": "assistant", "text": mock.MOCK_TEXT},
        {"role": "user", "text": f"And again? ({m2})"},
    ]
    assert len(all_items(client, conv.id)) == 6
    # Instructions are not conversation items.
    third = client.responses.create(
        model=MODEL, input=f"Once more ({new_marker()})", conversation=conv.id, instructions="Be brief."
    )
    meter(gw, MODEL, len(mock.MOCK_TEXT_PIECES))
    assert third.status == "completed"
    assert all("Be brief." not in (item_text(i) or "") for i in all_items(client, conv.id) if i.type == "message")


def test_items_added_between_turns_are_context(gw):
    client = gw.client()
    m0, m1 = new_marker(), new_marker()
    conv = client.conversations.create()
    client.conversations.items.create(conv.id, items=[user_item(f"Remember {m0}"), assistant_item("I will.")])
    client.responses.create(model=MODEL, input=f"What did I say? ({m1})", conversation=conv.id)
    meter(gw, MODEL, len(mock.MOCK_TEXT_PIECES))
    assert chat_messages(gw.mock_log(m1)[0]["body"]) == [
        {"role": "user", "text": f"Remember {m0}"},
        {"role": "assistant", "text": "I will."},
        {"role": "user", "text": f"What did I say? ({m1})"},
    ]


def test_deleted_item_is_no_longer_context(gw):
    client = gw.client()
    m0, m1, m2 = new_marker(), new_marker(), new_marker()
    conv = client.conversations.create(items=[user_item(f"Keep ({m0})"), user_item(f"Drop ({m1})")])
    dropped = all_items(client, conv.id)[1]
    client.conversations.items.delete(dropped.id, conversation_id=conv.id)
    client.responses.create(model=MODEL, input=f"Go ({m2})", conversation=conv.id)
    meter(gw, MODEL, len(mock.MOCK_TEXT_PIECES))
    assert chat_messages(gw.mock_log(m2)[0]["body"]) == [
        {"role": "user", "text": f"Keep ({m0})"},
        {"role": "user", "text": f"Go ({m2})"},
    ]


def test_tool_round_trip_in_a_conversation(gw):
    client = gw.client()
    m1, m2 = new_marker(), new_marker()
    conv = client.conversations.create()
    first = client.responses.create(
        model=MODEL, input=f"Weather in Paris? ({m1})", tools=[WEATHER_TOOL], conversation=conv.id
    )
    meter(gw, MODEL, len(mock.MOCK_ARGUMENT_PIECES))
    calls = [o for o in first.output if o.type == "function_call"]
    assert len(calls) == 1 and calls[0].call_id == mock.MOCK_TOOL_CALL_ID

    second = client.responses.create(
        model=MODEL,
        conversation=conv.id,
        input=[{"type": "function_call_output", "call_id": calls[0].call_id, "output": f"{TOOL_RESULT} ({m2})"}],
    )
    meter(gw, MODEL, len(mock.MOCK_TEXT_PIECES))
    assert second.output_text == mock.MOCK_TEXT
    assert chat_messages(gw.mock_log(m2)[0]["body"]) == [
        {"role": "user", "text": f"Weather in Paris? ({m1})"},
        {"role": "assistant", "text": "", "tool_calls": [(mock.MOCK_TOOL_CALL_ID, mock.MOCK_TOOL_NAME, {"city": "Paris"})]},
        {"role": "tool", "text": f"{TOOL_RESULT} ({m2})", "tool_call_id": mock.MOCK_TOOL_CALL_ID},
    ]
    assert texts(all_items(client, conv.id)) == [
        ("message", "user", f"Weather in Paris? ({m1})"),
        ("function_call", mock.MOCK_TOOL_CALL_ID),
        ("function_call_output", mock.MOCK_TOOL_CALL_ID),
        ("message", "assistant", mock.MOCK_TEXT),
    ]


def test_streamed_response_in_a_conversation(gw):
    client = gw.client()
    m = new_marker()
    conv = client.conversations.create(items=[user_item("Earlier question"), assistant_item("Earlier answer")])
    with client.responses.stream(model=MODEL, input=f"Now ({m})", conversation=conv.id) as stream:
        for _ in stream:
            pass
        final = stream.get_final_response()
    meter(gw, MODEL, len(mock.MOCK_TEXT_PIECES))
    assert final.output_text == mock.MOCK_TEXT
    assert final.conversation is not None and final.conversation.id == conv.id
    assert chat_messages(gw.mock_log(m)[0]["body"]) == [
        {"role": "user", "text": "Earlier question"},
        {"role": "assistant", "text": "Earlier answer"},
        {"role": "user", "text": f"Now ({m})"},
    ]
    assert texts(all_items(client, conv.id))[2:] == [
        ("message", "user", f"Now ({m})"),
        ("message", "assistant", mock.MOCK_TEXT),
    ]


def test_conversation_with_claude(gw):
    client = gw.client()
    m0, m1 = new_marker(), new_marker()
    conv = client.conversations.create(items=[user_item(f"Hi ({m0})"), assistant_item("Hello.")])
    before = gw.balance()
    resp = client.responses.create(model=CLAUDE_MODEL, input=f"Again ({m1})", conversation=conv.id)
    meter(gw, CLAUDE_MODEL, len(mock.CLAUDE_TEXT_PIECES))
    assert resp.output_text == mock.CLAUDE_TEXT
    assert before - gw.balance() == CLAUDE_TEXT_COST
    sent = gw.mock_log(m1)
    assert len(sent) == 1 and sent[0]["api"] == "anthropic"
    assert anthropic_messages(sent[0]["body"]) == [
        {"role": "user", "text": f"Hi ({m0})"},
        {"role": "assistant", "text": "Hello."},
        {"role": "user", "text": f"Again ({m1})"},
    ]
    assert texts(all_items(client, conv.id))[2:] == [
        ("message", "user", f"Again ({m1})"),
        ("message", "assistant", mock.CLAUDE_TEXT),
    ]


def test_conversation_and_previous_response_id_are_exclusive(gw):
    client = gw.client()
    conv = client.conversations.create()
    first = client.responses.create(model=MODEL, input="Hello.")
    meter(gw, MODEL, len(mock.MOCK_TEXT_PIECES))
    assert_refused_free(
        gw,
        lambda m: client.responses.create(
            model=MODEL, input=f"Both ({m})", conversation=conv.id, previous_response_id=first.id
        ),
        (400,),
    )
    assert all_items(client, conv.id) == []


def test_unknown_conversation(gw):
    assert_refused_free(
        gw,
        lambda m: gw.client().responses.create(model=MODEL, input=f"Hi ({m})", conversation=UNKNOWN_CONVERSATION),
        (400, 404),
    )


# -- isolation ------------------------------------------------------------------


def test_other_user_cannot_see_or_touch_conversations(gw, other):
    mine = gw.client()
    m = new_marker()
    conv = mine.conversations.create(metadata={"owner": "first"}, items=[user_item(f"Secret ({m})")])
    item_id = all_items(mine, conv.id)[0].id
    theirs = other.client()
    other_before = other.balance()

    for call in (
        lambda: theirs.conversations.retrieve(conv.id),
        lambda: theirs.conversations.update(conv.id, metadata={"owner": "second"}),
        lambda: theirs.conversations.delete(conv.id),
        lambda: theirs.conversations.items.list(conv.id),
        lambda: theirs.conversations.items.retrieve(item_id, conversation_id=conv.id),
        lambda: theirs.conversations.items.delete(item_id, conversation_id=conv.id),
        lambda: theirs.conversations.items.create(conv.id, items=[user_item("injected")]),
    ):
        with pytest.raises(openai.NotFoundError) as info:
            call()
        assert_openai_error(info.value, (404,))
        assert m not in info.value.response.text
    # Nor can they run a response in it (which would read its items).
    assert_refused_free(
        gw,
        lambda m: theirs.responses.create(model=MODEL, input=f"Read it ({m})", conversation=conv.id),
        (400, 404),
        payer=other,
    )
    assert other.balance() == other_before

    # The owner's conversation is intact.
    assert mine.conversations.retrieve(conv.id).metadata == {"owner": "first"}
    assert texts(all_items(mine, conv.id)) == [("message", "user", f"Secret ({m})")]
    assert [i.id for i in all_items(mine, conv.id)] == [item_id]


# -- money ----------------------------------------------------------------------


def test_balance_went_down_by_exactly_the_charges(gw):
    gw.client().responses.create(model=MODEL, input="Say hello.")
    meter(gw, MODEL, len(mock.MOCK_TEXT_PIECES))
    records, user = gw.settled()
    assert len(records) == len(gw.metered), json.dumps(records)
    seen = sorted((r["model"], r["output_tokens"]) for r in records)
    assert seen == sorted(gw.metered)
    for r in records:
        assert r["status"] == 200 and r["error"] is None, r
        assert r["cost_nano_usd"] == expected_cost(
            r["model"], r["input_tokens"], r["cached_tokens"], r["cache_write_tokens"], r["output_tokens"]
        ), r
    charged = sum(r["cost_nano_usd"] for r in records)
    assert user["balance_nano_usd"] == gw.start_balance_nano - charged
