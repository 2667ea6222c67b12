//! gRPC plumbing shared by every service: where to listen and connect, the common
//! server set-up, and carrying the gateway's request ID across the hop.
//!
//! Addresses are `unix:///path/to.sock` (the default in split mode) or
//! `tcp://host:port`. Every server also serves `grpc.health.v1.Health` and gRPC
//! reflection, so `grpcurl -unix /run/berth/image.sock list` works.
//!
//! Over TCP, servers and clients speak mutual TLS when given `--tlsverify`
//! files ([`crate::tls`]): a server accepts only clients whose certificate
//! chains to the CA, handshakes run beside the accept loop and are dropped
//! after [`TLS_HANDSHAKE_TIMEOUT`], so a silent client holds nothing up; a
//! client checks the server's certificate for the address it dials.

use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use http::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream, UnixListenerStream};
use tokio_util::sync::CancellationToken;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::service::Interceptor;
use tonic::transport::{Channel, Endpoint, Server};
use tower::Service;

use crate::error::{Error, Result};

/// Metadata key that carries the gateway's request ID into service calls.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Metadata key that carries the API caller's identity (`cn:alice,ou:ops`,
/// `uid:0,gid:0`) into service calls, for their logs.
pub const CALLER_HEADER: &str = "x-berth-caller";

tokio::task_local! {
    /// The request ID of the API request this task serves, if any.
    pub static REQUEST_ID: String;
    /// Who made the API request this task serves, if known.
    pub static CALLER: String;
}

/// The request ID of the current task, if it serves an API request.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(|id| id.clone()).ok()
}

/// The caller of the API request the current task serves, if known.
pub fn current_caller() -> Option<String> {
    CALLER.try_with(|c| c.clone()).ok()
}

/// Where a gRPC server listens or a client connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addr {
    /// A unix socket path.
    Unix(PathBuf),
    /// A TCP address.
    Tcp(SocketAddr),
}

impl FromStr for Addr {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        if let Some(path) = s.strip_prefix("unix://") {
            if path.is_empty() {
                return Err(Error::invalid(format!("invalid address {s:?}: empty socket path")));
            }
            Ok(Addr::Unix(PathBuf::from(path)))
        } else if let Some(hostport) = s.strip_prefix("tcp://") {
            hostport
                .parse()
                .map(Addr::Tcp)
                .map_err(|_| Error::invalid(format!("invalid address {s:?}: want tcp://IP:PORT")))
        } else if s.starts_with('/') {
            Ok(Addr::Unix(PathBuf::from(s)))
        } else {
            Err(Error::invalid(format!("invalid address {s:?}: want unix:///path or tcp://IP:PORT")))
        }
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Addr::Unix(p) => write!(f, "unix://{}", p.display()),
            Addr::Tcp(a) => write!(f, "tcp://{a}"),
        }
    }
}

/// How long a stopping server waits for open calls before it closes anyway.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Binds a unix socket, replacing a stale socket file, with exactly `mode`
/// (0660 for the Docker API, as dockerd's socket for its group; 0600 for a
/// service's gRPC socket, which only Berth itself calls).
pub fn bind_unix(path: &Path, mode: u32) -> Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::from(e).context(format!("create {}", parent.display())))?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(Error::from(e).context(format!("remove stale socket {}", path.display())));
        }
    }
    let listener = UnixListener::bind(path).map_err(|e| Error::from(e).context(format!("bind {}", path.display())))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| Error::from(e).context(format!("chmod {}", path.display())))?;
    Ok(listener)
}

/// A generated tonic service that [`serve`] can host: what every `*ServiceServer` is.
pub trait GrpcService:
    Service<Request<Body>, Response = Response<Body>, Error = Infallible, Future: Send + 'static>
    + NamedService
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> GrpcService for S where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible, Future: Send + 'static>
        + NamedService
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// How long a TCP client has to finish its TLS handshake.
pub const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The ALPN protocol of gRPC.
const H2: &[u8] = b"h2";

