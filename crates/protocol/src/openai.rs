//! OpenAI wire types: only the fields the gateway reads are typed; everything
//! else a client sends is kept in `extra` and forwarded untouched.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::usage::TokenUsage;

/// `stream_options` of a chat or legacy completion request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_usage: Option<bool>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The body of `POST /v1/chat/completions` or `POST /v1/completions`.
///
/// Both share the fields the gateway acts on; `messages` / `prompt` and every
/// other parameter travel in `extra` (read by [`crate::extra`], not serde's
/// `flatten`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CompletionRequest {
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u64>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

crate::extra::with_extra!(CompletionRequest {
    model;
    stream, stream_options, max_tokens, max_completion_tokens, n
});

impl CompletionRequest {
    pub fn is_stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    /// Whether the client itself asked for the usage chunk of a stream.
    pub fn client_wants_stream_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false)
    }

    /// The output-token cap the client set, if any.
    pub fn output_cap(&self) -> Option<u64> {
        self.max_completion_tokens.or(self.max_tokens)
    }

    /// Holds the client's output caps (`max_tokens`, `max_completion_tokens`)
    /// to `limit`, the model's own: upstreams refuse a cap above the model's
    /// (Claude Code asks 32,000 of models that stop at 16,384). A request
    /// without a cap is left without one.
    pub fn clamp_output_tokens(&mut self, limit: Option<u64>) {
        if let Some(limit) = limit {
            let caps = [&mut self.max_tokens, &mut self.max_completion_tokens];
            for n in caps.into_iter().flatten() {
                *n = (*n).min(limit);
            }
        }
    }

    /// Asks a streaming upstream to report usage, so the gateway can meter it.
    pub fn request_stream_usage(&mut self) {
        let options = self.stream_options.get_or_insert_with(Default::default);
        options.include_usage = Some(true);
    }

    /// The body an upstream gets: this request under `model`, asking for
    /// the usage chunk when `stream_usage` (as [`request_stream_usage`]
    /// would). Serialized from a borrowed view: the request is not copied,
    /// whatever the size of its prompt, however many channels it is
    /// planned for.
    ///
    /// [`request_stream_usage`]: CompletionRequest::request_stream_usage
    pub fn to_upstream(&self, model: &str, stream_usage: bool) -> serde_json::Result<Vec<u8>> {
        let stream_options = match (&self.stream_options, stream_usage) {
            (None, false) => None,
            (options, _) => Some(StreamOptionsView {
                include_usage: if stream_usage {
                    Some(true)
                } else {
                    options.as_ref().and_then(|o| o.include_usage)
                },
                extra: options.as_ref().map(|o| &o.extra),
            }),
        };
        serde_json::to_vec(&UpstreamView {
            model,
            stream: self.stream,
            stream_options,
            max_tokens: self.max_tokens,
            max_completion_tokens: self.max_completion_tokens,
            n: self.n,
            extra: &self.extra,
        })
    }
}

/// [`CompletionRequest`] as it serializes, borrowing its parts.
#[derive(Serialize)]
struct UpstreamView<'a> {
    model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptionsView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_completion_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    n: Option<u64>,
    #[serde(flatten)]
    extra: &'a Map<String, Value>,
}

/// [`StreamOptions`] as it serializes, borrowing its parts.
#[derive(Serialize)]
struct StreamOptionsView<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    include_usage: Option<bool>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    extra: Option<&'a Map<String, Value>>,
}

/// The body of `POST /v1/embeddings`: only the model is read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EmbeddingRequest {
    pub model: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

crate::extra::with_extra!(EmbeddingRequest { model; });

/// OpenAI's `usage` object (chat, legacy completions and embeddings).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub total_tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PromptTokensDetails {
    #[serde(default)]
    pub cached_tokens: Option<u64>,
}

impl From<&Usage> for TokenUsage {
    fn from(u: &Usage) -> Self {
        let cached = u
            .prompt_tokens_details
            .as_ref()
            .and_then(|d| d.cached_tokens)
            .unwrap_or(0);
        TokenUsage {
            input: u.prompt_tokens,
            output: u.completion_tokens,
            cached_input: cached.min(u.prompt_tokens),
            cache_write: 0,
        }
    }
}

/// The parts of a response body or stream chunk the meter reads.
#[derive(Debug, Default, Deserialize)]
struct UsageProbe {
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    choices: Option<Vec<serde::de::IgnoredAny>>,
}

/// What a streamed chunk says about usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkUsage {
    pub usage: TokenUsage,
    /// True for the dedicated usage chunk (`choices: []`) that
    /// `include_usage` adds; false when usage rides on a content chunk.
    pub usage_only: bool,
}

/// Reads the usage of a streamed chunk's `data` payload, if it carries any.
/// Cheap for the common case: chunks without the word `usage` are not parsed.
pub fn chunk_usage(data: &str) -> Option<ChunkUsage> {
    // Once usage is asked for, every chunk carries `"usage":null`; only an
    // object is worth parsing.
    let at = data.find("\"usage\"")?;
    let rest = data[at + 7..].trim_start().strip_prefix(':')?.trim_start();
    if !rest.starts_with('{') {
        return None;
    }
    let probe: UsageProbe = serde_json::from_str(data).ok()?;
    let usage = probe.usage?;
    Some(ChunkUsage {
        usage: TokenUsage::from(&usage),
        usage_only: probe.choices.map(|c| c.is_empty()).unwrap_or(true),
    })
}

/// OpenAI's error envelope: `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub message: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub param: Option<String>,
    pub code: Option<String>,
}

