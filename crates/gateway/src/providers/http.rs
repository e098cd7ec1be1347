//! An HTTP upstream: `POST {base_url}{path}` with the provider's credentials
//! and the headers its kind's [`Adapter`] asks for.

use std::time::{Duration, Instant};

use axum::http::{Method, Request, Uri};
use bytes::Bytes;
use http_body_util::Full;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, CONTENT_TYPE};

use super::client::{self, DirectClient, SendError, UpstreamResponse};
use super::keys::{KeyIndex, Keys};
use super::{adapter, Adapter, UpstreamError};
use crate::config::{resolve_secret, LateSystemMessages, ProviderConfig};

/// The upstream paths the gateway calls, relative to a provider's `base_url`.
const UPSTREAM_PATHS: [&str; 6] = [
    "/chat/completions",
    "/completions",
    "/embeddings",
    "/messages",
    "/messages/count_tokens",
    "/responses",
];

pub struct Provider {
    pub name: String,
    /// What its kind knows: the calls, the protocol, the credentials.
    pub adapter: &'static dyn Adapter,
    /// Whether the upstream serves the Responses API itself.
    pub responses_api: bool,
    base_url: String,
    /// `base_url` + each path the gateway calls, parsed once: URL parsing
    /// is a measurable share of a request's cost.
    endpoints: Vec<(&'static str, Uri)>,
    /// The configured headers and the kind's own, sent with every call.
    headers: HeaderMap,
    /// The upstream keys, in rotation.
    keys: Keys,
    client: reqwest::Client,
    /// hyper's client for JSON calls; `None` when the environment sends
    /// this upstream through a proxy, which only reqwest speaks, or its URL
    /// carries credentials.
    direct: Option<DirectClient>,
    pub request_timeout: Duration,
    pub read_timeout: Duration,
    /// How late system messages reach it through translation.
    pub late_system_messages: LateSystemMessages,
    /// Query parameters every call carries (`params`), resolved.
    pub params: Vec<(String, String)>,
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
            // An API call that redirects is a misconfigured base URL, not
            // something to follow with the provider's key attached.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(config.connect_timeout_secs))
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| format!("providers.{name}: cannot build HTTP client: {e}"))?;
        let base_url = config.base_url.trim_end_matches('/').to_string();
        let endpoints: Vec<(&'static str, Uri)> = UPSTREAM_PATHS
            .iter()
            .map(|path| {
                format!("{base_url}{path}")
                    .parse::<Uri>()
                    .map(|u| (*path, u))
                    .map_err(|e| format!("providers.{name}.base_url: {e}"))
            })
            .collect::<Result<_, _>>()?;
        let direct = match endpoints.first() {
            Some((_, uri)) if !client::needs_reqwest(uri) => Some(
                DirectClient::new(Duration::from_secs(config.connect_timeout_secs))
                    .map_err(|e| format!("providers.{name}: {e}"))?,
            ),
            _ => None,
        };
        let adapter = adapter(config.kind);
        for (header, value) in adapter
            .fixed_headers(config)
            .map_err(|e| format!("providers.{name}.{e}"))?
        {
            headers.insert(header, value);
        }
        let mut keys = Vec::new();
        for (field, key) in config
            .api_key
            .iter()
            .map(|k| ("api_key".to_string(), k))
            .chain(
                config
                    .api_keys
                    .iter()
                    .enumerate()
                    .map(|(i, k)| (format!("api_keys[{i}]"), k)),
            )
        {
            let key = resolve_secret(key);
            let header = adapter
                .credential(&key)
                .ok_or_else(|| format!("providers.{name}.{field}: not valid in an HTTP header"))?;
            keys.push((key, header));
        }
        Ok(Provider {
            name: name.to_string(),
            adapter,
            responses_api: config.responses_api,
            endpoints,
            base_url,
            headers,
            keys: Keys::new(keys),
            client,
            direct,
            request_timeout: Duration::from_secs(config.request_timeout_secs),
            read_timeout: Duration::from_secs(config.read_timeout_secs),
            late_system_messages: config.late_system_messages,
            params: config
                .params
                .iter()
                .map(|(k, v)| (k.clone(), resolve_secret(v)))
                .collect(),
        })
    }

