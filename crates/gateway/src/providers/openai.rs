//! An OpenAI-compatible upstream: `POST {base_url}{path}` with a bearer key.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE};

use super::UpstreamError;
use crate::config::{resolve_secret, ProviderConfig};

pub struct Provider {
    pub name: String,
    base_url: String,
    /// The upstream key, kept only to send it and to scrub it from errors.
    api_key: Option<String>,
    headers: HeaderMap,
    client: reqwest::Client,
    pub request_timeout: Duration,
    pub read_timeout: Duration,
}

impl Provider {
    pub fn new(name: &str, config: &ProviderConfig) -> Result<Provider, String> {
        let mut headers = HeaderMap::new();
        for (k, v) in &config.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| format!("providers.{name}.headers: invalid header name {k:?}"))?;
            let value = HeaderValue::from_str(&resolve_secret(v))
                .map_err(|_| format!("providers.{name}.headers.{k}: invalid header value"))?;
            headers.insert(name, value);
        }
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(config.connect_timeout_secs))
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| format!("providers.{name}: cannot build HTTP client: {e}"))?;
        Ok(Provider {
            name: name.to_string(),
            base_url: config.base_url.trim_end_matches('/').to_string(),
            api_key: config.api_key.as_deref().map(resolve_secret),
            headers,
            client,
            request_timeout: Duration::from_secs(config.request_timeout_secs),
            read_timeout: Duration::from_secs(config.read_timeout_secs),
        })
    }

    /// Sends a JSON body and returns the response head (the body streams).
    pub async fn post_json(
        &self,
        path: &str,
        body: Vec<u8>,
    ) -> Result<reqwest::Response, UpstreamError> {
        let mut request = self
            .client
            .post(format!("{}{path}", self.base_url))
            .headers(self.headers.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(key) = &self.api_key {
            request = request.header(AUTHORIZATION, format!("Bearer {key}"));
        }
        match tokio::time::timeout(self.request_timeout, request.send()).await {
            Err(_) => Err(UpstreamError::Timeout),
            Ok(Err(e)) if e.is_timeout() => Err(UpstreamError::Timeout),
            Ok(Err(e)) => {
                tracing::warn!(provider = %self.name, error = %without_url(&e), "upstream unreachable");
                Err(UpstreamError::Unreachable)
            }
            Ok(Ok(response)) => Ok(response),
        }
    }

    /// Removes the upstream key from text that may be shown to a client.
    pub fn scrub(&self, text: &str) -> String {
        match &self.api_key {
            Some(key) if !key.is_empty() => text.replace(key.as_str(), "[redacted]"),
            _ => text.to_string(),
        }
    }
}

/// A reqwest error's text without its URL (which may carry credentials).
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "<upstream>");
    }
    text
}
