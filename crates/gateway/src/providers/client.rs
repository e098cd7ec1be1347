//! The HTTP client of upstream calls, and the answer the relay reads.
//!
//! JSON calls — every metered request — go through hyper's pooled client
//! directly. reqwest wraps the same client in layers the gateway does not
//! use (redirects, retries, proxies, timeouts) that cost about 7 % of a
//! request's CPU: its redirect layer alone turns every request's URI back
//! into a parsed URL. reqwest stays for what it does well and what is not
//! per request: multipart uploads, GETs, and any provider reached through a
//! proxy (`HTTPS_PROXY` and friends, which only reqwest honours).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::http::{Request, Response, Uri};
use bytes::Bytes;
use http_body_util::{BodyDataStream, BodyExt, Either, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// An upstream answer's body: hyper's own, or reqwest's for the calls it makes.
pub type UpstreamBody = Either<hyper::body::Incoming, reqwest::Body>;

/// An upstream's answer: its head, and the body still to be read.
pub type UpstreamResponse = Response<UpstreamBody>;

/// Why reading an upstream body failed.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// The whole body of `response`.
pub async fn read_whole(response: UpstreamResponse) -> Result<Bytes, BodyError> {
    Ok(response.into_body().collect().await?.to_bytes())
}

/// The body of `response`, piece by piece as the network gives it.
pub fn pieces(response: UpstreamResponse) -> BodyDataStream<UpstreamBody> {
    BodyDataStream::new(response.into_body())
}

/// `response` from reqwest, as the relay reads every answer.
pub fn from_reqwest(response: reqwest::Response) -> UpstreamResponse {
    Response::from(response).map(Either::Right)
}

/// hyper's pooled client over plain TCP or TLS.
pub struct DirectClient {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
}

/// Why a direct call failed before its answer began.
pub enum SendError {
    /// No connection was made (refused, DNS, TLS): the request never left.
    Connect(hyper_util::client::legacy::Error),
    /// The connection failed once the request may have been sent.
    Other(hyper_util::client::legacy::Error),
}

impl DirectClient {
    /// A client with the same settings as the provider's reqwest client: no
    /// Nagle delay, `connect_timeout` per connection, idle connections
    /// kept 90 s, the same trusted roots (the bundled Mozilla roots and the
    /// system's), HTTP/2 where the upstream's TLS offers it.
    pub fn new(connect_timeout: Duration) -> Result<DirectClient, String> {
        let mut tcp = HttpConnector::new();
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(connect_timeout));
        tcp.enforce_http(false);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config()?.clone())
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(tcp);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_timer(TokioTimer::new())
            .build(https);
        Ok(DirectClient { client })
    }

    /// Sends `request`; returns the answer's head as soon as it arrives.
    pub async fn send(&self, request: Request<Full<Bytes>>) -> Result<UpstreamResponse, SendError> {
        match self.client.request(request).await {
            Ok(response) => Ok(response.map(Either::Left)),
            Err(e) if e.is_connect() => Err(SendError::Connect(e)),
            Err(e) => Err(SendError::Other(e)),
        }
    }
}

/// TLS as reqwest configures it here: ring, TLS 1.2 and 1.3, webpki's
/// roots plus the system's. Made once: reading the system's store takes
/// milliseconds, and every provider of every catalog reload needs it.
fn tls_config() -> Result<&'static rustls::ClientConfig, String> {
    static CONFIG: OnceLock<Result<rustls::ClientConfig, String>> = OnceLock::new();
    CONFIG
        .get_or_init(make_tls_config)
        .as_ref()
        .map_err(Clone::clone)
}

fn make_tls_config() -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    // A system store that cannot be read (or has bad entries) leaves the
    // bundled roots, as with reqwest.
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Whether calls to `uri` go through a proxy named in the environment.
pub fn proxied(uri: &Uri) -> bool {
    hyper_util::client::proxy::matcher::Matcher::from_system()
        .intercept(uri)
        .is_some()
}

/// An error's text with its causes, for the log (hyper's errors name no URL,
/// so no credential can be in it).
pub fn describe(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
