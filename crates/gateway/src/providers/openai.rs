//! OpenAI-compatible upstreams (OpenAI, and the many servers that speak its
//! chat completions): chat passes through; Messages, legacy completions and
//! Responses are translated to chat, or Responses sent as is to an upstream
//! that serves it (`responses_api = true`).

use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderName, HeaderValue};
use protocol::openai::EmbeddingRequest;
use protocol::rewrite::ByteRewriter;
use protocol::translate::{complete, messages_via_chat};
use serde_json::{json, Map, Value};

use super::{
    log_dropped, responses_as_chat, to_body, Adapter, ChatCall, MediaCall, MessagesCall,
    MultipartCall, Reply, ResponsesCall, ResponsesUpstream, Target, UpstreamCall,
};
use crate::billing::estimate::Wire;
use crate::error::ApiError;
use crate::relay::transform::{BodyTransform, Chain, OpenAiPassThrough};
use crate::responses::events::{Native, ViaChat};

pub struct OpenAi;

impl Adapter for OpenAi {
    fn wire(&self) -> Wire {
        Wire::OpenAi
    }

    fn credential(&self, key: &str) -> Option<(HeaderName, HeaderValue)> {
        let value = HeaderValue::from_str(&format!("Bearer {key}")).ok()?;
        Some((AUTHORIZATION, value))
    }

    fn chat(&self, target: &Target<'_>, call: ChatCall<'_>) -> Result<UpstreamCall, ApiError> {
        pass_through("/chat/completions", target, call)
    }

    fn completions(
        &self,
        target: &Target<'_>,
        call: ChatCall<'_>,
    ) -> Result<UpstreamCall, ApiError> {
        pass_through("/completions", target, call)
    }

    fn messages(
        &self,
        target: &Target<'_>,
        call: MessagesCall<'_>,
    ) -> Result<UpstreamCall, ApiError> {
        let public = target.model.name.as_str();
        let reply = if call.stream {
            Reply::Stream(Box::new(messages_via_chat::StreamTranslator::new(public)))
        } else {
            Reply::Whole(Box::new(BodyTransform::MessagesViaChat {
                public_model: public.to_string(),
            }))
        };
        messages_as_chat(target, call.body, reply)
    }

    fn complete(
        &self,
        target: &Target<'_>,
        call: MessagesCall<'_>,
    ) -> Result<UpstreamCall, ApiError> {
        // OpenAI chat → Messages → legacy completion.
        let public = target.model.name.as_str();
        let reply = if call.stream {
            Reply::Stream(Box::new(Chain::new(
                messages_via_chat::StreamTranslator::new(public),
                complete::StreamTranslator::new(public),
            )))
        } else {
            Reply::Whole(Box::new(BodyTransform::Complete {
                inner: Box::new(BodyTransform::MessagesViaChat {
                    public_model: public.to_string(),
                }),
                public_model: public.to_string(),
            }))
        };
        messages_as_chat(target, call.body, reply)
    }

    fn embeddings(
        &self,
        target: &Target<'_>,
        request: &mut EmbeddingRequest,
    ) -> Result<UpstreamCall, ApiError> {
        let model = target.model;
        request.model = model.upstream_model.clone();
        Ok(UpstreamCall {
            path: "/embeddings",
            query: None,
            upload: None,
            body: to_body(&*request)?,
            forwarded: Vec::new(),
            reply: Reply::Whole(Box::new(BodyTransform::OpenAi(ByteRewriter::for_openai(
                &model.upstream_model,
                &model.name,
                false,
            )))),
        })
    }

    fn audio_speech(
        &self,
        target: &Target<'_>,
        body: &Map<String, Value>,
        characters: u64,
    ) -> Result<UpstreamCall, ApiError> {
        let mut body = body.clone();
        body.insert(
            "model".into(),
            Value::String(target.model.upstream_model.clone()),
        );
        Ok(UpstreamCall {
            path: "/audio/speech",
            query: None,
            upload: None,
            body: to_body(&body)?,
            forwarded: Vec::new(),
            reply: Reply::Raw(protocol::TokenUsage {
                input: characters,
                ..protocol::TokenUsage::default()
            }),
        })
    }

    fn media(&self, target: &Target<'_>, call: MediaCall<'_>) -> Result<UpstreamCall, ApiError> {
        let model = target.model;
        let mut body = call.body.clone();
        body.insert("model".into(), Value::String(model.upstream_model.clone()));
        Ok(UpstreamCall {
            path: call.path,
            query: None,
            upload: None,
            body: to_body(&body)?,
            forwarded: Vec::new(),
            reply: Reply::Whole(Box::new(match call.outputs_envelope {
                true => BodyTransform::Outputs { count: call.count },
                false => BodyTransform::Counted {
                    rewriter: ByteRewriter::for_openai(&model.upstream_model, &model.name, false),
                    count: call.count,
                },
            })),
        })
    }

