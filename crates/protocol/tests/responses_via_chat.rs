//! The Responses API emulated over chat completions: request mapping,
//! recorded chat streams turned into Responses event streams, and generated
//! or malformed streams that must always give a well-formed event stream.

mod common;

use bytes::Bytes;
use common::streams::read_cut;
use common::{fixture, Rng};
use protocol::sse::SseDecoder;
use protocol::translate::responses_via_chat::{
    input_items, request, response_from_chat, response_skeleton, usage_json, StreamTranslator,
};
use protocol::TokenUsage;
use serde_json::{json, Map, Value};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn params(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => panic!("params must be an object"),
    }
}

fn skeleton(p: Value) -> Value {
    response_skeleton(&params(p), "resp_abc", "gpt-public", 1_700_000_000)
}

/// Translates a whole request (its `input` normalised first).
fn chat_body(p: Value) -> (Map<String, Value>, Vec<String>) {
    let p = params(p);
    let items = input_items(p.get("input").unwrap_or(&json!([]))).expect("input");
    let t = request(&p, &items, "upstream-model", None).expect("request");
    (t.body, t.dropped)
}

fn messages(p: Value) -> Vec<Value> {
    chat_body(p).0["messages"].as_array().unwrap().clone()
}

/// Splits emitted frames into (event name, parsed data); every frame must be
/// `event: <name>\ndata: <json>\n\n`.
fn decode(out: &[Bytes]) -> Vec<(String, Value)> {
    out.iter()
        .map(|frame| {
            let text = std::str::from_utf8(frame).expect("UTF-8 frame");
            assert!(text.ends_with("\n\n"), "frame not terminated: {text:?}");
            let mut lines = text.trim_end().split('\n');
            let name = lines
                .next()
                .unwrap()
                .strip_prefix("event: ")
                .expect("event line");
            let data = lines
                .next()
                .unwrap()
                .strip_prefix("data: ")
                .expect("data line");
            assert!(lines.next().is_none(), "extra lines in {text:?}");
            (
                name.to_string(),
                serde_json::from_str(data).expect("JSON data"),
            )
        })
        .collect()
}

/// Feeds a chat SSE stream (cut at `cuts`) through a translator, the way the
/// gateway does: start, every event's data, then finish.
fn run_cut(t: &mut StreamTranslator, stream: &[u8], cuts: &[usize]) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    t.start(&mut out);
    let mut dec = SseDecoder::new();
    read_cut(&mut dec, stream, cuts, |e| t.push(&e.data, &mut out));
    if let Some(e) = dec.finish() {
        t.push(&e.data, &mut out);
    }
    t.finish(&mut out);
    assert_eq!(t.events_emitted() as usize, out.len());
    decode(&out)
}

fn run(t: &mut StreamTranslator, stream: &str) -> Vec<(String, Value)> {
    run_cut(t, stream.as_bytes(), &[])
}

fn kinds(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(k, _)| k.as_str()).collect()
}

fn sse(chunks: &[Value]) -> String {
    chunks
        .iter()
        .map(|c| format!("data: {c}\n\n"))
        .collect::<String>()
        + "data: [DONE]\n\n"
}

fn chunk(delta: Value, finish: Value) -> Value {
    json!({"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
}

const TERMINAL: &[&str] = &[
    "response.completed",
    "response.incomplete",
    "response.failed",
];

/// The invariants of any Responses event stream.
fn assert_well_formed(events: &[(String, Value)], t: &StreamTranslator) {
    for (i, (name, data)) in events.iter().enumerate() {
        assert_eq!(data["type"], json!(name), "event {i}");
        assert_eq!(data["sequence_number"], json!(i), "event {i} sequence");
    }
    if events.is_empty() {
        return;
    }
    assert_eq!(
        kinds(events)[..2],
        ["response.created", "response.in_progress"]
    );
    let terminal: Vec<usize> = (0..events.len())
        .filter(|&i| TERMINAL.contains(&events[i].0.as_str()))
        .collect();
    assert_eq!(
        terminal,
        vec![events.len() - 1],
        "one terminal event, last: {:?}",
        kinds(events)
    );
    let last = &events[events.len() - 1].1["response"];
    assert_eq!(
        last,
        t.response(),
        "terminal event carries the final response"
    );
    assert!(t.is_done());

    // Item lifecycle: added in output order, deltas only while open, done once.
    let mut added: Vec<Value> = Vec::new();
    let mut closed: Vec<bool> = Vec::new();
    let mut texts: std::collections::HashMap<(u64, String), String> = Default::default();
    for (name, data) in &events[2..events.len() - 1] {
        let index = data["output_index"].as_u64().expect("output_index") as usize;
        match name.as_str() {
            "response.output_item.added" => {
                assert_eq!(index, added.len(), "items are added in order");
                assert!(closed.iter().all(|c| *c), "one item open at a time");
                added.push(data["item"].clone());
                closed.push(false);
                continue;
            }
            _ => {
                assert!(index < added.len(), "{name} before its item was added");
                assert!(!closed[index], "{name} after its item was done");
                assert_eq!(
                    data.get("item_id").unwrap_or(&added[index]["id"]),
                    &added[index]["id"]
                );
            }
        }
        let key = |field: &str| {
            (
                index as u64,
                format!("{field}{}{}", data["content_index"], data["summary_index"]),
            )
        };
        match name.as_str() {
            "response.output_text.delta"
            | "response.refusal.delta"
            | "response.reasoning_summary_text.delta" => texts
                .entry(key("t"))
                .or_default()
                .push_str(data["delta"].as_str().unwrap()),
            "response.function_call_arguments.delta" => texts
                .entry(key("a"))
                .or_default()
                .push_str(data["delta"].as_str().unwrap()),
            "response.custom_tool_call_input.delta" => texts
                .entry(key("i"))
                .or_default()
                .push_str(data["delta"].as_str().unwrap()),
            "response.custom_tool_call_input.done" => {
                assert_eq!(added[index]["type"], "custom_tool_call");
                assert_eq!(
                    texts.get(&key("i")).map(String::as_str).unwrap_or(""),
                    data["input"].as_str().unwrap()
                );
                assert_eq!(data["input"], last["output"][index]["input"]);
            }
            "response.output_text.done" | "response.reasoning_summary_text.done" => {
                assert_eq!(
                    texts.get(&key("t")).map(String::as_str).unwrap_or(""),
                    data["text"].as_str().unwrap()
                )
            }
            "response.refusal.done" => {
                assert_eq!(
                    texts.get(&key("t")).map(String::as_str).unwrap_or(""),
                    data["refusal"].as_str().unwrap()
                )
            }
            "response.function_call_arguments.done" => {
                let streamed = texts.get(&key("a")).cloned().unwrap_or_default();
                let done = data["arguments"].as_str().unwrap();
                assert!(
                    done == streamed || (streamed.is_empty() && done == "{}"),
                    "{done} vs {streamed}"
                );
                assert_eq!(data["name"], added[index]["name"]);
            }
            "response.output_item.done" => {
                closed[index] = true;
                assert_eq!(
                    &data["item"], &last["output"][index],
                    "item.done equals the final item"
                );
            }
            _ => {}
        }
    }
    let output = last["output"].as_array().unwrap();
    assert_eq!(output.len(), added.len());
    if events[events.len() - 1].0 != "response.failed" {
        assert!(
            closed.iter().all(|c| *c),
            "every item is done before the end"
        );
    }
}

// ---------------------------------------------------------------------------
// input_items
// ---------------------------------------------------------------------------

#[test]
fn a_string_input_is_one_user_message() {
    assert_eq!(
        input_items(&json!("Hi")).unwrap(),
        vec![
            json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi"}]})
        ]
    );
}

#[test]
fn messages_get_a_type_and_string_content_becomes_a_part() {
    let items = input_items(&json!([
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "developer", "content": [{"type": "input_text", "text": "c"}]},
        {"type": "function_call_output", "call_id": "x", "output": "ok"},
    ]))
    .unwrap();
    assert_eq!(
        items[0],
        json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": "a"}]})
    );
    assert_eq!(
        items[1],
        json!({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "b"}]})
    );
    assert_eq!(items[2]["type"], "message");
    assert_eq!(
        items[2]["content"],
        json!([{"type": "input_text", "text": "c"}])
    );
    assert_eq!(
        items[3],
        json!({"type": "function_call_output", "call_id": "x", "output": "ok"})
    );
    // `type` comes first, as in the API's own items.
    assert_eq!(items[0].as_object().unwrap().keys().next().unwrap(), "type");
}

#[test]
fn input_that_is_not_items_is_refused() {
    assert!(input_items(&json!([1])).is_err());
    assert!(input_items(&json!(["text"])).is_err());
    assert!(input_items(&json!({"role": "user"})).is_err());
    assert!(input_items(&json!(3)).is_err());
    assert_eq!(input_items(&json!([])).unwrap(), Vec::<Value>::new());
}

