//! Registries end to end, against Debian's distribution registry started by the
//! tests (tests/src/registry.rs): pull (Docker and OCI manifests, gzip and
//! plain layers, by tag and digest, lists and indexes by platform), `docker
//! run` of a missing image, progress, push (and pull back), login, and faults.

use berth_tests::registry::{Compression, Format, Registry, RegistryOpts, TokenAuth};
use berth_tests::{Daemon, Tar, TestImage};
use serde_json::Value;

fn inspect(d: &Daemon, what: &str) -> Value {
    serde_json::from_str::<Value>(&d.docker(&["image", "inspect", what]).expect("inspect")).expect("json")[0].clone()
}

/// busybox plus a layer of its own, so images differ.
fn app(marker: &str) -> TestImage {
    let layer = Tar::new().dir("app/").file("app/marker", marker.as_bytes(), 0o644).finish();
    TestImage::busybox(&[]).with_layer(layer, &[])
}

#[test]
fn pull_formats_run_and_repo_digests() {
    let reg = Registry::start(RegistryOpts::default()).expect("registry");
    let host = reg.host();
    let (docker_digest, _) =
        reg.push_image("team/app", "v1", &app("docker"), Format::Docker, Compression::Gzip).expect("push docker");
    reg.push_image("team/oci", "v1", &app("oci"), Format::Oci, Compression::None).expect("push oci");
    reg.push_image("team/zstd", "v1", &app("zstd"), Format::Oci, Compression::Zstd).expect("push zstd");
    let d = Daemon::start(&[]).expect("berthd");

    // docker pull: dockerd's progress and summary.
    let text = d.docker(&["pull", &format!("{host}/team/app:v1")]).expect("pull");
    assert!(text.contains("v1: Pulling from team/app"), "{text}");
    assert!(text.contains("Pull complete"), "{text}");
    assert!(text.contains(&format!("Digest: {docker_digest}")), "{text}");
    assert!(text.contains(&format!("Status: Downloaded newer image for {host}/team/app:v1")), "{text}");
    let img = inspect(&d, &format!("{host}/team/app:v1"));
    assert_eq!(img["RepoDigests"], serde_json::json!([format!("{host}/team/app@{docker_digest}")]));
    assert_eq!(img["Id"].as_str(), Some(app("docker").id().as_str()), "the ID is the config digest");
    // Again: nothing to fetch.
    let again = d.docker(&["pull", &format!("{host}/team/app:v1")]).expect("pull again");
    assert!(again.contains("Image is up to date"), "{again}");
    // The image runs.
    let marker = d.docker(&["run", "--rm", &format!("{host}/team/app:v1"), "cat", "/app/marker"]).expect("run");
    assert_eq!(marker, "docker");

    // docker run of a missing image: the CLI's 404, then the pull, then the run.
    let o = d.docker_out(&["run", "--rm", &format!("{host}/team/oci:v1"), "cat", "/app/marker"]).expect("run");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "oci");
    assert!(String::from_utf8_lossy(&o.stderr).contains("Unable to find image"));
    // zstd-compressed layers.
    let zstd = d.docker(&["run", "--rm", &format!("{host}/team/zstd:v1"), "cat", "/app/marker"]).expect("run zstd");
    assert_eq!(zstd, "zstd");
    // Shared layers already exist: only the new one is fetched.
    let (oci_gz, _) = reg.push_image("team/ocigz", "v2", &app("gz"), Format::Oci, Compression::Gzip).expect("push");
    let text = d.docker(&["pull", &format!("{host}/team/ocigz:v2")]).expect("pull");
    assert!(text.contains("Already exists"), "{text}");
    // By digest, with -q.
    d.docker(&["rmi", &format!("{host}/team/ocigz:v2")]).expect("rmi");
    let q = d.docker(&["pull", "-q", &format!("{host}/team/ocigz@{oci_gz}")]).expect("pull by digest");
    assert_eq!(q.trim(), format!("{host}/team/ocigz@{oci_gz}"));
    assert!(inspect(&d, &format!("{host}/team/ocigz@{oci_gz}"))["RepoDigests"].to_string().contains(&oci_gz));
}

