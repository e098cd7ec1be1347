//! `mock-upstream`: one scriptable OpenAI and Anthropic upstream for
//! Tollgate's Rust integration tests (in process, through [`start`]), its
//! end-to-end tests and its benchmark (the `mock-upstream` binary).
//!
//! # Routes
//!
//! | Route | Answer |
//! |---|---|
//! | `POST /v1/chat/completions` | a chat completion, whole or streamed (`"stream": true`; the usage chunk only with `stream_options.include_usage`) |
//! | `POST /v1/completions` | a legacy completion (text only), whole or streamed |
//! | `POST /v1/embeddings` | one vector `[0.1, 0.2]`; usage: the input count |
//! | `POST /v1/messages` | an Anthropic message, whole or streamed |
//! | `POST /v1/messages/count_tokens` | `{"input_tokens": N}`, N the whitespace-separated words of the text in `system` and `messages` |
//! | `POST /v1/responses` | a Response, whole or streamed (text and tool call only) |
//! | `GET /__mock/requests[?marker=TEXT]` | the request log (with `--record` / [`Options::record`]); with `marker`, the requests whose JSON body contains TEXT |
//! | `DELETE /__mock/requests` | empties the log (`seq` keeps counting) |
//! | `POST /__mock/script` | queues a script (or a JSON array of scripts): each answers one request, the next ones, in order |
//! | `DELETE /__mock/script` | empties the queue |
//! | `PUT /__mock/default` | a script for every request from now on (replacing the previous one) |
//! | `DELETE /__mock/default` | removes it |
//!
//! Any other path is a 404 (in OpenAI's error shape). The `/__mock/` routes
//! need no key; with keys configured (`--key`, repeatable; [`Options::keys`],
//! [`Control::accept_key`]), the other routes need `Authorization: Bearer
//! KEY` (OpenAI, Responses) or `x-api-key: KEY` with an `anthropic-version`
//! (Anthropic), KEY one of them: a 401 in the API's error shape otherwise. A body that is not a JSON object is a 400. Messages
//! and count_tokens requests are checked as Anthropic checks them (`model`,
//! `max_tokens`, roles, content, every `tool_result` answering a `tool_use`
//! of the turn before and every `tool_use` answered in the turn after,
//! tools' `name` and `input_schema`): a 400 `invalid_request_error`
//! otherwise. Requests refused so are not scripted (they take no script
//! from the queue).
//!
//! # Built-in answers
//!
//! What a request gets when no script says otherwise (constants in [`answers`]):
//!
//! * OpenAI: the text `"Hello from the mock"` in 4 pieces; when the request
//!   offers `tools`, instead a call to `get_weather` (id `call_mock_1`,
//!   arguments `{"city":"Paris"}` in 2 pieces). Usage: 12 prompt tokens, 2 of
//!   them cached; completion tokens: the number of pieces.
//! * Anthropic: the text `"Hello from the Claude mock"` in 5 pieces; when
//!   the last user turn holds a `tool_result`, the text `"The tool said: " +`
//!   its text (3 pieces); else, when the request offers `tools`, a `tool_use`
//!   of `get_weather` (id `toolu_mock_1`, input `{"city": "Paris"}` in 3
//!   pieces). Usage: 15 uncached input tokens, 3 cache reads, 2 cache
//!   writes; output tokens: the number of pieces.
//! * Responses: the OpenAI text, same usage.
//! * `[slow]` in the prompt (`messages`, `system`, `input`, `instructions`
//!   or `prompt`) of a text answer: 50 pieces `"s0", " s1", … " s49"`, each
//!   100 ms after the one before, the first too (a whole answer waits for
//!   all of them).
//! * `[break]` in the prompt of a streamed text answer: the stream breaks
//!   after 2 pieces.
//! * The model of the answer is the request's.
//!
//! # Scripts
//!
//! A script is a JSON object; every field is optional:
//!
//! ```json
//! {
//!   "status": 503,                   // answer this status; not 2xx: an error body in the API's shape
//!   "body": {"input_tokens": 42},    // answer this JSON body as is (status 200 unless "status")
//!   "headers": {"retry-after": "1"}, // added to the answer
//!   "text": ["Hel", "lo"],           // the answer's text, piece by piece
//!   "tool_call": {"id": "call_1", "name": "f", "arguments": ["{\"a\":", "1}"]},  // or null: none
//!   "usage": {"input": 10, "cached": 2, "cache_write": 0, "output": 5, "reasoning": 0},  // or "empty", or null
//!   "fault": "reset",                // "close" or "reset" the connection instead of answering; null: none
//!   "break_after": 3,                // break the connection once 3 pieces are out; null: no break
//!   "head_delay_ms": 400,            // wait before the answer's head
//!   "first_piece_delay_ms": 3000,    // wait before the first piece
//!   "chunk_delay_ms": 100,           // wait before each piece but the first
//!   "openai": {…}, "anthropic": {…}, "responses": {…},  // fields for requests of one API only
//!   "keys": {"sk-second": {"status": 429, "headers": {"retry-after": "60"}}}  // … carrying one key only
//! }
//! ```
//!
//! * **Pieces.** The answer is its `text` pieces, then its tool call's
//!   argument pieces. A stream sends one event per piece; each piece is one
//!   output token of the default usage. Scripting `text` or `tool_call`
//!   (even as `null`) turns the built-in conversational answers off: the
//!   answer is exactly the text and tool call scripted (`[slow]` and
//!   `[break]` then do nothing). `tool_call.id` defaults to `call_mock_1`,
//!   `name` to `get_weather`, `arguments` (a string or a list of pieces) to
//!   `{}`. A legacy completion and an embedding ignore the tool call.
//! * **Usage.** Counts, each in its API's field: `input` is OpenAI's
//!   `prompt_tokens` (cached included), Anthropic's `input_tokens` (cache
//!   excluded), Responses' `input_tokens`; `cached` is OpenAI's
//!   `prompt_tokens_details.cached_tokens` (left out when unset and not
//!   built in), Anthropic's `cache_read_input_tokens`; `cache_write` is
//!   Anthropic's `cache_creation_input_tokens`; `output` is
//!   `completion_tokens` / `output_tokens` (default: the number of pieces);
//!   `reasoning` is `completion_tokens_details.reasoning_tokens` /
//!   `output_tokens_details.reasoning_tokens` (left out when unset).
//!   Unset counts keep the layer below's, then the built-in numbers.
//!   `"empty"` reports `usage: {}`; `null` reports no usage at all (no
//!   field, no usage chunk, no `"usage":null` in chunks).
//! * **Errors.** A `status` that is not 2xx without a `body` answers
//!   `{"error": {"message": "Incorrect API key provided: KEY", "type": …,
//!   "param": null, "code": "mock_failure"}}` (OpenAI, Responses) or
//!   `{"type": "error", "error": {"type": …, "message": "bad request for
//!   key KEY"}}` (Anthropic), the type following the status (Anthropic:
//!   `authentication_error` for 401, `rate_limit_error` for 429,
//!   `overloaded_error` for 529, `api_error` for other 5xx; OpenAI:
//!   `requests` for 429, `server_error` for 5xx, else
//!   `invalid_request_error`). KEY is the key the request carried (`(none)`
//!   without one), so that a test can check a gateway hides it.
//! * **Faults.** `close` closes the connection, `reset` resets it (a zero
//!   linger), after the request was read and before any byte of the
//!   answer. `break_after: N` breaks a stream once N pieces are out (before
//!   anything else is sent; with 0, before the first piece; no break when
//!   the answer has fewer than N pieces); a whole answer then sends half its
//!   bytes and breaks. A break waits 50 ms, then fails the body (the
//!   connection ends without the end of the answer).
//! * **Delays.** `head_delay_ms` holds the whole answer (a fault or an
//!   error included). A stream sends its head and the events before the
//!   pieces (OpenAI's role chunk, Anthropic's `message_start`…) at once,
//!   then waits `first_piece_delay_ms` before the first piece and
//!   `chunk_delay_ms` before each other piece; a whole answer waits as long
//!   in all before it is sent.
//!
//! **Layers.** A request's script is, bottom to top: the built-in answers;
//! the start-up script ([`Options::script`], `--script`, `--chunks`…); the
//! default set by `PUT /__mock/default`; the next script of the queue
//! (`POST /__mock/script`); a script in the prompt, `[mock-script:{…}]`
//! (the JSON object right after the colon, then `]`); a script in the
//! request header `x-mock-script`. Each layer sets the fields it has: its
//! own, then its section for the request's API, then its section for the
//! request's key (a key section holds fields only, no sections); `usage`
//! counts merge count by count. A script that does not parse is answered 400
//! (`"type": "mock_error"`).
//!
//! # The request log
//!
//! Each request, as JSON: `{"seq", "api" ("openai" | "anthropic" |
//! "responses"), "method", "path" (no query), "query", "headers" (names in
//! lower case), "body" (parsed JSON, or null), "raw_body" (only when the body
//! is not JSON), "stream", "pieces" (of the answer), "sent" (pieces produced
//! so far), "state", "status"}`. `state` is `running` while the answer is
//! produced, then `done`, `aborted` (the client went away first), `broken`
//! (`break_after`), `rejected` (a 4xx before any script: key, route, body,
//! checks) or `failed` (a scripted error status or fault).
//!
//! # Scenarios
//!
//! The binary's `--scenario NAME` replaces the scripted answers by a named
//! scenario that scripts whole turns of a real CLI from what each request
//! holds, and records every request to `--record-file` (JSON lines) and
//! `GET /__requests`: `codex-chat` and `codex-responses` ([`scenario::codex`],
//! for the Codex CLI through Tollgate and alone), `claude-code`
//! ([`scenario::claude_code`], for the Claude Code CLI) and
//! `claude-code-front` ([`scenario::front`], a recording proxy before
//! Tollgate, `--target URL`).