// ---------------------------------------------------------------------------
// request
// ---------------------------------------------------------------------------

#[test]
fn a_string_input_with_instructions() {
    let p = params(
        json!({"model": "m", "input": "Hi", "instructions": "Be brief.", "stream": true, "store": true}),
    );
    let items = input_items(&p["input"]).unwrap();
    let t = request(&p, &items, "up", Some(256)).unwrap();
    assert_eq!(
        Value::Object(t.body),
        json!({
            "model": "up",
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
            "stream": true,
            "stream_options": {"include_usage": true},
            "max_completion_tokens": 256,
        })
    );
    assert!(t.dropped.is_empty(), "{:?}", t.dropped);
    let t = request(&p, &items, "up", None).unwrap();
    assert!(!t.body.contains_key("max_completion_tokens"));
}

#[test]
fn developer_messages_become_system_and_late_ones_user() {
    let (body, dropped) = chat_body(json!({
        "instructions": "I",
        "input": [
            {"role": "developer", "content": "D1"},
            {"role": "system", "content": [{"type": "input_text", "text": "S"}]},
            {"role": "user", "content": "U"},
            {"role": "developer", "content": "D2"},
        ]
    }));
    assert_eq!(
        body["messages"],
        json!([
            {"role": "system", "content": "I\n\nD1\n\nS"},
            {"role": "user", "content": "U"},
            {"role": "user", "content": "D2"},
        ])
    );
    assert_eq!(dropped, vec!["input[3] (late system message sent as user)"]);
}

#[test]
fn a_codex_history_becomes_a_valid_chat_transcript() {
    let p: Value = serde_json::from_str(&fixture("responses_request_codex.json")).unwrap();
    let (body, dropped) = chat_body(p);
    assert_eq!(
        body["messages"],
        json!([
            {"role": "system", "content": "You are Codex, a coding agent.\n\n<permissions instructions>Sandbox: workspace-write.</permissions instructions>"},
            {"role": "user", "content": "<environment_context>\n  <cwd>/work</cwd>\n</environment_context>"},
            {"role": "user", "content": "List the files"},
            {"role": "assistant", "content": null, "reasoning_content": "**Listing files**", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "exec_command", "arguments": "{\"cmd\":\"ls\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "mcp__github__create_issue", "arguments": "{}"}},
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "a.txt\nb.txt"},
            {"role": "tool", "tool_call_id": "call_2", "content": "issue #1"},
            {"role": "assistant", "content": "Two files."},
            {"role": "user", "content": "Thanks"},
        ])
    );
    assert_eq!(
        body["tools"],
        json!([
            {"type": "function", "function": {"name": "exec_command", "description": "Runs a command in a PTY.", "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"], "additionalProperties": false}, "strict": false}},
            {"type": "function", "function": {"name": "mcp__github__create_issue", "description": "Opens an issue.", "parameters": {"type": "object", "properties": {"title": {"type": "string"}}}, "strict": false}},
            {"type": "function", "function": {"name": "mcp__github__raw_query", "description": "Freeform query.", "parameters": {
                "type": "object", "properties": {"input": {"type": "string", "description": "The tool's input, as raw text."}},
                "required": ["input"], "additionalProperties": false}}},
            {"type": "function", "function": {"name": "apply_patch", "description": "Applies a patch.", "parameters": {
                "type": "object", "properties": {"input": {"type": "string", "description": "The tool's input, as raw text following this lark grammar:\nstart: /.+/"}},
                "required": ["input"], "additionalProperties": false}}},
        ])
    );
    assert_eq!(body["tool_choice"], "auto");
    assert_eq!(body["parallel_tool_calls"], false);
    assert_eq!(body["reasoning_effort"], "medium");
    assert_eq!(body["verbosity"], "low");
    assert_eq!(body["prompt_cache_key"], "019a-session");
    for gateway_field in [
        "store",
        "include",
        "input",
        "instructions",
        "reasoning",
        "text",
    ] {
        assert!(!body.contains_key(gateway_field), "{gateway_field}");
    }
    assert_eq!(
        dropped,
        vec![
            "input[8] (reasoning)",
            "input[10] (web_search_call)",
            "reasoning.summary",
            "tools[web_search]",
        ]
    );
}

#[test]
fn an_assistant_turn_in_any_order_is_one_message() {
    // Text after the calls, reasoning between them: still one assistant
    // message, directly followed by the tool results.
    let m = messages(json!({"input": [
        {"role": "user", "content": "go"},
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "R1"}]},
        {"type": "function_call", "call_id": "a", "name": "f", "arguments": "{}"},
        {"type": "reasoning", "content": [{"type": "reasoning_text", "text": "R2"}], "summary": [{"type": "summary_text", "text": "ignored"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "T1"}, {"type": "refusal", "refusal": "no"}]},
        {"type": "function_call", "call_id": "b", "name": "g", "arguments": "{\"x\":1}"},
        {"type": "function_call_output", "call_id": "a", "output": "A"},
        {"type": "function_call_output", "call_id": "b", "output": "B"},
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "R3"}]},
        {"role": "assistant", "content": "done"},
    ]}));
    assert_eq!(
        m,
        vec![
            json!({"role": "user", "content": "go"}),
            json!({"role": "assistant", "content": "T1\n\nno", "reasoning_content": "R1\n\nR2", "tool_calls": [
                {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                {"id": "b", "type": "function", "function": {"name": "g", "arguments": "{\"x\":1}"}},
            ]}),
            json!({"role": "tool", "tool_call_id": "a", "content": "A"}),
            json!({"role": "tool", "tool_call_id": "b", "content": "B"}),
            json!({"role": "assistant", "content": "done", "reasoning_content": "R3"}),
        ]
    );
}

#[test]
fn images_pass_as_image_url_parts_and_files_are_refused() {
    let m = messages(json!({"input": [{"role": "user", "content": [
        {"type": "input_text", "text": "What is this?"},
        {"type": "input_image", "image_url": "https://x/cat.png", "detail": "high"},
        {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "original"},
    ]}]}));
    assert_eq!(
        m[0],
        json!({"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": "https://x/cat.png", "detail": "high"}},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        ]})
    );
    let refused = |part: Value| {
        let p = params(json!({"input": [{"role": "user", "content": [part]}]}));
        let items = input_items(&p["input"]).unwrap();
        request(&p, &items, "up", None).unwrap_err().0
    };
    assert!(
        refused(json!({"type": "input_image", "file_id": "file-1", "detail": "auto"}))
            .contains("not supported")
    );
    assert!(refused(json!({"type": "input_file", "file_id": "file-1"})).contains("not supported"));
}

#[test]
fn several_text_parts_become_one_string() {
    let m = messages(json!({"input": [{"role": "user", "content": [
        {"type": "input_text", "text": "a"}, {"type": "input_text", "text": "b"},
    ]}]}));
    assert_eq!(m[0], json!({"role": "user", "content": "a\n\nb"}));
}

#[test]
fn tool_choice_forms() {
    let with = |choice: Value| {
        chat_body(
            json!({"input": "x", "tool_choice": choice, "tools": [{"type": "function", "name": "f", "parameters": null, "strict": null}]}),
        )
    };
    for mode in ["auto", "none", "required"] {
        assert_eq!(with(json!(mode)).0["tool_choice"], mode);
    }
    let (body, _) = with(json!({"type": "function", "name": "f"}));
    assert_eq!(
        body["tool_choice"],
        json!({"type": "function", "function": {"name": "f"}})
    );
    assert_eq!(
        body["tools"],
        json!([{"type": "function", "function": {"name": "f"}}])
    );
    // A custom tool is a function upstream: forcing it forces that function.
    let (body, dropped) = chat_body(
        json!({"input": "x", "tool_choice": {"type": "custom", "name": "apply_patch"},
        "tools": [{"type": "custom", "name": "apply_patch"}]}),
    );
    assert_eq!(
        body["tool_choice"],
        json!({"type": "function", "function": {"name": "apply_patch"}})
    );
    assert!(dropped.is_empty(), "{dropped:?}");
    let (body, dropped) = with(json!({"type": "custom"}));
    assert!(!body.contains_key("tool_choice"));
    assert_eq!(dropped, vec!["tool_choice (custom without a name)"]);
    let (body, dropped) = with(
        json!({"type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": "f"}]}),
    );
    assert_eq!(body["tool_choice"], "required");
    assert_eq!(dropped, vec!["tool_choice.allowed_tools (restriction)"]);
    let (body, dropped) = with(json!({"type": "web_search_preview"}));
    assert!(!body.contains_key("tool_choice"));
    assert_eq!(dropped, vec!["tool_choice (web_search_preview)"]);
}

