//! Logs and traces, set up the same way by every binary: a level (or `RUST_LOG`
//! filter) and text or JSON on stderr; and, when an OTLP endpoint is given,
//! OpenTelemetry traces of the same spans.
//!
//! Traces are off by default. `--otlp-endpoint`, or the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), turns
//! them on; `OTEL_EXPORTER_OTLP_PROTOCOL` picks `grpc` (the default) or
//! `http/protobuf`, and `OTEL_SERVICE_NAME` renames the process in them.
//! Spans are batched on a thread of their own with a bounded queue: a request
//! never waits for the collector, and when it is down or slow spans are dropped
//! (counted in the log at exit), never requests.
//!
//! One trace crosses processes: the gateway's span for an API request (whose
//! parent is the client's W3C `traceparent` header, when it sends one) is the
//! parent of each gRPC call it makes (`traceparent` in the call's metadata,
//! [`crate::grpc`]), whose server span is the parent of the service's own steps.

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

use crate::error::{Error, Result};

/// Output format of the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Levels accepted by `--log-level`, as dockerd names them.
pub const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "fatal"];

/// Checks a `--log-level` value.
pub fn validate_level(level: &str) -> Result<(), String> {
    if LEVELS.contains(&level) {
        Ok(())
    } else {
        Err(format!("invalid log level {level:?}: want one of {}", LEVELS.join(", ")))
    }
}

/// `--log-level` as a clap value parser.
pub fn parse_level(level: &str) -> Result<String, String> {
    validate_level(level).map(|()| level.to_string())
}

/// Whether traces are exported (set once, by [`init`]).
static ENABLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether this process exports traces: spans then get their OpenTelemetry
/// fields (`otel.name`, ...), which the logs need not repeat otherwise.
pub fn enabled() -> bool {
    ENABLED.load(std::sync::atomic::Ordering::Relaxed)
}

/// How long one export may take (connect included) before it is given up.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// The OTLP wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP/gRPC (port 4317 by convention).
    Grpc,
    /// OTLP/HTTP with protobuf bodies (port 4318, `POST /v1/traces`).
    HttpProtobuf,
}

/// Where traces go, when they are on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Otlp {
    /// The URL spans are sent to: the collector's base for gRPC, the full
    /// `/v1/traces` URL for HTTP.
    pub endpoint: String,
    /// The wire.
    pub protocol: Protocol,
    /// `service.name` of this process's spans.
    pub service_name: String,
}

impl Otlp {
    /// Reads the trace settings: `flag` (`--otlp-endpoint`, a collector's base
    /// URL) first, then the standard `OTEL_EXPORTER_OTLP_*` variables through
    /// `env`; `None` when no endpoint is given (tracing off).
    pub fn from_env(
        flag: Option<&str>,
        default_service: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>> {
        let get = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        let protocol = match get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .or_else(|| get("OTEL_EXPORTER_OTLP_PROTOCOL"))
            .as_deref()
            .map(str::trim)
        {
            None | Some("grpc") => Protocol::Grpc,
            Some("http/protobuf") => Protocol::HttpProtobuf,
            Some(other) => {
                return Err(Error::invalid(format!(
                    "OTEL_EXPORTER_OTLP_PROTOCOL {other:?}: want grpc or http/protobuf"
                )));
            }
        };
        // A signal-specific URL is used as it is; a base gets the signal's path (HTTP).
        let flag = flag.map(str::trim).filter(|f| !f.is_empty()).map(str::to_string);
        let endpoint = match (flag, get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), get("OTEL_EXPORTER_OTLP_ENDPOINT")) {
            (None, Some(traces), _) => traces,
            (Some(base), _, _) | (None, None, Some(base)) => match protocol {
                Protocol::Grpc => base,
                Protocol::HttpProtobuf => format!("{}/v1/traces", base.trim_end_matches('/')),
            },
            (None, None, None) => return Ok(None),
        };
        let uri: http::Uri =
            endpoint.parse().map_err(|e| Error::invalid(format!("OTLP endpoint {endpoint:?}: {e}")))?;
        if !matches!(uri.scheme_str(), Some("http")) || uri.host().is_none() {
            return Err(Error::invalid(format!(
                "OTLP endpoint {endpoint:?}: want http://HOST:PORT (a collector on this host or a trusted network)"
            )));
        }
        let service_name = get("OTEL_SERVICE_NAME").unwrap_or_else(|| default_service.to_string());
        Ok(Some(Otlp { endpoint, protocol, service_name }))
    }
}