pub mod answers;
mod control;
pub mod media;
mod plan;
mod record;
pub mod render;
pub mod scenario;
mod script;
mod server;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use record::{Recorded, State};
pub use scenario::Scenario;
pub use script::{Api, Fault, Script, ToolCall, Usage};
pub use server::Options;

use server::Shared;

/// A mock running in this process, on 127.0.0.1. Dropping it stops the
/// server (connections already open finish what they were doing). It
/// dereferences to its [`Control`].
pub struct Mock {
    /// `http://127.0.0.1:PORT/v1`: a provider's `base_url`.
    pub url: String,
    pub addr: SocketAddr,
    control: Control,
    task: JoinHandle<()>,
}

/// Reads a mock's log and scripts its answers; clones share the mock (to
/// script it from another task).
#[derive(Clone)]
pub struct Control {
    shared: Arc<Shared>,
}

/// Starts a mock on a free port of 127.0.0.1, on the current Tokio runtime.
pub async fn start(options: Options) -> std::io::Result<Mock> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let shared = Arc::new(Shared::new(options));
    let serving = shared.clone();
    let task = tokio::spawn(async move {
        let _ = server::serve(listener, serving).await;
    });
    Ok(Mock {
        url: format!("http://{addr}/v1"),
        addr,
        control: Control { shared },
        task,
    })
}