#[test]
fn manifest_lists_choose_the_platform() {
    let reg = Registry::start(RegistryOpts::default()).expect("registry");
    let host = reg.host();
    let (amd, amd_m) = reg.push_image("multi", "amd", &app("amd64"), Format::Oci, Compression::Gzip).expect("amd");
    let (arm, arm_m) = reg.push_image("multi", "arm", &app("arm64"), Format::Oci, Compression::Gzip).expect("arm");
    let entries = vec![
        (
            "linux".to_string(),
            "arm64".to_string(),
            arm,
            arm_m.len() as u64,
            berth_tests::registry::OCI_MANIFEST.to_string(),
        ),
        (
            "linux".to_string(),
            "amd64".to_string(),
            amd,
            amd_m.len() as u64,
            berth_tests::registry::OCI_MANIFEST.to_string(),
        ),
    ];
    let index = reg.push_index("multi", "latest", Format::Oci, &entries).expect("index");
    let only_arm = vec![entries[0].clone()];
    reg.push_index("armonly", "latest", Format::Docker, &only_arm).ok();
    let d = Daemon::start(&[]).expect("berthd");
    let text = d.docker(&["pull", &format!("{host}/multi")]).expect("pull index");
    assert!(text.contains(&format!("Digest: {index}")), "the index's digest: {text}");
    let marker = d.docker(&["run", "--rm", &format!("{host}/multi"), "cat", "/app/marker"]).expect("run");
    assert_eq!(marker, "amd64");
    // --platform picks another entry.
    d.docker(&["pull", "--platform", "linux/arm64", &format!("{host}/multi:latest")]).expect("pull arm64");
    let marker = d.docker(&["run", "--rm", &format!("{host}/multi"), "cat", "/app/marker"]).expect("run");
    assert_eq!(marker, "arm64");
    // A list without linux/amd64.
    reg.push_image("armonly", "arm", &app("arm64"), Format::Oci, Compression::Gzip).expect("arm");
    reg.push_index("armonly", "latest", Format::Oci, &only_arm).expect("arm index");
    let (code, _, err) = d.out(&["pull", &format!("{host}/armonly")]);
    assert_ne!(code, Some(0));
    assert!(err.contains("no matching manifest for linux/amd64"), "{err}");
}

