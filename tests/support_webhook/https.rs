//! A test CA and an HTTPS client (rustls with ring, hyper) that trusts it.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use kube_changejob::webhook::certs::issue::{self, PemPair};
use rustls::ClientConfig;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls_pki_types::pem::PemObject;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Name the test server certificate is issued for.
pub const SERVER_NAME: &str = "localhost";

/// A CA and a serving certificate for `localhost`.
#[derive(Clone, Debug)]
pub struct TestPki {
    pub ca: PemPair,
    pub leaf: PemPair,
}

pub fn test_pki() -> TestPki {
    test_pki_for(&[SERVER_NAME.to_string()])
}

pub fn test_pki_for(names: &[String]) -> TestPki {
    let now = jiff::Timestamp::now();
    let ca = issue::new_ca(now).unwrap_or_else(|e| panic!("test CA: {e}"));
    let leaf = issue::serving_cert(&ca, names, now).unwrap_or_else(|e| panic!("test leaf: {e}"));
    TestPki { ca, leaf }
}

/// A client configuration trusting `ca_pem`, offering `alpn`, limited to `versions`.
pub fn client_config(
    ca_pem: &str,
    alpn: &[&[u8]],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.unwrap_or_else(|e| panic!("CA PEM: {e}"));
        roots.add(cert).unwrap_or_else(|e| panic!("CA: {e}"));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap_or_else(|e| panic!("{e}"))
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// Opens a TLS connection to `addr`, verifying the server as `server_name` against `ca_pem`.
pub async fn tls_connect(
    addr: SocketAddr,
    ca_pem: &str,
    server_name: &str,
    alpn: &[&[u8]],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Result<TlsStream<TcpStream>, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = ServerName::try_from(server_name.to_string()).map_err(|e| e.to_string())?;
    TlsConnector::from(client_config(ca_pem, alpn, versions))
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())
}

/// The leaf certificate (DER) the server at `addr` presents on a new connection.
pub async fn served_certificate(
    addr: SocketAddr,
    ca_pem: &str,
    server_name: &str,
) -> Result<Vec<u8>, String> {
    let tls = tls_connect(
        addr,
        ca_pem,
        server_name,
        &[b"http/1.1"],
        rustls::DEFAULT_VERSIONS,
    )
    .await?;
    let (_, session) = tls.get_ref();
    session
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.as_ref().to_vec())
        .ok_or_else(|| "no peer certificate".to_string())
}

/// DER of the first certificate in `pem`.
pub fn der_of(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap_or_else(|e| panic!("PEM: {e}"))
        .as_ref()
        .to_vec()
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// An HTTP/1.1 connection over TLS, reused for many requests.
pub struct Connection {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl Connection {
    pub async fn open(addr: SocketAddr, ca_pem: &str) -> Result<Connection, String> {
        let tls = tls_connect(
            addr,
            ca_pem,
            SERVER_NAME,
            &[b"http/1.1"],
            rustls::DEFAULT_VERSIONS,
        )
        .await?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Connection { sender })
    }

    pub async fn send(&mut self, method: &str, path: &str, body: Vec<u8>) -> Result<Reply, String> {
        self.sender.ready().await.map_err(|e| e.to_string())?;
        let request = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, SERVER_NAME)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let response = self
            .sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes()
            .to_vec();
        Ok(Reply {
            status,
            content_type,
            body,
        })
    }
}

/// One request on a fresh connection.
pub async fn send(
    addr: SocketAddr,
    ca_pem: &str,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> Result<Reply, String> {
    Connection::open(addr, ca_pem)
        .await?
        .send(method, path, body)
        .await
}
