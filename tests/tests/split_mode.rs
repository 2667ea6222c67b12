//! Split mode: the four services and the gateway as separate processes talking
//! gRPC over unix sockets (or TCP with mutual TLS). The image endpoints work the same, errors keep their
//! kind across the hop, request IDs reach the service's logs, and a service that
//! is down is a 503, not a hang.

use berth_tests::{TestImage, docker_save_tar, raw_http, start_split};

#[test]
fn image_endpoints_over_grpc() {
    let d = start_split().expect("start split");
    let img = TestImage::busybox(&["busybox:latest"]);
    let out = d.load(&docker_save_tar(std::slice::from_ref(&img), true)).expect("load");
    assert!(out.contains("Loaded image: busybox:latest"), "{out}");
    let id = d.docker(&["image", "inspect", "--format", "{{.Id}}", "busybox"]).expect("inspect");
    assert_eq!(id.trim(), img.id());
    d.docker(&["tag", "busybox", "split:1"]).expect("tag");
    let out = d.docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"]).expect("images");
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort();
    assert_eq!(lines, vec!["busybox:latest", "split:1"]);

    // Save streams back over gRPC and loads into berthd-compatible form.
    let path = d.root.path().join("out.tar");
    d.docker(&["save", "-o", &path.to_string_lossy(), "split:1"]).expect("save");
    assert!(std::fs::metadata(&path).expect("saved").len() > 1_000_000, "busybox is in the tarball");
    let out = d.docker_with_input(&["import", "-", "imported:1"], &berth_tests::busybox_layer()).expect("import");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // A 404 from the image service is a 404 at the API, message intact.
    let out = d.docker_out(&["rmi", "ghost:1"]).expect("rmi");
    assert!(String::from_utf8_lossy(&out.stderr).contains("No such image: ghost:1"));
    let (status, _, _) = raw_http(&d.sock(), "GET", "/images/ghost/json", b"").expect("raw");
    assert_eq!(status, 404);
    // A 409 too.
    let out = d.docker_out(&["rmi", &img.id()]).expect("rmi");
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be forced"));
    let info = d.docker(&["info", "--format", "{{.Images}} {{.Containers}}"]).expect("info");
    assert_eq!(info.trim(), "2 0");
    // Containers run through the runtime service's own process too.
    let out = d.docker(&["run", "--rm", "busybox", "echo", "split-run"]).expect("run");
    assert_eq!(out, "split-run\n");
    // Streams cross the gRPC hop both ways: stdin with its end, exec, and the
    // network service plugs the container into its bridge.
    let o = d.docker_with_input(&["run", "-i", "--rm", "busybox", "sh", "-c", "cat; ip -4 -o addr show eth0"], b"in\n");
    let o = o.expect("run -i");
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(text.starts_with("in\n") && text.contains("inet "), "{text}");
    d.docker(&["run", "-d", "--name", "split-box", "busybox", "sleep", "300"]).expect("run -d");
    let o = d.docker_with_input(&["exec", "-i", "split-box", "sh", "-c", "cat; exit 5"], b"exec-in\n").expect("exec");
    assert_eq!((String::from_utf8_lossy(&o.stdout).as_ref(), o.status.code()), ("exec-in\n", Some(5)));
    d.docker(&["rm", "-f", "split-box"]).expect("rm");

    // The gateway's request ID shows up in the image service's log.
    let gw = std::fs::read_to_string(d.root.path().join("berthd.log")).expect("gateway log");
    let image_log = std::fs::read_to_string(d.root.path().join("image.log")).expect("image log");
    let ids: Vec<&str> = gw
        .lines()
        .filter(|l| l.contains("route=\"/images/{*rest}\""))
        .filter_map(|l| l.split("request_id=").nth(1))
        .filter_map(|r| r.split(|c: char| !c.is_ascii_hexdigit()).next())
        .collect();
    assert!(!ids.is_empty(), "{gw}");
    assert!(ids.iter().any(|id| image_log.contains(id)), "no request id of\n{gw}\nin\n{image_log}");
}

#[test]
fn a_service_that_is_down_is_unavailable() {
    let mut d = start_split().expect("start split");
    // Stop the image service (the first of the extra processes).
    let mut image = d.others.remove(0);
    image.kill().expect("kill image service");
    image.wait().expect("wait");
    let (status, _, body) = raw_http(&d.sock(), "GET", "/images/json", b"").expect("raw");
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("image service unavailable"), "{}", String::from_utf8_lossy(&body));
    // Other services still answer.
    let (status, _, _) = raw_http(&d.sock(), "GET", "/containers/json", b"").expect("raw");
    assert_eq!(status, 200);
}

#[test]
fn services_answer_health_and_reflection() {
    let d = start_split().expect("start split");
    // The runtime (and the gRPC connections it holds) must be gone before the
    // services are stopped in `d`'s drop.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(check_health_and_reflection(&d));
}

