"""Rate limits against the official openai SDK: a model limited to 60
requests per minute refuses the 61st of a burst with a 429 and
`retry-after: 1`, and the SDK's own retry (max_retries) waits that long and
gets its answer; admitted answers carry `x-ratelimit-*`.

The gateway runs on its own configuration: the harness's, plus a limit on
model `gpt-test`.
"""
import time

import httpx
import openai

from harness import (
    ADMIN_TOKEN,
    MODEL,
    start_gateway,
    start_mock,
    stop,
    write_config,
)


def test_the_openai_sdk_retries_a_rate_limited_call_after_retry_after(tmp_path):
    mock, mock_port = start_mock(tmp_path)
    config = write_config(tmp_path, mock_port)
    config.write_text(config.read_text() + f'\n[rate_limits.models."{MODEL}"]\nrpm = 60\n')
    gateway = None
    admin = httpx.Client(trust_env=False, timeout=30, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    try:
        gateway, url = start_gateway(tmp_path, config)
        created = admin.post(url + "/admin/users", json={"name": "limited"}).json()
        user_id, key = created["user"]["id"], created["key"]
        admin.post(f"{url}/admin/users/{user_id}/balance", json={"amount_usd": "10", "reason": "limits test"})
        messages = [{"role": "user", "content": "hello"}]

        # The minute's 60 requests, through the SDK's raw response.
        client = openai.OpenAI(api_key=key, base_url=url + "/v1", max_retries=0,
                               http_client=httpx.Client(trust_env=False))
        raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=messages)
        assert raw.headers["x-ratelimit-limit-requests"] == "60"
        assert raw.headers["x-ratelimit-remaining-requests"] == "59"
        for _ in range(59):
            client.chat.completions.create(model=MODEL, messages=messages)

        # Without retries: a RateLimitError saying when to come back.
        try:
            client.chat.completions.create(model=MODEL, messages=messages)
            raise AssertionError("the 61st request was admitted")
        except openai.RateLimitError as e:
            assert e.response.headers["retry-after"] == "1"
            assert e.body["code"] == "rate_limit_exceeded", e.body
        client.close()

        # With the SDK's retries: it waits for retry-after and is served.
        retrying = openai.OpenAI(api_key=key, base_url=url + "/v1", max_retries=2,
                                 http_client=httpx.Client(trust_env=False))
        started = time.monotonic()
        answer = retrying.chat.completions.create(model=MODEL, messages=messages)
        waited = time.monotonic() - started
        assert answer.choices[0].message.content
        assert 0.5 <= waited < 10, waited
        retrying.close()
    finally:
        admin.close()
        if gateway:
            stop(gateway)
        stop(mock)
