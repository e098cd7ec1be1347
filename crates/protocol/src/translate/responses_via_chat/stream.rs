//! Chat-completions chunks → the Responses event stream.
//!
//! [`StreamTranslator`] is a state machine fed one upstream chunk at a time.
//! It keeps the Response object the events describe, and numbers the events
//! it emits: every event carries `type` and a 0-based, gap-free
//! `sequence_number`, and is framed as `event: <type>\ndata: <json>`.
//!
//! Deltas stream as they come, except a custom tool's input: the upstream
//! writes it as JSON arguments (`{"input": "…"}`), which decode only whole,
//! so a custom call is announced with all its events when it closes.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{encode_event, flat_name, usage_json, CUSTOM_INPUT};
use crate::openai::Usage as OpenAiUsage;
use crate::translate::str_field;
use crate::usage::TokenUsage;

/// The kind of content part open in a message item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Text,
    Refusal,
}

/// The output item receiving deltas. OpenAI streams one item at a time, so
/// a new kind of delta closes the open item before opening the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    None,
    Reasoning {
        output: usize,
    },
    Message {
        output: usize,
        content: usize,
        part: Part,
    },
    /// A function or custom tool call, by its position in
    /// `StreamTranslator::calls`.
    Call {
        slot: usize,
    },
}

/// A tool call seen in the upstream stream and the output item it became.
#[derive(Debug, Clone)]
struct CallSlot {
    tool_index: u64,
    call_id: String,
    output: usize,
    /// Set for a call to one of the client's custom tools.
    custom: Option<CustomCall>,
}

/// A call to a custom (freeform) tool, offered upstream as a function with
/// one string parameter. Its arguments are JSON (`{"input": "…"}`) and only
/// the whole text decodes, so they are kept here and the item is announced,
/// input and all, when the call closes.
#[derive(Debug, Clone)]
struct CustomCall {
    name: String,
    namespace: Option<String>,
    arguments: String,
}

/// What a chat function name stands for among the client's tools, when it
/// is not simply a function of that name.
#[derive(Debug, Clone)]
struct ClientTool {
    /// The function name the upstream sees.
    flat: String,
    name: String,
    namespace: Option<String>,
    custom: bool,
}

/// Turns a chat-completions chunk stream into the Responses event stream,
/// keeping the Response object it describes.
///
/// The Response object is the one source of truth: deltas are appended to
/// its items in place, the `.done` events and the terminal event read them
/// back, and [`StreamTranslator::response`] is always current.
#[derive(Debug)]
pub struct StreamTranslator {
    response: Value,
    /// The response id without `resp_`, for deterministic item ids.
    suffix: String,
    sequence: u64,
    started: bool,
    done: bool,
    open: Open,
    calls: Vec<CallSlot>,
    finish_reason: Option<String>,
    usage: Option<TokenUsage>,
    reasoning_tokens: u64,
    produced: String,
    /// Chat function names of the client's namespaced and custom tools.
    tools: Vec<ClientTool>,
    completed_at: Option<i64>,
    /// Count events without encoding them (the non-streamed path).
    silent: bool,
}

impl StreamTranslator {
    /// `skeleton` from [`response_skeleton`](super::response_skeleton).
    /// Item ids derive from the response id: for `resp_abc`, `msg_abc_0`,
    /// `fc_abc_1`, `rs_abc_2`, `ctc_abc_3` (kind, id, output index).
    pub fn new(skeleton: Value) -> Self {
        let mut response = match skeleton {
            Value::Object(_) => skeleton,
            _ => json!({}),
        };
        if !response.get("output").is_some_and(Value::is_array) {
            response["output"] = json!([]);
        }
        let id = str_field(&response, "id").unwrap_or("resp_tollgate");
        let suffix = id.strip_prefix("resp_").unwrap_or(id).to_string();
        let tools = client_tools(response.get("tools"));
        StreamTranslator {
            response,
            suffix,
            sequence: 0,
            started: false,
            done: false,
            open: Open::None,
            calls: Vec::new(),
            finish_reason: None,
            usage: None,
            reasoning_tokens: 0,
            produced: String::new(),
            tools,
            completed_at: None,
            silent: false,
        }
    }