async fn check_health_and_reflection(d: &berth_tests::Daemon) {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    for (svc, full) in [
        ("image", "berth.image.v1.ImageService"),
        ("runtime", "berth.runtime.v1.RuntimeService"),
        ("network", "berth.network.v1.NetworkService"),
        ("volume", "berth.volume.v1.VolumeService"),
    ] {
        let addr: berth_core::grpc::Addr =
            format!("unix://{}", d.root.path().join(format!("{svc}.sock")).display()).parse().expect("addr");
        let channel = berth_core::grpc::channel(&addr, None).expect("channel");
        let health = HealthClient::new(channel.clone())
            .check(HealthCheckRequest { service: full.into() })
            .await
            .expect("health check")
            .into_inner();
        assert_eq!(health.status, ServingStatus::Serving as i32, "{svc}");

        let req = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut stream = ServerReflectionClient::new(channel)
            .server_reflection_info(tokio_stream::iter(vec![req]))
            .await
            .expect("reflection")
            .into_inner();
        let reply = stream.message().await.expect("reply").expect("one reply");
        let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
            panic!("unexpected reflection reply for {svc}");
        };
        let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        assert!(names.contains(&full.to_string()), "{svc}: {names:?}");
        assert!(names.contains(&"grpc.health.v1.Health".to_string()), "{svc}: {names:?}");
    }
}

#[test]
fn pull_push_and_volumes_cross_the_grpc_hop() {
    use berth_tests::registry::{Compression, Format, Registry, RegistryOpts};
    let reg = Registry::start(RegistryOpts::default()).expect("registry");
    let host = reg.host();
    let layer = berth_tests::Tar::new().file("marker", b"split-pull", 0o644).finish();
    let img = TestImage::busybox(&[]).with_layer(layer, &[]);
    let (digest, _) = reg.push_image("split/app", "v1", &img, Format::Docker, Compression::Gzip).expect("push");
    let d = start_split().expect("start split");
    // Progress streams from the image service through the gateway.
    let text = d.docker(&["pull", &format!("{host}/split/app:v1")]).expect("pull");
    assert!(text.contains("Pull complete") && text.contains(&format!("Digest: {digest}")), "{text}");
    // An early failure keeps its status across the hop.
    let out = d.docker_out(&["pull", &format!("{host}/split/nothing:v1")]).expect("pull missing");
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success() && err.contains("manifest unknown"), "{err}");
    d.docker(&["tag", &format!("{host}/split/app:v1"), &format!("{host}/split/copy:v1")]).expect("tag");
    let pushed = d.docker(&["push", &format!("{host}/split/copy:v1")]).expect("push");
    assert!(pushed.contains("v1: digest: sha256:"), "{pushed}");
    // A named volume, filled by one container and read by the next, through the
    // runtime and volume services.
    let app = format!("{host}/split/app:v1");
    d.docker(&["run", "--rm", "-v", "splitvol:/v", &app, "sh", "-c", "cat /marker > /v/m"]).expect("write");
    assert_eq!(d.docker(&["run", "--rm", "-v", "splitvol:/v", &app, "cat", "/v/m"]).expect("read"), "split-pull");
    let out = d.docker_out(&["volume", "rm", "splitvol"]).expect("volume rm");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The caller (here the unix socket's uid 0) reaches the services' logs.
    let root = d.data_root().parent().map(std::path::Path::to_path_buf).expect("root");
    // Each service serves its own metrics.
    let addr = std::fs::read_to_string(root.join("runtime.metrics")).expect("the runtime's metrics address");
    let metrics = {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr.trim()).expect("connect");
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").expect("write");
        let mut text = String::new();
        s.read_to_string(&mut text).expect("read");
        text
    };
    assert!(metrics.starts_with("HTTP/1.0 200"), "{metrics}");
    assert!(metrics.contains("berth_shim_starts_total{result=\"ok\"}"), "{metrics}");
    assert!(metrics.contains("berth_grpc_server_calls_total{method=\"/berth.runtime.v1."), "{metrics}");
    for svc in ["runtime", "volume", "image"] {
        let log = std::fs::read_to_string(root.join(format!("{svc}.log"))).unwrap_or_default();
        assert!(log.contains("caller=uid:0,gid:0"), "{svc}.log names no caller:\n{log}");
    }
}

#[test]
fn events_of_every_service_reach_the_gateway() {
    let d = start_split().expect("start split");
    let since = berth_tests::unix_time(-1);
    d.docker(&["volume", "create", "splitvol"]).expect("volume create");
    d.load(&docker_save_tar(std::slice::from_ref(&TestImage::busybox(&["busybox:latest"])), true)).expect("load");
    d.docker(&["create", "--name", "splitbox", "busybox", "true"]).expect("create");
    let until = berth_tests::unix_time(1);
    let out = d
        .docker(&["events", "--since", &since, "--until", &until, "--format", "{{.Type}} {{.Action}}"])
        .expect("events");
    for want in ["volume create", "image load", "container create"] {
        assert!(out.lines().any(|l| l == want), "no {want:?} in {out}");
    }
}

