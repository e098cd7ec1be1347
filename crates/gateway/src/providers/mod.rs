//! Upstream providers. Every kind is reached over HTTP with a JSON body;
//! what differs — how it authenticates, which protocol it speaks, how each
//! client protocol's request is turned into a call it understands and its
//! answer turned back — is one [`Adapter`] per kind, in one module each,
//! found through [`adapter`]. Nothing outside this folder asks which kind a
//! provider is.
//!
//! Adding a kind: a module implementing [`Adapter`], a variant of
//! [`ProviderKind`] (the name in the configuration) and a line in [`adapter`].

mod anthropic;
mod azure_tts;
pub mod client;
mod http;
mod keys;
mod openai;
mod search;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use protocol::openai::{CompletionRequest, EmbeddingRequest};
use protocol::translate::responses_via_chat;
use serde_json::{Map, Value};

pub use http::Provider;
pub use keys::KeyIndex;

use crate::billing::estimate::Wire;
pub use crate::config::ProviderKind;
use crate::config::{ModelSpec, ProviderConfig};
use crate::error::ApiError;
use crate::relay::transform::{BodyTransform, StreamTransform};
use crate::responses::events::ResponseEvents;

/// The adapter of a provider kind: the registry.
pub fn adapter(kind: ProviderKind) -> &'static dyn Adapter {
    match kind {
        ProviderKind::Openai => &openai::OpenAi,
        ProviderKind::Anthropic => &anthropic::Anthropic,
        ProviderKind::GoogleCse => &search::GoogleCse,
        ProviderKind::Serper => &search::Serper,
        ProviderKind::AzureTts => &azure_tts::AzureTts,
    }
}

/// What a provider kind knows. Each method that builds a call is pure: it
/// turns a client's request into the upstream's, and says how the answer
/// goes back; sending and metering are the relay's.
pub trait Adapter: Send + Sync {
    /// The protocol its answers and its errors come in.
    fn wire(&self) -> Wire;

    /// Headers every call carries (the client's forwarded ones may
    /// override them; the credential may not).
    fn fixed_headers(
        &self,
        _config: &ProviderConfig,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
        Ok(Vec::new())
    }

    /// The header carrying the upstream key.
    fn credential(&self, key: &str) -> Option<(HeaderName, HeaderValue)>;

    /// The client's headers this upstream should see.
    fn forwarded(&self, _client: &HeaderMap) -> Vec<(HeaderName, HeaderValue)> {
        Vec::new()
    }

    /// `POST /v1/chat/completions`.
    fn chat(&self, target: &Target<'_>, _call: ChatCall<'_>) -> Result<UpstreamCall, ApiError> {
        Err(not_offered(target, "chat completions"))
    }

    /// `POST /v1/completions` (the legacy text completions).
    fn completions(
        &self,
        target: &Target<'_>,
        _call: ChatCall<'_>,
    ) -> Result<UpstreamCall, ApiError> {
        Err(not_offered(target, "completions"))
    }

    /// `POST /v1/messages`: `body` is the client's, `forwarded` the headers
    /// of [`Adapter::forwarded`].
    fn messages(
        &self,
        target: &Target<'_>,
        _call: MessagesCall<'_>,
    ) -> Result<UpstreamCall, ApiError> {
        Err(not_offered(target, "messages"))
    }

    /// `POST /v1/complete` (Anthropic's legacy text completions), whose
    /// request is already turned into a Messages body.
    fn complete(
        &self,
        target: &Target<'_>,
        _call: MessagesCall<'_>,
    ) -> Result<UpstreamCall, ApiError> {
        Err(not_offered(target, "completions"))
    }

    /// A web search (`/api/v1/openapi/search/…`): `params` are the
    /// client's (Google CSE's query parameters, or Serper's fields).
    fn search(
        &self,
        target: &Target<'_>,
        _params: &[(String, String)],
    ) -> Result<UpstreamCall, ApiError> {
        Err(not_offered(target, "web search"))
    }

