//! The shim's control socket as any local client could speak to it: requests
//! are typed, and one that lacks a required field is refused, never read as a
//! default (an exec without `uid` once ran as root).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use berth_tests::{Daemon, TestImage, docker_save_tar};
use serde_json::Value;

/// Sends one request line to the shim of `bundle` and returns its reply and the
/// connection (for what streams after the reply).
fn request(bundle: &Path, line: &str) -> (Value, UnixStream) {
    // The socket's path may be longer than a sockaddr_un holds: go through a
    // descriptor of the bundle, as the runtime does.
    let dir = std::fs::File::open(bundle).expect("open bundle");
    let mut conn =
        UnixStream::connect(format!("/proc/self/fd/{}/ctl.sock", dir.as_raw_fd())).expect("connect to the shim");
    conn.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    conn.write_all(format!("{line}\n").as_bytes()).expect("send");
    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
    let mut reply = String::new();
    reader.read_line(&mut reply).expect("reply");
    (serde_json::from_str(&reply).expect("reply is JSON"), conn)
}

#[test]
fn a_request_missing_a_required_field_is_refused() {
    let d = Daemon::start(&[]).expect("start");
    d.load(&docker_save_tar(&[TestImage::busybox(&["busybox:latest"])], false)).expect("load");
    let id = d.docker(&["run", "-d", "busybox", "sleep", "60"]).expect("run").trim().to_string();
    let bundle = d.data_root().join("runtime/containers").join(&id);

    let exec = |fields: &str| {
        format!(
            r#"{{"op":"exec","id":"{}",{fields}"args":["sh","-c","id -u; touch /ran"],"env":["PATH=/bin"],"cwd":"/","gid":0,"groups":[],"tty":false,"stdin":false,"detach":false}}"#,
            &berth_tests::digest(fields.as_bytes()).trim_start_matches("sha256:")[..16]
        )
    };
    let (reply, _) = request(&bundle, &exec(""));
    assert_eq!(reply["ok"], false, "{reply}");
    assert_eq!(reply["code"], 125, "{reply}");
    let msg = reply["error"].as_str().unwrap_or_default();
    assert!(msg.contains("missing field `uid`"), "{reply}");
    let code = d.docker_out(&["exec", &id, "test", "-e", "/ran"]).expect("exec").status.code();
    assert_eq!(code, Some(1), "the refused exec must not have run");

    // Unknown ops and misspelt fields are refused too.
    let (reply, _) = request(&bundle, r#"{"op":"fly"}"#);
    assert_eq!(reply["ok"], false, "{reply}");
    let (reply, _) = request(&bundle, r#"{"op":"attach","stdin":false,"stdout":true,"stdrr":true}"#);
    assert_eq!(reply["ok"], false, "{reply}");

    // The same request with its user runs as that user.
    let (reply, mut conn) = request(&bundle, &exec(r#""uid":4321,"#));
    assert_eq!(reply["ok"], true, "{reply}");
    let mut stream = Vec::new();
    let _ = conn.read_to_end(&mut stream);
    // Frames: 8-byte headers; the stdout frame carries the uid.
    let mut at = 0;
    let mut stdout = Vec::new();
    while at + 8 <= stream.len() {
        let len = u32::from_be_bytes([stream[at + 4], stream[at + 5], stream[at + 6], stream[at + 7]]) as usize;
        if stream[at] == 1 {
            stdout.extend_from_slice(&stream[at + 8..at + 8 + len]);
        }
        at += 8 + len;
    }
    assert_eq!(String::from_utf8_lossy(&stdout), "4321\n");
    d.docker(&["rm", "-f", &id]).expect("rm");
}