/// `berthd certs` into a fresh directory.
fn certs() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tmp");
    let out = std::process::Command::new(berth_tests::bin("berthd"))
        .args(["certs", "--out"])
        .arg(dir.path())
        .output()
        .expect("berthd certs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    dir
}

#[test]
fn services_on_tcp_speak_mutual_tls() {
    let pki = certs();
    let d = berth_tests::start_split_with(Some(pki.path())).expect("start split over TLS");
    let image_addr = d.args.iter().find_map(|a| a.strip_prefix("--image-addr=")).expect("image address").to_string();
    assert!(image_addr.starts_with("tcp://127.0.0.1:"), "{image_addr}");
    // The gateway and the runtime reach every service over mutual TLS.
    d.load(&docker_save_tar(&[TestImage::busybox(&["busybox:latest"])], false)).expect("load");
    let out =
        d.docker(&["run", "--rm", "-v", "data:/data", "busybox", "sh", "-c", "echo over-tls > /data/f; cat /data/f"]);
    assert_eq!(out.expect("run").trim(), "over-tls");

    let other = certs();
    let rt = tokio::runtime::Runtime::new().expect("tokio");
    rt.block_on(async {
        use tonic_health::pb::HealthCheckRequest;
        use tonic_health::pb::health_client::HealthClient;
        let addr: berth_core::grpc::Addr = image_addr.parse().expect("addr");
        let client = |dir: &std::path::Path| {
            let files = berth_core::tls::TlsFiles {
                ca: dir.join("ca.pem"),
                cert: dir.join("cert.pem"),
                key: dir.join("key.pem"),
            };
            berth_core::grpc::client_tls(&files).expect("client tls")
        };
        let check = |tls: Option<std::sync::Arc<rustls::ClientConfig>>| {
            let addr = addr.clone();
            async move {
                let channel = berth_core::grpc::channel(&addr, tls.as_ref()).expect("channel");
                HealthClient::new(channel).check(HealthCheckRequest { service: String::new() }).await
            }
        };
        // A client certificate from the CA: answered.
        assert!(check(Some(client(pki.path()))).await.is_ok(), "a client of the CA is served");
        // No TLS at all, or a certificate from another CA: refused.
        assert!(check(None).await.is_err(), "plain gRPC is refused");
        assert!(check(Some(client(other.path()))).await.is_err(), "another CA's client is refused");
    });
    let log = std::fs::read_to_string(d.root.path().join("image.log")).unwrap_or_default();
    assert!(log.contains("grpc tls handshake failed"), "the refusals are logged:\n{log}");

    // Without TLS a service will not listen beyond loopback.
    let out = std::process::Command::new(berth_tests::bin("berth-volume"))
        .args(["--listen", &format!("tcp://0.0.0.0:{}", berth_tests::free_port()), "--data-root"])
        .arg(d.root.path().join("unused"))
        .output()
        .expect("berth-volume");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tlsverify"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn the_gateway_on_another_host_reaches_the_services_over_mutual_tls() {
    // Two hosts: this one runs the services on the address of its end of a
    // link, the gateway runs in a network namespace behind that link.
    let outside = berth_tests::Outside::new(&format!("sx{}", std::process::id() % 10000), 78);
    let pki = tempfile::tempdir().expect("tmp");
    let out = std::process::Command::new(berth_tests::bin("berthd"))
        .args(["certs", "--host", &outside.host_addr, "--out"])
        .arg(pki.path())
        .output()
        .expect("berthd certs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let d = berth_tests::start_split_at(Some(pki.path()), &outside.host_addr, Some(&outside.ns)).expect("start");
    let gateway = d.pid().expect("the gateway runs");
    let ns = std::process::Command::new("ip").args(["netns", "identify", &gateway.to_string()]).output().expect("ip");
    assert_eq!(String::from_utf8_lossy(&ns.stdout).trim(), outside.ns, "the gateway is on the other host");
    let image_addr = d.args.iter().find_map(|a| a.strip_prefix("--image-addr=")).expect("image address");
    assert!(image_addr.starts_with(&format!("tcp://{}:", outside.host_addr)), "{image_addr}");
    d.load(&docker_save_tar(&[TestImage::busybox(&["busybox:latest"])], false)).expect("load");
    let out =
        d.docker(&["run", "--rm", "-v", "far:/data", "busybox", "sh", "-c", "echo across > /data/f; cat /data/f"]);
    assert_eq!(out.expect("run through the remote gateway").trim(), "across");
    d.docker(&["volume", "rm", "far"]).expect("volume rm");
}