#[test]
fn without_function_tools_there_is_no_tool_choice() {
    let (body, dropped) = chat_body(json!({
        "input": "x",
        "tools": [{"type": "web_search"}, {"type": "file_search", "vector_store_ids": []}, {"type": "mcp", "server_label": "s"}],
        "tool_choice": "required",
        "parallel_tool_calls": true,
    }));
    for field in ["tools", "tool_choice", "parallel_tool_calls"] {
        assert!(!body.contains_key(field), "{field}");
    }
    assert_eq!(
        dropped,
        vec!["tools[web_search]", "tools[file_search]", "tools[mcp]"]
    );
}

/// Codex's `apply_patch` (fixtures of e2e/codex, shortened grammar).
const PATCH_GRAMMAR: &str = "start: begin_patch hunk+ end_patch\nbegin_patch: \"*** Begin Patch\" LF\nend_patch: \"*** End Patch\" LF?\n%import common.LF\n";

fn apply_patch_tool() -> Value {
    json!({"type": "custom", "name": "apply_patch",
        "description": "The `apply_patch` tool can be used to edit files. This is a FREEFORM tool, so do not wrap the patch in JSON.",
        "format": {"type": "grammar", "syntax": "lark", "definition": PATCH_GRAMMAR}})
}

/// The string parameter's description of the function a custom tool became.
fn input_description(tool: &Value) -> String {
    let (body, dropped) = chat_body(json!({"input": "x", "tools": [tool]}));
    assert!(dropped.is_empty(), "{dropped:?}");
    let function = &body["tools"][0]["function"];
    assert_eq!(
        function["parameters"],
        json!({"type": "object", "properties": {"input": {"type": "string", "description": function["parameters"]["properties"]["input"]["description"]}},
               "required": ["input"], "additionalProperties": false})
    );
    function["parameters"]["properties"]["input"]["description"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn a_custom_tool_is_a_function_with_one_string_parameter() {
    let (body, dropped) = chat_body(
        json!({"input": "Add a file", "tools": [apply_patch_tool()], "tool_choice": "auto"}),
    );
    assert!(dropped.is_empty(), "{dropped:?}");
    assert_eq!(
        body["tools"],
        json!([{"type": "function", "function": {
            "name": "apply_patch",
            "description": "The `apply_patch` tool can be used to edit files. This is a FREEFORM tool, so do not wrap the patch in JSON.",
            "parameters": {
                "type": "object",
                "properties": {"input": {"type": "string", "description": format!("The tool's input, as raw text following this lark grammar:\n{PATCH_GRAMMAR}")}},
                "required": ["input"],
                "additionalProperties": false,
            },
        }}])
    );
    assert_eq!(body["tool_choice"], "auto");

    // Other formats: plain text (stated or not), a regular expression.
    for tool in [
        json!({"type": "custom", "name": "note", "format": {"type": "text"}}),
        json!({"type": "custom", "name": "note"}),
        json!({"type": "custom", "name": "note", "format": null}),
    ] {
        assert_eq!(input_description(&tool), "The tool's input, as raw text.");
    }
    assert_eq!(
        input_description(
            &json!({"type": "custom", "name": "digits", "format": {"type": "grammar", "syntax": "regex", "definition": "^[0-9]+$"}})
        ),
        "The tool's input, as raw text matching this regular expression:\n^[0-9]+$"
    );
    // A format from the future is named as dropped; the tool stays, as text.
    let (body, dropped) = chat_body(
        json!({"input": "x", "tools": [{"type": "custom", "name": "t", "format": {"type": "speech"}}]}),
    );
    assert_eq!(body["tools"][0]["function"]["name"], "t");
    assert_eq!(dropped, vec!["tools[custom t].format (speech)"]);
    // Inside a namespace, a custom tool is flattened as functions are.
    let (body, dropped) = chat_body(
        json!({"input": "x", "tools": [{"type": "namespace", "name": "mcp__db", "tools": [
            {"type": "custom", "name": "sql", "description": "Runs SQL.", "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"}},
        ]}]}),
    );
    assert!(dropped.is_empty(), "{dropped:?}");
    assert_eq!(body["tools"][0]["function"]["name"], "mcp__db__sql");
    assert_eq!(body["tools"][0]["function"]["description"], "Runs SQL.");
}

#[test]
fn custom_tool_calls_and_outputs_in_the_history() {
    let patch = "*** Begin Patch\n*** Add File: a.txt\n+\"hi\"\n*** End Patch\n";
    let m = messages(json!({"tools": [apply_patch_tool()], "input": [
        {"role": "user", "content": "go"},
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "R"}]},
        {"type": "function_call", "call_id": "a", "name": "exec_command", "arguments": "{\"cmd\":\"ls\"}"},
        {"type": "custom_tool_call", "id": "ctc_1", "status": "completed", "call_id": "b", "name": "apply_patch", "input": patch},
        {"type": "custom_tool_call", "call_id": "c", "name": "sql", "namespace": "mcp__db", "input": "select 1"},
        {"type": "function_call_output", "call_id": "a", "output": "a.txt"},
        {"type": "custom_tool_call_output", "call_id": "b", "output": "Success. Updated the following files:\nA a.txt\n"},
        {"type": "custom_tool_call_output", "call_id": "c", "output": [{"type": "input_text", "text": "1"}]},
        {"type": "custom_tool_call", "call_id": "d", "name": "apply_patch", "input": ""},
        {"type": "custom_tool_call_output", "call_id": "d", "output": "empty patch"},
    ]}));
    assert_eq!(
        m,
        vec![
            json!({"role": "user", "content": "go"}),
            json!({"role": "assistant", "content": null, "reasoning_content": "R", "tool_calls": [
                {"id": "a", "type": "function", "function": {"name": "exec_command", "arguments": "{\"cmd\":\"ls\"}"}},
                {"id": "b", "type": "function", "function": {"name": "apply_patch", "arguments": json!({"input": patch}).to_string()}},
                {"id": "c", "type": "function", "function": {"name": "mcp__db__sql", "arguments": "{\"input\":\"select 1\"}"}},
            ]}),
            json!({"role": "tool", "tool_call_id": "a", "content": "a.txt"}),
            json!({"role": "tool", "tool_call_id": "b", "content": "Success. Updated the following files:\nA a.txt\n"}),
            json!({"role": "tool", "tool_call_id": "c", "content": "1"}),
            json!({"role": "assistant", "content": null, "tool_calls": [
                {"id": "d", "type": "function", "function": {"name": "apply_patch", "arguments": "{\"input\":\"\"}"}},
            ]}),
            json!({"role": "tool", "tool_call_id": "d", "content": "empty patch"}),
        ]
    );
    // The arguments decode to the input, quotes and newlines included.
    let arguments: Value = serde_json::from_str(
        m[1]["tool_calls"][1]["function"]["arguments"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(arguments, json!({"input": patch}));
    let (_, dropped) = chat_body(json!({"input": [
        {"type": "custom_tool_call", "call_id": "b", "name": "apply_patch", "input": "x"},
        {"type": "custom_tool_call_output", "call_id": "b", "output": "ok"},
    ]}));
    assert!(dropped.is_empty(), "{dropped:?}");
}

#[test]
fn text_format_reasoning_and_sampling() {
    let (body, dropped) = chat_body(json!({
        "input": "x",
        "text": {"format": {"type": "json_schema", "name": "person", "schema": {"type": "object"}, "strict": true, "description": "A person"}},
        "reasoning": {"effort": "high", "summary": null},
        "temperature": 0.2, "top_p": 0.9, "user": "u1", "safety_identifier": "s1", "service_tier": "flex",
        "top_logprobs": 3, "max_tool_calls": 2, "metadata": {"k": "v"}, "truncation": "auto",
        "previous_response_id": "resp_0", "background": false, "max_output_tokens": 99,
    }));
    assert_eq!(
        body["response_format"],
        json!({"type": "json_schema", "json_schema": {"name": "person", "schema": {"type": "object"}, "strict": true, "description": "A person"}})
    );
    assert_eq!(body["reasoning_effort"], "high");
    assert_eq!(body["temperature"], 0.2);
    assert_eq!(body["top_p"], 0.9);
    assert_eq!(body["user"], "u1");
    assert_eq!(body["safety_identifier"], "s1");
    assert_eq!(body["service_tier"], "flex");
    assert!(
        !body.contains_key("max_completion_tokens"),
        "the gateway passes max_output"
    );
    assert_eq!(dropped, vec!["top_logprobs", "max_tool_calls"]);

    let (body, _) = chat_body(json!({"input": "x", "text": {"format": {"type": "json_object"}}}));
    assert_eq!(body["response_format"], json!({"type": "json_object"}));
    let (body, _) = chat_body(json!({"input": "x", "text": {"format": {"type": "text"}}}));
    assert!(!body.contains_key("response_format"));
}

#[test]
fn requests_that_cannot_be_translated_are_refused() {
    let refused = |p: Value| {
        let p = params(p);
        let items = input_items(p.get("input").unwrap_or(&json!([]))).unwrap();
        request(&p, &items, "up", None).unwrap_err()
    };
    assert!(
        refused(json!({"input": [{"type": "item_reference", "id": "msg_1"}]}))
            .0
            .contains("item references")
    );
    assert!(refused(json!({"input": [{"id": "msg_1"}]}))
        .0
        .contains("item references"));
    assert!(refused(json!({"input": "x", "prompt": {"id": "pmpt_1"}}))
        .0
        .contains("Prompt templates"));
    assert!(
        refused(json!({"input": [{"role": "tool", "content": "x"}]}))
            .0
            .contains("role")
    );
}

// ---------------------------------------------------------------------------
// The Response object
// ---------------------------------------------------------------------------

#[test]
fn the_skeleton_has_openais_fields_and_defaults() {
    let r = skeleton(json!({"input": "x"}));
    assert_eq!(
        r,
        json!({
            "id": "resp_abc", "object": "response", "created_at": 1_700_000_000, "status": "in_progress",
            "background": false, "completed_at": null, "error": null, "frequency_penalty": 0.0,
            "incomplete_details": null, "instructions": null, "max_output_tokens": null, "max_tool_calls": null,
            "model": "gpt-public", "output": [], "parallel_tool_calls": true, "presence_penalty": 0.0,
            "previous_response_id": null, "prompt_cache_key": null, "prompt_cache_retention": null,
            "reasoning": {"effort": null, "summary": null}, "safety_identifier": null, "service_tier": "auto",
            "store": true, "temperature": 1.0, "text": {"format": {"type": "text"}, "verbosity": "medium"},
            "tool_choice": "auto", "tools": [], "top_logprobs": 0, "top_p": 1.0, "truncation": "disabled",
            "usage": null, "user": null, "metadata": {},
        })
    );
    assert!(
        r.get("output_text").is_none(),
        "the SDKs compute output_text"
    );
}

#[test]
fn the_skeleton_echoes_the_request() {
    let tools = json!([{"type": "function", "name": "f", "parameters": {}, "strict": true}, {"type": "web_search"}]);
    let r = skeleton(json!({
        "instructions": "I", "tools": tools, "tool_choice": "required", "text": {"format": {"type": "json_object"}},
        "reasoning": {"effort": "low"}, "max_output_tokens": 50, "metadata": {"a": "b"}, "previous_response_id": "resp_0",
        "store": false, "background": true, "temperature": 0.5, "top_p": 0.5, "parallel_tool_calls": false,
        "truncation": "auto", "user": "u", "prompt_cache_key": "k", "conversation": "conv_1",
    }));
    assert_eq!(r["instructions"], "I");
    assert_eq!(r["tools"], tools, "tools as the client sent them");
    assert_eq!(r["tool_choice"], "required");
    assert_eq!(
        r["text"],
        json!({"format": {"type": "json_object"}, "verbosity": "medium"})
    );
    assert_eq!(r["reasoning"], json!({"effort": "low", "summary": null}));
    for (field, value) in [
        ("max_output_tokens", json!(50)),
        ("metadata", json!({"a": "b"})),
        ("previous_response_id", json!("resp_0")),
        ("store", json!(false)),
        ("background", json!(true)),
        ("temperature", json!(0.5)),
        ("top_p", json!(0.5)),
        ("parallel_tool_calls", json!(false)),
        ("truncation", json!("auto")),
        ("user", json!("u")),
        ("prompt_cache_key", json!("k")),
        ("conversation", json!({"id": "conv_1"})),
    ] {
        assert_eq!(r[field], value, "{field}");
    }
    let r = skeleton(json!({"conversation": {"id": "conv_2"}}));
    assert_eq!(r["conversation"], json!({"id": "conv_2"}));
}

#[test]
fn usage_has_the_responses_shape() {
    let u = TokenUsage {
        input: 100,
        output: 20,
        cached_input: 40,
        cache_write: 0,
    };
    assert_eq!(
        usage_json(&u, 7),
        json!({"input_tokens": 100, "input_tokens_details": {"cached_tokens": 40}, "output_tokens": 20,
               "output_tokens_details": {"reasoning_tokens": 7}, "total_tokens": 120})
    );
}

#[test]
fn huge_usage_saturates_instead_of_overflowing() {
    // prompt_tokens u64::MAX plus any completion token overflowed the total:
    // a panic (debug) or a wrapped, tiny total_tokens (release).
    let stream = sse(&[
        json!({"choices": [], "usage": {"prompt_tokens": u64::MAX, "completion_tokens": 3}}),
    ]);
    let mut t = StreamTranslator::new(skeleton(json!({})));
    let events = run(&mut t, &stream);
    assert_well_formed(&events, &t);
    let usage = &t.response()["usage"];
    assert_eq!(usage["input_tokens"], u64::MAX);
    assert_eq!(usage["total_tokens"], u64::MAX);
}

// ---------------------------------------------------------------------------
// Streams
// ---------------------------------------------------------------------------

#[test]
fn a_text_stream_gives_exactly_openais_event_sequence() {
    let mut t = StreamTranslator::new(skeleton(json!({"input": "Hi"})));
    let events = run(&mut t, &fixture("openai_text.sse"));
    assert_well_formed(&events, &t);
    assert_eq!(
        kinds(&events),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    let e = |i: usize| events[i].1.clone();
    assert_eq!(e(0)["response"], skeleton(json!({"input": "Hi"})));
    assert_eq!(e(1)["response"]["status"], "in_progress");
    assert_eq!(
        e(2),
        json!({"type": "response.output_item.added", "item": {"id": "msg_abc_0", "type": "message", "status": "in_progress", "content": [], "role": "assistant"}, "output_index": 0, "sequence_number": 2})
    );
    assert_eq!(
        e(3),
        json!({"type": "response.content_part.added", "content_index": 0, "item_id": "msg_abc_0", "output_index": 0, "part": {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}, "sequence_number": 3})
    );
    assert_eq!(
        e(4),
        json!({"type": "response.output_text.delta", "content_index": 0, "delta": "Hello", "item_id": "msg_abc_0", "logprobs": [], "output_index": 0, "sequence_number": 4})
    );
    assert_eq!(
        e(7),
        json!({"type": "response.output_text.done", "content_index": 0, "item_id": "msg_abc_0", "logprobs": [], "output_index": 0, "text": "Hello! How can I help?", "sequence_number": 7})
    );
    let part = json!({"type": "output_text", "annotations": [], "logprobs": [], "text": "Hello! How can I help?"});
    assert_eq!(
        e(8),
        json!({"type": "response.content_part.done", "content_index": 0, "item_id": "msg_abc_0", "output_index": 0, "part": part, "sequence_number": 8})
    );
    let item = json!({"id": "msg_abc_0", "type": "message", "status": "completed", "content": [part], "role": "assistant"});
    assert_eq!(
        e(9),
        json!({"type": "response.output_item.done", "item": item, "output_index": 0, "sequence_number": 9})
    );

    let r = &e(10)["response"];
    assert_eq!(r["status"], "completed");
    assert_eq!(r["completed_at"], 1_700_000_000);
    assert_eq!(r["output"], json!([item]));
    assert_eq!(
        r["usage"],
        json!({"input_tokens": 19, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 9, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 28})
    );
    assert_eq!(
        t.usage(),
        Some(TokenUsage {
            input: 19,
            output: 9,
            cached_input: 0,
            cache_write: 0
        })
    );
    assert_eq!(t.produced_text(), "Hello! How can I help?");

    // The same answer as one completion gives the same Response object.
    let completion = json!({
        "id": "chatcmpl-AbC1", "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello! How can I help?", "refusal": null}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 19, "completion_tokens": 9, "total_tokens": 28},
    });
    let (whole, usage) = response_from_chat(skeleton(json!({"input": "Hi"})), &completion);
    assert_eq!(&whole, t.response());
    assert_eq!(usage, t.usage());
}