    /// The key a call uses next, leaving out those in `tried` (`None`: the
    /// provider has no key, or every one was tried).
    pub fn pick_key(&self, tried: &[KeyIndex]) -> Option<KeyIndex> {
        self.keys.pick(tried, Instant::now())
    }

    /// Whether a key not in `tried` is ready (not resting).
    pub fn has_rested_key(&self, tried: &[KeyIndex]) -> bool {
        self.keys.has_rested(tried, Instant::now())
    }

    /// How many upstream keys it rotates through.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// Lets a key the upstream rate-limited or refused rest for `rest`.
    pub fn rest_key(&self, key: KeyIndex, rest: Duration) {
        self.keys.rest(key, rest, Instant::now());
    }

    /// `GET {base_url}{path}?{query}`, with the provider's credentials.
    pub async fn get(
        &self,
        path: &str,
        query: &str,
        forwarded: &[(HeaderName, HeaderValue)],
        key: Option<KeyIndex>,
    ) -> Result<UpstreamResponse, UpstreamError> {
        let headers = self.headers_for(forwarded, key);
        let url = reqwest::Url::parse(&format!("{}{path}?{query}", self.base_url))
            .map_err(|_| UpstreamError::Unreachable)?;
        self.call(self.client.get(url).headers(headers)).await
    }