/// What must outlive the process's work: the trace pipeline, flushed by
/// [`Telemetry::shutdown`] (spans still queued are sent then).
#[must_use = "call shutdown() before exit, or queued spans are lost"]
#[derive(Debug, Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Sends the spans still queued (for at most a few seconds) and stops the
    /// exporter. Call it while the tokio runtime still runs.
    pub async fn shutdown(self) {
        if let Some(provider) = self.provider {
            let done = tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(EXPORT_TIMEOUT)).await;
            if let Ok(Err(e)) = done {
                tracing::warn!(error = %e, "flushing traces");
            }
        }
    }
}

fn log_filter(level: &str) -> EnvFilter {
    let level = if level == "fatal" { "error" } else { level };
    EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!("warn,berth={level},berthd={level},berth_core={level},berth_image={level},berth_runtime={level},berth_network={level},berth_volume={level},berth_gateway={level}"))
    })
}

/// The log lines on stderr, as text or JSON.
fn log_layer<S>(format: LogFormat) -> Box<dyn tracing_subscriber::Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer().with_ansi(ansi).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().flatten_event(true).boxed(),
    }
}

/// Installs the global subscriber: logs (`RUST_LOG` overrides `level` when
/// set) and, with `otlp`, traces. Call it inside the tokio runtime (the
/// exporter's connection lives there).
pub fn init(level: &str, format: LogFormat, otlp: Option<&Otlp>) -> Result<Telemetry> {
    let Some(otlp) = otlp else {
        // Logs only: the filter for the whole subscriber, so what it leaves
        // out costs nothing (no span is made for it).
        let _ = tracing_subscriber::registry().with(log_filter(level)).with(log_layer(format)).try_init();
        return Ok(Telemetry::default());
    };
    // Logs and traces: a filter for each (the traces keep Berth's info spans
    // whatever the log level).
    let logs = log_layer(format).with_filter(log_filter(level));
    let provider = provider(otlp)?;
    opentelemetry::global::set_text_map_propagator(opentelemetry_sdk::propagation::TraceContextPropagator::new());
    // Berth's own spans only, at info: the exporter's own HTTP/2 and gRPC
    // spans would trace the tracing.
    let targets = tracing_subscriber::filter::Targets::new()
        .with_default(tracing::level_filters::LevelFilter::OFF)
        .with_target("berth", tracing::level_filters::LevelFilter::INFO);
    let traces = tracing_opentelemetry::layer().with_tracer(provider.tracer("berth")).with_filter(targets);
    let installed = tracing_subscriber::registry().with(logs).with(traces).try_init().is_ok();
    ENABLED.store(installed, std::sync::atomic::Ordering::Relaxed);
    tracing::info!(endpoint = %otlp.endpoint, protocol = ?otlp.protocol, service = %otlp.service_name, "exporting traces");
    Ok(Telemetry { provider: Some(provider) })
}