/// The server side of mutual TLS for gRPC, from `--tlsverify` files.
pub fn server_tls(files: &crate::tls::TlsFiles) -> Result<std::sync::Arc<rustls::ServerConfig>> {
    crate::tls::server_config(files, &[H2])
}

/// The client side of mutual TLS for gRPC, from `--tlsverify` files.
pub fn client_tls(files: &crate::tls::TlsFiles) -> Result<std::sync::Arc<rustls::ClientConfig>> {
    crate::tls::client_config(files, &[H2])
}

/// A TLS connection a gRPC server took.
pub struct TlsConn(tokio_rustls::server::TlsStream<TcpStream>);

impl tonic::transport::server::Connected for TlsConn {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.0.get_ref().0.connect_info()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

/// The connections of `listener` that completed a TLS handshake with a
/// client certificate from the CA. Each handshake runs in its own task, with a
/// timeout; a failed one is logged and dropped, never the listener.
fn tls_incoming(
    listener: TcpListener,
    config: std::sync::Arc<rustls::ServerConfig>,
) -> ReceiverStream<std::io::Result<TlsConn>> {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = tx.closed() => break,
                accepted = listener.accept() => accepted,
            };
            let (tcp, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors, say: wait rather than spin.
                    tracing::warn!(error = %e, "grpc accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(TlsConn(tls))).await;
                    }
                    Ok(Err(e)) => tracing::warn!(%peer, error = %e, "grpc tls handshake failed"),
                    Err(_) => tracing::info!(%peer, timeout = ?TLS_HANDSHAKE_TIMEOUT, "grpc tls handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// Serves one Berth gRPC service, its events stream ([`crate::events`]),
/// health and reflection on `addr` until `shutdown` fires; on TCP with `tls`,
/// only to clients with a certificate from its CA.
pub async fn serve<S: GrpcService>(
    addr: &Addr,
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    service: S,
    events: std::sync::Arc<crate::events::EventBus>,
    shutdown: CancellationToken,
) -> Result<()> {
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<S>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(berth_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| Error::internal(format!("reflection: {e}")))?;
    let router = Server::builder()
        .layer(tower::layer::layer_fn(|inner| TraceCalls { inner }))
        .add_service(health)
        .add_service(reflection)
        .add_service(crate::events::events_server(events))
        .add_service(service);
    let name = S::NAME;
    let stop = {
        let shutdown = shutdown.clone();
        let reporter = health_reporter.clone();
        async move {
            shutdown.cancelled().await;
            reporter.set_not_serving::<S>().await;
        }
    };
    tracing::info!(service = name, %addr, tls = tls.is_some(), "grpc listening");
    // Open connections get a grace period to finish; an idle client cannot hold shutdown hostage.
    let deadline = async {
        shutdown.cancelled().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    let result = match addr {
        Addr::Unix(path) => {
            let listener = bind_unix(path, crate::perms::PRIVATE_FILE)?;
            crate::service::notify_ready();
            let serving = router.serve_with_incoming_shutdown(UnixListenerStream::new(listener), stop);
            let out = tokio::select! {
                out = serving => out,
                () = deadline => Ok(()),
            };
            let _ = std::fs::remove_file(path);
            out
        }
        Addr::Tcp(sa) => {
            let listener = TcpListener::bind(sa).await.map_err(|e| Error::from(e).context(format!("bind {sa}")))?;
            crate::service::notify_ready();
            match tls {
                Some(config) => {
                    let serving = router.serve_with_incoming_shutdown(tls_incoming(listener, config), stop);
                    tokio::select! {
                        out = serving => out,
                        () = deadline => Ok(()),
                    }
                }
                None => {
                    let serving = router.serve_with_incoming_shutdown(TcpListenerStream::new(listener), stop);
                    tokio::select! {
                        out = serving => out,
                        () = deadline => Ok(()),
                    }
                }
            }
        }
    };
    result.map_err(|e| Error::internal(format!("grpc server {name}: {e}")))
}

/// Runs each gRPC call in a span that carries the caller's request ID, and logs
/// the call when it is answered, so one API request can be followed across processes.
#[derive(Debug, Clone)]
pub struct TraceCalls<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for TraceCalls<S>
where
    S: Service<Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        use tracing::Instrument;
        let path = req.uri().path().to_string();
        let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let (request_id, caller) = (header(REQUEST_ID_HEADER), header(CALLER_HEADER));
        let span = tracing::info_span!(
            "grpc",
            path = %path,
            request_id = %request_id,
            caller = %caller,
            otel.name = tracing::field::Empty,
            otel.kind = tracing::field::Empty,
            rpc.system = tracing::field::Empty,
        );
        if crate::telemetry::enabled() {
            span.record("otel.name", path.trim_start_matches('/'));
            span.record("otel.kind", "server");
            span.record("rpc.system", "grpc");
            // The caller's trace context: this call's span is a child of the
            // span that made it, in whichever process that was.
            crate::telemetry::set_remote_parent(&span, req.headers());
        }
        let start = std::time::Instant::now();
        let fut = self.inner.call(req);
        Box::pin(
            async move {
                let out = fut.await;
                if !path.starts_with("/grpc.") {
                    let elapsed = start.elapsed().as_secs_f64();
                    tracing::info!(ms = elapsed * 1000.0, "grpc call answered");
                    let m = crate::metrics::global();
                    m.inc("berth_grpc_server_calls_total", "gRPC calls served, by method.", &[("method", &path)], 1.0);
                    m.observe(
                        "berth_grpc_server_call_duration_seconds",
                        "Time to the answer of a gRPC call (streams: to their first message).",
                        &[("method", &path)],
                        elapsed,
                    );
                }
                out
            }
            .instrument(span),
        )
    }
}

/// A lazily connecting channel to `addr`: the first call dials, later calls
/// redial as needed. On TCP with `tls`, the server must show a certificate
/// from the CA for the address dialled, and this end shows its own.
pub fn channel(addr: &Addr, tls: Option<&std::sync::Arc<rustls::ClientConfig>>) -> Result<Channel> {
    match addr {
        Addr::Unix(path) => {
            let path = path.clone();
            // The URI is a placeholder: the connector below ignores it and dials the socket.
            let endpoint = Endpoint::from_static("http://berth.local");
            Ok(endpoint.connect_with_connector_lazy(tower::service_fn(move |_| {
                let path = path.clone();
                async move { UnixStream::connect(path).await.map(TokioIo::new) }
            })))
        }
        Addr::Tcp(sa) => {
            // TLS, when used, is this connector's: tonic sees a plain stream.
            let endpoint = Endpoint::from_shared(format!("http://{sa}"))
                .map_err(|e| Error::invalid(format!("invalid endpoint {sa}: {e}")))?;
            let Some(config) = tls else { return Ok(endpoint.connect_lazy()) };
            let connector = tokio_rustls::TlsConnector::from(config.clone());
            let (sa, name) = (*sa, rustls::pki_types::ServerName::IpAddress(sa.ip().into()));
            Ok(endpoint.connect_with_connector_lazy(tower::service_fn(move |_| {
                let (connector, name) = (connector.clone(), name.clone());
                async move {
                    let tcp = TcpStream::connect(sa).await?;
                    let tls = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, connector.connect(name, tcp))
                        .await
                        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "tls handshake timed out"))??;
                    Ok::<_, std::io::Error>(TokioIo::new(tls))
                }
            })))
        }
    }
}

