//! Azure's neural text to speech: SSML posted to
//! `/cognitiveservices/v1` with the output format in a header, audio back
//! (streamed through, see `relay::raw`), billed per character.

use axum::http::{HeaderName, HeaderValue};

use super::{Adapter, Reply, Target, UpstreamCall};
use crate::billing::estimate::Wire;
use crate::config::ProviderConfig;
use crate::error::ApiError;

pub struct AzureTts;

impl Adapter for AzureTts {
    fn wire(&self) -> Wire {
        Wire::OpenAi
    }

    fn fixed_headers(
        &self,
        _config: &ProviderConfig,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
        Ok(vec![
            (
                HeaderName::from_static("content-type"),
                HeaderValue::from_static("application/ssml+xml"),
            ),
            (
                HeaderName::from_static("user-agent"),
                HeaderValue::from_static("tollgate"),
            ),
        ])
    }

    fn credential(&self, key: &str) -> Option<(HeaderName, HeaderValue)> {
        let value = HeaderValue::from_str(key).ok()?;
        Some((HeaderName::from_static("ocp-apim-subscription-key"), value))
    }

    fn synthesis(
        &self,
        _target: &Target<'_>,
        ssml: &str,
        output_format: &str,
        characters: u64,
    ) -> Result<UpstreamCall, ApiError> {
        let format = HeaderValue::from_str(output_format)
            .map_err(|_| ApiError::BadRequest("`output_format` is not a valid format.".into()))?;
        Ok(UpstreamCall {
            path: "/cognitiveservices/v1",
            query: None,
            upload: None,
            body: ssml.as_bytes().to_vec(),
            forwarded: vec![(HeaderName::from_static("x-microsoft-outputformat"), format)],
            reply: Reply::Raw(protocol::TokenUsage {
                input: characters,
                ..protocol::TokenUsage::default()
            }),
        })
    }
}