#[test]
fn push_then_pull_back_and_faults() {
    let mut reg = Registry::start(RegistryOpts::default()).expect("registry");
    let host = reg.host();
    let d = Daemon::start(&[]).expect("berthd");
    d.load(&berth_tests::docker_save_tar(
        &[app("pushed").with_layer(Tar::new().file("x", b"x", 0o644).finish(), &["local/app:v3"])],
        false,
    ))
    .expect("load");
    d.docker(&["tag", "local/app:v3", &format!("{host}/pushed/app:v3")]).expect("tag");
    let text = d.docker(&["push", &format!("{host}/pushed/app:v3")]).expect("push");
    assert!(text.contains(&format!("The push refers to repository [{host}/pushed/app]")), "{text}");
    assert!(text.contains("Pushed"), "{text}");
    assert!(text.contains("v3: digest: sha256:"), "{text}");
    let again = d.docker(&["push", &format!("{host}/pushed/app:v3")]).expect("push again");
    assert!(again.contains("Layer already exists") && !again.contains("Pushed"), "{again}");
    let pushed_digest =
        inspect(&d, &format!("{host}/pushed/app:v3"))["RepoDigests"][0].as_str().unwrap_or("").to_string();
    assert!(pushed_digest.starts_with(&format!("{host}/pushed/app@sha256:")), "{pushed_digest}");
    // --all-tags: every tag of the repository.
    d.load(&berth_tests::docker_save_tar(&[TestImage::busybox(&["busybox:latest"])], false)).expect("busybox");
    d.docker(&["tag", "busybox:latest", &format!("{host}/pushed/app:base")]).expect("tag base");
    let all = d.docker(&["push", "--all-tags", &format!("{host}/pushed/app")]).expect("push --all-tags");
    assert!(all.contains("base: digest: sha256:") && all.contains("v3: digest: sha256:"), "{all}");

    // A second daemon pulls it back, byte for byte the same image.
    let d2 = Daemon::start(&[]).expect("berthd 2");
    d2.docker(&["pull", &pushed_digest]).expect("pull back");
    assert_eq!(inspect(&d2, &pushed_digest)["Id"], inspect(&d, &format!("{host}/pushed/app:v3"))["Id"]);
    assert_eq!(d2.docker(&["run", "--rm", &pushed_digest, "cat", "/app/marker"]).expect("run"), "pushed");

    // Bad input and faults: a clear error, nothing half-pulled, the next pull works.
    let (code, _, err) = d2.out(&["pull", &format!("{host}/Bad/Name")]);
    assert!(code != Some(0) && err.contains("invalid reference format"), "{err}");
    let (code, _, err) = d2.out(&["pull", &format!("{host}/nosuch/repo:v1")]);
    assert!(code != Some(0) && (err.contains("not found") || err.contains("unknown")), "{err}");
    let (_, blob_digest) = {
        let (digest, manifest) =
            reg.push_image("bad/layer", "v1", &app("corrupt"), Format::Docker, Compression::Gzip).expect("push");
        let m: Value = serde_json::from_slice(&manifest).expect("manifest");
        (digest, m["layers"][1]["digest"].as_str().unwrap_or("").to_string())
    };
    reg.corrupt_blob(&blob_digest).expect("corrupt");
    let (code, _, err) = d2.out(&["pull", &format!("{host}/bad/layer:v1")]);
    assert_ne!(code, Some(0));
    assert!(err.contains("verification failed") || err.contains("digest"), "{err}");
    let (code, images, _) = d2.out(&["images", "-q", &format!("{host}/bad/layer")]);
    assert_eq!((code, images.trim()), (Some(0), ""), "nothing half-pulled is visible");
    // A manifest whose bytes do not match the digest asked for (still valid
    // JSON, so the registry serves it as it is).
    let (m_digest, m_bytes) =
        reg.push_image("bad/manifest", "v1", &app("m"), Format::Docker, Compression::Gzip).expect("push");
    std::fs::write(reg.blob_path(&m_digest), [m_bytes.as_slice(), b" "].concat()).expect("alter the manifest");
    let (code, _, err) = d2.out(&["pull", &format!("{host}/bad/manifest@{m_digest}")]);
    assert!(code != Some(0) && err.contains(&format!("manifest verification failed for digest {m_digest}")), "{err}");
    reg.stop();
    let (code, _, err) = d2.out(&["pull", &format!("{host}/pushed/app:v3")]);
    assert!(code != Some(0) && err.to_ascii_lowercase().contains("connect"), "{err}");
    reg.restart().expect("restart registry");
    d2.docker(&["pull", &format!("{host}/pushed/app:v3")]).expect("the next pull works");
}

#[test]
fn login_with_htpasswd() {
    let reg = Registry::start(RegistryOpts { htpasswd: Some(("alice".into(), "s3cret".into())), ..Default::default() })
        .expect("registry");
    let host = reg.host();
    reg.push_image("private/app", "v1", &app("private"), Format::Docker, Compression::Gzip).expect("push");
    let d = Daemon::start(&[]).expect("berthd");
    let (code, _, err) = d.out(&["pull", &format!("{host}/private/app:v1")]);
    assert!(code != Some(0) && err.to_ascii_lowercase().contains("unauthorized"), "anonymous: {err}");
    let wrong = d.docker_with_input(&["login", "-u", "alice", "--password-stdin", &host], b"wrong\n").expect("login");
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("401"), "{}", String::from_utf8_lossy(&wrong.stderr));
    let right = d.docker_with_input(&["login", "-u", "alice", "--password-stdin", &host], b"s3cret\n").expect("login");
    assert!(right.status.success(), "{}", String::from_utf8_lossy(&right.stderr));
    assert!(String::from_utf8_lossy(&right.stdout).contains("Login Succeeded"));
    // The CLI now sends X-Registry-Auth; pull and push work.
    d.docker(&["pull", &format!("{host}/private/app:v1")]).expect("pull with credentials");
    d.docker(&["tag", &format!("{host}/private/app:v1"), &format!("{host}/private/copy:v1")]).expect("tag");
    d.docker(&["push", &format!("{host}/private/copy:v1")]).expect("push with credentials");
    // Credentials are never written to the daemon's log or state.
    let log = d.log();
    assert!(!log.contains("s3cret"), "the password leaked into the log");
    let leaked =
        std::process::Command::new("grep").args(["-r", "-l", "s3cret"]).arg(d.data_root()).output().expect("grep");
    assert!(leaked.stdout.is_empty(), "stored: {}", String::from_utf8_lossy(&leaked.stdout));
}