#[test]
fn every_split_of_the_text_stream_gives_the_same_events() {
    let stream = fixture("openai_text.sse");
    let mut t = StreamTranslator::new(skeleton(json!({})));
    let whole = run(&mut t, &stream);
    for cut in (0..stream.len()).step_by(13) {
        let mut t = StreamTranslator::new(skeleton(json!({})));
        assert_eq!(
            run_cut(&mut t, stream.as_bytes(), &[cut]),
            whole,
            "cut at {cut}"
        );
    }
}

#[test]
fn two_parallel_tool_calls_become_two_function_call_items() {
    let mut t = StreamTranslator::new(skeleton(json!({})));
    let events = run(&mut t, &fixture("openai_tools.sse"));
    assert_well_formed(&events, &t);
    assert_eq!(
        kinds(&events),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    assert_eq!(
        events[2].1["item"],
        json!({"id": "fc_abc_0", "type": "function_call", "status": "in_progress", "arguments": "", "call_id": "call_A1", "name": "get_weather"})
    );
    assert_eq!(
        events[3].1,
        json!({"type": "response.function_call_arguments.delta", "delta": "{\"ci", "item_id": "fc_abc_0", "output_index": 0, "sequence_number": 3})
    );
    assert_eq!(
        events[5].1,
        json!({"type": "response.function_call_arguments.done", "arguments": "{\"city\": \"Paris\"}", "item_id": "fc_abc_0", "name": "get_weather", "output_index": 0, "sequence_number": 5})
    );
    let output = &t.response()["output"];
    assert_eq!(
        output,
        &json!([
            {"id": "fc_abc_0", "type": "function_call", "status": "completed", "arguments": "{\"city\": \"Paris\"}", "call_id": "call_A1", "name": "get_weather"},
            {"id": "fc_abc_1", "type": "function_call", "status": "completed", "arguments": "{\"tz\": \"CET\"}", "call_id": "call_B2", "name": "get_time"},
        ])
    );
    assert_eq!(
        t.response()["usage"]["input_tokens_details"]["cached_tokens"],
        64
    );
    assert_eq!(
        t.usage(),
        Some(TokenUsage {
            input: 85,
            output: 40,
            cached_input: 64,
            cache_write: 0
        })
    );
    assert_eq!(t.produced_text(), "{\"city\": \"Paris\"}{\"tz\": \"CET\"}");

    let completion = json!({"choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": null, "tool_calls": [
        {"id": "call_A1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}},
        {"id": "call_B2", "type": "function", "function": {"name": "get_time", "arguments": "{\"tz\": \"CET\"}"}},
    ]}}], "usage": {"prompt_tokens": 85, "completion_tokens": 40, "total_tokens": 125, "prompt_tokens_details": {"cached_tokens": 64}}});
    let (whole, usage) = response_from_chat(skeleton(json!({})), &completion);
    assert_eq!(&whole, t.response());
    assert_eq!(usage, t.usage());
}

