//! HTTPS: the API served with an operator's certificate and key, and the
//! errors for files that cannot be used.

use crate::support::TestApi;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use scanner_api::{Api, load_tls};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A certificate for 127.0.0.1 and its key, written as PEM files in `dir`;
/// returns their paths and the certificate's DER.
fn certificate(dir: &Path) -> (PathBuf, PathBuf, Vec<u8>) {
    let issued =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).expect("certificate");
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, issued.cert.pem()).expect("write cert");
    std::fs::write(&key, issued.signing_key.serialize_pem()).expect("write key");
    (cert, key, issued.cert.der().to_vec())
}

/// The error of loading `cert` and `key`, which must fail.
fn refused(cert: &Path, key: &Path, why: &str) -> scanner_api::TlsError {
    match load_tls(cert, key) {
        Ok(_) => panic!("loaded although {why}"),
        Err(error) => error,
    }
}

/// A TLS client that trusts only `der`.
fn client(der: &[u8]) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(der.to_vec().into())
        .expect("trust the certificate");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocols")
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_answers_over_https_with_the_operators_certificate() {
    let api = TestApi::start(10).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key, der) = certificate(dir.path());
    let tls = load_tls(&cert, &key).expect("load the certificate and key");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(scanner_api::serve_tls(
        listener,
        tls,
        Api::new(api.runtime.clone()).expect("a SQLite store"),
        std::future::pending(),
    ));

    // A client that sends no TLS at all gets no HTTP answer: the
    // connection is dropped without a byte of plain text.
    let mut plain = TcpStream::connect(addr).await.expect("connect");
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer).await;
    assert!(
        !String::from_utf8_lossy(&answer).contains("HTTP/1.1 200"),
        "plain HTTP was answered on the HTTPS port"
    );

    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("127.0.0.1").expect("name");
    let stream = client(&der).connect(name, tcp).await.expect("handshake");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP over TLS");
    tokio::spawn(connection);
    let token = api.token(&[], true);
    for (path, auth) in [("/healthz", None), ("/v1/plugins", Some(&token))] {
        let mut request = hyper::Request::get(path).header("host", "127.0.0.1");
        if let Some(token) = auth {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        // One connection for both: wait until it takes the next request.
        sender.ready().await.expect("connection ready");
        let response = sender
            .send_request(request.body(Empty::<Bytes>::new()).expect("request"))
            .await
            .expect("response");
        assert_eq!(response.status(), hyper::StatusCode::OK, "{path}");
        let body = response.into_body().collect().await.expect("body");
        assert!(!body.to_bytes().is_empty(), "{path}");
    }
}

#[test]
fn unusable_certificate_or_key_files_are_named_without_their_content() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key, _) = certificate(dir.path());
    let missing = dir.path().join("missing.pem");
    let error = refused(&missing, &key, "no certificate file");
    assert!(error.to_string().contains("--tls-cert"), "{error}");
    assert!(error.to_string().contains("missing.pem"), "{error}");

    // The key where the certificate belongs: no certificate in it.
    let error = refused(&key, &key, "a key is not a certificate");
    assert!(
        error.to_string().contains("holds no certificate"),
        "{error}"
    );

    // A key file whose body is damaged: the message quotes none of it.
    let pem = std::fs::read_to_string(&key).expect("key");
    let secret_line = pem.lines().nth(1).expect("a base64 line").to_string();
    let damaged = dir.path().join("damaged.pem");
    std::fs::write(
        &damaged,
        pem.replacen(&secret_line, &format!("{secret_line}!!"), 1),
    )
    .expect("write");
    let error = refused(&cert, &damaged, "a damaged key");
    let text = error.to_string();
    assert!(
        text.contains("--tls-key") && text.contains("damaged.pem"),
        "{text}"
    );
    assert!(!text.contains(&secret_line[..16]), "{text}");

    // Another certificate's key: refused as a pair.
    let other = tempfile::tempdir().expect("tempdir");
    let (_, other_key, _) = certificate(other.path());
    let error = refused(&cert, &other_key, "a key of another certificate");
    assert!(
        error.to_string().contains("--tls-cert/--tls-key"),
        "{error}"
    );
}
