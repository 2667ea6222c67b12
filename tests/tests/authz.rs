//! Who may do what (`--authorization-config`) and the audit log
//! (`--audit-log`): identities from client certificates (made here, signed by
//! the CA `berthd certs` wrote) and from the unix socket's peer, roles tried
//! on allowed and denied calls, label scoping, dangerous options, a reload on
//! SIGHUP while a `docker logs -f` stays connected, and the audit chain
//! verified, then broken.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use berth_tests::{Daemon, TestImage, bin, docker_save_tar, free_port};

/// A client certificate for `subject` (`/CN=alice/OU=ops`) signed by the CA in
/// `ca_dir`, in a directory of its own as the docker CLI wants it.
fn client_cert(ca_dir: &Path, name: &str, subject: &str) -> PathBuf {
    client_cert_with(ca_dir, name, subject, "")
}

/// As [`client_cert`], with more X.509v3 extensions (`subjectAltName=...`).
fn client_cert_with(ca_dir: &Path, name: &str, subject: &str, ext: &str) -> PathBuf {
    let dir = ca_dir.join(name);
    std::fs::create_dir_all(&dir).expect("mkdir");
    berth_tests::signed_by(
        &ca_dir.join("ca.pem"),
        &ca_dir.join("ca-key.pem"),
        subject,
        &format!("extendedKeyUsage=clientAuth\n{ext}"),
        &dir.join("key.pem"),
        &dir.join("cert.pem"),
    );
    std::fs::copy(ca_dir.join("ca.pem"), dir.join("ca.pem")).expect("ca");
    dir
}

struct Tls<'a> {
    d: &'a Daemon,
    port: u16,
}