    /// `POST /v1/embeddings`, if the upstream has embeddings.
    fn embeddings(
        &self,
        target: &Target<'_>,
        _request: &mut EmbeddingRequest,
    ) -> Result<UpstreamCall, ApiError> {
        Err(ApiError::BadRequest(format!(
            "The model `{}` does not offer embeddings.",
            target.model.name
        )))
    }

    /// `POST /v1/audio/speech`: `body` is the client's request, checked;
    /// the call costs `characters` (the model is metered in them).
    fn audio_speech(
        &self,
        target: &Target<'_>,
        _body: &Map<String, Value>,
        _characters: u64,
    ) -> Result<UpstreamCall, ApiError> {
        Err(ApiError::BadRequest(format!(
            "The model `{}` does not offer speech.",
            target.model.name
        )))
    }

    /// One of OpenAI's JSON media endpoints (`/images/generations`,
    /// `/moderations`): `body` is the client's request, checked; its answer
    /// is counted as `count` says, in the model's unit.
    fn media(&self, target: &Target<'_>, call: MediaCall<'_>) -> Result<UpstreamCall, ApiError> {
        Err(ApiError::BadRequest(format!(
            "The model `{}` does not offer {}.",
            target.model.name, call.what
        )))
    }

    /// Azure's speech synthesis: `ssml` (built from text and voice if the
    /// client sent those) as audio in `output_format`; `characters` what it
    /// costs.
    fn synthesis(
        &self,
        target: &Target<'_>,
        _ssml: &str,
        _output_format: &str,
        _characters: u64,
    ) -> Result<UpstreamCall, ApiError> {
        Err(not_offered(target, "speech synthesis"))
    }

    /// One of OpenAI's multipart endpoints (`/audio/transcriptions`,
    /// `/images/edits`…): the client's files and fields (its model named as
    /// the upstream's here), the answer counted as `count` says.
    fn multipart(
        &self,
        target: &Target<'_>,
        call: MultipartCall,
    ) -> Result<UpstreamCall, ApiError> {
        Err(not_offered(target, call.what))
    }

    /// `POST /v1/messages/count_tokens`: the upstream path that counts, or
    /// `None` to estimate locally.
    fn count_tokens(&self) -> Option<&'static str> {
        None
    }

    /// `POST /v1/responses`: one turn, its history inlined.
    fn responses(
        &self,
        target: &Target<'_>,
        _call: ResponsesCall<'_>,
    ) -> Result<ResponsesUpstream, ApiError> {
        Err(not_offered(target, "responses"))
    }
}

/// The refusal of a call the model's provider kind does not serve.
fn not_offered(target: &Target<'_>, what: &str) -> ApiError {
    ApiError::BadRequest(format!(
        "The model `{}` does not offer {what}.",
        target.model.name
    ))
}

/// Where a request goes: the model as configured, and its provider.
pub struct Target<'a> {
    pub model: &'a ModelSpec,
    pub provider: &'a Provider,
}

/// A chat or legacy completion request, as the client sent it (checked and
/// capped); the adapter builds the upstream's body from it without copying
/// it, whatever the prompt's size.
pub struct ChatCall<'a> {
    pub request: &'a CompletionRequest,
    pub stream: bool,
    /// The output tokens allowed (the request's cap or the model's).
    pub max_output: u64,
    pub client_wants_usage: bool,
}

/// A Messages request (borrowed, like [`ChatCall`]'s).
pub struct MessagesCall<'a> {
    pub body: &'a Map<String, Value>,
    pub stream: bool,
    pub forwarded: Vec<(HeaderName, HeaderValue)>,
}

/// A request to one of OpenAI's multipart endpoints.
pub struct MultipartCall {
    pub path: &'static str,
    /// What it is, for errors ("transcription").
    pub what: &'static str,
    pub upload: Upload,
    pub count: crate::relay::transform::Count,
}

