//! Request and response translation, both directions: what maps, what is
//! dropped, what is refused.

use protocol::translate::{chat_via_messages, messages_via_chat};
use serde_json::{json, Map, Value};

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap()
}

#[test]
fn messages_request_maps_to_chat() {
    let body = obj(json!({
        "model": "claude-x",
        "max_tokens": 512,
        "system": [{"type": "text", "text": "Rule one."}, {"type": "text", "text": "Rule two.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "Look", "cache_control": {"type": "ephemeral"}},
                {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "QUJD"}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
                {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBER"}},
            ]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                {"type": "text", "text": "Calling tools."},
                {"type": "tool_use", "id": "t1", "name": "a", "input": {"x": 1}},
                {"type": "tool_use", "id": "t2", "name": "b", "input": {}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": "one"},
                {"type": "tool_result", "tool_use_id": "t2", "content": [{"type": "text", "text": "two"}], "is_error": true},
                {"type": "text", "text": "Go on"},
            ]},
            {"role": "system", "content": "Mid-conversation instruction."},
        ],
        "tools": [{"name": "a", "description": "A", "input_schema": {"type": "object"}}, {"name": "b", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
        "stop_sequences": ["END"],
        "temperature": 0.2,
        "top_k": 5,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "context_management": {"edits": []},
        "stream": true,
    }));
    let t = messages_via_chat::request(&body, "gpt-up").unwrap();
    let out = Value::Object(t.body);
    assert_eq!(out["model"], "gpt-up");
    assert_eq!(out["max_tokens"], 512);
    assert_eq!(out["stop"], json!(["END"]));
    assert_eq!(out["temperature"], 0.2);
    assert_eq!(out["stream_options"], json!({"include_usage": true}));
    assert_eq!(out["tool_choice"], "required");
    assert_eq!(out["parallel_tool_calls"], false);
    let m = out["messages"].as_array().unwrap();
    assert_eq!(
        m[0],
        json!({"role": "system", "content": "Rule one.\n\nRule two."})
    );
    assert_eq!(
        m[1]["content"][1]["image_url"]["url"],
        "data:image/jpeg;base64,QUJD"
    );
    assert_eq!(
        m[1]["content"][2]["image_url"]["url"],
        "https://example.com/a.png"
    );
    assert_eq!(m[1]["content"][3]["type"], "file");
    assert_eq!(m[2]["content"], "Calling tools.");
    assert_eq!(m[2]["tool_calls"][0]["function"]["arguments"], "{\"x\":1}");
    assert_eq!(m[2]["tool_calls"][1]["id"], "t2");
    assert_eq!(
        m[3],
        json!({"role": "tool", "tool_call_id": "t1", "content": "one"})
    );
    assert_eq!(
        m[4],
        json!({"role": "tool", "tool_call_id": "t2", "content": "Error: two"})
    );
    assert_eq!(m[5]["content"], json!([{"type": "text", "text": "Go on"}]));
    // A late system message stays a system message, where it was.
    assert_eq!(
        m[6],
        json!({"role": "system", "content": "Mid-conversation instruction."})
    );
    // The thinking text goes back as reasoning_content.
    assert_eq!(m[2]["reasoning_content"], "hmm");
    // Deliberately dropped, and reported.
    for field in ["top_k", "thinking", "context_management"] {
        assert!(
            t.dropped.iter().any(|d| d == field),
            "{field} in {:?}",
            t.dropped
        );
    }
    assert!(t.dropped.iter().any(|d| d.contains("thinking")));
    assert!(!out.to_string().contains("cache_control"));
}

/// Claude Code's first request, in short (see e2e/claude_code/FINDINGS.md):
/// the user turn opens with a system-reminder, then comes the prompt; the
/// environment section follows as a system message.
fn claude_code_first_request() -> Map<String, Value> {
    obj(json!({
        "model": "m",
        "max_tokens": 32000,
        "system": [{"type": "text", "text": "x-anthropic-billing-header: cc_version=2"}, {"type": "text", "text": "You are Claude Code."}],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "<system-reminder>\nAgents are available.\n</system-reminder>"},
                {"type": "text", "text": "say hi", "cache_control": {"type": "ephemeral"}},
            ]},
            {"role": "system", "content": [{"type": "text", "text": "# Environment\ncwd: /tmp", "cache_control": {"type": "ephemeral"}}]},
        ],
    }))
}