    /// A translator that counts events without encoding them, for the
    /// non-streamed path ([`response_from_chat`](super::response_from_chat)).
    pub(super) fn silent(skeleton: Value) -> Self {
        StreamTranslator {
            silent: true,
            ..StreamTranslator::new(skeleton)
        }
    }

    /// The Response object, by value.
    pub(super) fn into_response(self) -> Value {
        self.response
    }

    /// The time recorded as `completed_at` when the response completes
    /// (default: `created_at`; this module reads no clock).
    pub fn set_completed_at(&mut self, unix_seconds: i64) {
        self.completed_at = Some(unix_seconds);
    }

    /// Emits `response.created` and `response.in_progress`. Once; implied by
    /// the first `push`, `finish` or `fail`.
    pub fn start(&mut self, out: &mut Vec<Bytes>) {
        if self.started || self.done {
            return;
        }
        self.started = true;
        // `created` shows the status the gateway announced (`queued` for a
        // background response); from here on the response is in progress.
        let created = self.response.clone();
        self.emit("response.created", json!({"response": created}), out);
        self.response["status"] = json!("in_progress");
        let in_progress = self.response.clone();
        self.emit(
            "response.in_progress",
            json!({"response": in_progress}),
            out,
        );
    }

    /// Feeds one upstream chunk's SSE `data`. `[DONE]` and anything that is
    /// not a JSON object are ignored; an `error` object fails the response.
    pub fn push(&mut self, data: &str, out: &mut Vec<Bytes>) {
        if self.done {
            return;
        }
        let Ok(chunk) = serde_json::from_str::<Value>(data.trim()) else {
            return;
        };
        self.push_chunk(&chunk, out);
    }

