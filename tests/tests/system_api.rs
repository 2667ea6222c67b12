//! System endpoints, version negotiation, errors, configuration and lifecycle of
//! berthd, through the docker CLI, bollard and raw HTTP.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use berth_tests::{Daemon, TestImage, bin, docker_save_tar, raw_http};

fn header<'a>(h: &'a [(String, String)], k: &str) -> Option<&'a str> {
    h.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

#[test]
fn ping_version_and_negotiation() {
    let d = Daemon::start(&[]).expect("start");
    let (status, h, body) = raw_http(&d.sock(), "GET", "/_ping", b"").expect("ping");
    assert_eq!(status, 200);
    assert_eq!(body, b"OK");
    assert_eq!(header(&h, "api-version"), Some("1.50"));
    assert_eq!(header(&h, "ostype"), Some("linux"));
    assert_eq!(header(&h, "cache-control"), Some("no-cache, no-store, must-revalidate"));
    let (status, h, _) = raw_http(&d.sock(), "HEAD", "/_ping", b"").expect("head ping");
    assert_eq!(status, 200);
    assert_eq!(header(&h, "builder-version"), Some("1"));

    // Versioned and unversioned routes; bounds.
    for path in ["/version", "/v1.24/version", "/v1.50/version"] {
        let (status, _, body) = raw_http(&d.sock(), "GET", path, b"").expect("version");
        assert_eq!(status, 200, "{path}");
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["ApiVersion"], "1.50");
        assert_eq!(v["MinAPIVersion"], "1.24");
    }
    let (status, _, body) = raw_http(&d.sock(), "GET", "/v1.23/version", b"").expect("too old");
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("client version 1.23 is too old"));
    let (status, _, body) = raw_http(&d.sock(), "GET", "/v1.51/version", b"").expect("too new");
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("too new"));

    // The CLI negotiates 1.50; pinned to 1.41 it still works.
    let out = d.docker(&["version", "--format", "{{.Server.APIVersion}}"]).expect("version");
    assert_eq!(out.trim(), "1.50");
    d.load(&docker_save_tar(&[TestImage::busybox(&["busybox:latest"])], false)).expect("load");
    let out = d
        .docker_cmd(&["images", "--format", "{{.Repository}}:{{.Tag}}"])
        .env("DOCKER_API_VERSION", "1.41")
        .output()
        .expect("pinned");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "busybox:latest");
    let log = d.log();
    assert!(
        log.lines()
            .any(|l| l.contains("method=GET") && l.contains("route=\"/images/json\"") && l.contains("status=200")),
        "request spans carry method, route and status:\n{log}"
    );
}

#[test]
fn json_errors_and_unsupported_areas() {
    let d = Daemon::start(&[]).expect("start");
    let (status, h, body) = raw_http(&d.sock(), "GET", "/v1.50/no/such/route", b"").expect("404");
    assert_eq!(status, 404);
    assert_eq!(header(&h, "content-type"), Some("application/json"));
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).expect("json"),
        serde_json::json!({"message": "page not found"})
    );
    let (status, _, body) = raw_http(&d.sock(), "GET", "/images/nothing:here/json", b"").expect("404");
    assert_eq!(status, 404);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).expect("json")["message"],
        "No such image: nothing:here"
    );
    let (status, _, body) = raw_http(&d.sock(), "GET", "/swarm", b"").expect("swarm");
    assert_eq!(status, 503);
    assert!(String::from_utf8_lossy(&body).contains("not a swarm manager"));
    let (status, _, body) = raw_http(&d.sock(), "POST", "/swarm/leave", b"").expect("leave");
    assert_eq!(status, 503);
    assert!(String::from_utf8_lossy(&body).contains("not part of a swarm"));
    let (status, _, body) = raw_http(&d.sock(), "GET", "/plugins", b"").expect("plugins");
    assert_eq!((status, body.as_slice()), (200, &b"[]"[..]));
    let (status, _, _) = raw_http(&d.sock(), "DELETE", "/_ping", b"").expect("405");
    assert_eq!(status, 405);
    let (status, _, body) = raw_http(&d.sock(), "GET", "/images/json?filters=%7Bnot-json", b"").expect("bad filters");
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("invalid filter"));
    // docker inspect falls through containers, then images, then reports no such object.
    let out = d.docker_out(&["inspect", "ghost"]).expect("inspect");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("No such object: ghost"));
}