/// The text the model is asked to answer: that of the last user message.
fn last_user_text(messages: &[Value]) -> String {
    let last = messages.iter().rev().find(|m| m["role"] == "user").unwrap();
    match &last["content"] {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts.last().unwrap()["text"].as_str().unwrap().to_string(),
        other => panic!("{other}"),
    }
}

#[test]
fn late_system_messages_stay_system_messages_so_the_prompt_is_answered() {
    let t = messages_via_chat::request(&claude_code_first_request(), "gpt").unwrap();
    let m = t.body["messages"].as_array().unwrap();
    let roles: Vec<&str> = m.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["system", "user", "system"]);
    assert_eq!(m[2]["content"], "# Environment\ncwd: /tmp");
    assert_eq!(last_user_text(m), "say hi");
    assert!(
        !t.dropped.iter().any(|d| d.contains("system")),
        "{:?}",
        t.dropped
    );
}

#[test]
fn late_system_messages_as_user_text_for_servers_that_refuse_them() {
    use messages_via_chat::LateSystemMessages::AsUser;
    let t = messages_via_chat::request_with(&claude_code_first_request(), "qwen", AsUser).unwrap();
    let m = t.body["messages"].as_array().unwrap();
    let roles: Vec<&str> = m.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["system", "user"], "only a leading system message");
    // The environment joins the reminders ahead of the prompt, which stays last.
    let parts = m[1]["content"].as_array().unwrap();
    let texts: Vec<&str> = parts.iter().map(|p| p["text"].as_str().unwrap()).collect();
    assert_eq!(
        texts,
        [
            "<system-reminder>\nAgents are available.\n</system-reminder>",
            "<system-reminder>\n# Environment\ncwd: /tmp\n</system-reminder>",
            "say hi",
        ]
    );
    assert_eq!(last_user_text(m), "say hi");
    assert!(t.dropped.iter().any(|d| d.contains("sent as user")));

    // After a string user turn; after an assistant turn; empty ones dropped.
    let body = obj(json!({
        "model": "m",
        "messages": [
            {"role": "system", "content": "Lead."},
            {"role": "user", "content": "Question?"},
            {"role": "system", "content": "Be brief."},
            {"role": "assistant", "content": "Answer."},
            {"role": "system", "content": [{"type": "text", "text": "Later."}]},
            {"role": "system", "content": ""},
            {"role": "user", "content": "More?"},
        ],
    }));
    let t = messages_via_chat::request_with(&body, "qwen", AsUser).unwrap();
    assert_eq!(
        t.body["messages"],
        json!([
            {"role": "system", "content": "Lead."},
            {"role": "user", "content": "<system-reminder>\nBe brief.\n</system-reminder>\n\nQuestion?"},
            {"role": "assistant", "content": "Answer."},
            {"role": "user", "content": "<system-reminder>\nLater.\n</system-reminder>"},
            {"role": "user", "content": "More?"},
        ])
    );
    let kept = messages_via_chat::request(&body, "gpt").unwrap();
    let roles: Vec<&str> = kept.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        ["system", "user", "system", "assistant", "system", "user"]
    );
}

