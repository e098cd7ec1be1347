"""Override rules with the official SDKs: a rule created through OhMyGPT's
rule API rewrites what reaches the upstream for the openai and anthropic
SDKs alike, and a blocking rule makes the SDK raise with the rule's status
and message, nothing charged."""

import anthropic
import openai
import pytest

from harness import CLAUDE_MODEL, MODEL, new_marker

RULES = "/api/v1/user/override-rules/"


def rule_api(gw, route, body):
    r = gw.http.post(gw.base_url + RULES + route, json=body, headers={"Authorization": f"Bearer {gw.key}"})
    return r.status_code, r.json()


def test_a_users_rule_reaches_the_upstream_through_both_sdks(gw):
    marker = new_marker("rule")
    status, created = rule_api(gw, "create", {
        "ruleName": "e2e cool " + marker,
        "conditions": [{"values": [{"path": "messages.-1.content", "mode": "contains", "value": marker}]}],
        "actions": [{"type": "override", "field": "temperature", "value": 0.25},
                    {"type": "ensure_suffix", "field": "messages.-1.content", "value": " (ruled)"}],
    })
    assert status == 200 and created["statusCode"] == 200, created
    rule_id = created["data"]["ruleId"]
    try:
        answer = gw.client().chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hello " + marker}], temperature=1.0)
        gw.metered.append(answer.id)
        assert answer.choices[0].message.content
        message = gw.anthropic().messages.create(
            model=CLAUDE_MODEL, max_tokens=20, messages=[{"role": "user", "content": "hi " + marker}])
        gw.metered.append(message.id)
        seen = gw.mock_log(marker)
        assert len(seen) == 2, seen
        for request in seen:
            body = request["body"]
            assert body["temperature"] == 0.25, body
            last = body["messages"][-1]["content"]
            text = last if isinstance(last, str) else "".join(p.get("text", "") for p in last)
            assert text.endswith(" (ruled)"), body
    finally:
        rule_api(gw, "delete", {"ruleId": rule_id})


def test_a_blocking_rule_makes_the_sdks_raise_and_charges_nothing(gw):
    marker = new_marker("block")
    status, created = rule_api(gw, "create", {
        "ruleName": "e2e block " + marker,
        "conditions": [{"values": [{"path": "messages.-1.content", "mode": "contains", "value": marker}]}],
        "actions": [{"type": "block", "message": "Blocked by the e2e rule.", "status": 422}],
    })
    assert status == 200, created
    rule_id = created["data"]["ruleId"]
    try:
        with pytest.raises(openai.UnprocessableEntityError) as raised:
            gw.client().chat.completions.create(model=MODEL, messages=[{"role": "user", "content": marker}])
        assert raised.value.body["code"] == "blocked_by_rule", raised.value.body
        assert "Blocked by the e2e rule." in raised.value.message
        with pytest.raises(anthropic.UnprocessableEntityError):
            gw.anthropic().messages.create(
                model=CLAUDE_MODEL, max_tokens=20, messages=[{"role": "user", "content": marker}])
        assert gw.mock_log(marker) == []
        gw.settled()
    finally:
        rule_api(gw, "delete", {"ruleId": rule_id})