impl Tls<'_> {
    fn cmd(&self, who: &Path, args: &[&str]) -> Command {
        let mut c = self.d.docker_cmd(args);
        c.env("DOCKER_HOST", format!("tcp://127.0.0.1:{}", self.port))
            .env("DOCKER_TLS_VERIFY", "1")
            .env("DOCKER_CERT_PATH", who);
        c
    }

    fn run(&self, who: &Path, args: &[&str]) -> Output {
        self.cmd(who, args).output().expect("docker")
    }

    fn ok(&self, who: &Path, args: &[&str]) -> String {
        let out = self.run(who, args);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn denied(&self, who: &Path, args: &[&str]) -> String {
        let out = self.run(who, args);
        assert!(!out.status.success(), "{args:?} should be refused: {}", String::from_utf8_lossy(&out.stdout));
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

fn policy(alice_role: &str, srv: &Path) -> String {
    format!(
        r#"
[[grant]]
identity = "uid:0"
role = "admin"

[[grant]]
identity = "cn:alice"
role = "{alice_role}"
labels = {{ team = "a" }}

[[grant]]
identity = "san:spiffe://berth.test/ci"
role = "read-only"

[[grant]]
identity = "cn:bob"
role = "operator"
allow = ["exec"]

[[grant]]
identity = "ou:builders"
role = "creator"
labels = {{ team = "d" }}
allow = ["bind:{}"]

[roles.creator]
actions = ["POST /containers/create", "GET *", "DELETE /containers/{{id}}"]
"#,
        srv.display()
    )
}

#[test]
fn roles_labels_grants_reload_and_the_audit_chain() {
    let certs = tempfile::tempdir().expect("tmp");
    let out = Command::new(bin("berthd")).arg("certs").arg("--out").arg(certs.path()).output().expect("certs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let alice = client_cert(certs.path(), "alice", "/CN=alice");
    let bob = client_cert(certs.path(), "bob", "/CN=bob");
    let dave = client_cert(certs.path(), "dave", "/CN=dave/OU=builders");
    let eve = client_cert(certs.path(), "eve", "/CN=eve");
    let ci = client_cert_with(certs.path(), "ci", "/CN=unlisted", "subjectAltName=URI:spiffe://berth.test/ci");
    let srv = tempfile::tempdir().expect("tmp");
    let files = tempfile::tempdir().expect("tmp");
    let (policy_file, audit_log) = (files.path().join("policy.toml"), files.path().join("audit.log"));
    std::fs::write(&policy_file, policy("read-only", srv.path())).expect("policy");

    let port = free_port();
    let p = |f: &str| certs.path().join(f).display().to_string();
    let (host, pol, audit) =
        (format!("tcp://127.0.0.1:{port}"), policy_file.display().to_string(), audit_log.display().to_string());
    let d = Daemon::start(&[
        "-H",
        &host,
        "--tlsverify",
        "--tlscacert",
        &p("ca.pem"),
        "--tlscert",
        &p("server-cert.pem"),
        "--tlskey",
        &p("server-key.pem"),
        "--authorization-config",
        &pol,
        "--audit-log",
        &audit,
    ])
    .expect("start");
    // The test's own calls come over the unix socket as uid 0, an admin.
    d.load(&docker_save_tar(&[TestImage::busybox(&["busybox:latest"])], false)).expect("load");
    d.docker(&["run", "-d", "--name", "team-a", "--label", "team=a", "busybox", "sh", "-c", "echo started; sleep 300"])
        .expect("a");
    d.docker(&["run", "-d", "--name", "team-b", "--label", "team=b", "busybox", "sleep", "300"]).expect("b");
    let info = d.docker(&["info", "--format", "{{json .SecurityOptions}}"]).expect("info");
    assert!(info.contains("name=authorization"), "{info}");
    let tls = Tls { d: &d, port };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !tls.run(&alice, &["version"]).status.success() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }

    // alice reads, and only team a's.
    let ps = tls.ok(&alice, &["ps", "-a", "--format", "{{.Names}}"]);
    assert_eq!(ps.trim(), "team-a", "label scoping");
    let err = tls.denied(&alice, &["inspect", "team-b"]);
    assert!(err.contains("No such"), "as if absent: {err}");
    let images = tls.ok(&alice, &["images", "-q"]);
    assert_eq!(images.trim(), "", "busybox has no team label");
    let events = tls.ok(
        &alice,
        &[
            "events",
            "--since",
            &berth_tests::unix_time(-120),
            "--until",
            &berth_tests::unix_time(1),
            "--format",
            "{{.Actor.Attributes.name}}",
        ],
    );
    assert!(events.contains("team-a") && !events.contains("team-b"), "{events}");
    assert!(tls.ok(&alice, &["logs", "team-a"]).contains("started"));
    let err = tls.denied(&alice, &["stop", "team-a"]);
    assert!(err.contains("authorization denied") && err.contains("cn:alice"), "{err}");
    // The same through curl, as a program would call the API.
    let curl = |args: &[&str]| {
        let out = Command::new("curl")
            .args(["-s", "--max-time", "10", "--cacert"])
            .arg(alice.join("ca.pem"))
            .arg("--cert")
            .arg(alice.join("cert.pem"))
            .arg("--key")
            .arg(alice.join("key.pem"))
            .args(args)
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let listed = curl(&[&format!("https://127.0.0.1:{port}/v1.41/containers/json?all=1")]);
    let listed: serde_json::Value = serde_json::from_str(&listed).expect("a JSON list");
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed[0]["Names"][0], "/team-a");
    let refused =
        curl(&["-X", "POST", "-w", " %{http_code}", &format!("https://127.0.0.1:{port}/v1.41/containers/team-a/kill")]);
    assert!(refused.ends_with(" 403") && refused.contains("authorization denied"), "{refused}");
    // bob operates, and may exec, but not create.
    tls.ok(&bob, &["restart", "-t", "1", "team-b"]);
    assert_eq!(tls.ok(&bob, &["exec", "team-b", "echo", "in"]).trim(), "in");
    let err = tls.denied(&bob, &["create", "busybox"]);
    assert!(err.contains("may not POST /containers/create"), "{err}");
    // dave creates, but what is dangerous needs its own grant.
    let err = tls.denied(&dave, &["create", "--privileged", "busybox"]);
    assert!(err.contains("lacks the grant \"privileged\""), "{err}");
    let err = tls.denied(&dave, &["create", "-v", "/etc:/host-etc", "busybox"]);
    assert!(err.contains("bind:/etc"), "{err}");
    let granted = format!("{}:/data", srv.path().display());
    let made = tls.ok(&dave, &["create", "-v", &granted, "busybox"]);
    // What a scoped identity creates carries its labels.
    let label = d.docker(&["inspect", "-f", "{{index .Config.Labels \"team\"}}", made.trim()]).expect("inspect");
    assert_eq!(label.trim(), "d");
    let err = tls.denied(&dave, &["rm", "team-b"]);
    assert!(err.contains("No such container"), "outside its labels: {err}");
    tls.ok(&dave, &["rm", made.trim()]);
    // An identity by its certificate's SAN URI: read-only, unscoped.
    let all = tls.ok(&ci, &["ps", "-a", "--format", "{{.Names}}"]);
    assert!(all.contains("team-a") && all.contains("team-b"), "{all}");
    let err = tls.denied(&ci, &["stop", "team-b"]);
    assert!(err.contains("san:spiffe://berth.test/ci") || err.contains("may not"), "{err}");
    // Someone with no grant gets nothing.
    let err = tls.denied(&eve, &["version"]);
    assert!(err.contains("no grant"), "{err}");

    // A reload on SIGHUP: alice becomes an operator; her `logs -f` stays connected.
    let mut follow = tls
        .cmd(&alice, &["logs", "-f", "team-a"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("logs -f");
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(&policy_file, policy("operator", srv.path())).expect("policy");
    let pid = d.pid().expect("berthd runs");
    let hup = Command::new("kill").args(["-HUP", &pid.to_string()]).status().expect("kill");
    assert!(hup.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !d.log().contains("authorization policy reloaded") {
        assert!(Instant::now() < deadline, "no reload: {}", d.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(follow.try_wait().expect("try_wait").is_none(), "logs -f outlived the reload");
    tls.ok(&alice, &["stop", "-t", "1", "team-a"]);
    let _ = follow.kill();
    let _ = follow.wait();

    // The audit log: state changes and denials, chained.
    let text = std::fs::read_to_string(&audit_log).expect("audit");
    assert!(text.lines().any(|l| l.contains("\"deny\"") && l.contains("cn:alice")), "{text}");
    assert!(text.lines().any(|l| l.contains("\"allow\"") && l.contains("cn:bob") && l.contains("/restart")));
    let verify =
        |file: &Path| Command::new(bin("berthd")).args(["audit", "verify"]).arg(file).output().expect("verify");
    let ok = verify(&audit_log);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let copy = files.path().join("edited.log");
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    assert!(lines.len() >= 4, "{text}");
    lines[2] = lines[2].replace("\"deny\"", "\"allow\"").replace("\"allow\"", "\"allowed\"");
    std::fs::write(&copy, lines.join("\n") + "\n").expect("write");
    let bad = verify(&copy);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("line 4"), "{}", String::from_utf8_lossy(&bad.stderr));
}

/// A Docker AuthZ plugin: activates as `authz`, writes every request it is
/// asked about to a file, and refuses one route (kill).
const PLUGIN: &str = r#"
import http.server, json, os, socketserver, sys, urllib.parse
path, log = sys.argv[1], sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    def address_string(self): return "plugin"
    def log_message(self, *a): pass
    def do_POST(self):
        n = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(n) or b"{}")
        if self.path == "/Plugin.Activate":
            out = {"Implements": ["authz"]}
        elif self.path in ("/AuthZPlugin.AuthZReq", "/AuthZPlugin.AuthZRes"):
            with open(log, "a") as f:
                f.write(json.dumps({"call": self.path, **body}) + "\n")
            kill = urllib.parse.urlparse(body.get("RequestUri", "")).path.endswith("/kill")
            out = {"Allow": not kill, "Msg": "no killing here"}
        else:
            out = {"Err": "unknown call"}
        data = json.dumps(out).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
if os.path.exists(path):
    os.unlink(path)
srv = socketserver.UnixStreamServer(path, H)
print("ready", flush=True)
srv.serve_forever()
"#;

#[test]
fn a_docker_authz_plugin_is_asked_and_can_refuse() {
    let dir = tempfile::tempdir().expect("tmp");
    let (sock, log) = (dir.path().join("authz.sock"), dir.path().join("asked.jsonl"));
    let _plugin =
        berth_tests::serve_ready(Command::new("python3").arg("-u").arg("-c").arg(PLUGIN).arg(&sock).arg(&log));
    let d = Daemon::start(&["--authorization-plugin", &sock.display().to_string()]).expect("start");
    d.load(&docker_save_tar(&[TestImage::busybox(&["busybox:latest"])], false)).expect("load");
    d.docker(&["run", "-d", "--name", "victim", "busybox", "sleep", "300"]).expect("run");
    let (code, _, err) = d.out(&["kill", "victim"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("authorization denied by plugin") && err.contains("no killing here"), "{err}");
    assert_eq!(d.docker(&["inspect", "-f", "{{.State.Running}}", "victim"]).expect("inspect").trim(), "true");
    d.docker(&["stop", "-t", "1", "victim"]).expect("stop is allowed");
    let asked = std::fs::read_to_string(&log).expect("the plugin's log");
    let calls: Vec<serde_json::Value> = asked.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let create = calls
        .iter()
        .find(|c| {
            c["call"] == "/AuthZPlugin.AuthZReq"
                && c["RequestUri"].as_str().is_some_and(|u| u.contains("/containers/create"))
        })
        .expect("the create was asked about");
    assert_eq!(create["RequestMethod"], "POST");
    assert!(create["RequestBody"].as_str().is_some_and(|b| !b.is_empty()), "the JSON body goes along: {create}");
    assert!(
        calls.iter().any(|c| c["call"] == "/AuthZPlugin.AuthZRes" && c["ResponseStatusCode"] == 201),
        "the answer's status is reported after it"
    );
}