#[test]
fn long_user_ids_are_hashed_and_deferred_tools_dropped() {
    let long_id = "x".repeat(150);
    let body = obj(json!({
        "model": "m", "messages": [{"role": "user", "content": "hi"}],
        "metadata": {"user_id": long_id},
        "tools": [{"name": "real", "input_schema": {"type": "object"}}, {"name": "later", "input_schema": {}, "defer_loading": true}],
    }));
    let t = messages_via_chat::request(&body, "u").unwrap();
    let user = t.body["user"].as_str().unwrap();
    assert!(user.len() <= 64 && user.starts_with("user-"));
    let again = messages_via_chat::request(&body, "u").unwrap();
    assert_eq!(again.body["user"], t.body["user"], "stable");
    assert_eq!(t.body["tools"].as_array().unwrap().len(), 1);
}

#[test]
fn messages_request_refusals() {
    let bad_choice = obj(
        json!({"model": "m", "messages": [], "tools": [{"name": "a", "input_schema": {}}], "tool_choice": {"type": "tool", "name": "zzz"}}),
    );
    assert!(messages_via_chat::request(&bad_choice, "u").is_err());
    let no_messages = obj(json!({"model": "m"}));
    assert!(messages_via_chat::request(&no_messages, "u").is_err());
    let bad_role = obj(json!({"model": "m", "messages": [{"role": "robot", "content": "x"}]}));
    assert!(messages_via_chat::request(&bad_role, "u").is_err());
}

#[test]
fn chat_response_maps_to_message() {
    let completion = json!({
        "id": "chatcmpl-9", "object": "chat.completion",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": "Let me look.", "reasoning_content": "thinking...",
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"q\":\"x\"}"}}]
        }}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 20, "prompt_tokens_details": {"cached_tokens": 30}}
    });
    let m = messages_via_chat::response(&completion, "claude-public");
    assert_eq!(m["id"], "msg_9");
    assert_eq!(m["model"], "claude-public");
    assert_eq!(m["content"][0]["type"], "thinking");
    assert_eq!(
        m["content"][1],
        json!({"type": "text", "text": "Let me look."})
    );
    assert_eq!(
        m["content"][2],
        json!({"type": "tool_use", "id": "call_1", "name": "f", "input": {"q": "x"}})
    );
    assert_eq!(m["stop_reason"], "tool_use");
    assert_eq!(
        m["usage"],
        json!({"input_tokens": 70, "output_tokens": 20, "cache_read_input_tokens": 30, "cache_creation_input_tokens": 0})
    );
}

#[test]
fn chat_request_maps_to_messages() {
    let body = obj(json!({
        "model": "gpt-public",
        "messages": [
            {"role": "system", "content": "Sys A"},
            {"role": "developer", "content": [{"type": "text", "text": "Sys B"}]},
            {"role": "user", "content": [
                {"type": "text", "text": "Hi"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA"}},
                {"type": "image_url", "image_url": {"url": "https://x/y.jpg", "detail": "high"}},
            ]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}},
                {"id": "c2", "type": "function", "function": {"name": "g", "arguments": ""}},
            ]},
            {"role": "tool", "tool_call_id": "c1", "content": "r1"},
            {"role": "tool", "tool_call_id": "c2", "content": [{"type": "text", "text": "r2"}]},
            {"role": "user", "content": "thanks"},
        ],
        "tools": [{"type": "function", "function": {"name": "f", "description": "F", "parameters": {"type": "object"}}}, {"type": "function", "function": {"name": "g"}}],
        "tool_choice": {"type": "function", "function": {"name": "f"}},
        "parallel_tool_calls": false,
        "stop": "###",
        "temperature": 1.5,
        "max_completion_tokens": 3000,
        "user": "u9",
        "reasoning_effort": "low",
        "frequency_penalty": 0.5,
        "stream": true,
    }));
    let t = chat_via_messages::request(&body, "claude-up", 4096).unwrap();
    let out = Value::Object(t.body);
    assert_eq!(out["model"], "claude-up");
    assert_eq!(out["system"], "Sys A\n\nSys B");
    assert_eq!(out["max_tokens"], 3000);
    assert_eq!(out["stop_sequences"], json!(["###"]));
    // Thinking (from reasoning_effort) fixes the sampling settings.
    assert!(out.get("temperature").is_none());
    assert!(t.dropped.iter().any(|d| d.starts_with("temperature")));
    assert_eq!(out["metadata"], json!({"user_id": "u9"}));
    assert_eq!(
        out["thinking"],
        json!({"type": "enabled", "budget_tokens": 1024})
    );
    assert_eq!(
        out["tool_choice"],
        json!({"type": "tool", "name": "f", "disable_parallel_tool_use": true})
    );
    assert_eq!(
        out["tools"][1]["input_schema"],
        json!({"type": "object", "properties": {}})
    );
    let m = out["messages"].as_array().unwrap();
    assert_eq!(
        m.len(),
        3,
        "tool results and the next user turn merge into one user turn"
    );
    assert_eq!(
        m[0]["content"][1]["source"],
        json!({"type": "base64", "media_type": "image/png", "data": "AAA"})
    );
    assert_eq!(
        m[0]["content"][2]["source"],
        json!({"type": "url", "url": "https://x/y.jpg"})
    );
    assert_eq!(
        m[1]["content"][0],
        json!({"type": "tool_use", "id": "c1", "name": "f", "input": {"a": 1}})
    );
    assert_eq!(m[1]["content"][1]["input"], json!({}));
    assert_eq!(
        m[2]["content"][0],
        json!({"type": "tool_result", "tool_use_id": "c1", "content": "r1"})
    );
    assert_eq!(m[2]["content"][1]["content"], "r2");
    assert_eq!(
        m[2]["content"][2],
        json!({"type": "text", "text": "thanks"})
    );
    assert!(t.dropped.iter().any(|d| d == "frequency_penalty"));
}

