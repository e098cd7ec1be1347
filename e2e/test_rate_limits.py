"""Rate limits against the official openai SDK: a model limited to 60
requests per minute refuses the 61st of a burst with a 429 and
`retry-after: 1`, and the SDK's own retry (max_retries) waits that long and
gets its answer; admitted answers carry `x-ratelimit-*`. A key created with
limits through OhMyGPT's key API carries them to the SDK's headers.

The model-limit test runs its own gateway: the harness's configuration, plus
a limit on model `gpt-test`; the key-limit test uses the session's.
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


def test_a_key_made_with_limits_through_the_ohmygpt_api_tells_the_sdk_its_rpm(gw):
    """OhMyGPT's new-api-token with `rpm` and `tpm` as form fields (numeric
    strings, as forms send them): the key's own limits show in the openai
    SDK's raw headers and in /v1/usage/limits; the module's key is unaffected."""
    auth = {"Authorization": f"Bearer {gw.key}"}
    omg = gw.base_url + "/api/v1/user/admin/"
    form = {"remark": "e2e limited", "rpm": "7", "tpm": "50000"}
    created = gw.http.post(omg + "new-api-token", headers=auth, data=form)
    assert created.status_code == 200, created.text
    key = created.json()["data"]
    listed = gw.http.post(omg + "get-api-tokens", headers=auth).json()["data"]
    entry = next(k for k in listed if k["remark"] == "e2e limited")
    assert (entry["rpm"], entry["tpm"], entry["concurrency"]) == (7, 50000, None), entry

    messages = [{"role": "user", "content": "hello"}]
    raw = gw.client(key).chat.completions.with_raw_response.create(model=MODEL, messages=messages)
    gw.metered.append("limited key")
    assert raw.headers["x-ratelimit-limit-requests"] == "7"
    assert raw.headers["x-ratelimit-remaining-requests"] == "6"
    assert raw.headers["x-ratelimit-limit-tokens"] == "50000"
    assert raw.parse().choices[0].message.content

    limits = gw.http.get(gw.base_url + "/v1/usage/limits", headers={"Authorization": f"Bearer {key}"}).json()
    assert limits["object"] == "rate_limits"
    (own,) = [s for s in limits["limits"] if s["scope"] == "key"]
    assert (own["rpm"]["limit"], own["rpm"]["remaining"]) == (7, 6), limits
    assert own["name"] == entry["id"]

    # The user's other key has no limit of its own.
    plain = gw.client().chat.completions.with_raw_response.create(model=MODEL, messages=messages)
    gw.metered.append("plain key")
    assert "x-ratelimit-limit-requests" not in plain.headers
