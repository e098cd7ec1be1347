//! Anthropic upstreams: Messages pass through; chat completions and
//! Responses are translated to Messages.

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use protocol::rewrite::ByteRewriter;
use protocol::translate::{chat_via_messages, complete};
use serde_json::{Map, Value};

use super::{
    log_dropped, responses_as_chat, to_body, Adapter, ChatCall, MessagesCall, Reply, ResponsesCall,
    ResponsesUpstream, Target, UpstreamCall,
};
use crate::billing::estimate::Wire;
use crate::config::ProviderConfig;
use crate::error::ApiError;
use crate::relay::transform::{unix_now, AnthropicPassThrough, BodyTransform};
use crate::responses::events::ViaMessages;

/// Anthropic's API version sent when neither the client nor the
/// configuration names one.
const DEFAULT_ANTHROPIC_VERSION: &str = "2023-06-01";

/// Client headers an Anthropic upstream should see.
const FORWARDED_HEADERS: [&str; 2] = ["anthropic-version", "anthropic-beta"];

pub struct Anthropic;

impl Adapter for Anthropic {
    fn wire(&self) -> Wire {
        Wire::Anthropic
    }

    fn fixed_headers(
        &self,
        config: &ProviderConfig,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
        let version = config
            .anthropic_version
            .as_deref()
            .unwrap_or(DEFAULT_ANTHROPIC_VERSION);
        let value = HeaderValue::from_str(version)
            .map_err(|_| "anthropic_version: invalid value".to_string())?;
        Ok(vec![(HeaderName::from_static("anthropic-version"), value)])
    }

    fn credential(&self, key: &str) -> Option<(HeaderName, HeaderValue)> {
        let value = HeaderValue::from_str(key).ok()?;
        Some((HeaderName::from_static("x-api-key"), value))
    }

    fn forwarded(&self, client: &HeaderMap) -> Vec<(HeaderName, HeaderValue)> {
        FORWARDED_HEADERS
            .iter()
            .filter_map(|name| {
                let value = client.get(*name)?.clone();
                Some((HeaderName::from_static(name), value))
            })
            .collect()
    }

    fn chat(&self, target: &Target<'_>, call: ChatCall<'_>) -> Result<UpstreamCall, ApiError> {
        let model = target.model;
        let Ok(Value::Object(map)) = serde_json::to_value(call.request) else {
            return Err(ApiError::Internal);
        };
        let translated = chat_via_messages::request(&map, &model.upstream_model, call.max_output)
            .map_err(|e| ApiError::BadRequest(e.0))?;
        log_dropped(&translated.dropped, "Anthropic messages");
        let reply = if call.stream {
            Reply::Stream(Box::new(chat_via_messages::StreamTranslator::new(
                &model.name,
                unix_now(),
                call.client_wants_usage,
            )))
        } else {
            Reply::Whole(Box::new(BodyTransform::ChatViaMessages {
                public_model: model.name.clone(),
            }))
        };
        Ok(UpstreamCall {
            path: "/messages",
            query: None,
            upload: None,
            body: to_body(&translated.body)?,
            forwarded: Vec::new(),
            reply,
        })
    }

    fn completions(
        &self,
        target: &Target<'_>,
        _call: ChatCall<'_>,
    ) -> Result<UpstreamCall, ApiError> {
        Err(ApiError::BadRequest(format!(
            "The model `{}` is served by an Anthropic upstream, which has no legacy completions; use /v1/chat/completions.",
            target.model.name
        )))
    }

    fn messages(
        &self,
        target: &Target<'_>,
        call: MessagesCall<'_>,
    ) -> Result<UpstreamCall, ApiError> {
        let model = target.model;
        let rewriter = ByteRewriter::for_openai(&model.upstream_model, &model.name, false);
        let reply = if call.stream {
            Reply::Stream(Box::new(AnthropicPassThrough::new(rewriter)))
        } else {
            Reply::Whole(Box::new(BodyTransform::Anthropic(rewriter)))
        };
        as_is(target, call, reply)
    }

    fn complete(
        &self,
        target: &Target<'_>,
        call: MessagesCall<'_>,
    ) -> Result<UpstreamCall, ApiError> {
        let public = target.model.name.as_str();
        let reply = if call.stream {
            Reply::Stream(Box::new(complete::StreamTranslator::new(public)))
        } else {
            Reply::Whole(Box::new(BodyTransform::Complete {
                inner: Box::new(BodyTransform::Anthropic(ByteRewriter::default())),
                public_model: public.to_string(),
            }))
        };
        as_is(target, call, reply)
    }

    fn count_tokens(&self) -> Option<&'static str> {
        Some("/messages/count_tokens")
    }

    fn responses(
        &self,
        target: &Target<'_>,
        call: ResponsesCall<'_>,
    ) -> Result<ResponsesUpstream, ApiError> {
        let upstream_model = target.model.upstream_model.as_str();
        // Responses → chat → Messages: one translation each way.
        let (chat, translator) = responses_as_chat(target, &call)?;
        let messages = chat_via_messages::request(&chat, upstream_model, call.allowance)
            .map_err(|e| ApiError::BadRequest(e.0))?;
        log_dropped(&messages.dropped, "Anthropic messages");
        Ok(ResponsesUpstream {
            path: "/messages",
            body: to_body(&messages.body)?,
            forwarded: Vec::new(),
            events: Box::new(ViaMessages::new(&target.model.name, translator)),
        })
    }
}

/// A Messages body sent as is, under the upstream's model name.
fn as_is(
    target: &Target<'_>,
    call: MessagesCall<'_>,
    reply: Reply,
) -> Result<UpstreamCall, ApiError> {
    let body = Renamed {
        body: call.body,
        model: &target.model.upstream_model,
    };
    Ok(UpstreamCall {
        path: "/messages",
        query: None,
        upload: None,
        body: to_body(&body)?,
        forwarded: call.forwarded,
        reply,
    })
}

/// A JSON object serialized with its `model` replaced (added last when it
/// has none), without copying it.
struct Renamed<'a> {
    body: &'a Map<String, Value>,
    model: &'a str,
}

impl serde::Serialize for Renamed<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let has_model = self.body.contains_key("model");
        let len = self.body.len() + usize::from(!has_model);
        let mut map = serializer.serialize_map(Some(len))?;
        for (key, value) in self.body {
            if key == "model" {
                map.serialize_entry(key, self.model)?;
            } else {
                map.serialize_entry(key, value)?;
            }
        }
        if !has_model {
            map.serialize_entry("model", self.model)?;
        }
        map.end()
    }
}