#[test]
fn chat_request_refusals_change_nothing_silently() {
    let base = json!({"model": "m", "messages": [{"role": "user", "content": "x"}]});
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        obj(b)
    };
    assert!(chat_via_messages::request(&with("n", json!(3)), "u", 10)
        .unwrap_err()
        .0
        .contains("`n`"));
    assert!(chat_via_messages::request(&with("logprobs", json!(true)), "u", 10).is_err());
    assert!(chat_via_messages::request(
        &with(
            "response_format",
            json!({"type": "json_schema", "json_schema": {}})
        ),
        "u",
        10
    )
    .is_err());
    let bad_args = obj(
        json!({"model": "m", "messages": [{"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{not json"}}]}]}),
    );
    assert!(chat_via_messages::request(&bad_args, "u", 10).is_err());
    // Without thinking, OpenAI's 0–2 temperature is clamped to Anthropic's 0–1.
    let hot = chat_via_messages::request(&with("temperature", json!(1.7)), "u", 10).unwrap();
    assert_eq!(hot.body["temperature"], 1.0);
    // The default max_tokens fills Anthropic's required field.
    let t = chat_via_messages::request(&obj(base), "u", 777).unwrap();
    assert_eq!(t.body["max_tokens"], 777);
}

#[test]
fn message_response_maps_to_chat() {
    let message = json!({
        "id": "msg_7", "type": "message", "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "plan", "signature": "s"},
            {"type": "text", "text": "Answer."},
            {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"k": "v"}},
        ],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 10, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 5, "output_tokens": 9}
    });
    let c = chat_via_messages::response(&message, "gpt-public", 1700000000);
    assert_eq!(c["id"], "chatcmpl-7");
    assert_eq!(c["created"], 1700000000);
    let msg = &c["choices"][0]["message"];
    assert_eq!(msg["content"], "Answer.");
    assert_eq!(msg["reasoning_content"], "plan");
    assert_eq!(
        msg["tool_calls"][0]["function"]["arguments"],
        "{\"k\":\"v\"}"
    );
    assert_eq!(c["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(
        c["usage"],
        json!({"prompt_tokens": 115, "completion_tokens": 9, "total_tokens": 124, "prompt_tokens_details": {"cached_tokens": 100}})
    );
}
