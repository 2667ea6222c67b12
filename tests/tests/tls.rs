//! Mutual TLS on TCP, the dockerd `--tlsverify` way: the docker CLI with a client
//! certificate from the right CA gets in; without one, or with one from another
//! CA, the handshake fails. Plain TCP is refused unless loopback + --insecure-tcp.

use std::process::Command;
use std::time::{Duration, Instant};

use berth_tests::{Daemon, bin, free_port};

fn certs(dir: &std::path::Path) {
    let out = Command::new(bin("berthd")).arg("certs").arg("--out").arg(dir).output().expect("certs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for f in ["ca.pem", "ca-key.pem", "server-cert.pem", "server-key.pem", "cert.pem", "key.pem"] {
        assert!(dir.join(f).exists(), "{f}");
    }
}

fn tls_docker(d: &Daemon, port: u16, cert_dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    d.docker_cmd(args)
        .env("DOCKER_HOST", format!("tcp://127.0.0.1:{port}"))
        .env("DOCKER_TLS_VERIFY", "1")
        .env("DOCKER_CERT_PATH", cert_dir)
        .output()
        .expect("docker")
}

/// berthd with a TLS listener on 127.0.0.1:`port` and the certificates in `dir`, plus `extra` flags.
fn tls_daemon(dir: &std::path::Path, port: u16, extra: &[&str]) -> Daemon {
    let p = |f: &str| dir.join(f).to_string_lossy().into_owned();
    let (host, ca, cert, key) =
        (format!("tcp://127.0.0.1:{port}"), p("ca.pem"), p("server-cert.pem"), p("server-key.pem"));
    let mut args = vec!["-H", &host, "--tlsverify", "--tlscacert", &ca, "--tlscert", &cert, "--tlskey", &key];
    args.extend_from_slice(extra);
    Daemon::start(&args).expect("start")
}

