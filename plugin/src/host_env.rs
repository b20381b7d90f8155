//! The [`Env`] the component gives the Wiz client: HTTP through the host's
//! wasi:http, the host's `storage` and `log` imports, and the wall clock.
//!
//! It is the environment the client runs with in the component (unit tests
//! and benchmarks give it their own). It is kept apart from the exports in
//! `component` because it is the transport: how a request becomes a
//! wasi:http request, how several stay in flight, and how a wasi:http error
//! is named and classified as a [`Failure`].
//!
//! Every request goes through the `wasi:http` bindings generated from the
//! contract's vendored WASI packages (`wit/deps`), a documented binding:
//! a scan keeps several page requests in flight, which `waki`'s client
//! cannot do, and `waki` 0.5's client also cannot send a body with a
//! `Content-Length` reliably: it reads the body stream's state once more
//! after writing it, and wasmtime may report that stream closed once the
//! declared length is written, which `waki` returns as an error and loses
//! the response (seen on the token request). Every request of this
//! plugin has a body, and some servers need its length (presigned upload
//! URLs refuse chunked bodies), so none goes through `waki`.

use crate::scanner::plugin::{log, storage};
use crate::wasi::http::{outgoing_handler, types as http};
use crate::wasi::io::streams;
use crate::wiz::{Env, Failure, Level, Request, Response, TransportError};

/// The host environment. It holds nothing itself: storage is the host's,
/// and the pacing clock is a thread-local of the instance.
pub struct HostEnv;

/// A request handed to the host whose response is read later: what lets a
/// scan keep several page requests in flight.
pub struct Pending {
    response: http::FutureIncomingResponse,
    /// The request's timeout, to name it when it runs out.
    timeout: std::time::Duration,
}

thread_local! {
    /// When the last paced request started.
    static LAST_PACED: std::cell::Cell<Option<std::time::Instant>> =
        const { std::cell::Cell::new(None) };
}

fn transport(message: String) -> TransportError {
    TransportError {
        failure: Failure::Other,
        message,
    }
}

/// A wasi:http error in words, with the class that decides whether it is
/// retried; `timeout` is what the request allowed.
fn transport_code(e: http::ErrorCode, timeout: std::time::Duration) -> TransportError {
    use http::ErrorCode as E;
    let (failure, message) = match e {
        E::HttpRequestDenied => (
            Failure::Denied,
            "the origin is not allowed for this tenant".to_string(),
        ),
        E::DnsError(p) => (
            Failure::Dns,
            match p.rcode {
                Some(cause) => format!("DNS lookup failed ({cause})"),
                None => "DNS lookup failed".to_string(),
            },
        ),
        E::DestinationNotFound => (Failure::Dns, "the host name does not resolve".into()),
        E::TlsCertificateError => (Failure::Certificate, "certificate not trusted".into()),
        E::TlsProtocolError => (Failure::Tls, "TLS protocol error".into()),
        E::TlsAlertReceived(p) => (
            Failure::Tls,
            match p.alert_message {
                Some(m) => format!("the server sent TLS alert: {m}"),
                None => "the server sent a TLS alert".into(),
            },
        ),
        E::DnsTimeout
        | E::ConnectionTimeout
        | E::ConnectionReadTimeout
        | E::ConnectionWriteTimeout
        | E::HttpResponseTimeout => (
            Failure::Timeout,
            format!("timed out after {} s", timeout.as_secs()),
        ),
        E::ConnectionRefused => (Failure::Connection, "connection refused".into()),
        E::ConnectionTerminated => (
            Failure::Connection,
            "the connection closed before the answer was complete".into(),
        ),
        E::HttpResponseIncomplete => (
            Failure::Connection,
            "the answer ended before it was complete".into(),
        ),
        E::DestinationUnavailable | E::DestinationIpUnroutable => {
            (Failure::Connection, "the host is unreachable".into())
        }
        E::HttpProtocolError => (Failure::Other, "the answer is not valid HTTP".into()),
        E::HttpResponseBodySize(_) => (Failure::Other, "the answer is too large".into()),
        E::InternalError(Some(m)) => (Failure::Other, m),
        other => {
            // The variant's name only: its payload is debug text.
            let name = format!("{other:?}");
            let name = name.split('(').next().unwrap_or_default().to_string();
            (Failure::Other, format!("the HTTP exchange failed ({name})"))
        }
    };
    TransportError { failure, message }
}