#[test]
fn reasoning_comes_first_and_a_length_stop_is_incomplete() {
    let mut t = StreamTranslator::new(skeleton(json!({})));
    let events = run(&mut t, &fixture("openai_reasoning.sse"));
    assert_well_formed(&events, &t);
    assert_eq!(
        kinds(&events),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.reasoning_summary_part.added",
            "response.reasoning_summary_text.delta",
            "response.reasoning_summary_text.delta",
            "response.reasoning_summary_text.done",
            "response.reasoning_summary_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.incomplete",
        ]
    );
    assert_eq!(
        events[2].1["item"],
        json!({"id": "rs_abc_0", "type": "reasoning", "summary": []})
    );
    assert_eq!(
        events[3].1,
        json!({"type": "response.reasoning_summary_part.added", "item_id": "rs_abc_0", "output_index": 0, "part": {"type": "summary_text", "text": ""}, "summary_index": 0, "sequence_number": 3})
    );
    assert_eq!(
        events[4].1,
        json!({"type": "response.reasoning_summary_text.delta", "delta": "The user greets me.", "item_id": "rs_abc_0", "output_index": 0, "summary_index": 0, "sequence_number": 4})
    );
    assert_eq!(
        events[6].1,
        json!({"type": "response.reasoning_summary_text.done", "item_id": "rs_abc_0", "output_index": 0, "summary_index": 0, "text": "The user greets me. Reply kindly.", "sequence_number": 6})
    );
    assert_eq!(
        events[7].1["part"],
        json!({"type": "summary_text", "text": "The user greets me. Reply kindly."})
    );
    assert_eq!(
        events[8].1["item"],
        json!({"id": "rs_abc_0", "type": "reasoning", "summary": [{"type": "summary_text", "text": "The user greets me. Reply kindly."}]})
    );
    let r = t.response();
    assert_eq!(r["status"], "incomplete");
    assert_eq!(
        r["incomplete_details"],
        json!({"reason": "max_output_tokens"})
    );
    assert_eq!(r["completed_at"], Value::Null);
    assert_eq!(r["output"][1]["id"], "msg_abc_1");
    assert_eq!(
        r["output"][1]["status"], "incomplete",
        "the message was cut short"
    );
    assert_eq!(r["usage"]["output_tokens_details"]["reasoning_tokens"], 14);
    assert_eq!(
        t.produced_text(),
        "The user greets me. Reply kindly.Hi there!"
    );

    let completion = json!({"choices": [{"index": 0, "finish_reason": "length", "message": {"role": "assistant",
        "reasoning_content": "The user greets me. Reply kindly.", "content": "Hi there!"}}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 20, "total_tokens": 32, "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 14}}});
    let (whole, _) = response_from_chat(skeleton(json!({})), &completion);
    assert_eq!(&whole, r);
}

#[test]
fn reasoning_under_the_openrouter_name_and_content_filter() {
    let stream = sse(&[
        chunk(json!({"reasoning": "think"}), Value::Null),
        chunk(json!({"content": "x"}), json!("content_filter")),
    ]);
    let mut t = StreamTranslator::new(skeleton(json!({})));
    let events = run(&mut t, &stream);
    assert_well_formed(&events, &t);
    assert_eq!(events.last().unwrap().0, "response.incomplete");
    assert_eq!(
        t.response()["incomplete_details"],
        json!({"reason": "content_filter"})
    );
    assert_eq!(t.response()["output"][0]["summary"][0]["text"], "think");
    assert_eq!(t.response()["usage"], Value::Null, "no usage reported");
    assert_eq!(t.usage(), None);
}

#[test]
fn a_refusal_is_a_refusal_part() {
    let mut t = StreamTranslator::new(skeleton(json!({})));
    let events = run(&mut t, &fixture("openai_refusal.sse"));
    assert_well_formed(&events, &t);
    assert_eq!(
        kinds(&events)[2..],
        [
            "response.output_item.added",
            "response.content_part.added",
            "response.refusal.delta",
            "response.refusal.delta",
            "response.refusal.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    assert_eq!(
        events[3].1["part"],
        json!({"type": "refusal", "refusal": ""})
    );
    assert_eq!(events[6].1["refusal"], "I'm sorry, I can't help with that.");
    assert_eq!(
        t.response()["output"][0]["content"],
        json!([{"type": "refusal", "refusal": "I'm sorry, I can't help with that."}])
    );
}

#[test]
fn text_then_a_call_closes_the_message_first() {
    let stream = sse(&[
        chunk(json!({"content": "Let me check."}), Value::Null),
        chunk(
            json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": ""}}]}),
            Value::Null,
        ),
        chunk(json!({}), json!("tool_calls")),
    ]);
    let mut t = StreamTranslator::new(skeleton(json!({})));
    let events = run(&mut t, &stream);
    assert_well_formed(&events, &t);
    let output = &t.response()["output"];
    assert_eq!(output[0]["type"], "message");
    assert_eq!(output[1]["type"], "function_call");
    assert_eq!(
        output[1]["arguments"], "{}",
        "a call with no arguments gets {{}}"
    );
    assert_eq!(output[1]["id"], "fc_abc_1");
}

#[test]
fn calls_all_numbered_zero_are_told_apart_by_id() {
    let stream = sse(&[
        chunk(
            json!({"tool_calls": [{"index": 0, "id": "a", "function": {"name": "f", "arguments": "{\"n\":1}"}}]}),
            Value::Null,
        ),
        chunk(
            json!({"tool_calls": [{"index": 0, "id": "b", "function": {"name": "g", "arguments": "{\"n\":"}}]}),
            Value::Null,
        ),
        chunk(
            json!({"tool_calls": [{"index": 0, "id": "b", "function": {"arguments": "2}"}}]}),
            json!("tool_calls"),
        ),
    ]);
    let mut t = StreamTranslator::new(skeleton(json!({})));
    let events = run(&mut t, &stream);
    assert_well_formed(&events, &t);
    let output = &t.response()["output"];
    assert_eq!(output.as_array().unwrap().len(), 2);
    assert_eq!(
        (
            output[0]["call_id"].as_str(),
            output[0]["arguments"].as_str()
        ),
        (Some("a"), Some("{\"n\":1}"))
    );
    assert_eq!(
        (
            output[1]["call_id"].as_str(),
            output[1]["arguments"].as_str()
        ),
        (Some("b"), Some("{\"n\":2}"))
    );
}

#[test]
fn a_fragment_for_a_closed_call_leaves_it_as_announced() {
    // OpenAI never interleaves calls; if a server does, the call's
    // `output_item.done` has gone out and the stored item must match it.
    let stream = sse(&[
        chunk(
            json!({"tool_calls": [{"index": 0, "id": "a", "function": {"name": "f", "arguments": "{\"x\":"}}]}),
            Value::Null,
        ),
        chunk(
            json!({"tool_calls": [{"index": 1, "id": "b", "function": {"name": "g", "arguments": "{}"}}]}),
            Value::Null,
        ),
        chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
            json!("tool_calls"),
        ),
    ]);
    let mut t = StreamTranslator::new(skeleton(json!({})));
    let events = run(&mut t, &stream);
    assert_well_formed(&events, &t);
    assert_eq!(t.response()["output"][0]["arguments"], "{\"x\":");
    assert_eq!(
        t.produced_text(),
        "{\"x\":{}1}",
        "still counted as produced"
    );
}

#[test]
fn a_flattened_namespaced_call_goes_back_to_its_namespace() {
    let tools = json!([
        {"type": "namespace", "name": "mcp__github", "description": "d", "tools": [{"type": "function", "name": "create_issue", "parameters": {}}]},
        {"type": "function", "name": "plain"},
    ]);
    let stream = sse(&[
        chunk(
            json!({"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "mcp__github__create_issue", "arguments": "{}"}}]}),
            Value::Null,
        ),
        chunk(
            json!({"tool_calls": [{"index": 1, "id": "c2", "function": {"name": "plain", "arguments": "{}"}}]}),
            json!("tool_calls"),
        ),
    ]);
    let mut t = StreamTranslator::new(skeleton(json!({"tools": tools})));
    let events = run(&mut t, &stream);
    assert_well_formed(&events, &t);
    assert_eq!(events[2].1["item"]["name"], "create_issue");
    assert_eq!(events[2].1["item"]["namespace"], "mcp__github");
    let output = &t.response()["output"];
    assert_eq!(output[0]["name"], "create_issue");
    assert_eq!(output[0]["namespace"], "mcp__github");
    assert_eq!(output[1]["name"], "plain");
    assert!(output[1].get("namespace").is_none());

    // And the call travels back flattened in the next turn.
    let p = json!({"tools": tools, "input": [output[0].clone(), {"type": "function_call_output", "call_id": "c1", "output": "ok"}]});
    assert_eq!(
        messages(p)[0]["tool_calls"][0]["function"]["name"],
        "mcp__github__create_issue"
    );
}

/// Tools of a Codex request for a catalog model: functions, the custom
/// `apply_patch`, and a namespace with a custom tool inside.
fn codex_tools() -> Value {
    json!([
        {"type": "function", "name": "exec_command", "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}}},
        apply_patch_tool(),
        {"type": "namespace", "name": "mcp__db", "tools": [{"type": "custom", "name": "sql"}]},
        {"type": "web_search"},
    ])
}

fn tool_call(index: u64, id: Option<&str>, name: Option<&str>, arguments: &str) -> Value {
    let mut call = json!({"index": index, "function": {"arguments": arguments}});
    if let Some(id) = id {
        call["id"] = json!(id);
        call["type"] = json!("function");
    }
    if let Some(name) = name {
        call["function"]["name"] = json!(name);
    }
    chunk(json!({"tool_calls": [call]}), Value::Null)
}

#[test]
fn a_call_to_a_custom_tool_becomes_a_custom_tool_call() {
    let patch = "*** Begin Patch\n*** Add File: a.txt\n+\"hi\"\n*** End Patch\n";
    let arguments = json!({"input": patch}).to_string();
    let (first, rest) = arguments.split_at(17);
    let stream = sse(&[
        chunk(
            json!({"role": "assistant", "content": "Patching."}),
            Value::Null,
        ),
        tool_call(0, Some("call_P"), Some("apply_patch"), ""),
        tool_call(0, None, None, first),
        tool_call(0, None, None, rest),
        tool_call(1, Some("call_F"), Some("exec_command"), "{\"cmd\":\"ls\"}"),
        chunk(json!({}), json!("tool_calls")),
        json!({"choices": [], "usage": {"prompt_tokens": 50, "completion_tokens": 30}}),
    ]);
    let mut t = StreamTranslator::new(skeleton(json!({"tools": codex_tools()})));
    let events = run(&mut t, &stream);
    assert_well_formed(&events, &t);
    assert_eq!(
        kinds(&events),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.custom_tool_call_input.delta",
            "response.custom_tool_call_input.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    let e = |i: usize| events[i].1.clone();
    assert_eq!(
        e(8),
        json!({"type": "response.output_item.added", "item": {"id": "ctc_abc_1", "type": "custom_tool_call", "status": "in_progress",
            "call_id": "call_P", "input": "", "name": "apply_patch"}, "output_index": 1, "sequence_number": 8})
    );
    assert_eq!(
        e(9),
        json!({"type": "response.custom_tool_call_input.delta", "delta": patch, "item_id": "ctc_abc_1", "output_index": 1, "sequence_number": 9})
    );
    assert_eq!(
        e(10),
        json!({"type": "response.custom_tool_call_input.done", "input": patch, "item_id": "ctc_abc_1", "output_index": 1, "sequence_number": 10})
    );
    let item = json!({"id": "ctc_abc_1", "type": "custom_tool_call", "status": "completed", "call_id": "call_P", "input": patch, "name": "apply_patch"});
    assert_eq!(
        e(11),
        json!({"type": "response.output_item.done", "item": item, "output_index": 1, "sequence_number": 11})
    );
    let output = &t.response()["output"];
    assert_eq!(output[1], item);
    assert_eq!(output[2]["type"], "function_call");
    assert_eq!(output[2]["id"], "fc_abc_2");
    assert_eq!(
        t.produced_text(),
        format!("Patching.{patch}{{\"cmd\":\"ls\"}}")
    );

    // The same answer as one completion gives the same Response object.
    let completion = json!({"choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": "Patching.", "tool_calls": [
        {"id": "call_P", "type": "function", "function": {"name": "apply_patch", "arguments": arguments}},
        {"id": "call_F", "type": "function", "function": {"name": "exec_command", "arguments": "{\"cmd\":\"ls\"}"}},
    ]}}], "usage": {"prompt_tokens": 50, "completion_tokens": 30}});
    let (whole, usage) = response_from_chat(skeleton(json!({"tools": codex_tools()})), &completion);
    assert_eq!(&whole, t.response());
    assert_eq!(usage, t.usage());

    // Echoed back as the next turn's input, the call is the function call
    // the upstream made, and Codex's answer its tool message.
    let m = messages(json!({"tools": codex_tools(), "input": [
        {"role": "user", "content": "go"}, output[0].clone(), output[1].clone(), output[2].clone(),
        {"type": "custom_tool_call_output", "call_id": "call_P", "output": "Success."},
        {"type": "function_call_output", "call_id": "call_F", "output": "a.txt"},
    ]}));
    assert_eq!(
        m[1],
        json!({"role": "assistant", "content": "Patching.", "tool_calls": [
            {"id": "call_P", "type": "function", "function": {"name": "apply_patch", "arguments": arguments}},
            {"id": "call_F", "type": "function", "function": {"name": "exec_command", "arguments": "{\"cmd\":\"ls\"}"}},
        ]})
    );
    assert_eq!(
        m[2],
        json!({"role": "tool", "tool_call_id": "call_P", "content": "Success."})
    );
}

#[test]
fn custom_call_arguments_that_are_not_its_input_json_pass_as_they_are() {
    let cases = [
        (
            "*** Begin Patch\n*** End Patch",
            "*** Begin Patch\n*** End Patch",
        ),
        ("{\"patch\": \"x\"}", "{\"patch\": \"x\"}"),
        ("{\"input\": 5}", "{\"input\": 5}"),
        ("\"quoted\"", "\"quoted\""),
        ("", ""),
        ("{\"input\": \"select 1\", \"extra\": true}", "select 1"),
    ];
    for (arguments, input) in cases {
        let stream = sse(&[
            tool_call(0, Some("call_S"), Some("mcp__db__sql"), arguments),
            chunk(json!({}), json!("tool_calls")),
        ]);
        let mut t = StreamTranslator::new(skeleton(json!({"tools": codex_tools()})));
        let events = run(&mut t, &stream);
        assert_well_formed(&events, &t);
        let deltas = if input.is_empty() { 0 } else { 1 };
        assert_eq!(events.len(), 2 + 3 + deltas + 1, "{arguments}");
        assert_eq!(
            t.response()["output"],
            json!([{"id": "ctc_abc_0", "type": "custom_tool_call", "status": "completed", "call_id": "call_S",
                "input": input, "name": "sql", "namespace": "mcp__db"}]),
            "{arguments}"
        );
    }
}

#[test]
fn a_custom_call_cut_short() {
    let start = [
        chunk(json!({"content": "x"}), Value::Null),
        tool_call(
            0,
            Some("call_P"),
            Some("apply_patch"),
            "{\"input\": \"*** Begin",
        ),
    ];
    // Stopped at the token limit: the call closes `incomplete`, with what came.
    let mut chunks = start.to_vec();
    chunks.push(chunk(json!({}), json!("length")));
    let mut t = StreamTranslator::new(skeleton(json!({"tools": codex_tools()})));
    let events = run(&mut t, &sse(&chunks));
    assert_well_formed(&events, &t);
    assert_eq!(events.last().unwrap().0, "response.incomplete");
    let call = &t.response()["output"][1];
    assert_eq!(call["status"], "incomplete");
    assert_eq!(call["input"], "{\"input\": \"*** Begin");

    // The upstream broke, or the client cancelled: the call was never
    // announced, so it is not in the output; its tokens still count.
    for cancel in [false, true] {
        let mut t = StreamTranslator::new(skeleton(json!({"tools": codex_tools()})));
        let mut out = Vec::new();
        t.start(&mut out);
        for c in &start {
            t.push(&c.to_string(), &mut out);
        }
        assert_eq!(t.produced_text(), "x{\"input\": \"*** Begin");
        if cancel {
            t.cancel(&mut out);
        } else {
            t.fail("reset", &mut out);
            assert_well_formed(&decode(&out), &t);
        }
        assert_eq!(t.response()["output"].as_array().unwrap().len(), 1);
        assert_eq!(t.produced_text(), "x{\"input\": \"*** Begin");
    }
}

#[test]
fn an_upstream_error_mid_stream_fails_the_response() {
    let mut t = StreamTranslator::new(skeleton(json!({})));
    let events = run(&mut t, &fixture("openai_error.sse"));
    assert_well_formed(&events, &t);
    assert_eq!(events.last().unwrap().0, "response.failed");
    let r = t.response();
    assert_eq!(r["status"], "failed");
    assert_eq!(
        r["error"],
        json!({"code": "server_error", "message": "The server had an error while processing your request."})
    );
    assert_eq!(r["output"][0]["content"][0]["text"], "Partial");
    assert_eq!(r["output"][0]["status"], "incomplete");
}

#[test]
fn fail_keeps_finished_items_and_marks_the_open_one() {
    let stream = sse(&[
        chunk(json!({"reasoning_content": "r"}), Value::Null),
        chunk(json!({"content": "partial"}), Value::Null),
    ]);
    let mut t = StreamTranslator::new(skeleton(json!({})));
    let mut out = Vec::new();
    t.start(&mut out);
    for data in stream
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
    {
        t.push(data, &mut out);
    }
    t.fail("upstream connection reset", &mut out);
    let n = out.len();
    t.fail("again", &mut out);
    t.finish(&mut out);
    t.cancel(&mut out);
    assert_eq!(out.len(), n, "a second end emits nothing");
    let events = decode(&out);
    assert_well_formed(&events, &t);
    let r = t.response();
    assert_eq!(r["error"]["message"], "upstream connection reset");
    assert_eq!(
        r["output"][0].get("status"),
        None,
        "the reasoning item finished"
    );
    assert_eq!(r["output"][1]["status"], "incomplete");
}

#[test]
fn cancel_emits_nothing_and_the_response_shows_it() {
    let mut t = StreamTranslator::new(skeleton(json!({"background": true})));
    let mut out = Vec::new();
    t.start(&mut out);
    t.push(
        &chunk(json!({"content": "Once upon"}), Value::Null).to_string(),
        &mut out,
    );
    let before = out.len();
    t.cancel(&mut out);
    assert_eq!(out.len(), before);
    assert!(t.is_done());
    t.push(
        &chunk(json!({"content": " a time"}), Value::Null).to_string(),
        &mut out,
    );
    t.finish(&mut out);
    assert_eq!(out.len(), before, "nothing after the cancellation");
    let r = t.response();
    assert_eq!(r["status"], "cancelled");
    assert_eq!(r["output"][0]["status"], "incomplete");
    assert_eq!(r["output"][0]["content"][0]["text"], "Once upon");
    assert_eq!(t.produced_text(), "Once upon");
    assert_eq!(t.events_emitted() as usize, before);
}

#[test]
fn a_queued_background_response_starts_in_progress() {
    let mut s = skeleton(json!({"background": true}));
    s["status"] = json!("queued");
    let mut t = StreamTranslator::new(s);
    let events = run(&mut t, &fixture("openai_text.sse"));
    assert_eq!(events[0].1["response"]["status"], "queued");
    assert_eq!(events[1].1["response"]["status"], "in_progress");
    assert_eq!(t.response()["status"], "completed");
}

#[test]
fn push_before_start_starts_and_the_clock_can_be_set() {
    let mut t = StreamTranslator::new(skeleton(json!({})));
    t.set_completed_at(1_700_000_042);
    let mut out = Vec::new();
    t.push(
        &chunk(json!({"content": "x"}), json!("stop")).to_string(),
        &mut out,
    );
    t.start(&mut out);
    t.finish(&mut out);
    let events = decode(&out);
    assert_well_formed(&events, &t);
    assert_eq!(t.response()["completed_at"], 1_700_000_042);
}

#[test]
fn an_empty_stream_completes_with_no_output() {
    let mut t = StreamTranslator::new(skeleton(json!({})));
    let events = run(&mut t, "data: [DONE]\n\n");
    assert_eq!(
        kinds(&events),
        [
            "response.created",
            "response.in_progress",
            "response.completed"
        ]
    );
    assert_eq!(t.response()["output"], json!([]));
}

#[test]
fn ids_without_the_resp_prefix_and_odd_skeletons() {
    let mut t = StreamTranslator::new(json!({"id": "xyz"}));
    run(&mut t, &fixture("openai_text.sse"));
    assert_eq!(t.response()["output"][0]["id"], "msg_xyz_0");
    for odd in [
        json!(null),
        json!([1, 2]),
        json!({"output": 3}),
        json!({"id": 5, "tools": "x"}),
    ] {
        let mut t = StreamTranslator::new(odd);
        let events = run(&mut t, &fixture("openai_tools.sse"));
        assert_well_formed(&events, &t);
    }
}

#[test]
fn a_completion_with_everything_matches_its_stream() {
    let completion = json!({"choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant",
        "reasoning_content": "plan", "content": "Calling.", "refusal": null,
        "tool_calls": [{"id": "k", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4}});
    let (whole, usage) = response_from_chat(skeleton(json!({})), &completion);
    let stream = sse(&[
        chunk(json!({"reasoning_content": "pl"}), Value::Null),
        chunk(json!({"reasoning_content": "an"}), Value::Null),
        chunk(json!({"content": "Calling."}), Value::Null),
        chunk(
            json!({"tool_calls": [{"index": 0, "id": "k", "function": {"name": "f", "arguments": "{"}}]}),
            Value::Null,
        ),
        chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "}"}}]}),
            json!("tool_calls"),
        ),
        json!({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}}),
    ]);
    let mut t = StreamTranslator::new(skeleton(json!({})));
    run(&mut t, &stream);
    assert_eq!(&whole, t.response());
    assert_eq!(
        usage,
        Some(TokenUsage {
            input: 3,
            output: 4,
            cached_input: 0,
            cache_write: 0
        })
    );
    assert_eq!(
        whole["output"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["rs_abc_0", "msg_abc_1", "fc_abc_2"]
    );
    let (failed, _) =
        response_from_chat(skeleton(json!({})), &json!({"error": {"message": "bad"}}));
    assert_eq!(failed["status"], "failed");
    let (empty, usage) = response_from_chat(skeleton(json!({})), &json!("nonsense"));
    assert_eq!((empty["status"].as_str(), usage), (Some("completed"), None));
}