/// An interface of the host's own with an address outside 127.0.0.0/8 (which dockerd, and
/// Berth, always treat as insecure), so a registry there is a secure one:
/// HTTPS verified against the roots, or a CA in certs.d. Local traffic only.
struct Dummy {
    link: String,
}

impl Dummy {
    fn new(link: &str, addr: &str) -> Dummy {
        let d = Dummy { link: link.into() };
        let sh = |cmd: &str| {
            let ok = std::process::Command::new("sh").args(["-c", cmd]).status().map(|s| s.success()).unwrap_or(false);
            assert!(ok, "{cmd}");
        };
        // A veth pair with both ends on the host: an address of the host's own.
        sh(&format!(
            "ip link add {link} type veth peer name {link}p && ip addr add {addr}/32 dev {link} \
             && ip link set {link} up && ip link set {link}p up"
        ));
        d
    }
}

impl Drop for Dummy {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip").args(["link", "delete", &self.link]).status();
    }
}

fn openssl(args: &[&str]) {
    let o = std::process::Command::new("openssl").args(args).output().expect("openssl");
    assert!(o.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn tls_with_a_test_ca_and_basic_auth() {
    let ip = "10.239.77.1";
    let _dummy = Dummy::new(&format!("btreg{}", std::process::id() % 100000), ip);
    let dir = tempfile::tempdir().expect("tmp");
    let p = |f: &str| dir.path().join(f).to_string_lossy().to_string();
    berth_tests::self_signed(dir.path(), "ca", "berth test CA", &[]);
    berth_tests::signed_by(
        &dir.path().join("ca.crt"),
        &dir.path().join("ca.key"),
        &format!("/CN={ip}"),
        &format!("subjectAltName=IP:{ip}"),
        &dir.path().join("server.key"),
        &dir.path().join("server.crt"),
    );
    // The registry serves the chain; the harness trusts the CA inside it.
    let chain = [std::fs::read(p("server.crt")).expect("crt"), std::fs::read(p("ca.crt")).expect("ca")].concat();
    std::fs::write(p("chain.crt"), chain).expect("chain");
    let reg = Registry::start(RegistryOpts {
        htpasswd: Some(("bob".into(), "pa55".into())),
        tls: Some((p("chain.crt").into(), p("server.key").into())),
        ip: Some(ip.into()),
        token: None,
    })
    .expect("registry");
    let host = reg.host();
    reg.push_image("secure/app", "v1", &app("tls"), Format::Docker, Compression::Gzip).expect("push");
    let certs = dir.path().join("certs.d");
    std::fs::create_dir_all(&certs).expect("certs.d");
    let d = Daemon::start(&["--certs-dir", &certs.to_string_lossy()]).expect("berthd");
    // Without the CA the registry is not trusted.
    let o = d.docker_with_input(&["login", "-u", "bob", "--password-stdin", &host], b"pa55\n").expect("login");
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!o.status.success() && err.to_ascii_lowercase().contains("certificate"), "untrusted: {err}");
    // With certs.d/<host:port>/ca.crt it is.
    std::fs::create_dir_all(certs.join(&host)).expect("host dir");
    std::fs::copy(p("ca.crt"), certs.join(&host).join("ca.crt")).expect("ca.crt");
    let wrong = d.docker_with_input(&["login", "-u", "bob", "--password-stdin", &host], b"nope\n").expect("login");
    assert!(!wrong.status.success(), "a wrong password is refused");
    let right = d.docker_with_input(&["login", "-u", "bob", "--password-stdin", &host], b"pa55\n").expect("login");
    assert!(right.status.success(), "{}", String::from_utf8_lossy(&right.stderr));
    let marker = d.docker(&["run", "--rm", &format!("{host}/secure/app:v1"), "cat", "/app/marker"]).expect("run");
    assert_eq!(marker, "tls");
}

#[test]
fn interrupted_pulls_resume_with_ranges() {
    let reg = Registry::start(RegistryOpts::default()).expect("registry");
    let host = reg.host();
    // A layer of incompressible bytes, big enough to split.
    let noise: Vec<u8> = (0..2_000_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    let img = TestImage::busybox(&[]).with_layer(Tar::new().file("noise", &noise, 0o644).finish(), &[]);
    let (_, manifest) = reg.push_image("big/app", "v1", &img, Format::Docker, Compression::Gzip).expect("push");
    let m: Value = serde_json::from_slice(&manifest).expect("manifest");
    let layer = m["layers"][1]["digest"].as_str().expect("layer").to_string();
    let blob = std::fs::read(reg.blob_path(&layer)).expect("blob");
    let d = Daemon::start(&[]).expect("berthd");
    let ingest = d.data_root().join("image/ingest");
    std::fs::create_dir_all(&ingest).expect("ingest");
    let partial = ingest.join(format!("{}.partial", layer.trim_start_matches("sha256:")));

    // Half of it arrived before the last attempt broke off: only the rest is fetched.
    std::fs::write(&partial, &blob[..blob.len() / 2]).expect("half");
    d.docker(&["pull", &format!("{host}/big/app:v1")]).expect("resumed pull");
    let hex = layer.trim_start_matches("sha256:");
    let log = reg.log();
    assert!(
        log.lines().any(|l| l.contains(hex) && l.contains("\" 206 ")),
        "a range request for the rest of the layer:\n{log}"
    );
    assert!(!partial.exists(), "the partial download is gone once the image is in");
    assert_eq!(
        d.docker(&["run", "--rm", &format!("{host}/big/app:v1"), "wc", "-c", "/noise"])
            .expect("run")
            .split_whitespace()
            .next(),
        Some("2000000")
    );

    // A partial download that is wrong fails verification once, then is fetched anew.
    d.docker(&["rmi", &format!("{host}/big/app:v1")]).expect("rmi");
    std::fs::write(&partial, vec![0u8; blob.len() / 2]).expect("junk");
    let (code, _, err) = d.out(&["pull", &format!("{host}/big/app:v1")]);
    assert!(code != Some(0) && err.contains("verification failed"), "{err}");
    assert!(!partial.exists());
    d.docker(&["pull", &format!("{host}/big/app:v1")]).expect("the next pull works");
}

#[test]
fn mirrors_serve_docker_hub_names() {
    let reg = Registry::start(RegistryOpts::default()).expect("registry");
    let host = reg.host();
    reg.push_image("library/mirrored", "latest", &app("mirror"), Format::Docker, Compression::Gzip).expect("push");
    let d = Daemon::start(&["--registry-mirror", &format!("http://{host}")]).expect("berthd");
    let text = d.docker(&["pull", "mirrored"]).expect("pull through the mirror");
    assert!(text.contains("Status: Downloaded newer image for mirrored:latest"), "{text}");
    assert_eq!(d.docker(&["run", "--rm", "mirrored", "cat", "/app/marker"]).expect("run"), "mirror");
}

/// A token service for the registry's Bearer flow: checks basic credentials
/// (carol:t0ken), and signs a JWT (RS256, its certificate in `x5c`) granting
/// what was asked; anonymous callers get a token that grants nothing.
const TOKEN_SERVER: &str = r#"
import base64, http.server, json, subprocess, sys, time, urllib.parse, uuid
port, key, cert_der = int(sys.argv[1]), sys.argv[2], sys.argv[3]
def b64(b): return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
x5c = base64.b64encode(open(cert_der, "rb").read()).decode()
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        q = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
        auth = self.headers.get("Authorization", "")
        user = None
        if auth.startswith("Basic "):
            u, _, p = base64.b64decode(auth[6:]).decode().partition(":")
            if (u, p) != ("carol", "t0ken"):
                self.send_response(401); self.end_headers(); return
            user = u
        access = []
        for scope in q.get("scope", []):
            kind, name, actions = scope.split(":")
            if user:
                access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        claims = {"iss": "berth-issuer", "sub": user or "", "aud": q.get("service", [""])[0],
                  "exp": now + 300, "nbf": now - 10, "iat": now - 10, "jti": str(uuid.uuid4()), "access": access}
        head = b64(json.dumps({"alg": "RS256", "typ": "JWT", "x5c": [x5c]}).encode())
        body = b64(json.dumps(claims).encode())
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key], input=f"{head}.{body}".encode(),
                             capture_output=True, check=True).stdout
        token = f"{head}.{body}.{b64(sig)}"
        out = json.dumps({"token": token, "access_token": token, "expires_in": 300}).encode()
        self.send_response(200); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out))); self.end_headers(); self.wfile.write(out)
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
"#;

