"""A model served by two channels: the official openai SDK keeps working when
the channel that served its first call dies before the second.

The gateway runs on its own configuration: model `two-channels` on channel
`first` (priority 10, its own mock) and on `mock` (priority 0, another mock).
The first mock is stopped between two calls: the second call — whole, then
streamed — is served by the other channel, each usage record names the
channel that served, and each request is charged once.
"""
import os

import httpx
import openai

from harness import (
    ADMIN_TOKEN,
    UPSTREAM_KEY,
    UPSTREAM_MODEL,
    mock_requests,
    new_marker,
    start_gateway,
    start_mock,
    stop,
    wait_for,
    write_config,
)

MODEL = "two-channels"


def channels_config(tmp, first_port, second_port):
    config = write_config(tmp, second_port)
    config.write_text(config.read_text() + f"""
[providers.first]
kind = "openai"
base_url = "http://127.0.0.1:{first_port}/v1"
api_key = "{UPSTREAM_KEY}"
connect_timeout_secs = 2

[models."{MODEL}"]
input_price = 1
output_price = 2

[[models."{MODEL}".channels]]
provider = "first"
upstream_model = "{UPSTREAM_MODEL}"
priority = 10

[[models."{MODEL}".channels]]
provider = "mock"
upstream_model = "{UPSTREAM_MODEL}"
""")
    return config


def test_the_openai_sdk_survives_a_channel_dying_between_two_calls(tmp_path):
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    first, first_port = start_mock(tmp_path / "first")
    second, second_port = start_mock(tmp_path / "second")
    config = channels_config(tmp_path, first_port, second_port)
    gateway = None
    http = httpx.Client(trust_env=False, timeout=30, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    try:
        gateway, url = start_gateway(tmp_path, config)
        created = http.post(url + "/admin/users", json={"name": "failover"}).json()
        user_id, key = created["user"]["id"], created["key"]
        start = http.post(f"{url}/admin/users/{user_id}/balance",
                          json={"amount_usd": "10", "reason": "failover test"}).json()["balance_nano_usd"]
        client = openai.OpenAI(api_key=key, base_url=url + "/v1", max_retries=0, http_client=httpx.Client(trust_env=False))
        marker = new_marker("fo")
        messages = [{"role": "user", "content": f"{marker} hello"}]

        one = client.chat.completions.create(model=MODEL, messages=messages)
        assert one.choices[0].message.content
        first_log = mock_requests(f"http://127.0.0.1:{first_port}", marker)
        assert len(first_log) == 1, "the priority channel served the first call"

        stop(first)  # the channel dies

        two = client.chat.completions.create(model=MODEL, messages=messages)
        assert two.choices[0].message.content == one.choices[0].message.content
        streamed = client.chat.completions.create(model=MODEL, messages=messages, stream=True)
        text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
        assert text == one.choices[0].message.content
        client.close()

        # Settlements are committed a few milliseconds after each answer.
        def settled():
            records = http.get(f"{url}/admin/users/{user_id}/usage").json()["data"]
            return records if len(records) >= 3 else None

        records = wait_for(settled, 10, "three usage records")
        assert sorted(r["provider"] for r in records) == ["first", "mock", "mock"], records
        assert all(r["status"] == 200 and r["cost_nano_usd"] > 0 for r in records), records
        user = http.get(f"{url}/admin/users/{user_id}").json()
        user = user.get("user", user)
        assert user["held"] == "0", user
        spent = sum(r["cost_nano_usd"] for r in records)
        assert user["balance_nano_usd"] + user["free_balance_nano_usd"] == start - spent
    finally:
        http.close()
        if gateway:
            stop(gateway)
        stop(first)
        stop(second)


def test_sighup_reloads_the_catalog_of_the_running_binary(tmp_path):
    """The real binary, reloaded with SIGHUP while the openai SDK uses it: a
    model added to the file appears and serves; a broken file changes
    nothing."""
    import signal

    first, first_port = start_mock(tmp_path)
    config = write_config(tmp_path, first_port)
    original = config.read_text()
    gateway = None
    http = httpx.Client(trust_env=False, timeout=30, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    try:
        gateway, url = start_gateway(tmp_path, config)
        created = http.post(url + "/admin/users", json={"name": "reload"}).json()
        user_id, key = created["user"]["id"], created["key"]
        http.post(f"{url}/admin/users/{user_id}/balance", json={"amount_usd": "10", "reason": "reload test"})
        client = openai.OpenAI(api_key=key, base_url=url + "/v1", max_retries=0, http_client=httpx.Client(trust_env=False))
        assert "added-later" not in [m.id for m in client.models.list()]

        def replace(text):
            staged = config.with_suffix(".next")
            staged.write_text(text)
            os.replace(staged, config)

        replace(original + f"""
[models."added-later"]
provider = "mock"
upstream_model = "{UPSTREAM_MODEL}"
input_price = 1
output_price = 2
""")
        gateway.send_signal(signal.SIGHUP)
        wait_for(lambda: "added-later" in [m.id for m in client.models.list()], 10, "the reloaded model")
        answer = client.chat.completions.create(
            model="added-later", messages=[{"role": "user", "content": "hello"}])
        assert answer.choices[0].message.content

        replace("this is = not [valid toml")
        gateway.send_signal(signal.SIGHUP)
        reloaded = http.post(url + "/admin/reload")
        assert reloaded.status_code == 400, reloaded.text
        assert "added-later" in [m.id for m in client.models.list()], "a broken file changes nothing"
        assert gateway.poll() is None, "SIGHUP never stops the gateway"
        client.close()
    finally:
        http.close()
        if gateway:
            stop(gateway)
        stop(first)