    pub(super) fn push_chunk(&mut self, chunk: &Value, out: &mut Vec<Bytes>) {
        if self.done || !chunk.is_object() {
            return;
        }
        self.start(out);
        if let Some(error) = chunk.get("error").filter(|e| !e.is_null()) {
            let message = str_field(error, "message")
                .or_else(|| error.as_str())
                .unwrap_or("The upstream stream failed.");
            self.fail(message, out);
            return;
        }
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
            self.observe_usage(usage);
        }
        let Some(choice) = first_choice(chunk) else {
            return;
        };
        let delta = choice.get("delta").unwrap_or(&Value::Null);
        for field in ["reasoning_content", "reasoning"] {
            if let Some(text) = str_field(delta, field).filter(|t| !t.is_empty()) {
                self.reasoning_delta(text, out);
                break;
            }
        }
        if let Some(text) = str_field(delta, "content").filter(|t| !t.is_empty()) {
            self.message_delta(Part::Text, text, out);
        }
        if let Some(text) = str_field(delta, "refusal").filter(|t| !t.is_empty()) {
            self.message_delta(Part::Refusal, text, out);
        }
        if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
            for call in calls.iter().filter(|c| c.is_object()) {
                self.tool_call_delta(call, out);
            }
        }
        if let Some(finish) = str_field(choice, "finish_reason") {
            self.finish_reason = Some(finish.to_string());
        }
    }

    fn observe_usage(&mut self, usage: &Value) {
        if let Ok(parsed) = OpenAiUsage::deserialize(usage) {
            self.usage = Some(TokenUsage::from(&parsed));
            self.reasoning_tokens = usage
                .pointer("/completion_tokens_details/reasoning_tokens")
                .and_then(Value::as_u64)
                .unwrap_or(0);
        }
    }

    /// Upstream ended: closes the open item, then `response.completed`, or
    /// `response.incomplete` when the upstream stopped at its token limit
    /// (`length`) or its content filter. Idempotent.
    pub fn finish(&mut self, out: &mut Vec<Bytes>) {
        if self.done {
            return;
        }
        self.start(out);
        let incomplete = match self.finish_reason.as_deref() {
            Some("length") => Some("max_output_tokens"),
            Some("content_filter") => Some("content_filter"),
            _ => None,
        };
        self.close(
            if incomplete.is_some() {
                "incomplete"
            } else {
                "completed"
            },
            out,
        );
        let completed_at = self
            .completed_at
            .or_else(|| self.response.get("created_at").and_then(Value::as_i64));
        let (status, kind) = match incomplete {
            Some(reason) => {
                self.response["incomplete_details"] = json!({"reason": reason});
                ("incomplete", "response.incomplete")
            }
            None => {
                self.response["completed_at"] = json!(completed_at);
                ("completed", "response.completed")
            }
        };
        self.end(status, kind, out);
    }

    /// Upstream broke: `response.failed` with a `server_error`. Items so far
    /// stay in the output; the one cut short is `incomplete`.
    pub fn fail(&mut self, message: &str, out: &mut Vec<Bytes>) {
        if self.done {
            return;
        }
        self.start(out);
        self.abandon_open_item();
        self.response["error"] = json!({"code": "server_error", "message": message});
        self.end("failed", "response.failed", out);
    }

    /// The client cancelled a background response. OpenAI's stream has no
    /// cancellation event, so nothing is emitted; the Response object shows
    /// status `cancelled` with the item cut short `incomplete`.
    pub fn cancel(&mut self, _out: &mut Vec<Bytes>) {
        if self.done {
            return;
        }
        self.abandon_open_item();
        self.response["status"] = json!("cancelled");
        self.set_usage();
        self.done = true;
    }

    fn end(&mut self, status: &str, kind: &'static str, out: &mut Vec<Bytes>) {
        self.response["status"] = json!(status);
        self.set_usage();
        let response = self.response.clone();
        self.emit(kind, json!({"response": response}), out);
        self.done = true;
    }

    fn set_usage(&mut self) {
        if let Some(usage) = self.usage {
            self.response["usage"] = usage_json(&usage, self.reasoning_tokens);
        }
    }

    /// The upstream's usage, once its usage chunk has passed.
    pub fn usage(&self) -> Option<TokenUsage> {
        self.usage
    }

    /// The Response object as it stands (final after finish/fail/cancel).
    pub fn response(&self) -> &Value {
        &self.response
    }

    /// Everything the model produced so far (text, refusals, reasoning,
    /// function arguments), to estimate output tokens when no usage came.
    pub fn produced_text(&self) -> String {
        let mut text = self.produced.clone();
        if let Some(custom) = self.open_custom_call() {
            text.push_str(&custom.arguments);
        }
        text
    }

    /// True after finish, fail or cancel.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Events emitted so far, which is the next `sequence_number`.
    pub fn events_emitted(&self) -> u64 {
        self.sequence
    }

    // --- events ------------------------------------------------------------

    /// Emits one event: `type` first, then `fields`, then its sequence number.
    fn emit(&mut self, kind: &'static str, fields: Value, out: &mut Vec<Bytes>) {
        let sequence = self.sequence;
        self.sequence += 1;
        if self.silent {
            return;
        }
        let mut event = Map::new();
        event.insert("type".into(), json!(kind));
        if let Value::Object(fields) = fields {
            event.extend(fields);
        }
        event.insert("sequence_number".into(), json!(sequence));
        out.push(encode_event(kind, &Value::Object(event)));
    }

    /// `response.output_text.delta`, the event a stream is mostly made of,
    /// written directly rather than through a `Value` (same fields, same
    /// order as [`Self::emit`]): it halves the emulation's cost per event.
    fn emit_text_delta(
        &mut self,
        content: usize,
        delta: &str,
        item_id: &Value,
        output: usize,
        out: &mut Vec<Bytes>,
    ) {
        let sequence = self.sequence;
        self.sequence += 1;
        if self.silent {
            return;
        }
        let delta = Value::from(delta);
        out.push(Bytes::from(format!(
            "event: response.output_text.delta\ndata: {{\"type\":\"response.output_text.delta\",\
             \"content_index\":{content},\"delta\":{delta},\"item_id\":{item_id},\"logprobs\":[],\
             \"output_index\":{output},\"sequence_number\":{sequence}}}\n\n"
        )));
    }

    fn output_len(&self) -> usize {
        self.response["output"].as_array().map_or(0, Vec::len)
    }

    fn item(&self, output: usize) -> &Value {
        self.response["output"].get(output).unwrap_or(&Value::Null)
    }

    fn item_mut(&mut self, output: usize) -> Option<&mut Value> {
        self.response.get_mut("output")?.get_mut(output)
    }

    fn item_id(&self, output: usize) -> Value {
        self.item(output).get("id").cloned().unwrap_or(Value::Null)
    }

    /// Adds an output item and announces it.
    fn add_item(&mut self, item: Value, out: &mut Vec<Bytes>) -> usize {
        let output = self.output_len();
        if let Some(Value::Array(items)) = self.response.get_mut("output") {
            items.push(item.clone());
        }
        self.emit(
            "response.output_item.added",
            json!({"item": item, "output_index": output}),
            out,
        );
        output
    }

    /// Marks an item finished and announces it whole.
    fn done_item(&mut self, output: usize, status: &str, out: &mut Vec<Bytes>) {
        if let Some(item) = self.item_mut(output) {
            // Reasoning items carry a status only when cut short, as OpenAI's.
            if item["type"] != "reasoning" || status != "completed" {
                item["status"] = json!(status);
            }
        }
        let item = self.item(output).clone();
        self.emit(
            "response.output_item.done",
            json!({"item": item, "output_index": output}),
            out,
        );
    }

    /// Appends `delta` to the string at `pointer` inside item `output`.
    fn append(&mut self, output: usize, pointer: &str, delta: &str) {
        if let Some(Value::String(text)) =
            self.item_mut(output).and_then(|i| i.pointer_mut(pointer))
        {
            text.push_str(delta);
        }
        self.produced.push_str(delta);
    }

    fn text_at(&self, output: usize, pointer: &str) -> String {
        self.item(output)
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    }

    // --- reasoning ---------------------------------------------------------

    fn reasoning_delta(&mut self, text: &str, out: &mut Vec<Bytes>) {
        let output = match self.open {
            Open::Reasoning { output } => output,
            _ => {
                self.close("completed", out);
                self.open_reasoning(out)
            }
        };
        self.append(output, "/summary/0/text", text);
        let item_id = self.item_id(output);
        self.emit(
            "response.reasoning_summary_text.delta",
            json!({"delta": text, "item_id": item_id, "output_index": output, "summary_index": 0}),
            out,
        );
    }

    fn open_reasoning(&mut self, out: &mut Vec<Bytes>) -> usize {
        let id = format!("rs_{}_{}", self.suffix, self.output_len());
        let output = self.add_item(json!({"id": id, "type": "reasoning", "summary": []}), out);
        let part = json!({"type": "summary_text", "text": ""});
        if let Some(item) = self.item_mut(output) {
            item["summary"] = json!([part]);
        }
        self.emit(
            "response.reasoning_summary_part.added",
            json!({"item_id": id, "output_index": output, "part": part, "summary_index": 0}),
            out,
        );
        self.open = Open::Reasoning { output };
        output
    }

    fn close_reasoning(&mut self, output: usize, status: &str, out: &mut Vec<Bytes>) {
        let item_id = self.item_id(output);
        let text = self.text_at(output, "/summary/0/text");
        self.emit(
            "response.reasoning_summary_text.done",
            json!({"item_id": item_id, "output_index": output, "summary_index": 0, "text": text}),
            out,
        );
        self.emit(
            "response.reasoning_summary_part.done",
            json!({"item_id": item_id, "output_index": output, "part": {"type": "summary_text", "text": text}, "summary_index": 0}),
            out,
        );
        self.done_item(output, status, out);
    }

    // --- message -----------------------------------------------------------

    fn message_delta(&mut self, part: Part, text: &str, out: &mut Vec<Bytes>) {
        let (output, content) = match self.open {
            Open::Message {
                output,
                content,
                part: open,
            } if open == part => (output, content),
            Open::Message {
                output,
                content,
                part: open,
            } => {
                self.close_part(output, content, open, out);
                let content = self.add_part(output, part, out);
                (output, content)
            }
            _ => {
                self.close("completed", out);
                let id = format!("msg_{}_{}", self.suffix, self.output_len());
                let output = self.add_item(
                    json!({"id": id, "type": "message", "status": "in_progress", "content": [], "role": "assistant"}),
                    out,
                );
                (output, self.add_part(output, part, out))
            }
        };
        self.open = Open::Message {
            output,
            content,
            part,
        };
        let item_id = self.item_id(output);
        match part {
            Part::Text => {
                self.append(output, &format!("/content/{content}/text"), text);
                self.emit_text_delta(content, text, &item_id, output, out);
            }
            Part::Refusal => {
                self.append(output, &format!("/content/{content}/refusal"), text);
                self.emit(
                    "response.refusal.delta",
                    json!({"content_index": content, "delta": text, "item_id": item_id, "output_index": output}),
                    out,
                );
            }
        }
    }

    fn add_part(&mut self, output: usize, part: Part, out: &mut Vec<Bytes>) -> usize {
        let value = match part {
            Part::Text => {
                json!({"type": "output_text", "annotations": [], "logprobs": [], "text": ""})
            }
            Part::Refusal => json!({"type": "refusal", "refusal": ""}),
        };
        let mut content = 0;
        if let Some(Value::Array(parts)) = self.item_mut(output).and_then(|i| i.get_mut("content"))
        {
            content = parts.len();
            parts.push(value.clone());
        }
        let item_id = self.item_id(output);
        self.emit(
            "response.content_part.added",
            json!({"content_index": content, "item_id": item_id, "output_index": output, "part": value}),
            out,
        );
        content
    }

    fn close_part(&mut self, output: usize, content: usize, part: Part, out: &mut Vec<Bytes>) {
        let item_id = self.item_id(output);
        match part {
            Part::Text => {
                let text = self.text_at(output, &format!("/content/{content}/text"));
                self.emit(
                    "response.output_text.done",
                    json!({"content_index": content, "item_id": item_id, "logprobs": [], "output_index": output, "text": text}),
                    out,
                );
            }
            Part::Refusal => {
                let refusal = self.text_at(output, &format!("/content/{content}/refusal"));
                self.emit(
                    "response.refusal.done",
                    json!({"content_index": content, "item_id": item_id, "output_index": output, "refusal": refusal}),
                    out,
                );
            }
        }
        let value = self
            .item(output)
            .pointer(&format!("/content/{content}"))
            .cloned()
            .unwrap_or(Value::Null);
        self.emit(
            "response.content_part.done",
            json!({"content_index": content, "item_id": item_id, "output_index": output, "part": value}),
            out,
        );
    }

    // --- tool calls --------------------------------------------------------

    /// One `tool_calls[]` piece. The first piece of a call names it; later
    /// pieces add argument fragments and are matched by `id` when they
    /// repeat one, else by `index` (some servers number every call 0 but
    /// give each its own id).
    fn tool_call_delta(&mut self, call: &Value, out: &mut Vec<Bytes>) {
        let tool_index = call.get("index").and_then(Value::as_u64).unwrap_or(0);
        let id = str_field(call, "id").filter(|id| !id.is_empty());
        let name = call
            .pointer("/function/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let arguments = call
            .pointer("/function/arguments")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let slot = match self.find_call(tool_index, id) {
            Some(slot) => slot,
            None => self.open_call(tool_index, id, name, out),
        };
        let output = self.calls[slot].output;
        if self.open != (Open::Call { slot }) {
            // A fragment for a call already closed (a server interleaving its
            // calls, which OpenAI never does). Its `output_item.done` has
            // gone out; the stored item must stay what that event said.
            self.produced.push_str(arguments);
            return;
        }
        if let Some(custom) = self.calls[slot].custom.as_mut() {
            custom.arguments.push_str(arguments);
            return;
        }
        if !name.is_empty() && self.text_at(output, "/name").is_empty() {
            // A name that only comes after the call opened (never from
            // OpenAI) names a function call: the item was announced as one.
            let (name, namespace, _) = self.native_name(name);
            if let Some(item) = self.item_mut(output) {
                item["name"] = json!(name);
                if let Some(namespace) = namespace {
                    item["namespace"] = json!(namespace);
                }
            }
        }
        if arguments.is_empty() {
            return;
        }
        self.append(output, "/arguments", arguments);
        let item_id = self.item_id(output);
        self.emit(
            "response.function_call_arguments.delta",
            json!({"delta": arguments, "item_id": item_id, "output_index": output}),
            out,
        );
    }

    fn find_call(&self, tool_index: u64, id: Option<&str>) -> Option<usize> {
        if let Some(id) = id {
            return self.calls.iter().position(|c| c.call_id == id);
        }
        if let Open::Call { slot } = self.open {
            if self.calls[slot].tool_index == tool_index {
                return Some(slot);
            }
        }
        self.calls.iter().rposition(|c| c.tool_index == tool_index)
    }

    fn open_call(
        &mut self,
        tool_index: u64,
        id: Option<&str>,
        name: &str,
        out: &mut Vec<Bytes>,
    ) -> usize {
        self.close("completed", out);
        let output = self.output_len();
        let call_id = id
            .map(str::to_string)
            .unwrap_or_else(|| format!("call_{}_{output}", self.suffix));
        let (name, namespace, custom) = self.native_name(name);
        if custom {
            // Announced when it closes, with its decoded input.
            self.calls.push(CallSlot {
                tool_index,
                call_id,
                output,
                custom: Some(CustomCall {
                    name,
                    namespace,
                    arguments: String::new(),
                }),
            });
            let slot = self.calls.len() - 1;
            self.open = Open::Call { slot };
            return slot;
        }
        let mut item = json!({
            "id": format!("fc_{}_{output}", self.suffix),
            "type": "function_call",
            "status": "in_progress",
            "arguments": "",
            "call_id": call_id,
            "name": name,
        });
        if let Some(namespace) = namespace {
            item["namespace"] = json!(namespace);
        }
        self.add_item(item, out);
        self.calls.push(CallSlot {
            tool_index,
            call_id,
            output,
            custom: None,
        });
        let slot = self.calls.len() - 1;
        self.open = Open::Call { slot };
        slot
    }

    /// A chat function name as the client named the tool: a flattened
    /// namespaced tool goes back to its `namespace` and `name`. The flag says
    /// whether it is a custom tool.
    fn native_name(&self, name: &str) -> (String, Option<String>, bool) {
        match self.tools.iter().find(|tool| tool.flat == name) {
            Some(tool) => (tool.name.clone(), tool.namespace.clone(), tool.custom),
            None => (name.to_string(), None, false),
        }
    }

    fn open_custom_call(&self) -> Option<&CustomCall> {
        match self.open {
            Open::Call { slot } => self.calls[slot].custom.as_ref(),
            _ => None,
        }
    }

    fn close_call(&mut self, slot: usize, status: &str, out: &mut Vec<Bytes>) {
        if self.calls[slot].custom.is_some() {
            self.close_custom_call(slot, status, out);
            return;
        }
        let output = self.calls[slot].output;
        let mut arguments = self.text_at(output, "/arguments");
        // A call without parameters may stream no arguments at all; clients
        // parse them as JSON, and OpenAI sends `{}` then.
        if arguments.trim().is_empty() && status == "completed" {
            arguments = "{}".into();
            if let Some(item) = self.item_mut(output) {
                item["arguments"] = json!(arguments);
            }
        }
        let item_id = self.item_id(output);
        let name = self
            .item(output)
            .get("name")
            .cloned()
            .unwrap_or(Value::Null);
        self.emit(
            "response.function_call_arguments.done",
            json!({"arguments": arguments, "item_id": item_id, "name": name, "output_index": output}),
            out,
        );
        self.done_item(output, status, out);
    }

    /// A custom call, whole: `output_item.added` (input empty), its input
    /// in one `custom_tool_call_input.delta`, `custom_tool_call_input.done`
    /// and `output_item.done`, as OpenAI streams a custom tool call.
    fn close_custom_call(&mut self, slot: usize, status: &str, out: &mut Vec<Bytes>) {
        let CallSlot {
            call_id, custom, ..
        } = self.calls[slot].clone();
        let Some(custom) = custom else { return };
        let input = custom_input(&custom.arguments);
        let id = format!("ctc_{}_{}", self.suffix, self.output_len());
        let mut item = json!({
            "id": id,
            "type": "custom_tool_call",
            "status": "in_progress",
            "call_id": call_id,
            "input": "",
            "name": custom.name,
        });
        if let Some(namespace) = custom.namespace {
            item["namespace"] = json!(namespace);
        }
        let output = self.add_item(item, out);
        self.calls[slot].output = output;
        if !input.is_empty() {
            self.append(output, "/input", &input);
            self.emit(
                "response.custom_tool_call_input.delta",
                json!({"delta": input, "item_id": id, "output_index": output}),
                out,
            );
        }
        self.emit(
            "response.custom_tool_call_input.done",
            json!({"input": input, "item_id": id, "output_index": output}),
            out,
        );
        self.done_item(output, status, out);
    }

    // --- closing -------------------------------------------------------------

    /// Closes the open item with its `.done` events.
    fn close(&mut self, status: &str, out: &mut Vec<Bytes>) {
        match std::mem::replace(&mut self.open, Open::None) {
            Open::None => {}
            Open::Reasoning { output } => self.close_reasoning(output, status, out),
            Open::Message {
                output,
                content,
                part,
            } => {
                self.close_part(output, content, part, out);
                self.done_item(output, status, out);
            }
            Open::Call { slot } => self.close_call(slot, status, out),
        }
    }

    /// Marks the open item `incomplete` without events (the stream ends).
    /// A custom call cut short was never announced and stays out of the
    /// output: its input is not whole, and an item must not appear in the
    /// final response without its `output_item.added`.
    fn abandon_open_item(&mut self) {
        let output = match std::mem::replace(&mut self.open, Open::None) {
            Open::None => return,
            Open::Reasoning { output } | Open::Message { output, .. } => output,
            Open::Call { slot } => match &self.calls[slot].custom {
                Some(custom) => {
                    self.produced.push_str(&custom.arguments);
                    return;
                }
                None => self.calls[slot].output,
            },
        };
        if let Some(item) = self.item_mut(output) {
            item["status"] = json!("incomplete");
        }
    }
}