/// Turns a byte stream into a stream of request messages (`wrap` each chunk),
/// after `first`: what a client-streaming call sends. An error on the input
/// (a client gone mid-upload) never ends the request stream: a clean end
/// would tell the server the input is whole, and a tar cut at an entry's end
/// looks whole. The stream stays open until the call is dropped, which its
/// caller does on that error, and the server sees the call cancelled.
pub fn byte_requests<T: Send + 'static>(
    mut input: crate::ByteStream,
    wrap: impl Fn(bytes::Bytes) -> T + Send + 'static,
    first: Option<T>,
) -> tokio_stream::wrappers::ReceiverStream<T> {
    use futures::StreamExt;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        if let Some(f) = first
            && tx.send(f).await.is_err()
        {
            return;
        }
        while let Some(item) = input.next().await {
            match item {
                Ok(chunk) => {
                    if tx.send(wrap(chunk)).await.is_err() {
                        return;
                    }
                }
                Err(_) => {
                    tx.closed().await;
                    return;
                }
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// The bytes of a client-streaming call's messages (`part` of each), as a
/// byte stream; a transport error ends it with that error.
pub fn byte_chunks<T: Send + 'static>(
    stream: tonic::Streaming<T>,
    part: impl Fn(T) -> Option<bytes::Bytes> + Send + 'static,
) -> crate::ByteStream {
    use futures::StreamExt;
    Box::pin(stream.filter_map(move |m| {
        let out = match m {
            Ok(msg) => part(msg).map(Ok),
            Err(status) => Some(Err(Error::from(status))),
        };
        futures::future::ready(out)
    }))
}

/// Client interceptor that stamps the current request ID and caller on every call.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestIdInterceptor;

impl Interceptor for RequestIdInterceptor {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(id) = current_request_id()
            && let Ok(value) = id.parse()
        {
            req.metadata_mut().insert(REQUEST_ID_HEADER, value);
        }
        // Names that are not plain ASCII are left out rather than mangled.
        if let Some(caller) = current_caller()
            && let Ok(value) = caller.parse()
        {
            req.metadata_mut().insert(CALLER_HEADER, value);
        }
        crate::telemetry::inject_current(req.metadata_mut().as_mut());
        Ok(req)
    }
}

/// Turns a transport failure into a clear "unavailable" error naming the service.
pub fn status_to_error(service: &str, status: tonic::Status) -> Error {
    let err = Error::from(status);
    if err.kind() == crate::ErrorKind::Unavailable {
        err.context(format!("{service} service unavailable"))
    } else {
        err
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_addresses() {
        assert_eq!(
            "unix:///run/berth/image.sock".parse::<Addr>().ok(),
            Some(Addr::Unix("/run/berth/image.sock".into()))
        );
        assert_eq!("/run/x.sock".parse::<Addr>().ok(), Some(Addr::Unix("/run/x.sock".into())));
        assert_eq!("tcp://127.0.0.1:7001".parse::<Addr>().ok(), Some(Addr::Tcp("127.0.0.1:7001".parse().unwrap())));
        assert!("tcp://localhost".parse::<Addr>().is_err());
        assert!("unix://".parse::<Addr>().is_err());
        assert!("http://x".parse::<Addr>().is_err());
    }

    #[test]
    fn display_round_trips() {
        for s in ["unix:///a/b.sock", "tcp://127.0.0.1:9"] {
            assert_eq!(s.parse::<Addr>().map(|a| a.to_string()).ok().as_deref(), Some(s));
        }
    }

    #[tokio::test]
    async fn an_input_error_never_ends_the_request_stream() {
        use futures::StreamExt;
        let chunks = vec![Ok(bytes::Bytes::from_static(b"whole entry")), Err(Error::invalid("client gone"))];
        let mut out = byte_requests(Box::pin(futures::stream::iter(chunks)), |b| b, None);
        assert_eq!(out.next().await.as_deref(), Some(&b"whole entry"[..]));
        // Open, not ended: the server must not take what came as the whole input.
        let next = tokio::time::timeout(std::time::Duration::from_millis(200), out.next()).await;
        assert!(next.is_err(), "the request stream ended after an input error: {next:?}");
        // A clean input ends it.
        let mut out =
            byte_requests(Box::pin(futures::stream::iter(vec![Ok(bytes::Bytes::from_static(b"x"))])), |b| b, None);
        assert_eq!(out.next().await.as_deref(), Some(&b"x"[..]));
        assert_eq!(out.next().await, None);
    }
}
