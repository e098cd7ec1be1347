"""End-to-end tests: stored chat completions (`store: true`) through the
official `openai` SDK: create, retrieve, list (model, metadata, limit,
after, order), update (metadata), delete, and the stored request messages.

What is checked: the objects the SDK sees, that completions made without
`store` are not kept, that one user's stored completions are invisible to
another, OpenAI-shaped errors, and that storing changes nothing in what is
charged.

Everything listens on 127.0.0.1 and every wait is bounded.
"""

import json
import time

import openai
import pytest

from harness import (
    CLAUDE_MODEL,
    MODEL,
    assert_openai_error,
    expected_cost,
    mock,
    new_marker,
    new_user,
)

CLAUDE_PROMPT = mock.CLAUDE_INPUT_TOKENS + mock.CLAUDE_CACHE_READ_TOKENS + mock.CLAUDE_CACHE_WRITE_TOKENS
GPT_TEXT_COST = expected_cost(MODEL, mock.PROMPT_TOKENS, mock.CACHED_TOKENS, 0, len(mock.MOCK_TEXT_PIECES))
UNKNOWN_ID = "chatcmpl-doesnotexist000000000000"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": mock.MOCK_TOOL_NAME,
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture(scope="module")
def other(tollgate):
    """A second user of the same gateway, for isolation tests."""
    gateway = new_user(tollgate, "e2e-test_stored_completions-other")
    try:
        yield gateway
    finally:
        gateway.close()


def meter(gw, model, output_tokens):
    """Notes a request that must leave one usage record."""
    gw.metered.append((model, output_tokens))


def hello(m):
    return [{"role": "user", "content": f"Say hello ({m})"}]


def store(gw, m, model=MODEL, metadata=None, **kw):
    """A stored completion (the gateway's answer to create)."""
    resp = gw.client().chat.completions.create(
        model=model, messages=hello(m), store=True, metadata=metadata or {"m": m}, **kw
    )
    meter(gw, model, len(mock.MOCK_TEXT_PIECES if model == MODEL else mock.CLAUDE_TEXT_PIECES))
    return resp


def metadata_of(completion):
    return completion.to_dict().get("metadata")


def listed(client, **kw):
    return [c.id for c in client.chat.completions.list(**kw).data]


# -- create and retrieve --------------------------------------------------------


def test_store_and_retrieve(gw):
    client = gw.client()
    m = new_marker()
    before = gw.balance()
    resp = store(gw, m, metadata={"topic": m})
    assert resp.choices[0].message.content == mock.MOCK_TEXT
    # Storing costs nothing extra.
    assert before - gw.balance() == GPT_TEXT_COST

    got = client.chat.completions.retrieve(resp.id)
    assert got.id == resp.id
    assert got.object == "chat.completion"
    assert got.model == resp.model
    assert got.created == resp.created
    assert got.choices[0].message.role == "assistant"
    assert got.choices[0].message.content == mock.MOCK_TEXT
    assert got.choices[0].finish_reason == "stop"
    assert got.usage is not None
    assert (got.usage.prompt_tokens, got.usage.completion_tokens) == (
        mock.PROMPT_TOKENS,
        len(mock.MOCK_TEXT_PIECES),
    )
    assert metadata_of(got) == {"topic": m}
    # The upstream got the request as usual.
    sent = gw.mock_log(m)
    assert len(sent) == 1
    assert sent[0]["body"]["messages"] == hello(m)


def test_ids_are_unique(gw):
    """Each stored completion has its own id, even when the upstream repeats
    its ids (the mock answers every request with the same one)."""
    client = gw.client()
    first, second = store(gw, new_marker()), store(gw, new_marker())
    assert first.id != second.id
    assert client.chat.completions.retrieve(first.id).id == first.id
    assert client.chat.completions.retrieve(second.id).id == second.id


def test_stream_is_stored(gw):
    client = gw.client()
    m = new_marker()
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=hello(m),
            store=True,
            metadata={"m": m},
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    meter(gw, MODEL, len(mock.MOCK_TEXT_PIECES))
    ids = {c.id for c in chunks}
    assert len(ids) == 1
    got = client.chat.completions.retrieve(ids.pop())
    assert got.object == "chat.completion"
    assert got.choices[0].message.content == mock.MOCK_TEXT
    assert got.choices[0].finish_reason == "stop"
    assert metadata_of(got) == {"m": m}


def test_tool_call_is_stored(gw):
    client = gw.client()
    m = new_marker()
    resp = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": f"Weather in Paris? ({m})"}],
        tools=[WEATHER_TOOL],
        store=True,
    )
    meter(gw, MODEL, len(mock.MOCK_ARGUMENT_PIECES))
    got = client.chat.completions.retrieve(resp.id)
    assert got.choices[0].finish_reason == "tool_calls"
    calls = got.choices[0].message.tool_calls
    assert len(calls) == 1
    assert calls[0].id == mock.MOCK_TOOL_CALL_ID
    assert calls[0].function.name == mock.MOCK_TOOL_NAME
    assert json.loads(calls[0].function.arguments) == {"city": "Paris"}