/// A request to one of OpenAI's JSON media endpoints.
pub struct MediaCall<'a> {
    /// The upstream path (`/images/generations`).
    pub path: &'static str,
    /// What it is, for errors ("image generation").
    pub what: &'static str,
    pub body: &'a Map<String, Value>,
    pub count: crate::relay::transform::Count,
    /// The answer's `data` goes back as OhMyGPT's `{statusCode, message,
    /// data: {outputs}}` (its Flux routes).
    pub outputs_envelope: bool,
}

/// A Responses turn.
pub struct ResponsesCall<'a> {
    pub params: &'a Map<String, Value>,
    /// The whole conversation so far and the new input, in order.
    pub items: &'a [Value],
    /// The client's `max_output_tokens`, capped by the model's.
    pub cap: Option<u64>,
    /// The output tokens allowed.
    pub allowance: u64,
    /// The response object the events build on.
    pub skeleton: &'a Value,
}

/// One upstream call and how its answer reaches the client.
pub struct UpstreamCall {
    pub path: &'static str,
    /// `Some`: a `GET` with this query string (`body` is empty); `None`: a
    /// `POST` of the JSON `body`.
    pub query: Option<String>,
    /// `Some`: a multipart `POST` of this upload (`body` is empty).
    pub upload: Option<Upload>,
    pub body: Vec<u8>,
    /// Client headers meant for the upstream.
    pub forwarded: Vec<(HeaderName, HeaderValue)>,
    pub reply: Reply,
}

/// The parts of an upstream call that override rules may change.
pub trait Outgoing {
    fn parts(&mut self) -> (&mut Vec<u8>, &mut Vec<(HeaderName, HeaderValue)>);
}

impl Outgoing for UpstreamCall {
    fn parts(&mut self) -> (&mut Vec<u8>, &mut Vec<(HeaderName, HeaderValue)>) {
        (&mut self.body, &mut self.forwarded)
    }
}

impl Outgoing for ResponsesUpstream {
    fn parts(&mut self) -> (&mut Vec<u8>, &mut Vec<(HeaderName, HeaderValue)>) {
        (&mut self.body, &mut self.forwarded)
    }
}

/// A client's file for an upstream, spooled to disk (never held in memory;
/// read again for each channel tried), and the form's other fields.
#[derive(Clone)]
pub struct Upload {
    /// Each file and the form field it goes in.
    pub files: Vec<(String, std::sync::Arc<Spooled>)>,
    pub fields: Vec<(String, String)>,
}

/// A file spooled to disk, removed when the last holder lets it go.
pub struct Spooled {
    pub path: std::path::PathBuf,
    /// The name and type the client gave it.
    pub name: String,
    pub content_type: String,
    pub size: u64,
}

impl Drop for Spooled {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "a spooled upload was not removed");
        }
    }
}

/// How an upstream answer is turned into the client's.
pub enum Reply {
    /// Event by event.
    Stream(Box<dyn StreamTransform>),
    /// A whole body.
    Whole(Box<BodyTransform>),
    /// Bytes passed through as they arrive (audio), whose usage (in the
    /// model's unit) was known before the call.
    Raw(protocol::TokenUsage),
}

/// A Responses turn's upstream call: its events are always streamed.
pub struct ResponsesUpstream {
    pub path: &'static str,
    pub body: Vec<u8>,
    /// Headers for the upstream (set by override rules: a turn forwards
    /// none of the client's).
    pub forwarded: Vec<(HeaderName, HeaderValue)>,
    pub events: Box<dyn ResponseEvents>,
}

/// A Responses turn as a chat completions request, and the translator that
/// turns the chat stream back into Responses events: the first step for
/// every upstream that does not serve Responses itself.
fn responses_as_chat(
    target: &Target<'_>,
    call: &ResponsesCall<'_>,
) -> Result<(Map<String, Value>, responses_via_chat::StreamTranslator), ApiError> {
    let chat = responses_via_chat::request(
        call.params,
        call.items,
        &target.model.upstream_model,
        call.cap,
    )
    .map_err(|e| ApiError::BadRequest(e.0))?;
    log_dropped(&chat.dropped, "chat completions");
    let translator = responses_via_chat::StreamTranslator::new(call.skeleton.clone());
    Ok((chat.body, translator))
}