impl HostEnv {
    fn outgoing(request: &Request) -> Result<http::OutgoingRequest, TransportError> {
        let url = url::Url::parse(&request.url)
            .map_err(|e| transport(format!("bad URL {}: {e}", request.url)))?;
        let headers: Vec<(String, Vec<u8>)> = request
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect();
        let fields = http::Fields::from_list(&headers)
            .map_err(|e| transport(format!("bad request header: {e:?}")))?;
        let out = http::OutgoingRequest::new(fields);
        let method = match request.method {
            "GET" => http::Method::Get,
            "PUT" => http::Method::Put,
            _ => http::Method::Post,
        };
        let scheme = match url.scheme() {
            "http" => http::Scheme::Http,
            _ => http::Scheme::Https,
        };
        let authority = match url.port() {
            Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_string(),
        };
        let path = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        let set = out
            .set_method(&method)
            .and_then(|()| out.set_scheme(Some(&scheme)))
            .and_then(|()| out.set_authority(Some(&authority)))
            .and_then(|()| out.set_path_with_query(Some(&path)));
        set.map_err(|()| transport(format!("the host refused the URL {}", request.url)))?;
        Ok(out)
    }
}

impl Env for HostEnv {
    type Pending = Pending;

    fn start(&self, request: &Request) -> Result<Pending, TransportError> {
        let out = Self::outgoing(request)?;
        let body = out
            .body()
            .map_err(|()| transport("request body unavailable".into()))?;
        // Every phase of the request gets the tenant's timeout; the host
        // may shorten it, never lengthen it.
        let nanos = u64::try_from(request.timeout.as_nanos()).unwrap_or(u64::MAX);
        let options = http::RequestOptions::new();
        let _ = options.set_connect_timeout(Some(nanos));
        let _ = options.set_first_byte_timeout(Some(nanos));
        let _ = options.set_between_bytes_timeout(Some(nanos));
        let response = outgoing_handler::handle(out, Some(options))
            .map_err(|e| transport_code(e, request.timeout))?;
        // A body that cannot be written means the request failed; the
        // response then says why (denied, TLS, refused), so only wait.
        if let Ok(stream) = body.write() {
            let mut ok = true;
            for chunk in request.body.chunks(4096) {
                if stream.blocking_write_and_flush(chunk).is_err() {
                    ok = false;
                    break;
                }
            }
            drop(stream);
            if ok {
                let _ = http::OutgoingBody::finish(body, None);
            }
        }
        Ok(Pending {
            response,
            timeout: request.timeout,
        })
    }

    fn wait(&self, pending: Pending) -> Result<Response, TransportError> {
        let (future, timeout) = (pending.response, pending.timeout);
        let answer = match future.get() {
            Some(answer) => answer,
            None => {
                future.subscribe().block();
                future
                    .get()
                    .ok_or_else(|| transport("no response after waiting".into()))?
            }
        };
        let response = answer
            .map_err(|()| transport("response already taken".into()))?
            .map_err(|e| transport_code(e, timeout))?;
        let status = response.status();
        let headers = response
            .headers()
            .entries()
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
            .collect();
        let incoming = response
            .consume()
            .map_err(|()| transport("response body unavailable".into()))?;
        let stream = incoming
            .stream()
            .map_err(|()| transport("response body unavailable".into()))?;
        let mut body = Vec::new();
        loop {
            match stream.blocking_read(64 * 1024) {
                Ok(chunk) => body.extend_from_slice(&chunk),
                Err(streams::StreamError::Closed) => break,
                Err(streams::StreamError::LastOperationFailed(e)) => {
                    // The stream's error carries the HTTP cause (a timeout
                    // between two chunks, a connection cut mid-body).
                    return Err(match http::http_error_code(&e) {
                        Some(code) => transport_code(code, timeout),
                        None => transport(format!(
                            "reading the answer failed: {}",
                            e.to_debug_string()
                        )),
                    });
                }
            }
        }
        drop(stream);
        drop(http::IncomingBody::finish(incoming));
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    fn pace(&self, interval: std::time::Duration) {
        let now = std::time::Instant::now();
        let start = LAST_PACED
            .get()
            .map_or(now, |last| (last + interval).max(now));
        if start > now {
            std::thread::sleep(start - now);
        }
        LAST_PACED.set(Some(start));
    }

    fn get(&self, key: &str) -> Option<Vec<u8>> {
        storage::get(key)
    }

    fn set(&self, key: &str, value: &[u8]) {
        if let Err(e) = storage::set(key, value) {
            log::log(
                log::Level::Warn,
                "could not cache a value",
                &[
                    ("key".into(), key.into()),
                    ("error".into(), format!("{e:?}")),
                ],
            );
        }
    }

    fn now(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }

    fn log(&self, level: Level, message: &str, fields: &[(&str, &str)]) {
        let level = match level {
            Level::Debug => log::Level::Debug,
            Level::Info => log::Level::Info,
            Level::Warn => log::Level::Warn,
        };
        let fields: Vec<(String, String)> = fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        log::log(level, message, &fields);
    }
}
