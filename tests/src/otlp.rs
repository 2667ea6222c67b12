//! A test OTLP receiver: OTLP/gRPC (the trace service, on tonic) or
//! OTLP/HTTP (`POST /v1/traces`, protobuf), on a loopback port, keeping every
//! span it is sent with its process's `service.name`.

use std::io::{BufRead, BufReader, Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value;

/// A received span: its process's `service.name` and the span.
#[derive(Debug, Clone)]
pub struct Got {
    /// The `service.name` of the process that sent it.
    pub service: String,
    /// The span.
    pub span: opentelemetry_proto::tonic::trace::v1::Span,
}

/// What arrived, shared with the servers.
#[derive(Clone, Default)]
pub struct Receiver(Arc<Mutex<Vec<Got>>>);

impl Receiver {
    fn record(&self, req: ExportTraceServiceRequest) {
        let mut got = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for rs in req.resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| r.attributes.iter())
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref()?.value.as_ref())
                .map(|v| match v {
                    Value::StringValue(s) => s.clone(),
                    other => format!("{other:?}"),
                })
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for span in ss.spans {
                    got.push(Got { service: service.clone(), span });
                }
            }
        }
    }

    /// Every span so far.
    pub fn spans(&self) -> Vec<Got> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits until `done` holds for what arrived (spans come in batches).
    pub fn wait_for(&self, what: &str, done: impl Fn(&[Got]) -> bool) -> Vec<Got> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let spans = self.spans();
            if done(&spans) {
                return spans;
            }
            assert!(Instant::now() < deadline, "{what}: got {:#?}", names(&spans));
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// `service: name trace-id` of each span, for failure messages.
pub fn names(spans: &[Got]) -> Vec<String> {
    spans.iter().map(|g| format!("{}: {} {}", g.service, g.span.name, hex::encode(&g.span.trace_id))).collect()
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.record(req.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// An OTLP/gRPC receiver on a loopback port, on a runtime of its own.
pub fn grpc_receiver() -> (Receiver, String, tokio::runtime::Runtime) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let rec = Receiver::default();
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind");
    let addr = listener.local_addr().expect("addr");
    let service = TraceServiceServer::new(rec.clone());
    rt.spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    (rec, format!("http://{addr}"), rt)
}

/// An OTLP/HTTP receiver (`POST /v1/traces`, protobuf bodies) on a loopback port.
pub fn http_receiver() -> (Receiver, String) {
    let rec = Receiver::default();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let r = rec.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let r = r.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().expect("clone"));
                let mut conn = conn;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let path_ok = line.starts_with("POST /v1/traces ");
                    let mut len = 0usize;
                    let mut protobuf = false;
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).unwrap_or(0) == 0 {
                            return;
                        }
                        let h = h.trim_end().to_ascii_lowercase();
                        if h.is_empty() {
                            break;
                        }
                        if let Some(v) = h.strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                        protobuf |= h.starts_with("content-type:") && h.contains("application/x-protobuf");
                    }
                    let mut body = vec![0; len];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    let status = match (path_ok && protobuf, prost::Message::decode(&body[..])) {
                        (true, Ok(req)) => {
                            r.record(req);
                            "200 OK"
                        }
                        _ => "400 Bad Request",
                    };
                    let reply = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n"
                    );
                    if conn.write_all(reply.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (rec, format!("http://{addr}"))
}
