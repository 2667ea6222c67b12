//! `--metrics-addr`: Prometheus text on `/metrics`, every line well formed,
//! and the counters move with what is done (API requests, shim starts,
//! container states, dockerd's `engine_daemon_*` names).

use std::collections::BTreeMap;
use std::io::{Read, Write};

use berth_tests::{Daemon, TestImage, docker_save_tar, free_port};

fn scrape(addr: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the metrics address");
    s.set_read_timeout(Some(std::time::Duration::from_secs(5))).expect("timeout");
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").expect("request");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read");
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.to_ascii_lowercase().contains("content-type: text/plain; version=0.0.4"), "{head}");
    body.to_string()
}

/// The samples of a text exposition, by `name{labels}` (labels sorted), each
/// line checked against the format.
fn parse(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let mut typed = std::collections::HashSet::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kind, name) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            assert!(matches!(kind, "HELP" | "TYPE"), "comment: {line}");
            if kind == "TYPE" {
                let t = parts.next().unwrap_or("");
                assert!(matches!(t, "counter" | "gauge" | "histogram"), "type: {line}");
                typed.insert(name.to_string());
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("NAME VALUE");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("value: {line}")),
        };
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.strip_suffix('}').unwrap_or_else(|| panic!("labels: {line}"))),
            None => (series, ""),
        };
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
                && !name.starts_with(char::is_numeric),
            "name: {line}"
        );
        let family = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
        assert!(typed.contains(name) || typed.contains(family), "a sample before its TYPE: {line}");
        let mut pairs: Vec<String> = Vec::new();
        let mut rest = labels;
        while !rest.is_empty() {
            let (k, after) = rest.split_once("=\"").unwrap_or_else(|| panic!("label: {line}"));
            let mut end = 0;
            let bytes = after.as_bytes();
            while end < bytes.len() && !(bytes[end] == b'"' && (end == 0 || bytes[end - 1] != b'\\')) {
                end += 1;
            }
            pairs.push(format!("{k}={}", &after[..end]));
            rest = after[end + 1..].trim_start_matches(',');
        }
        pairs.sort();
        out.insert(format!("{name}{{{}}}", pairs.join(",")), value);
    }
    out
}

fn get(m: &BTreeMap<String, f64>, name: &str, labels: &[&str]) -> f64 {
    let mut l: Vec<&str> = labels.to_vec();
    l.sort();
    m.get(&format!("{name}{{{}}}", l.join(","))).copied().unwrap_or(0.0)
}

#[test]
fn metrics_move_with_requests_starts_and_containers() {
    let addr = format!("127.0.0.1:{}", free_port());
    let d = Daemon::start(&["--metrics-addr", &addr]).expect("start");
    d.load(&docker_save_tar(&[TestImage::busybox(&["busybox:latest"])], false)).expect("load");
    let before = parse(&scrape(&addr));
    d.docker(&["run", "-d", "--name", "m1", "busybox", "sleep", "300"]).expect("run -d");
    d.docker(&["run", "--rm", "busybox", "true"]).expect("run --rm");
    d.docker(&["create", "--name", "m2", "busybox"]).expect("create");
    let after = parse(&scrape(&addr));
    let create = ["method=POST", "route=/containers/create", "status=201"];
    assert_eq!(
        get(&after, "berth_api_requests_total", &create) - get(&before, "berth_api_requests_total", &create),
        3.0
    );
    assert!(get(&after, "berth_api_request_duration_seconds_count", &create[..2]) >= 3.0);
    assert_eq!(get(&after, "engine_daemon_container_states_containers", &["state=running"]), 1.0);
    assert_eq!(get(&after, "engine_daemon_container_states_containers", &["state=stopped"]), 1.0);
    assert!(
        get(&after, "berth_shim_starts_total", &["result=ok"])
            - get(&before, "berth_shim_starts_total", &["result=ok"])
            >= 2.0
    );
    assert!(get(&after, "engine_daemon_container_actions_seconds_count", &["action=start"]) >= 2.0);
    let inf = get(&after, "engine_daemon_container_actions_seconds_bucket", &["action=start", "le=+Inf"]);
    assert_eq!(inf, get(&after, "engine_daemon_container_actions_seconds_count", &["action=start"]));
    assert!(
        after.keys().any(|k| k.starts_with("engine_daemon_engine_info{") && k.contains("os_type=linux")),
        "{after:?}"
    );
}