def test_claude_completion_is_stored(gw):
    client = gw.client()
    m = new_marker()
    resp = store(gw, m, model=CLAUDE_MODEL)
    got = client.chat.completions.retrieve(resp.id)
    assert got.id == resp.id
    assert got.choices[0].message.content == mock.CLAUDE_TEXT
    assert metadata_of(got) == {"m": m}


def test_not_stored_is_not_kept(gw):
    client = gw.client()
    t = new_marker("topic")
    plain = client.chat.completions.create(model=MODEL, messages=hello(t), metadata={"topic": t})
    refused = client.chat.completions.create(model=MODEL, messages=hello(t), metadata={"topic": t}, store=False)
    meter(gw, MODEL, len(mock.MOCK_TEXT_PIECES))
    meter(gw, MODEL, len(mock.MOCK_TEXT_PIECES))
    for resp in (plain, refused):
        assert resp.choices[0].message.content == mock.MOCK_TEXT
        with pytest.raises(openai.NotFoundError) as info:
            client.chat.completions.retrieve(resp.id)
        assert_openai_error(info.value, (404,))
    assert listed(client, metadata={"topic": t}) == []


def test_retrieve_unknown(gw):
    client = gw.client()
    for call in (
        lambda: client.chat.completions.retrieve(UNKNOWN_ID),
        lambda: client.chat.completions.update(UNKNOWN_ID, metadata={"a": "b"}),
        lambda: client.chat.completions.delete(UNKNOWN_ID),
        lambda: client.chat.completions.messages.list(UNKNOWN_ID),
    ):
        with pytest.raises(openai.NotFoundError) as info:
            call()
        assert_openai_error(info.value, (404,))


# -- messages -------------------------------------------------------------------


def test_messages_list(gw):
    client = gw.client()
    m = new_marker()
    messages = [
        {"role": "system", "content": f"Be brief ({m})"},
        {"role": "user", "content": f"Say hello ({m})"},
    ]
    resp = client.chat.completions.create(model=MODEL, messages=messages, store=True)
    meter(gw, MODEL, len(mock.MOCK_TEXT_PIECES))

    page = client.chat.completions.messages.list(resp.id)
    assert [(x.role, x.content) for x in page.data] == [(x["role"], x["content"]) for x in messages]
    ids = [x.id for x in page.data]
    assert all(ids) and len(set(ids)) == 2
    assert page.has_more is False
    assert [x.id for x in client.chat.completions.messages.list(resp.id, order="desc").data] == ids[::-1]
    first = client.chat.completions.messages.list(resp.id, limit=1)
    assert [x.id for x in first.data] == ids[:1]
    assert first.has_more is True
    rest = client.chat.completions.messages.list(resp.id, limit=1, after=ids[0])
    assert [x.id for x in rest.data] == ids[1:]
    assert rest.has_more is False


# -- list -----------------------------------------------------------------------


def test_list_by_metadata_and_model_with_pages(gw):
    client = gw.client()
    t = new_marker("topic")
    ids = []
    for _ in range(3):
        ids.append(store(gw, new_marker(), metadata={"topic": t, "kind": "gpt"}).id)
        time.sleep(0.01)  # distinct creation times, so the order is defined
    claude = store(gw, new_marker(), model=CLAUDE_MODEL, metadata={"topic": t, "kind": "claude"}).id
    time.sleep(0.01)
    store(gw, new_marker(), metadata={"topic": "someone-else-" + t})

    # Default order: oldest first.
    assert listed(client, metadata={"topic": t}) == ids + [claude]
    assert listed(client, metadata={"topic": t}, order="desc") == [claude] + ids[::-1]
    assert listed(client, metadata={"topic": t}, model=MODEL) == ids
    assert listed(client, metadata={"topic": t}, model=CLAUDE_MODEL) == [claude]
    assert listed(client, metadata={"topic": t, "kind": "claude"}) == [claude]
    assert listed(client, metadata={"topic": t, "kind": "none"}) == []

    page1 = client.chat.completions.list(metadata={"topic": t}, model=MODEL, limit=2)
    assert [c.id for c in page1.data] == ids[:2]
    assert page1.has_more is True
    page2 = client.chat.completions.list(metadata={"topic": t}, model=MODEL, limit=2, after=ids[1])
    assert [c.id for c in page2.data] == ids[2:]
    assert page2.has_more is False
    # The SDK's auto-pagination walks the same pages.
    assert [c.id for c in client.chat.completions.list(metadata={"topic": t}, limit=2)] == ids + [claude]
    for c in page1.data:
        assert c.object == "chat.completion"
        assert c.choices[0].message.content == mock.MOCK_TEXT
        assert metadata_of(c) == {"topic": t, "kind": "gpt"}


# -- update and delete ----------------------------------------------------------