// ---------------------------------------------------------------------------
// Generated and malformed streams
// ---------------------------------------------------------------------------

/// A plausible chat stream: any mix of reasoning, text, refusals and tool
/// calls (to functions and to the custom tools of [`codex_tools`], sometimes
/// interleaved, sometimes without ids), a finish, maybe usage, maybe an
/// error, maybe cut off.
fn random_chat_stream(rng: &mut Rng) -> String {
    let mut s = String::new();
    let mut tools = 0u64;
    for _ in 0..rng.below(14) {
        let delta = match rng.below(8) {
            0 => json!({"content": format!("t{}", rng.below(100))}),
            1 => json!({"reasoning_content": "hmm "}),
            2 => json!({"reasoning": "r"}),
            3 => json!({"refusal": "no"}),
            4 => {
                tools += 1;
                let name = ["f", "apply_patch", "mcp__db__sql"][rng.below(3) as usize];
                json!({"tool_calls": [{"index": tools - 1, "id": format!("call_{tools}"), "type": "function", "function": {"name": name, "arguments": ""}}]})
            }
            5 if tools > 0 => {
                let index = rng.below(tools);
                let fragment = ["{\"a\":1}", "{\"input\": \"", "*** Begin Patch\\n", "\"}"]
                    [rng.below(4) as usize];
                json!({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]})
            }
            6 => json!({"tool_calls": [{"function": {"arguments": "x"}}, 7, {"index": "zero"}]}),
            _ => json!({"content": "", "role": "assistant"}),
        };
        s += &format!("data: {}\n\n", chunk(delta, Value::Null));
    }
    if rng.below(4) > 0 {
        let finish =
            ["stop", "length", "tool_calls", "content_filter", "weird"][rng.below(5) as usize];
        s += &format!("data: {}\n\n", chunk(json!({}), json!(finish)));
    }
    if rng.below(2) == 0 {
        s += "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":3,\"completion_tokens_details\":{\"reasoning_tokens\":1}}}\n\n";
    }
    if rng.below(6) == 0 {
        s += "data: {\"error\":{\"message\":\"boom\"}}\n\n";
    }
    if rng.below(4) > 0 {
        s += "data: [DONE]\n\n";
    }
    s
}