fn provider(otlp: &Otlp) -> Result<SdkTracerProvider> {
    use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _, WithTonicConfig as _};
    let failed = |e: &dyn std::fmt::Display| Error::invalid(format!("OTLP exporter for {}: {e}", otlp.endpoint));
    let exporter = match otlp.protocol {
        Protocol::Grpc => {
            // Connect and call timeouts of its own: a collector that drops
            // packets holds the export thread for EXPORT_TIMEOUT, not minutes.
            let channel = tonic::transport::Endpoint::from_shared(otlp.endpoint.clone())
                .map_err(|e| failed(&e))?
                .timeout(EXPORT_TIMEOUT)
                .connect_timeout(EXPORT_TIMEOUT)
                .connect_lazy();
            opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_channel(channel)
                .with_timeout(EXPORT_TIMEOUT)
                .build()
                .map_err(|e| failed(&e))?
        }
        Protocol::HttpProtobuf => {
            let client = OnRuntime {
                inner: opentelemetry_http::hyper::HyperClient::with_default_connector(EXPORT_TIMEOUT, None),
                runtime: tokio::runtime::Handle::try_current().map_err(|e| failed(&e))?,
            };
            opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_http_client(client)
                .with_endpoint(otlp.endpoint.clone())
                .with_timeout(EXPORT_TIMEOUT)
                .build()
                .map_err(|e| failed(&e))?
        }
    };
    // The batch thread's queue is bounded; spans beyond it are dropped.
    let batch = opentelemetry_sdk::trace::BatchConfigBuilder::default()
        .with_max_queue_size(4096)
        .with_max_export_batch_size(512)
        .with_scheduled_delay(Duration::from_millis(500))
        .build();
    let processor = opentelemetry_sdk::trace::BatchSpanProcessor::builder(exporter).with_batch_config(batch).build();
    let resource = opentelemetry_sdk::Resource::builder().with_service_name(otlp.service_name.clone()).build();
    Ok(SdkTracerProvider::builder().with_span_processor(processor).with_resource(resource).build())
}

/// The HTTP exporter's client, run on the tokio runtime: the batch processor
/// calls it from a thread of its own, where hyper's timers would not run.
#[derive(Debug, Clone)]
struct OnRuntime {
    inner: opentelemetry_http::hyper::HyperClient,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for OnRuntime {
    async fn send_bytes(
        &self,
        req: http::Request<bytes::Bytes>,
    ) -> std::result::Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let inner = self.inner.clone();
        self.runtime.spawn(async move { inner.send_bytes(req).await }).await?
    }
}

/// Sets `span`'s parent to the W3C trace context in `headers` (`traceparent`),
/// if there is one and tracing is on. Call it before the span is entered.
pub fn set_remote_parent(span: &tracing::Span, headers: &http::HeaderMap) {
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    if headers.contains_key("traceparent") {
        let parent = opentelemetry::global::get_text_map_propagator(|p| {
            p.extract(&opentelemetry_http::HeaderExtractor(headers))
        });
        let _ = span.set_parent(parent);
    }
}

/// Writes the current span's W3C trace context (`traceparent`) into `headers`,
/// when tracing is on: the next process's spans join the same trace.
pub fn inject_current(headers: &mut http::HeaderMap) {
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    if !enabled() {
        return;
    }
    let cx = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&cx, &mut opentelemetry_http::HeaderInjector(headers))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    }

    #[test]
    fn traces_are_off_without_an_endpoint_and_read_the_standard_variables() {
        assert_eq!(Otlp::from_env(None, "berthd", env(&[])).ok(), Some(None));
        let grpc = Otlp::from_env(None, "berthd", env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")]));
        assert_eq!(
            grpc.ok().flatten(),
            Some(Otlp {
                endpoint: "http://127.0.0.1:4317".into(),
                protocol: Protocol::Grpc,
                service_name: "berthd".into()
            })
        );
        let http = Otlp::from_env(
            Some("http://collector:4318/"),
            "berthd",
            env(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"), ("OTEL_SERVICE_NAME", "edge")]),
        )
        .expect("http")
        .expect("on");
        assert_eq!(http.endpoint, "http://collector:4318/v1/traces");
        assert_eq!(http.service_name, "edge");
        let traces = Otlp::from_env(
            None,
            "x",
            env(&[
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:9/custom"),
            ]),
        );
        assert_eq!(traces.ok().flatten().map(|o| o.endpoint), Some("http://c:9/custom".to_string()));
        assert!(Otlp::from_env(Some("http://c:1"), "x", env(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")])).is_err());
        assert!(Otlp::from_env(Some("c:4317"), "x", env(&[])).is_err());
    }
}