/// What the mock answers `body` (a request's JSON) on `api` under `script`
/// (every layer merged over the built-in answers): the text, tool call and
/// usage, without how they are delivered (delays, breaks, faults).
pub fn answer(api: Api, body: &serde_json::Value, script: &Script) -> render::Answer {
    plan::plan(api, body, script).answer
}

/// Serves a mock on `listener` until it fails (the binary's main loop).
pub async fn serve(listener: TcpListener, options: Options) -> std::io::Result<()> {
    server::serve(listener, Arc::new(Shared::new(options))).await
}

impl Mock {
    /// A handle on the mock, for another task.
    pub fn control(&self) -> Control {
        self.control.clone()
    }
}

impl std::ops::Deref for Mock {
    type Target = Control;

    fn deref(&self) -> &Control {
        &self.control
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Control {
    /// The requests received so far (with [`Options::record`]; else none).
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared
            .recorder()
            .map(|r| r.snapshot())
            .unwrap_or_default()
    }

    /// Forgets the requests received so far.
    pub fn clear_requests(&self) {
        if let Some(r) = self.shared.recorder() {
            r.clear();
        }
    }

    /// Queues `script` for the next request that reaches the answer (after
    /// the scripts queued before it).
    pub fn push(&self, script: Script) {
        self.shared.push(vec![script]);
    }

    /// A script for every request from now on, over the start-up script
    /// (replacing the previous one).
    pub fn set_default(&self, script: Script) {
        self.shared.set_default(Some(script));
    }

    /// Removes the script [`Control::set_default`] set.
    pub fn clear_default(&self) {
        self.shared.set_default(None);
    }

    /// Accepts requests carrying `key` too (and checks keys from now on).
    pub fn accept_key(&self, key: &str) {
        self.shared.accept_key(key);
    }
}