/// A JSON body for an upstream.
fn to_body<T: serde::Serialize>(body: &T) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(body).map_err(|_| ApiError::Internal)
}

fn log_dropped(dropped: &[String], to: &str) {
    if !dropped.is_empty() {
        tracing::debug!(?dropped, "request fields without an equivalent in {to}");
    }
}

/// Why an upstream call produced no usable response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamError {
    /// No connection: refused, DNS or TLS failure. The request never left.
    Unreachable,
    /// The connection failed after the request was sent, before the answer
    /// began (a reset): the upstream may have received it.
    Broken,
    /// No response (or no next chunk) within the configured time.
    Timeout,
}

impl UpstreamError {
    pub fn metric_kind(&self) -> &'static str {
        match self {
            UpstreamError::Unreachable => "unreachable",
            UpstreamError::Broken => "broken",
            UpstreamError::Timeout => "timeout",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::{Decimal, Prices};

    fn provider(kind: &str, extra: &str) -> Provider {
        let text = format!(
            "kind = \"{kind}\"\nbase_url = \"http://127.0.0.1:1/v1\"\napi_key = \"sk-up\"\n{extra}"
        );
        let config: ProviderConfig = toml::from_str(&text).unwrap();
        Provider::new("p", &config).unwrap()
    }

    fn model() -> ModelSpec {
        ModelSpec {
            name: "public".into(),
            provider: "p".into(),
            upstream_model: "upstream".into(),
            prices: Prices {
                input: Decimal::ZERO,
                output: Decimal::ZERO,
                cached_input: Decimal::ZERO,
                cache_write: Decimal::ZERO,
            },
            unit: crate::money::MeterUnit::Tokens,
            unit_price: Decimal::ZERO,
            image_prices: Default::default(),
            multiplier: Decimal::ONE,
            max_output_tokens: None,
            images: false,
            channels: Vec::new(),
        }
    }

    fn chat_request(stream: bool) -> CompletionRequest {
        serde_json::from_value(serde_json::json!({
            "model": "public", "stream": stream,
            "messages": [{"role": "user", "content": "hi"}]
        }))
        .unwrap()
    }

    /// The adapter of `p` asked for a chat completion (or, `legacy`, a
    /// text completion) of model `m`, allowing 100 output tokens.
    fn plan_chat(
        p: &Provider,
        m: &ModelSpec,
        stream: bool,
        legacy: bool,
    ) -> Result<UpstreamCall, ApiError> {
        let target = Target {
            model: m,
            provider: p,
        };
        let request = chat_request(stream);
        let call = ChatCall {
            request: &request,
            stream,
            max_output: 100,
            client_wants_usage: false,
        };
        match legacy {
            false => p.adapter.chat(&target, call),
            true => p.adapter.completions(&target, call),
        }
    }

    fn body_of(call: &UpstreamCall) -> Value {
        serde_json::from_slice(&call.body).unwrap()
    }

    #[test]
    fn each_kind_has_its_protocol_and_credential() {
        let openai = provider("openai", "");
        let anthropic = provider("anthropic", "anthropic_version = \"2024-01-01\"");
        assert_eq!(openai.adapter.wire(), Wire::OpenAi);
        assert_eq!(anthropic.adapter.wire(), Wire::Anthropic);
        let (name, value) = openai.adapter.credential("sk-up").unwrap();
        assert_eq!(
            (name.as_str(), value.to_str().unwrap()),
            ("authorization", "Bearer sk-up")
        );
        let (name, value) = anthropic.adapter.credential("sk-up").unwrap();
        assert_eq!(
            (name.as_str(), value.to_str().unwrap()),
            ("x-api-key", "sk-up")
        );
        let fixed = anthropic.adapter.fixed_headers(&toml::from_str(
            "kind = \"anthropic\"\nbase_url = \"http://x\"\nanthropic_version = \"2024-01-01\"",
        ).unwrap()).unwrap();
        assert_eq!(fixed[0].1, "2024-01-01");
        // A key that cannot be a header value is refused at start, not sent.
        let bad: ProviderConfig =
            toml::from_str("kind = \"openai\"\nbase_url = \"http://x\"\napi_key = \"a\\nb\"")
                .unwrap();
        assert!(Provider::new("bad", &bad).is_err());
    }

    #[test]
    fn chat_to_openai_passes_through_under_the_upstream_name_with_usage_asked_for() {
        let (p, m) = (provider("openai", ""), model());
        let upstream = plan_chat(&p, &m, true, false).unwrap();
        assert_eq!(upstream.path, "/chat/completions");
        let body = body_of(&upstream);
        assert_eq!(body["model"], "upstream");
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert!(matches!(upstream.reply, Reply::Stream(_)));
    }

    #[test]
    fn chat_to_anthropic_is_translated_and_legacy_completions_are_refused() {
        let (p, m) = (provider("anthropic", ""), model());
        let target = Target {
            model: &m,
            provider: &p,
        };
        let upstream = plan_chat(&p, &m, false, false).unwrap();
        assert_eq!(upstream.path, "/messages");
        let body = body_of(&upstream);
        assert_eq!(
            (body["model"].as_str(), body["max_tokens"].as_u64()),
            (Some("upstream"), Some(100))
        );
        assert!(matches!(upstream.reply, Reply::Whole(_)));
        assert!(matches!(
            plan_chat(&p, &m, false, true),
            Err(ApiError::BadRequest(_))
        ));
        assert!(p
            .adapter
            .embeddings(
                &target,
                &mut serde_json::from_value(serde_json::json!({"model": "public", "input": "x"}))
                    .unwrap()
            )
            .is_err());
        assert_eq!(p.adapter.count_tokens(), Some("/messages/count_tokens"));
    }

    #[test]
    fn messages_go_as_is_to_anthropic_with_the_clients_headers_and_translated_to_openai() {
        let m = model();
        let body: Map<String, Value> = serde_json::from_value(serde_json::json!({
            "model": "public", "max_tokens": 10,
            "messages": [{"role": "user", "content": "hi"}]
        }))
        .unwrap();
        let mut client = HeaderMap::new();
        client.insert("anthropic-beta", HeaderValue::from_static("tools-1"));
        client.insert(
            "authorization",
            HeaderValue::from_static("Bearer sk-client"),
        );

        let anthropic = provider("anthropic", "");
        let forwarded = anthropic.adapter.forwarded(&client);
        assert_eq!(
            forwarded.len(),
            1,
            "only Anthropic's own headers go upstream"
        );
        let call = MessagesCall {
            body: &body,
            stream: true,
            forwarded,
        };
        let target = Target {
            model: &m,
            provider: &anthropic,
        };
        let upstream = anthropic.adapter.messages(&target, call).unwrap();
        assert_eq!((upstream.path, upstream.forwarded.len()), ("/messages", 1));
        assert_eq!(body_of(&upstream)["model"], "upstream");

        let openai = provider("openai", "");
        assert!(openai.adapter.forwarded(&client).is_empty());
        let call = MessagesCall {
            body: &body,
            stream: false,
            forwarded: Vec::new(),
        };
        let target = Target {
            model: &m,
            provider: &openai,
        };
        let upstream = openai.adapter.messages(&target, call).unwrap();
        assert_eq!(upstream.path, "/chat/completions");
        assert_eq!(body_of(&upstream)["messages"][0]["content"], "hi");
        assert_eq!(openai.adapter.count_tokens(), None);
    }
}