    /// `POST {base_url}{path}` of a multipart form: `upload`'s fields, then
    /// its files, streamed from disk.
    pub async fn post_multipart(
        &self,
        path: &str,
        upload: &super::Upload,
        forwarded: &[(HeaderName, HeaderValue)],
        key: Option<KeyIndex>,
    ) -> Result<UpstreamResponse, UpstreamError> {
        let headers = self.headers_for(forwarded, key);
        let mut form = reqwest::multipart::Form::new();
        for (name, value) in &upload.fields {
            form = form.text(name.clone(), value.clone());
        }
        for (field, spooled) in &upload.files {
            let file = tokio::fs::File::open(&spooled.path).await.map_err(|e| {
                tracing::error!(error = %e, "a spooled upload could not be read");
                UpstreamError::Broken
            })?;
            let stream = tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024);
            let part = reqwest::multipart::Part::stream_with_length(
                reqwest::Body::wrap_stream(stream),
                spooled.size,
            )
            .file_name(spooled.name.clone())
            .mime_str(&spooled.content_type)
            .map_err(|_| UpstreamError::Broken)?;
            form = form.part(field.clone(), part);
        }
        let url = reqwest::Url::parse(&format!("{}{path}", self.base_url))
            .map_err(|_| UpstreamError::Unreachable)?;
        self.call(self.client.post(url).headers(headers).multipart(form))
            .await
    }

    /// Sends a JSON body with upstream key `key` and returns the response
    /// head (the body streams).
    pub async fn post_json(
        &self,
        path: &str,
        body: Vec<u8>,
        forwarded: &[(HeaderName, HeaderValue)],
        key: Option<KeyIndex>,
    ) -> Result<UpstreamResponse, UpstreamError> {
        let other_path;
        let uri = match self.endpoints.iter().find(|(p, _)| *p == path) {
            Some((_, uri)) => uri,
            None => {
                other_path = format!("{}{path}", self.base_url)
                    .parse::<Uri>()
                    .map_err(|_| UpstreamError::Unreachable)?;
                &other_path
            }
        };
        let Some(direct) = &self.direct else {
            let url =
                reqwest::Url::parse(&uri.to_string()).map_err(|_| UpstreamError::Unreachable)?;
            let headers = self.json_headers(forwarded, key);
            return self
                .call(self.client.post(url).headers(headers).body(body))
                .await;
        };
        let body = Bytes::from(body);
        let sent = async {
            let mut refusals = 0;
            loop {
                let mut request = Request::new(Full::new(body.clone()));
                *request.method_mut() = Method::POST;
                *request.uri_mut() = uri.clone();
                *request.headers_mut() = self.json_headers(forwarded, key);
                match direct.send(request).await {
                    // As reqwest's default policy: twice more at most.
                    Err(SendError::Refused(e)) if refusals < 2 => {
                        refusals += 1;
                        tracing::debug!(provider = %self.name, error = %client::describe(&e), "upstream refused the stream unprocessed; sending again");
                    }
                    sent => return sent,
                }
            }
        };
        match tokio::time::timeout(self.request_timeout, sent).await {
            Err(_) | Ok(Err(SendError::ConnectTimeout)) => Err(UpstreamError::Timeout),
            Ok(Err(SendError::Connect(e))) => {
                tracing::warn!(provider = %self.name, error = %client::describe(&e), "upstream unreachable");
                Err(UpstreamError::Unreachable)
            }
            Ok(Err(SendError::Other(e) | SendError::Refused(e))) => {
                tracing::warn!(provider = %self.name, error = %client::describe(&e), "upstream connection failed before its answer");
                Err(UpstreamError::Broken)
            }
            Ok(Ok(response)) => Ok(response),
        }
    }

    /// The headers of a call: the provider's, then `forwarded` (client
    /// headers meant for the upstream, e.g. `anthropic-beta`), then the
    /// key's, which nothing forwarded overrides.
    fn headers_for(
        &self,
        forwarded: &[(HeaderName, HeaderValue)],
        key: Option<KeyIndex>,
    ) -> HeaderMap {
        let mut headers = self.headers.clone();
        for (name, value) in forwarded {
            headers.insert(name.clone(), value.clone());
        }
        if let Some((name, value)) = key.and_then(|k| self.keys.get(k)).map(|k| &k.header) {
            headers.insert(name.clone(), value.clone());
        }
        headers
    }

    /// The headers of a JSON call: [`Self::headers_for`]'s, the content type
    /// (JSON unless the kind set its own, e.g. Azure's SSML) and
    /// `accept: */*`, as reqwest sends.
    fn json_headers(
        &self,
        forwarded: &[(HeaderName, HeaderValue)],
        key: Option<KeyIndex>,
    ) -> HeaderMap {
        let mut headers = self.headers_for(forwarded, key);
        headers
            .entry(CONTENT_TYPE)
            .or_insert(HeaderValue::from_static("application/json"));
        headers
            .entry(ACCEPT)
            .or_insert(HeaderValue::from_static("*/*"));
        headers
    }

    /// Sends `request`, within the provider's time for a whole call.
    async fn call(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<UpstreamResponse, UpstreamError> {
        match tokio::time::timeout(self.request_timeout, request.send()).await {
            Err(_) => Err(UpstreamError::Timeout),
            Ok(Err(e)) if e.is_timeout() => Err(UpstreamError::Timeout),
            Ok(Err(e)) if e.is_connect() => {
                tracing::warn!(provider = %self.name, error = %without_url(&e), "upstream unreachable");
                Err(UpstreamError::Unreachable)
            }
            Ok(Err(e)) => {
                tracing::warn!(provider = %self.name, error = %without_url(&e), "upstream connection failed before its answer");
                Err(UpstreamError::Broken)
            }
            Ok(Ok(response)) => Ok(client::from_reqwest(response)),
        }
    }

    /// Removes the upstream keys from text that may be shown to a client.
    pub fn scrub(&self, text: &str) -> String {
        let mut text = text.to_string();
        // Longest first: a key containing another is never half-redacted.
        let mut secrets: Vec<&str> = self.keys.secrets().filter(|k| !k.is_empty()).collect();
        secrets.sort_by_key(|k| std::cmp::Reverse(k.len()));
        for key in secrets {
            if text.contains(key) {
                text = text.replace(key, "[redacted]");
            }
        }
        text
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