#[test]
fn info_reports_true_numbers() {
    let d = Daemon::start(&[]).expect("start");
    d.load(&docker_save_tar(
        &[
            TestImage::busybox(&["a:1"]),
            TestImage { created: "2024-05-05T00:00:00Z".into(), ..TestImage::busybox(&["b:1"]) },
        ],
        false,
    ))
    .expect("load");
    let info: serde_json::Value =
        serde_json::from_str(&d.docker(&["info", "--format", "{{json .}}"]).expect("info")).expect("json");
    assert_eq!(info["Images"], 2);
    assert_eq!(info["Containers"], 0);
    assert_eq!(info["Driver"], "overlay2");
    assert_eq!(info["DockerRootDir"], d.data_root().to_string_lossy().as_ref());
    assert_eq!(info["OSType"], "linux");
    assert_eq!(info["NCPU"].as_u64(), Some(std::thread::available_parallelism().map(|n| n.get() as u64).unwrap_or(1)));
    assert!(info["MemTotal"].as_u64().unwrap_or(0) > 0);
    let cgroup = if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() { "2" } else { "1" };
    assert_eq!(info["CgroupVersion"], cgroup);
    let uname = Command::new("uname").arg("-r").output().expect("uname");
    assert_eq!(info["KernelVersion"], String::from_utf8_lossy(&uname.stdout).trim());
}

#[test]
fn socket_mode_pidfile_and_clean_shutdown() {
    let mut d = Daemon::start(&[]).expect("start");
    let mode = std::fs::metadata(d.sock()).expect("sock").permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    let pidfile = d.root.path().join("exec/berthd.pid");
    let pid = std::fs::read_to_string(&pidfile).expect("pidfile");
    assert!(pid.trim().parse::<u32>().is_ok());
    // A second daemon on the same pid file refuses to start.
    let out = Command::new(bin("berthd"))
        .args(["--config-file", "/dev/null", "--data-root"])
        .arg(d.root.path().join("data2"))
        .arg("--exec-root")
        .arg(d.root.path().join("exec"))
        .arg("-H")
        .arg(format!("unix://{}", d.root.path().join("other.sock").display()))
        .output()
        .expect("second");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already running"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(d.stop().expect("stop"), Some(0));
    assert!(!d.sock().exists(), "socket removed on shutdown");
    assert!(!pidfile.exists(), "pid file removed on shutdown");
}

#[test]
fn invalid_config_is_reported_whole_before_binding() {
    let dir = tempfile::tempdir().expect("tmp");
    let sock = dir.path().join("x.sock");
    let cfg = dir.path().join("berth.toml");
    std::fs::write(&cfg, "log-level = \"chatty\"\n").expect("write");
    let out = Command::new(bin("berthd"))
        .arg("--config-file")
        .arg(&cfg)
        .arg("--data-root")
        .arg(dir.path().join("data"))
        .arg("--exec-root")
        .arg(dir.path().join("exec"))
        .arg("-H")
        .arg(format!("unix://{}", sock.display()))
        .arg("-H")
        .arg("tcp://0.0.0.0:2375")
        .env("BERTH_LOG_FORMAT", "xml")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("chatty") && err.contains("without --tlsverify") && err.contains("xml"), "{err}");
    assert!(!sock.exists(), "nothing was bound");
    assert!(!dir.path().join("data").exists(), "nothing was created");
}