#[test]
fn generated_chat_streams_always_give_well_formed_responses_streams() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..2_000 {
        let stream = random_chat_stream(&mut rng);
        let cuts = rng.cuts(stream.len());
        let mut t = StreamTranslator::new(skeleton(json!({"tools": codex_tools()})));
        let events = run_cut(&mut t, stream.as_bytes(), &cuts);
        assert_well_formed(&events, &t);
    }
}

/// Splits `text` into 1–4 pieces at char boundaries.
fn pieces(rng: &mut Rng, text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut cuts: Vec<usize> = (0..rng.below(4))
        .map(|_| rng.below(chars.len() as u64 + 1) as usize)
        .collect();
    cuts.push(chars.len());
    cuts.sort();
    let mut last = 0;
    cuts.into_iter()
        .map(|cut| {
            let piece: String = chars[last..cut].iter().collect();
            last = cut;
            piece
        })
        .collect()
}

#[test]
fn generated_answers_streamed_or_whole_give_the_same_response() {
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let arguments = [
        json!({"input": "*** Begin Patch\n*** Add File: \"ä\".txt\n+x\n*** End Patch\n"})
            .to_string(),
        "{\"cmd\": \"ls\"}".to_string(),
        "*** Begin Patch\n*** End Patch".to_string(),
        String::new(),
    ];
    for _ in 0..500 {
        let mut chunks = Vec::new();
        let mut message = json!({"role": "assistant"});
        for field in ["reasoning_content", "content"] {
            if rng.below(2) == 0 {
                let text = ["Let me think.", "Héllo wörld", "x"][rng.below(3) as usize];
                for piece in pieces(&mut rng, text) {
                    chunks.push(chunk(json!({ field: piece }), Value::Null));
                }
                message[field] = json!(text);
            }
        }
        let mut calls = Vec::new();
        for index in 0..rng.below(4) {
            let id = format!("call_{index}");
            let name = ["f", "apply_patch", "mcp__db__sql"][rng.below(3) as usize];
            let args = &arguments[rng.below(arguments.len() as u64) as usize];
            chunks.push(tool_call(index, Some(&id), Some(name), ""));
            for piece in pieces(&mut rng, args) {
                chunks.push(tool_call(index, None, None, &piece));
            }
            calls.push(json!({"id": id, "type": "function", "function": {"name": name, "arguments": args}}));
        }
        if !calls.is_empty() {
            message["tool_calls"] = json!(calls);
        }
        let finish = ["stop", "tool_calls", "length"][rng.below(3) as usize];
        chunks.push(chunk(json!({}), json!(finish)));
        let usage = json!({"prompt_tokens": 9, "completion_tokens": 4});
        chunks.push(json!({"choices": [], "usage": usage}));

        let tools = json!({"tools": codex_tools()});
        let stream = sse(&chunks);
        let cuts = rng.cuts(stream.len());
        let mut t = StreamTranslator::new(skeleton(tools.clone()));
        let events = run_cut(&mut t, stream.as_bytes(), &cuts);
        assert_well_formed(&events, &t);
        let completion = json!({"choices": [{"index": 0, "message": message, "finish_reason": finish}], "usage": usage});
        let (whole, whole_usage) = response_from_chat(skeleton(tools), &completion);
        assert_eq!(&whole, t.response(), "{stream}");
        assert_eq!(whole_usage, t.usage());
    }
}