/// The first TLS call, retried while the TCP listener finishes binding.
fn tls_ready(d: &Daemon, port: u16, dir: &std::path::Path) -> std::process::Output {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = tls_docker(d, port, dir, &["version", "--format", "{{.Server.Version}}"]);
        if out.status.success() || Instant::now() > deadline {
            return out;
        }
        if !String::from_utf8_lossy(&out.stderr).contains("connection refused") {
            return out;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn mutual_tls_accepts_and_rejects() {
    let good = tempfile::tempdir().expect("tmp");
    let other = tempfile::tempdir().expect("tmp");
    certs(good.path());
    certs(other.path());
    let port = free_port();
    let d = tls_daemon(good.path(), port, &[]);

    let out = tls_ready(&d, port, good.path());
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stderr), d.log());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), env!("CARGO_PKG_VERSION"));
    let out = tls_docker(&d, port, good.path(), &["images", "-q"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // Hijacked streams work over TLS: `docker run` attaches before it starts the container.
    d.load(&berth_tests::docker_save_tar(&[berth_tests::TestImage::busybox(&["busybox:latest"])], false))
        .expect("load");
    let out = tls_docker(&d, port, good.path(), &["run", "--rm", "busybox", "echo", "over-tls"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "over-tls\n");

    // A client certificate from another CA: the server refuses the handshake.
    // (The client trusts our server through the good ca.pem, so only the client cert differs.)
    let mixed = tempfile::tempdir().expect("tmp");
    std::fs::copy(good.path().join("ca.pem"), mixed.path().join("ca.pem")).expect("copy");
    std::fs::copy(other.path().join("cert.pem"), mixed.path().join("cert.pem")).expect("copy");
    std::fs::copy(other.path().join("key.pem"), mixed.path().join("key.pem")).expect("copy");
    let out = tls_docker(&d, port, mixed.path(), &["version"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("certificate") || err.contains("tls") || err.contains("remote error"), "{err}");

    // No client certificate at all: refused too.
    let bare = tempfile::tempdir().expect("tmp");
    std::fs::copy(good.path().join("ca.pem"), bare.path().join("ca.pem")).expect("copy");
    // curl comes from Debian's curl package, which `make test` installs.
    let out = Command::new("curl")
        .args(["-s", "-S", "--max-time", "10", "--cacert"])
        .arg(bare.path().join("ca.pem"))
        .arg(format!("https://127.0.0.1:{port}/_ping"))
        .output()
        .expect("curl");
    assert!(
        !out.status.success(),
        "a client without a certificate must be refused: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Plain HTTP on the TLS port gets nothing useful either.
    let out =
        d.docker_cmd(&["version"]).env("DOCKER_HOST", format!("tcp://127.0.0.1:{port}")).output().expect("docker");
    assert!(!out.status.success());
    assert!(d.log().contains("tls handshake refused"), "{}", d.log());
}

#[test]
fn plain_tcp_needs_loopback_and_insecure_flag() {
    let dir = tempfile::tempdir().expect("tmp");
    let port = free_port();
    let run = |extra: &[&str]| {
        Command::new(bin("berthd"))
            .args(["--config-file", "/dev/null", "--data-root"])
            .arg(dir.path().join("data"))
            .arg("--exec-root")
            .arg(dir.path().join("exec"))
            .args(extra)
            .output()
            .expect("berthd")
    };
    let out = run(&["-H", &format!("tcp://127.0.0.1:{port}")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("without --tlsverify"));
    let out = run(&["-H", &format!("tcp://0.0.0.0:{port}"), "--insecure-tcp"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));

    let host = format!("tcp://127.0.0.1:{port}");
    let d = Daemon::start(&["-H", &host, "--insecure-tcp"]).expect("start");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = d
            .docker_cmd(&["version", "--format", "{{.Server.APIVersion}}"])
            .env("DOCKER_HOST", &host)
            .output()
            .expect("docker");
        if out.status.success() {
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1.50");
            break;
        }
        assert!(Instant::now() < deadline, "{}", String::from_utf8_lossy(&out.stderr));
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether the server closed `s` (end of file or reset) within `within`.
fn closed_within(s: &mut std::net::TcpStream, within: Duration) -> bool {
    use std::io::Read;
    s.set_read_timeout(Some(within)).expect("timeout");
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
    }
}

#[test]
fn idle_tls_clients_cannot_starve_the_daemon() {
    let good = tempfile::tempdir().expect("tmp");
    certs(good.path());
    let port = free_port();
    let d = tls_daemon(good.path(), port, &["--max-tcp-connections", "8", "--tls-handshake-timeout", "5"]);
    assert!(tls_ready(&d, port, good.path()).status.success());

    // Clients connect and never say a word, until the limit is reached: the next
    // one is closed at once. (The readiness check's own connection may still
    // hold a place for a moment, so the count is at most eight.)
    let mut idle: Vec<std::net::TcpStream> = Vec::new();
    loop {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("the kernel accepts it");
        if closed_within(&mut s, Duration::from_millis(150)) {
            break;
        }
        idle.push(s);
        assert!(idle.len() <= 8, "more than --max-tcp-connections held open");
    }
    assert!(idle.len() >= 7, "the limit is 8: {} held", idle.len());
    // The unix socket is not counted: it keeps answering.
    assert_eq!(
        d.docker(&["version", "--format", "{{.Server.Version}}"]).expect("unix").trim(),
        env!("CARGO_PKG_VERSION")
    );
    assert!(d.log().contains("TCP connection limit reached"), "{}", d.log());

    // The idle ones are cut when their handshake time is up, and TLS works again.
    for s in idle.iter_mut() {
        assert!(closed_within(s, Duration::from_secs(8)), "an idle handshake is closed after its timeout");
    }
    assert!(d.log().contains("tls handshake timed out"), "{}", d.log());
    let out = tls_docker(&d, port, good.path(), &["version", "--format", "{{.Server.Version}}"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