/// A hostile registry: `/v2/` asks for a token from its own realm, which
/// answers a 32 MiB "token" (oci-client would read all of it into memory).
const ENDLESS_TOKEN: &str = r#"
import http.server, sys
port = int(sys.argv[1])
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        if self.path.startswith("/token"):
            self.send_response(200); self.send_header("Content-Type", "application/json"); self.end_headers()
            self.wfile.write(b'{"token": "')
            try:
                for _ in range(512): self.wfile.write(b"a" * 65536)
            except OSError: pass
            return
        self.send_response(401)
        self.send_header("WWW-Authenticate", f'Bearer realm="http://127.0.0.1:{port}/token",service="evil"')
        self.send_header("Content-Length", "0"); self.end_headers()
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
"#;

#[test]
fn a_token_service_answer_is_bounded() {
    let port = berth_tests::free_port();
    let server = std::process::Command::new("python3")
        .args(["-c", ENDLESS_TOKEN, &port.to_string()])
        .spawn()
        .expect("hostile registry");
    let _server = berth_tests::ChildGuard(server);
    let up = (0..100).any(|_| {
        let ok = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
        if !ok {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        ok
    });
    assert!(up, "the hostile registry did not start");
    let d = Daemon::start(&[]).expect("berthd");
    let (code, _, err) = d.out(&["pull", &format!("127.0.0.1:{port}/some/image:v1")]);
    assert_ne!(code, Some(0));
    assert!(err.contains("answered more than 65536 bytes"), "{err}");
    // berthd is still there, and answers.
    d.docker(&["version"]).expect("version after the pull");
}

#[test]
fn token_auth_through_a_realm() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = |f: &str| dir.path().join(f).to_string_lossy().to_string();
    berth_tests::self_signed(dir.path(), "token", "berth token signer", &[]);
    openssl(&["x509", "-in", &p("token.crt"), "-outform", "DER", "-out", &p("token.der")]);
    let port = berth_tests::free_port();
    let server = std::process::Command::new("python3")
        .args(["-c", TOKEN_SERVER, &port.to_string(), &p("token.key"), &p("token.der")])
        .spawn()
        .expect("token server");
    let _server = berth_tests::ChildGuard(server);
    // Wait until the token service listens.
    let up = (0..100).any(|_| {
        let ok = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
        if !ok {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        ok
    });
    assert!(up, "the token service did not start");
    let reg = Registry::start(RegistryOpts {
        token: Some(TokenAuth {
            realm: format!("http://127.0.0.1:{port}/token"),
            service: "berth-registry".into(),
            issuer: "berth-issuer".into(),
            root_cert: p("token.crt").into(),
        }),
        ..Default::default()
    })
    .expect("registry");
    let host = reg.host();
    let d = Daemon::start(&[]).expect("berthd");
    d.load(&berth_tests::docker_save_tar(&[app("token").with_layer(Tar::new().finish(), &["tok/app:v1"])], false))
        .expect("load");
    d.docker(&["tag", "tok/app:v1", &format!("{host}/tok/app:v1")]).expect("tag");
    let (code, _, err) = d.out(&["push", &format!("{host}/tok/app:v1")]);
    assert!(
        code != Some(0) && (err.to_ascii_lowercase().contains("unauthorized") || err.contains("denied")),
        "anonymous push: {err}"
    );
    let wrong = d.docker_with_input(&["login", "-u", "carol", "--password-stdin", &host], b"nope\n").expect("login");
    assert!(!wrong.status.success(), "the token service refuses a wrong password");
    let right = d.docker_with_input(&["login", "-u", "carol", "--password-stdin", &host], b"t0ken\n").expect("login");
    assert!(right.status.success(), "{}", String::from_utf8_lossy(&right.stderr));
    d.docker(&["push", &format!("{host}/tok/app:v1")]).expect("push with a token");
    d.docker(&["rmi", &format!("{host}/tok/app:v1"), "tok/app:v1"]).expect("rmi");
    let marker = d.docker(&["run", "--rm", &format!("{host}/tok/app:v1"), "cat", "/app/marker"]).expect("pull and run");
    assert_eq!(marker, "token");
    // Another daemon without credentials is refused.
    let d2 = Daemon::start(&[]).expect("berthd 2");
    let (code, _, err) = d2.out(&["pull", &format!("{host}/tok/app:v1")]);
    assert!(code != Some(0) && err.contains("pull access denied"), "{err}");
}

#[test]
fn foreign_layers_come_from_their_urls() {
    let reg = Registry::start(RegistryOpts::default()).expect("registry");
    let host = reg.host();
    let img = app("foreign");
    let (_, manifest) = reg.push_image("src/app", "v1", &img, Format::Docker, Compression::Gzip).expect("push");
    let mut m: Value = serde_json::from_slice(&manifest).expect("manifest");
    // The same image in another repository, its own layer marked foreign and
    // only reachable at its URL (the first repository's blob endpoint).
    let base = m["layers"][0]["digest"].as_str().expect("base").to_string();
    let own = m["layers"][1]["digest"].as_str().expect("own").to_string();
    reg.push_blob("foreign/app", &std::fs::read(reg.blob_path(&base)).expect("base blob")).expect("base");
    reg.push_blob("foreign/app", &img.config_bytes()).expect("config");
    m["layers"][1]["mediaType"] = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip".into();
    m["layers"][1]["urls"] = serde_json::json!([format!("http://{host}/v2/src/app/blobs/{own}")]);
    let bytes = serde_json::to_vec(&m).expect("json");
    reg.push_manifest("foreign/app", "v1", berth_tests::registry::DOCKER_MANIFEST, &bytes).expect("manifest");
    // Without the registry in allow-nondistributable-artifacts, the URLs are
    // not followed: the layer is asked of the registry, which lacks it.
    let strict = Daemon::start(&[]).expect("berthd");
    let (code, _, err) = strict.out(&["pull", &format!("{host}/foreign/app:v1")]);
    assert_ne!(code, Some(0), "a foreign URL was followed without permission");
    assert!(reg.log().contains(&format!("GET /v2/foreign/app/blobs/{own}")), "asked of the registry");
    assert!(!reg.log().contains(&format!("GET /v2/src/app/blobs/{own}")), "not of the URL: {err}");
    let d = Daemon::start(&["--allow-nondistributable-artifacts", &host]).expect("berthd");
    assert_eq!(
        d.docker(&["run", "--rm", &format!("{host}/foreign/app:v1"), "cat", "/app/marker"]).expect("run"),
        "foreign"
    );
    let log = reg.log();
    assert!(log.contains(&format!("GET /v2/src/app/blobs/{own}")), "fetched from its URL:\n{log}");
}

#[test]
fn concurrent_pulls_share_their_layers() {
    let reg = Registry::start(RegistryOpts::default()).expect("registry");
    let host = reg.host();
    let noise: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2246822519) >> 11) as u8).collect();
    let shared = Tar::new().file("shared", &noise, 0o644).finish();
    let a = TestImage::busybox(&[])
        .with_layer(shared.clone(), &[])
        .with_layer(Tar::new().file("who", b"a", 0o644).finish(), &[]);
    let b =
        TestImage::busybox(&[]).with_layer(shared, &[]).with_layer(Tar::new().file("who", b"b", 0o644).finish(), &[]);
    reg.push_image("conc/a", "v1", &a, Format::Docker, Compression::Gzip).expect("push a");
    reg.push_image("conc/b", "v1", &b, Format::Docker, Compression::Gzip).expect("push b");
    let d = Daemon::start(&[]).expect("berthd");
    let (ra, rb) = (format!("{host}/conc/a:v1"), format!("{host}/conc/b:v1"));
    let results: Vec<std::process::Output> = std::thread::scope(|s| {
        let ta = s.spawn(|| d.docker_out(&["pull", &ra]).expect("pull a"));
        let tb = s.spawn(|| d.docker_out(&["pull", &rb]).expect("pull b"));
        vec![ta.join().expect("a"), tb.join().expect("b")]
    });
    for o in &results {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    assert_eq!(d.docker(&["run", "--rm", &ra, "cat", "/who"]).expect("run a"), "a");
    assert_eq!(d.docker(&["run", "--rm", &rb, "sh", "-c", "cat /who; wc -c < /shared"]).expect("run b"), "b3000000\n");
    // Removing one keeps the other whole (the shared layer is used twice).
    d.docker(&["rmi", &ra]).expect("rmi a");
    assert_eq!(
        d.docker(&["run", "--rm", &rb, "wc", "-c", "/shared"]).expect("run b").split_whitespace().next(),
        Some("3000000")
    );
}