#[tokio::test]
async fn bollard_sees_what_the_cli_sees() {
    use bollard::query_parameters::{ListImagesOptions, RemoveImageOptions, TagImageOptions};
    let d = Daemon::start(&[]).expect("start");
    let img = TestImage::busybox(&["busybox:latest"]);
    d.load(&docker_save_tar(std::slice::from_ref(&img), false)).expect("load");
    let client = bollard::Docker::connect_with_unix(&d.host, 30, bollard::API_DEFAULT_VERSION).expect("connect");
    let client = client.negotiate_version().await.expect("negotiate");
    assert_eq!(client.client_version().to_string(), "1.49", "bollard's max, below Berth's");
    assert_eq!(client.ping().await.expect("ping"), "OK");
    let version = client.version().await.expect("version");
    assert_eq!(version.api_version.as_deref(), Some("1.50"));
    let info = client.info().await.expect("info");
    assert_eq!(info.images, Some(1));
    assert_eq!(info.driver.as_deref(), Some("overlay2"));
    let images = client.list_images(Some(ListImagesOptions::default())).await.expect("list");
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].id, img.id());
    assert_eq!(images[0].repo_tags, vec!["busybox:latest".to_string()]);
    let inspect = client.inspect_image("busybox").await.expect("inspect");
    assert_eq!(inspect.id.as_deref(), Some(img.id().as_str()));
    assert_eq!(inspect.root_fs.and_then(|r| r.layers).map(|l| l.len()), Some(1));
    client
        .tag_image("busybox", Some(TagImageOptions { repo: Some("copy".into()), tag: Some("v1".into()) }))
        .await
        .expect("tag");
    let removed = client.remove_image("copy:v1", Some(RemoveImageOptions::default()), None).await.expect("rmi");
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0].untagged.as_deref(), Some("copy:v1"));
    let err = client.inspect_image("nope").await.expect_err("404");
    match err {
        bollard::errors::Error::DockerResponseServerError { status_code, message } => {
            assert_eq!(status_code, 404);
            assert_eq!(message, "No such image: nope");
        }
        other => panic!("unexpected error {other:?}"),
    }
}

#[test]
fn json_logs_carry_the_request_fields() {
    let d = Daemon::start(&["--log-format", "json", "--log-level", "debug"]).expect("start");
    d.docker(&["images"]).expect("images");
    let log = d.log();
    let line = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message"] == "request done" && v["span"]["route"] == "/images/json")
        .unwrap_or_else(|| panic!("no JSON line for GET /images/json in\n{log}"));
    assert_eq!(line["span"]["method"], "GET");
    assert_eq!(line["status"], 200);
    assert!(line["span"]["request_id"].as_str().is_some_and(|s| !s.is_empty()));
}

#[test]
fn session_answers_as_dockerd_without_buildkit() {
    use std::io::{Read, Write};
    let d = berth_tests::Daemon::start(&[]).expect("start");
    let ask = |upgrade: Option<&str>| {
        let mut s = std::os::unix::net::UnixStream::connect(d.sock()).expect("connect");
        s.set_read_timeout(Some(std::time::Duration::from_secs(5))).expect("timeout");
        let extra = upgrade.map(|u| format!("Connection: Upgrade\r\nUpgrade: {u}\r\n")).unwrap_or_default();
        write!(s, "POST /v1.41/session HTTP/1.1\r\nHost: d\r\nX-Docker-Expose-Session-Uuid: abc\r\n{extra}Content-Length: 0\r\n\r\n")
            .expect("write");
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).expect("read");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let plain = ask(None);
    assert!(plain.starts_with("HTTP/1.1 400") && plain.contains("no upgrade proto in request"), "{plain}");
    let other = ask(Some("tcp"));
    assert!(other.starts_with("HTTP/1.1 400") && other.contains("protocol tcp not supported"), "{other}");
    let h2c = ask(Some("h2c"));
    assert!(h2c.starts_with("HTTP/1.1 101"), "{h2c}");
    assert!(h2c.to_ascii_lowercase().contains("upgrade: h2c"), "{h2c}");
}

#[test]
fn info_answers_with_the_fields_of_the_clients_version() {
    let d = berth_tests::Daemon::start(&[]).expect("start");
    let info = |v: &str| {
        let (status, _, body) = berth_tests::raw_http(&d.sock(), "GET", &format!("/v{v}/info"), b"").expect("info");
        assert_eq!(status, 200);
        serde_json::from_slice::<serde_json::Value>(&body).expect("json")
    };
    let old = info("1.24");
    assert_eq!(old["ExecutionDriver"], "<not supported>");
    assert!(
        old["SecurityOptions"].as_array().is_some_and(|o| o.iter().any(|s| s == "seccomp")),
        "{}",
        old["SecurityOptions"]
    );
    let new = info("1.41");
    assert!(new.get("ExecutionDriver").is_none());
    assert!(new["SecurityOptions"].as_array().is_some_and(|o| o.iter().any(|s| s == "name=seccomp,profile=builtin")));
    let (status, _, body) = berth_tests::raw_http(&d.sock(), "GET", "/v1.23/info", b"").expect("too old");
    assert_eq!(status, 400);
    let body = String::from_utf8_lossy(&body);
    assert!(
        body.contains("client version 1.23 is too old. Minimum supported API version is 1.24, please upgrade your client to a newer version"),
        "{body}"
    );
}
