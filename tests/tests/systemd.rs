//! Running under systemd: `Type=notify` units get `READY=1` on
//! `$NOTIFY_SOCKET` once the API answers (checked here with a socket of the
//! test's own), and every unit in deploy/systemd passes `systemd-analyze
//! verify` as `make install` writes it.

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::Duration;

use berth_tests::{ChildGuard, bin};

#[test]
fn berthd_tells_systemd_when_it_is_ready() {
    let dir = tempfile::tempdir().expect("tmp");
    let notify = dir.path().join("notify.sock");
    let listener = UnixDatagram::bind(&notify).expect("bind");
    listener.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    let sock = dir.path().join("berth.sock");
    let bridge = format!("bn{:08x}", std::process::id());
    let child = Command::new(bin("berthd"))
        .args(["--config-file", "/dev/null", "--bridge", &bridge, "--data-root"])
        .arg(dir.path().join("data"))
        .arg("--exec-root")
        .arg(dir.path().join("exec"))
        .arg("-H")
        .arg(format!("unix://{}", sock.display()))
        .env("NOTIFY_SOCKET", &notify)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("berthd");
    let _guard = ChildGuard(child);
    let mut buf = [0u8; 64];
    let n = listener.recv(&mut buf).expect("a notification");
    assert_eq!(&buf[..n], b"READY=1\n");
    // Ready means answering.
    let (code, _) = berth_tests::raw_http(&sock, "GET", "/_ping", b"").map(|r| (r.0, ())).expect("ping");
    assert_eq!(code, 200);
    drop(_guard);
    berth_tests::remove_bridge_and_rules(&bridge);
}

#[test]
fn the_units_pass_systemd_analyze_verify() {
    if Command::new("systemd-analyze").arg("--version").output().is_err() {
        panic!("systemd-analyze is missing (Debian's systemd package)");
    }
    // `make install` with the prefix a temporary directory, so the units name
    // binaries that exist.
    let prefix = tempfile::tempdir().expect("tmp");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace").to_path_buf();
    let bins = bin("berthd").parent().expect("bin dir").to_path_buf();
    let out = Command::new("make")
        .arg("-C")
        .arg(&root)
        .arg("--no-print-directory")
        .arg("install-files")
        .arg(format!("PREFIX={}", prefix.path().display()))
        .arg(format!("INSTALL_BIN_DIR={}", bins.display()))
        .output()
        .expect("make install-files");
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let units = prefix.path().join("lib/systemd/system");
    let mut files: Vec<std::path::PathBuf> =
        std::fs::read_dir(&units).expect("units").filter_map(|e| e.ok()).map(|e| e.path()).collect();
    files.sort();
    assert!(files.len() >= 7, "{files:?}");
    for f in &files {
        let text = std::fs::read_to_string(f).expect("unit");
        if f.extension().is_some_and(|e| e == "service") {
            assert!(text.contains("Type=notify"), "{}", f.display());
            // Stopping the units that start shims must leave the containers running.
            let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if matches!(name, "berthd.service" | "berth-runtime.service") {
                assert!(text.contains("KillMode=process"), "{name}");
            }
            assert!(text.contains(&prefix.path().join("bin").display().to_string()), "{}: paths", f.display());
        }
    }
    let verify = Command::new("systemd-analyze").arg("verify").args(&files).output().expect("verify");
    let err = String::from_utf8_lossy(&verify.stderr);
    assert!(verify.status.success() && err.trim().is_empty(), "systemd-analyze verify:\n{err}");
    assert!(prefix.path().join("etc/berth/berth.toml.example").exists());
}