#[test]
fn generated_streams_ended_by_fail_or_cancel_are_well_formed() {
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    for round in 0..500 {
        let stream = random_chat_stream(&mut rng);
        let mut t = StreamTranslator::new(skeleton(json!({"tools": codex_tools()})));
        let mut out = Vec::new();
        t.start(&mut out);
        for data in stream
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
        {
            t.push(data, &mut out);
        }
        if round % 2 == 0 {
            t.fail("cut", &mut out);
        } else {
            t.cancel(&mut out);
        }
        t.finish(&mut out);
        let events = decode(&out);
        for (i, (name, data)) in events.iter().enumerate() {
            assert_eq!(data["type"], json!(name));
            assert_eq!(data["sequence_number"], json!(i));
        }
        assert!(t.is_done());
        let status = t.response()["status"].as_str().unwrap();
        assert!(
            ["failed", "cancelled", "completed", "incomplete"].contains(&status),
            "{status}"
        );
    }
}

#[test]
fn garbage_never_panics_and_output_stays_well_formed() {
    let mut rng = Rng(42);
    let alphabet =
        b"data: {}[]\"\n:event,0123abcusagechoicesdeltatool_callsindexcontentreasoning_error";
    for _ in 0..3_000 {
        let len = rng.below(300) as usize;
        let garbage: Vec<u8> = (0..len)
            .map(|_| alphabet[rng.below(alphabet.len() as u64) as usize])
            .collect();
        let mut t = StreamTranslator::new(skeleton(json!({})));
        let events = run_cut(&mut t, &garbage, &[]);
        assert_well_formed(&events, &t);
    }
    // Hostile but valid JSON.
    let hostile = [
        json!(null),
        json!([]),
        json!("str"),
        json!({"choices": "x"}),
        json!({"choices": [null, 1]}),
        json!({"choices": [{"delta": "x"}]}),
        json!({"choices": [{"delta": {"content": 5, "tool_calls": {}}}]}),
        json!({"usage": "lots"}),
        json!({"usage": {"prompt_tokens": -1}}),
        json!({"error": "plain string"}),
        json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 99999999999u64, "function": {"name": 1, "arguments": ["a"]}}]}}]}),
    ];
    for value in hostile {
        let mut t = StreamTranslator::new(skeleton(json!({})));
        let events = run(&mut t, &format!("data: {value}\n\n"));
        assert_well_formed(&events, &t);
    }
    // Every truncation of the recorded streams.
    for name in [
        "openai_tools.sse",
        "openai_reasoning.sse",
        "openai_text.sse",
        "openai_refusal.sse",
    ] {
        let f = fixture(name);
        for end in (0..f.len()).step_by(5) {
            let mut t = StreamTranslator::new(skeleton(json!({})));
            let events = run_cut(&mut t, &f.as_bytes()[..end], &[]);
            assert_well_formed(&events, &t);
        }
    }
}

#[test]
fn hostile_requests_never_panic() {
    let mut rng = Rng(7);
    let pieces = [
        json!(null),
        json!(1),
        json!("s"),
        json!([]),
        json!({}),
        json!({"type": "message"}),
        json!({"type": "message", "role": "user", "content": 5}),
        json!({"type": "function_call"}),
        json!({"type": "function_call_output", "output": {"x": 1}}),
        json!({"type": "reasoning", "summary": "x"}),
        json!({"role": "assistant", "content": [1, null, {"type": "output_text"}]}),
        json!({"role": "user", "content": [{"type": "input_image"}]}),
        json!({"type": "custom_tool_call"}),
        json!({"type": "custom_tool_call", "name": 3, "input": {"x": 1}, "namespace": []}),
        json!({"type": "custom_tool_call_output", "output": [1, {"type": "input_image"}]}),
        json!({"type": "custom"}),
        json!({"type": "custom", "name": "c", "format": {"type": "grammar", "syntax": 7, "definition": null}}),
        json!({"type": "custom", "name": "c", "format": "lark"}),
        json!({"type": "namespace", "name": "n", "tools": [{"type": "custom", "format": {"type": "grammar"}}]}),
    ];
    for _ in 0..2_000 {
        let items: Vec<Value> = (0..rng.below(6))
            .map(|_| pieces[rng.below(pieces.len() as u64) as usize].clone())
            .collect();
        let p = params(json!({
            "instructions": pieces[rng.below(pieces.len() as u64) as usize],
            "tools": [pieces[rng.below(pieces.len() as u64) as usize], {"type": "namespace", "tools": "x"}],
            "tool_choice": pieces[rng.below(pieces.len() as u64) as usize],
            "text": {"format": pieces[rng.below(pieces.len() as u64) as usize]},
            "reasoning": pieces[rng.below(pieces.len() as u64) as usize],
        }));
        let _ = input_items(&Value::Array(items.clone()));
        let _ = request(&p, &items, "up", Some(1));
        let _ = response_skeleton(&p, "resp_x", "m", 0);
    }
}