impl ErrorBody {
    pub fn new(message: impl Into<String>, kind: &str, code: Option<&str>) -> Self {
        ErrorBody {
            error: ErrorDetail {
                message: message.into(),
                kind: kind.to_string(),
                param: None,
                code: code.map(str::to_string),
            },
        }
    }
}

/// One entry of `GET /v1/models`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    pub id: String,
    pub object: String,
    pub created: i64,
    pub owned_by: String,
    /// What the model costs and in what unit (a gateway's addition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pricing: Option<serde_json::Value>,
}

/// The `GET /v1/models` response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelList {
    pub object: String,
    pub data: Vec<Model>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_fields_round_trip() {
        let body = json!({
            "model": "gpt-4o",
            "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "logit_bias": {"42": -100},
            "stream": true,
            "stream_options": {"include_usage": false, "future_flag": 1},
            "n": 2
        });
        let req: CompletionRequest = serde_json::from_value(body.clone()).unwrap();
        assert_eq!(serde_json::to_value(&req).unwrap(), body);
        assert!(req.is_stream());
        assert!(!req.client_wants_stream_usage());
    }

    #[test]
    fn a_request_reads_as_serde_would_read_it() {
        let req: CompletionRequest = serde_json::from_str(
            r#"{"messages":[],"stream":null,"n":null,"model":"m","max_tokens":3,"x":{"y":[1]},"x":2}"#,
        )
        .unwrap();
        assert_eq!((req.model.as_str(), req.stream, req.n), ("m", None, None));
        assert_eq!(req.max_tokens, Some(3));
        assert_eq!(
            req.extra.get("x"),
            Some(&json!(2)),
            "the last of a repeated key"
        );
        assert_eq!(req.extra.keys().collect::<Vec<_>>(), ["messages", "x"]);
        for (body, error) in [
            (r#"{"messages":[]}"#, "missing field `model`"),
            (r#"{"model":"a","model":"b"}"#, "duplicate field `model`"),
            (
                r#"{"model":"a","max_tokens":-1}"#,
                "invalid value: integer `-1`",
            ),
            (r#"{"model":"a","stream":"yes"}"#, "invalid type: string"),
            (r#"["model"]"#, "invalid type: sequence"),
        ] {
            let e = serde_json::from_str::<CompletionRequest>(body).unwrap_err();
            assert!(e.to_string().contains(error), "{body}: {e}");
        }
    }

    #[test]
    fn output_caps_are_held_to_the_models_limit() {
        let mut req: CompletionRequest = serde_json::from_value(json!({
            "model": "m", "max_tokens": 32_000, "max_completion_tokens": 100
        }))
        .unwrap();
        req.clamp_output_tokens(Some(16_384));
        assert_eq!(req.max_tokens, Some(16_384));
        assert_eq!(req.max_completion_tokens, Some(100));
        req.clamp_output_tokens(None);
        assert_eq!(req.max_tokens, Some(16_384));
        let mut none: CompletionRequest = serde_json::from_value(json!({"model": "m"})).unwrap();
        none.clamp_output_tokens(Some(10));
        assert_eq!((none.max_tokens, none.max_completion_tokens), (None, None));
        assert!(!serde_json::to_string(&none).unwrap().contains("max_"));
    }

    #[test]
    fn request_stream_usage_keeps_other_options() {
        let mut req: CompletionRequest = serde_json::from_value(json!({
            "model": "m", "stream": true, "stream_options": {"future_flag": 1}
        }))
        .unwrap();
        req.request_stream_usage();
        let v = serde_json::to_value(&req).unwrap();
        assert_eq!(
            v["stream_options"],
            json!({"include_usage": true, "future_flag": 1})
        );
    }

    #[test]
    fn reads_usage_chunk_and_ignores_others() {
        assert_eq!(
            chunk_usage(r#"{"choices":[{"delta":{"content":"hi"}}]}"#),
            None
        );
        assert_eq!(
            chunk_usage(r#"{"choices":[{"delta":{}}],"usage":null}"#),
            None
        );
        let u = chunk_usage(
            r#"{"choices":[],"usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15,"prompt_tokens_details":{"cached_tokens":4}}}"#,
        )
        .unwrap();
        assert!(u.usage_only);
        assert_eq!(
            u.usage,
            TokenUsage {
                input: 10,
                output: 5,
                cached_input: 4,
                cache_write: 0,
            }
        );
    }

    #[test]
    fn usage_on_a_content_chunk_is_not_usage_only() {
        let u = chunk_usage(
            r#"{"choices":[{"delta":{}}],"usage":{"prompt_tokens":1,"completion_tokens":2}}"#,
        )
        .unwrap();
        assert!(!u.usage_only);
    }

    #[test]
    fn the_upstream_body_is_the_request_renamed_without_a_copy() {
        let cases = [
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
            r#"{"model":"m","stream":true,"messages":[]}"#,
            r#"{"model":"m","stream":true,"stream_options":{"include_usage":false,"x":1},"n":2,"max_tokens":5}"#,
            r#"{"model":"m","stream_options":{"x":1},"max_completion_tokens":7,"temperature":0.5}"#,
        ];
        for case in cases {
            let request: CompletionRequest = serde_json::from_str(case).unwrap();
            for stream_usage in [false, true] {
                let mut expected = request.clone();
                expected.model = "up".into();
                if stream_usage {
                    expected.request_stream_usage();
                }
                assert_eq!(
                    request.to_upstream("up", stream_usage).unwrap(),
                    serde_json::to_vec(&expected).unwrap(),
                    "{case} {stream_usage}"
                );
            }
        }
    }
}