/// The choice with index 0 (the only one a Responses client asked for).
fn first_choice(chunk: &Value) -> Option<&Value> {
    let choices = chunk.get("choices")?.as_array()?;
    choices
        .iter()
        .find(|c| c.get("index").and_then(Value::as_u64).unwrap_or(0) == 0)
        .filter(|c| c.is_object())
}

/// A custom call's input from the arguments of the function it was offered
/// as: the string in `{"input": "…"}`, else the arguments as they are (a
/// model that wrote the raw text itself).
fn custom_input(arguments: &str) -> String {
    match serde_json::from_str::<Value>(arguments) {
        Ok(Value::Object(fields)) => match fields.get(CUSTOM_INPUT) {
            Some(Value::String(input)) => input.clone(),
            _ => arguments.to_string(),
        },
        _ => arguments.to_string(),
    }
}

/// The client's tools that a chat function name does not name plainly:
/// custom tools, and the functions and custom tools inside `namespace` tools
/// under their flattened names (unless a top-level tool has that name).
fn client_tools(tools: Option<&Value>) -> Vec<ClientTool> {
    let tools = tools
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let kind = |tool: &Value| str_field(tool, "type").unwrap_or_default().to_string();
    let top_level: Vec<&str> = tools
        .iter()
        .filter(|t| ["function", "custom"].contains(&kind(t).as_str()))
        .filter_map(|t| str_field(t, "name"))
        .collect();
    let mut map = Vec::new();
    for tool in tools {
        match kind(tool).as_str() {
            "custom" => {
                let name = str_field(tool, "name").unwrap_or_default();
                map.push(ClientTool {
                    flat: name.to_string(),
                    name: name.to_string(),
                    namespace: None,
                    custom: true,
                });
            }
            "namespace" => {
                let namespace = str_field(tool, "name").unwrap_or_default();
                for inner in tool
                    .get("tools")
                    .and_then(Value::as_array)
                    .map(Vec::as_slice)
                    .unwrap_or(&[])
                {
                    let custom = match kind(inner).as_str() {
                        "function" => false,
                        "custom" => true,
                        _ => continue,
                    };
                    let name = str_field(inner, "name").unwrap_or_default();
                    let flat = flat_name(namespace, name);
                    if !top_level.contains(&flat.as_str()) {
                        map.push(ClientTool {
                            flat,
                            name: name.to_string(),
                            namespace: Some(namespace.to_string()),
                            custom,
                        });
                    }
                }
            }
            _ => {}
        }
    }
    map
}
