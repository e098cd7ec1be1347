"""A stream the upstream breaks off must not look complete to the client.

The mock closes the connection after two pieces of a `[break]` answer. Through
Tollgate, the official SDKs must raise — not return the two pieces as if they
were the whole answer — and the request must be charged for what was
delivered (an estimate, marked as such), nothing more.
"""

import anthropic
import openai
import pytest

from harness import CLAUDE_MODEL, MODEL, mock, wait_for


def broken(marker):
    return [{"role": "user", "content": f"{mock.BREAK_MARKER} {marker}"}]


def test_openai_sdk_raises_on_a_broken_pass_through_stream(gw):
    stream = gw.client().chat.completions.create(model=MODEL, messages=broken("o1"), stream=True)
    received = []
    with pytest.raises(openai.APIError) as raised:
        for chunk in stream:
            if chunk.choices:
                received.append(chunk.choices[0].delta.content or "")
    gw.metered.append("broken")
    assert "interrupted" in str(raised.value) or "ended before" in str(raised.value)
    assert "".join(received) == "".join(mock.MOCK_TEXT_PIECES[: mock.BREAK_AFTER])


def test_anthropic_sdk_raises_on_a_broken_pass_through_stream(gw):
    client = anthropic.Anthropic(api_key=gw.key, base_url=gw.base_url, max_retries=0)
    received = []
    with pytest.raises(anthropic.APIStatusError):
        with client.messages.stream(model=CLAUDE_MODEL, max_tokens=100, messages=broken("a1")) as stream:
            for text in stream.text_stream:
                received.append(text)
    gw.metered.append("broken")
    client.close()
    assert "".join(received) == "".join(mock.CLAUDE_TEXT_PIECES[: mock.BREAK_AFTER])


def test_anthropic_sdk_raises_when_a_translated_stream_breaks(gw):
    # Messages client, OpenAI upstream: the translator's error event.
    client = anthropic.Anthropic(api_key=gw.key, base_url=gw.base_url, max_retries=0)
    with pytest.raises(anthropic.APIStatusError):
        with client.messages.stream(model=MODEL, max_tokens=100, messages=broken("a2")) as stream:
            for _ in stream.text_stream:
                pass
    gw.metered.append("broken")
    client.close()


def test_a_broken_stream_is_logged_under_its_request_id(gw):
    # The request span follows the request into the task that reads the
    # upstream: its log lines name the request the client was told of.
    body = {"model": MODEL, "stream": True, "messages": broken("log")}
    with gw.http.stream("POST", gw.base_url + "/v1/chat/completions", json=body,
                        headers={"Authorization": f"Bearer {gw.key}"}) as r:
        assert r.status_code == 200
        request_id = r.headers["x-request-id"]
        r.read()
    gw.metered.append("broken")

    def logged():
        lines = gw.gateway_log.read_text(errors="replace").splitlines()
        return [l for l in lines if "upstream stream failed" in l and request_id in l]

    wait_for(logged, 10, f"a log line naming {request_id}")


def test_broken_streams_are_charged_for_what_they_delivered(gw):
    records, user = gw.settled()
    assert len(records) == len(gw.metered), records
    for r in records:
        assert r["status"] == 200, r
        assert "estimated" in (r["error"] or ""), r
        # Two one-token pieces were delivered; never message_start's placeholder.
        assert 1 <= r["output_tokens"] <= 4, r
        assert r["cost_nano_usd"] > 0, r
    charged = sum(r["cost_nano_usd"] for r in records)
    assert user["balance_nano_usd"] == gw.start_balance_nano - charged
