//! The HTTP client of upstream calls, and the answer the relay reads.
//!
//! JSON calls — every metered request — go through hyper's pooled client
//! directly. reqwest wraps the same client in layers the gateway does not
//! use (redirects, retries, proxies, timeouts) that cost about 7 % of a
//! request's CPU: its redirect layer alone turns every request's URI back
//! into a parsed URL. reqwest stays for what it does well and what is not
//! per request: multipart uploads, GETs, and any provider reached through a
//! proxy (`HTTPS_PROXY` and friends, which only reqwest honours).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
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
    client: Client<ConnectWithin<hyper_rustls::HttpsConnector<HttpConnector>>, Full<Bytes>>,
}

/// Why a direct call failed before its answer began.
pub enum SendError {
    /// No connection was made (refused, DNS, TLS): the request never left.
    Connect(hyper_util::client::legacy::Error),
    /// No connection within the connect timeout (DNS, TCP and TLS together).
    ConnectTimeout,
    /// HTTP/2: the upstream refused the stream or was closing the
    /// connection gracefully, so it did not process the request; sending
    /// it again on a new stream is safe.
    Refused(hyper_util::client::legacy::Error),
    /// The connection failed once the request may have been sent.
    Other(hyper_util::client::legacy::Error),
}

impl DirectClient {
    /// A client with the same settings as reqwest's defaults and the
    /// provider's reqwest client: no Nagle delay, `connect_timeout` for the
    /// whole connection (DNS, TCP and TLS), TCP keep-alive probes (15 s, every
    /// 15 s, 3 of them) and a 30 s TCP user timeout so that a dead peer is
    /// noticed, idle connections kept 90 s, the same trusted roots (the
    /// bundled Mozilla roots and the system's), HTTP/2 where the upstream's
    /// TLS offers it.
    pub fn new(connect_timeout: Duration) -> Result<DirectClient, String> {
        let mut tcp = HttpConnector::new();
        tcp.set_nodelay(true);
        tcp.set_keepalive(Some(Duration::from_secs(15)));
        tcp.set_keepalive_interval(Some(Duration::from_secs(15)));
        tcp.set_keepalive_retries(Some(3));
        tcp.set_tcp_user_timeout(Some(Duration::from_secs(30)));
        tcp.enforce_http(false);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config()?.clone())
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(tcp);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_timer(TokioTimer::new())
            .build(ConnectWithin {
                inner: https,
                limit: connect_timeout,
            });
        Ok(DirectClient { client })
    }

    /// Sends `request` once; returns the answer's head as soon as it arrives.
    pub async fn send(&self, request: Request<Full<Bytes>>) -> Result<UpstreamResponse, SendError> {
        match self.client.request(request).await {
            Ok(response) => Ok(response.map(Either::Left)),
            Err(e) if e.is_connect() && caused_by::<ConnectTimedOut>(&e) => {
                Err(SendError::ConnectTimeout)
            }
            Err(e) if e.is_connect() => Err(SendError::Connect(e)),
            Err(e) if refused_unprocessed(&e) => Err(SendError::Refused(e)),
            Err(e) => Err(SendError::Other(e)),
        }
    }
}

/// Whether `e` says the upstream did not process the request (as reqwest's
/// default retry policy reads it): an HTTP/2 stream refused with
/// REFUSED_STREAM, or a graceful GOAWAY (NO_ERROR) from the upstream.
fn refused_unprocessed(e: &(dyn std::error::Error + 'static)) -> bool {
    causes(e)
        .find_map(|cause| cause.downcast_ref::<h2::Error>())
        .is_some_and(|h2| {
            let goaway =
                h2.is_go_away() && h2.is_remote() && h2.reason() == Some(h2::Reason::NO_ERROR);
            let refused =
                h2.is_reset() && h2.is_remote() && h2.reason() == Some(h2::Reason::REFUSED_STREAM);
            goaway || refused
        })
}

/// Whether an error of type `E` is among `e`'s causes.
fn caused_by<E: std::error::Error + 'static>(e: &(dyn std::error::Error + 'static)) -> bool {
    causes(e).any(|cause| cause.is::<E>())
}

/// `e`'s causes, nearest first.
fn causes<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(e.source(), |cause| cause.source())
}

/// A connector whose connections (DNS, TCP, TLS) must be made within
/// `limit`, as reqwest's `connect_timeout` means: hyper's own connect
/// timeout covers the TCP connect only, and a TLS handshake that never
/// finishes would otherwise hold a request until its whole-call timeout.
#[derive(Clone)]
struct ConnectWithin<C> {
    inner: C,
    limit: Duration,
}

/// The error of a connection not made within its limit.
#[derive(Debug)]
struct ConnectTimedOut;

impl std::fmt::Display for ConnectTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connect timed out")
    }
}

impl std::error::Error for ConnectTimedOut {}

impl<C> tower_service::Service<Uri> for ConnectWithin<C>
where
    C: tower_service::Service<Uri>,
    C::Future: Send + 'static,
    C::Error: Into<BodyError>,
{
    type Response = C::Response;
    type Error = BodyError;
    type Future = Pin<Box<dyn Future<Output = Result<C::Response, BodyError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BodyError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.inner.call(uri);
        let limit = self.limit;
        Box::pin(async move {
            match tokio::time::timeout(limit, connecting).await {
                Ok(connected) => connected.map_err(Into::into),
                Err(_) => Err(Box::new(ConnectTimedOut) as BodyError),
            }
        })
    }
}

/// TLS as reqwest configures it here: ring, TLS 1.2 and 1.3, webpki's
/// roots plus the system's (object_store turns on reqwest's native roots,
/// so its client trusts both). Made once: reading the system's store takes
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

/// Whether calls to `uri` need reqwest's client: a proxy named in the
/// environment applies to it, or it carries credentials (`user:pass@`),
/// which reqwest sends as basic authentication and hyper would drop.
pub fn needs_reqwest(uri: &Uri) -> bool {
    uri.authority().is_some_and(|a| a.as_str().contains('@')) || proxied(uri)
}

/// Whether calls to `uri` go through a proxy named in the environment.
fn proxied(uri: &Uri) -> bool {
    hyper_util::client::proxy::matcher::Matcher::from_system()
        .intercept(uri)
        .is_some()
}

/// An error's text with its causes, for the log (hyper's errors name no URL,
/// so no credential can be in it).
pub fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    for cause in causes(e) {
        text.push_str(": ");
        text.push_str(&cause.to_string());
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_with_credentials_keeps_reqwests_basic_authentication() {
        let uri: Uri = "http://user:secret@127.0.0.1:1/v1/chat/completions"
            .parse()
            .unwrap();
        assert!(needs_reqwest(&uri));
    }

    /// An error caused by another, as hyper's client error wraps the
    /// connector's.
    #[derive(Debug)]
    struct Wrapping(BodyError);

    impl std::fmt::Display for Wrapping {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("client error (Connect)")
        }
    }

    impl std::error::Error for Wrapping {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&*self.0)
        }
    }

    #[test]
    fn a_connect_timeout_is_told_apart_from_other_connect_errors() {
        let timed_out = Wrapping(Box::new(ConnectTimedOut));
        assert!(caused_by::<ConnectTimedOut>(&timed_out));
        let refused = Wrapping(Box::new(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "refused",
        )));
        assert!(!caused_by::<ConnectTimedOut>(&refused));
        assert!(!refused_unprocessed(&refused));
    }
}