#[test]
fn a_registry_cannot_send_more_than_the_manifest_says() {
    let reg = Registry::start(RegistryOpts::default()).expect("registry");
    let host = reg.host();
    let img = app("sizes");
    let (_, manifest) = reg.push_image("big/app", "v1", &img, Format::Docker, Compression::Gzip).expect("push");
    let m: Value = serde_json::from_slice(&manifest).expect("manifest");
    // The registry checks that a manifest's blobs exist, not their sizes: a
    // manifest can promise less than its blobs hold.
    let mut short = m.clone();
    short["layers"][1]["size"] = 10.into();
    let bytes = serde_json::to_vec(&short).expect("json");
    reg.push_manifest("big/app", "short", berth_tests::registry::DOCKER_MANIFEST, &bytes).expect("manifest");
    let mut huge = m.clone();
    huge["config"]["size"] = (9u64 << 20).into();
    let bytes = serde_json::to_vec(&huge).expect("json");
    reg.push_manifest("big/app", "huge", berth_tests::registry::DOCKER_MANIFEST, &bytes).expect("manifest");

    let d = Daemon::start(&[]).expect("berthd");
    let (code, _, err) = d.out(&["pull", &format!("{host}/big/app:short")]);
    assert_ne!(code, Some(0));
    assert!(err.contains("more than its 10 bytes"), "{err}");
    let (code, _, err) = d.out(&["pull", &format!("{host}/big/app:huge")]);
    assert_ne!(code, Some(0));
    assert!(err.contains("over the limit"), "{err}");
    assert_eq!(d.docker(&["images", "-q"]).expect("images").trim(), "", "nothing half-pulled is listed");
    assert_eq!(d.out(&["pull", &format!("{host}/big/app:v1")]).0, Some(0), "the honest manifest pulls");
}