    fn multipart(
        &self,
        target: &Target<'_>,
        call: MultipartCall,
    ) -> Result<UpstreamCall, ApiError> {
        let MultipartCall {
            path,
            mut upload,
            count,
            ..
        } = call;
        let model = target.model;
        for (name, value) in &mut upload.fields {
            if name == "model" {
                *value = model.upstream_model.clone();
            }
        }
        Ok(UpstreamCall {
            path,
            query: None,
            upload: Some(upload),
            body: Vec::new(),
            forwarded: Vec::new(),
            reply: Reply::Whole(Box::new(BodyTransform::Counted {
                rewriter: ByteRewriter::default(),
                count,
            })),
        })
    }

    fn responses(
        &self,
        target: &Target<'_>,
        call: ResponsesCall<'_>,
    ) -> Result<ResponsesUpstream, ApiError> {
        let upstream_model = target.model.upstream_model.as_str();
        if target.provider.responses_api {
            let body = native_body(call.params, call.items, upstream_model, call.cap);
            return Ok(ResponsesUpstream {
                path: "/responses",
                body: to_body(&body)?,
                forwarded: Vec::new(),
                events: Box::new(Native::new(call.skeleton.clone())),
            });
        }
        let (chat, translator) = responses_as_chat(target, &call)?;
        Ok(ResponsesUpstream {
            path: "/chat/completions",
            body: to_body(&chat)?,
            forwarded: Vec::new(),
            events: Box::new(ViaChat(translator)),
        })
    }
}

/// A chat or legacy completion sent as is, under the upstream's model name.
fn pass_through(
    path: &'static str,
    target: &Target<'_>,
    call: ChatCall<'_>,
) -> Result<UpstreamCall, ApiError> {
    let model = target.model;
    // Under the upstream's name; a stream asks for the upstream's own usage,
    // whether or not the client asked for it.
    let body = call
        .request
        .to_upstream(&model.upstream_model, call.stream)
        .map_err(|_| ApiError::Internal)?;
    let reply = if call.stream {
        let hide_usage = !call.client_wants_usage;
        Reply::Stream(Box::new(OpenAiPassThrough::new(
            ByteRewriter::for_openai(&model.upstream_model, &model.name, hide_usage),
            call.client_wants_usage,
        )))
    } else {
        Reply::Whole(Box::new(BodyTransform::OpenAi(ByteRewriter::for_openai(
            &model.upstream_model,
            &model.name,
            false,
        ))))
    };
    Ok(UpstreamCall {
        path,
        query: None,
        upload: None,
        body,
        forwarded: Vec::new(),
        reply,
    })
}

/// A Messages body translated to chat completions.
fn messages_as_chat(
    target: &Target<'_>,
    body: &Map<String, Value>,
    reply: Reply,
) -> Result<UpstreamCall, ApiError> {
    let late_system = target.provider.late_system_messages;
    let translated =
        messages_via_chat::request_with(body, &target.model.upstream_model, late_system)
            .map_err(|e| ApiError::BadRequest(e.0))?;
    log_dropped(&translated.dropped, "chat completions");
    Ok(UpstreamCall {
        path: "/chat/completions",
        query: None,
        upload: None,
        body: to_body(&translated.body)?,
        forwarded: Vec::new(),
        reply,
    })
}

/// The body for an upstream that speaks Responses: the client's request with
/// the whole history inlined, since the upstream keeps no state for us.
fn native_body(
    params: &Map<String, Value>,
    items: &[Value],
    upstream_model: &str,
    cap: Option<u64>,
) -> Map<String, Value> {
    let mut body = params.clone();
    for field in ["previous_response_id", "conversation", "background"] {
        body.remove(field);
    }
    body.insert("model".into(), json!(upstream_model));
    body.insert("store".into(), json!(false));
    body.insert("stream".into(), json!(true));
    if let Some(cap) = cap {
        body.insert("max_output_tokens".into(), json!(cap));
    }
    // Ids of items the upstream never stored would be looked up and refused.
    let inline: Vec<Value> = items
        .iter()
        .map(|item| {
            let mut item = item.clone();
            if item.get("type").and_then(Value::as_str) != Some("reasoning") {
                if let Some(map) = item.as_object_mut() {
                    map.remove("id");
                }
            }
            item
        })
        .collect();
    body.insert("input".into(), Value::Array(inline));
    body
}
