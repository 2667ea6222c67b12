//! OpenTelemetry traces: a test OTLP receiver (gRPC, and HTTP/protobuf) gets
//! one trace per API request, with spans from the gateway and from the
//! services it called across processes; a client's `traceparent` is honoured;
//! a collector that is down costs no request.

use std::collections::HashSet;

use berth_tests::otlp::{Got, grpc_receiver, http_receiver, names};
use berth_tests::{Daemon, SplitOptions, TestImage, docker_save_tar, raw_http_with, start_split_opts};

fn busybox(d: &Daemon) {
    d.load(&docker_save_tar(&[TestImage::busybox(&["busybox:latest"])], false)).expect("load busybox");
}

#[test]
fn one_trace_crosses_the_gateway_and_the_services() {
    let (rec, endpoint, _rt) = grpc_receiver();
    let d = start_split_opts(&SplitOptions {
        env: vec![("OTEL_EXPORTER_OTLP_ENDPOINT".into(), endpoint)],
        ..Default::default()
    })
    .expect("split");
    busybox(&d);
    d.docker(&["run", "--name", "traced", "busybox", "true"]).expect("run");
    // The start of `docker run`: the gateway's span and, in the runtime
    // service's process, the gRPC call's span under it and the shim's start.
    let spans = rec.wait_for("the start's spans from the gateway and the runtime", |s| {
        s.iter().any(|g| g.service == "berth-gateway" && g.span.name.contains("/containers/{id}/start"))
            && s.iter().any(|g| g.service == "berth-runtime" && g.span.name.ends_with("/StartContainer"))
            && s.iter().any(|g| g.service == "berth-network" && g.span.name == "veth plug")
    });
    let api = spans
        .iter()
        .find(|g| g.service == "berth-gateway" && g.span.name.contains("/containers/{id}/start"))
        .expect("api span");
    let trace: Vec<&Got> = spans.iter().filter(|g| g.span.trace_id == api.span.trace_id).collect();
    let services: HashSet<&str> = trace.iter().map(|g| g.service.as_str()).collect();
    assert!(services.contains("berth-runtime"), "one trace across processes: {:#?}", names(&spans));
    let call = trace
        .iter()
        .find(|g| g.service == "berth-runtime" && g.span.name.ends_with("/StartContainer"))
        .unwrap_or_else(|| panic!("the runtime's gRPC span: {:#?}", names(&spans)));
    assert_eq!(call.span.parent_span_id, api.span.span_id, "the gRPC call's parent is the API request");
    let shim = trace.iter().find(|g| g.span.name == "shim start").expect("shim start in the same trace");
    let plug = trace.iter().find(|g| g.span.name == "network plug").expect("network plug in the same trace");
    assert_eq!(shim.span.trace_id, plug.span.trace_id);
    assert!(
        trace.iter().any(|g| g.service == "berth-network" && g.span.name == "veth plug"),
        "the network service's step joins the trace too: {:#?}",
        names(&spans)
    );
    let status = api.span.attributes.iter().find(|kv| kv.key == "http.response.status_code");
    assert!(status.is_some(), "{:?}", api.span.attributes);
}

#[test]
fn a_clients_traceparent_is_honoured_over_http_protobuf() {
    let (rec, endpoint) = http_receiver();
    let d = Daemon::start_with_env(
        &[],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()), ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")],
    )
    .expect("berthd");
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = "00f067aa0ba902b7";
    let traceparent = format!("00-{trace_id}-{parent}-01");
    let (status, _, body) =
        raw_http_with(&d.sock(), "GET", "/v1.50/version", &[("traceparent", &traceparent)], b"").expect("version");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let spans = rec.wait_for("the request's span in the client's trace", |s| {
        s.iter().any(|g| hex::encode(&g.span.trace_id) == trace_id)
    });
    let api = spans.iter().find(|g| hex::encode(&g.span.trace_id) == trace_id).expect("span");
    assert_eq!(api.service, "berthd");
    assert_eq!(hex::encode(&api.span.parent_span_id), parent, "the client's span is the parent");
    assert!(api.span.name.contains("/version"), "{}", api.span.name);
}

#[test]
fn a_collector_that_is_down_costs_no_request() {
    // A collector that takes connections and never answers (the worst case:
    // a refused connection fails at once).
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!("http://{}", silent.local_addr().expect("addr"));
    let held: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>> = Default::default();
    let keep = held.clone();
    std::thread::spawn(move || {
        for conn in silent.incoming().flatten() {
            keep.lock().unwrap_or_else(|e| e.into_inner()).push(conn);
        }
    });
    let d = Daemon::start_with_env(&[], &[("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())]).expect("berthd");
    busybox(&d);
    for i in 0..5 {
        // An export waits up to 5 s for the collector; a request that waited
        // for an export would take that long at least.
        let start = std::time::Instant::now();
        d.docker(&["run", "--rm", "busybox", "echo", &i.to_string()]).expect("run with the collector down");
        assert!(start.elapsed() < std::time::Duration::from_secs(4), "a request waited for the collector");
    }
    assert!(!held.lock().unwrap_or_else(|e| e.into_inner()).is_empty(), "spans were being sent to the collector");
    let mut d = d;
    assert_eq!(d.stop().expect("stop"), Some(0), "{}", d.log());
    assert!(!d.log().contains("panicked"), "{}", d.log());
}