def test_update_metadata(gw):
    client = gw.client()
    t1, t2 = new_marker("topic"), new_marker("topic")
    resp = store(gw, new_marker(), metadata={"topic": t1})
    updated = client.chat.completions.update(resp.id, metadata={"topic": t2, "reviewed": "yes"})
    assert updated.id == resp.id
    assert metadata_of(updated) == {"topic": t2, "reviewed": "yes"}
    assert updated.choices[0].message.content == mock.MOCK_TEXT
    assert metadata_of(client.chat.completions.retrieve(resp.id)) == {"topic": t2, "reviewed": "yes"}
    assert listed(client, metadata={"topic": t1}) == []
    assert listed(client, metadata={"topic": t2}) == [resp.id]


def test_delete(gw):
    client = gw.client()
    t = new_marker("topic")
    keep = store(gw, new_marker(), metadata={"topic": t})
    time.sleep(0.01)
    gone = store(gw, new_marker(), metadata={"topic": t})
    deleted = client.chat.completions.delete(gone.id)
    assert deleted.id == gone.id
    assert deleted.deleted is True
    assert deleted.object == "chat.completion.deleted"
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.retrieve(gone.id)
    assert_openai_error(info.value, (404,))
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.messages.list(gone.id)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.delete(gone.id)
    assert listed(client, metadata={"topic": t}) == [keep.id]


def test_ohmygpt_post_variants(gw):
    """The POST forms of the stored-completion routes, with plain httpx.
    `POST /v1/chat/completions/{id}` (update) is OpenAI's own; the gateway
    adds `POST /v1/chat/completions/list` (list parameters as a JSON body),
    `POST /v1/chat/completions/{id}/retrieve` and `…/{id}/delete` for clients
    that only POST (see the README)."""
    auth = {"Authorization": f"Bearer {gw.key}"}
    url = gw.base_url + "/v1/chat/completions"
    t = new_marker("topic")
    resp = store(gw, new_marker(), metadata={"topic": t})

    # Update (OpenAI's own POST).
    r = gw.http.post(f"{url}/{resp.id}", json={"metadata": {"topic": t, "via": "post"}}, headers=auth)
    assert r.status_code == 200, r.text
    assert r.json()["metadata"] == {"topic": t, "via": "post"}
    # List.
    r = gw.http.post(f"{url}/list", json={"metadata": {"topic": t}, "model": MODEL, "limit": 10}, headers=auth)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list" and body["has_more"] is False
    assert [c["id"] for c in body["data"]] == [resp.id]
    # Retrieve.
    r = gw.http.post(f"{url}/{resp.id}/retrieve", headers=auth)
    assert r.status_code == 200, r.text
    assert r.json()["id"] == resp.id
    # Delete.
    r = gw.http.post(f"{url}/{resp.id}/delete", headers=auth)
    assert r.status_code == 200, r.text
    assert r.json() == {"object": "chat.completion.deleted", "id": resp.id, "deleted": True}
    r = gw.http.post(f"{url}/{resp.id}/retrieve", headers=auth)
    assert r.status_code == 404, r.text
    assert set(r.json()["error"]) >= {"message", "type", "param", "code"}


# -- isolation ------------------------------------------------------------------


def test_other_user_cannot_see_or_touch_stored_completions(gw, other):
    mine = gw.client()
    t, m = new_marker("topic"), new_marker()
    resp = store(gw, m, metadata={"topic": t})
    theirs = other.client()

    for call in (
        lambda: theirs.chat.completions.retrieve(resp.id),
        lambda: theirs.chat.completions.update(resp.id, metadata={"topic": "stolen"}),
        lambda: theirs.chat.completions.delete(resp.id),
        lambda: theirs.chat.completions.messages.list(resp.id),
    ):
        with pytest.raises(openai.NotFoundError) as info:
            call()
        assert_openai_error(info.value, (404,))
        assert m not in info.value.response.text
    assert listed(theirs, metadata={"topic": t}) == []
    assert resp.id not in [c.id for c in theirs.chat.completions.list(limit=100)]

    # The owner's completion is intact.
    got = mine.chat.completions.retrieve(resp.id)
    assert metadata_of(got) == {"topic": t}
    assert got.choices[0].message.content == mock.MOCK_TEXT
    assert listed(mine, metadata={"topic": t}) == [resp.id]
    assert [(x.role, x.content) for x in mine.chat.completions.messages.list(resp.id).data] == [
        ("user", f"Say hello ({m})")
    ]


# -- money ----------------------------------------------------------------------


def test_balance_went_down_by_exactly_the_charges(gw):
    store(gw, new_marker())
    records, user = gw.settled()
    assert len(records) == len(gw.metered), json.dumps(records)
    assert sorted((r["model"], r["output_tokens"]) for r in records) == sorted(gw.metered)
    for r in records:
        assert r["status"] == 200 and r["error"] is None, r
        assert r["cost_nano_usd"] == expected_cost(
            r["model"], r["input_tokens"], r["cached_tokens"], r["cache_write_tokens"], r["output_tokens"]
        ), r
    charged = sum(r["cost_nano_usd"] for r in records)
    assert user["balance_nano_usd"] == gw.start_balance_nano - charged