/// A registry that answers every manifest request with `size` bytes (a
/// Content-Length when `declared`, else a body that just goes on).
fn hostile_registry(size: usize, declared: bool) -> (u16, std::thread::JoinHandle<()>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let handle = std::thread::spawn(move || {
        listener.set_nonblocking(false).ok();
        for stream in listener.incoming().take(8) {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]).to_string();
            if head.starts_with("GET /v2/ ") || head.starts_with("GET /v2 ") {
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}");
                continue;
            }
            let header = if declared {
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.distribution.manifest.v2+json\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n"
                )
            } else {
                "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.distribution.manifest.v2+json\r\nConnection: close\r\n\r\n".to_string()
            };
            let _ = s.write_all(header.as_bytes());
            let chunk = vec![b' '; 64 * 1024];
            let mut sent = 0;
            while sent < size && s.write_all(&chunk).is_ok() {
                sent += chunk.len();
            }
        }
    });
    (port, handle)
}

#[test]
fn manifests_over_four_mib_are_refused() {
    let d = Daemon::with_busybox();
    for declared in [true, false] {
        let (port, _server) = hostile_registry(64 << 20, declared);
        let reference = format!("127.0.0.1:{port}/huge:1");
        let (code, _, err) = d.out(&["pull", &reference]);
        assert_ne!(code, Some(0));
        assert!(err.contains("over the limit of 4194304 bytes"), "declared={declared}: {err}");
    }
    // berthd is fine afterwards.
    assert_eq!(d.docker(&["run", "--rm", "busybox", "echo", "ok"]).expect("run").trim(), "ok");
}
