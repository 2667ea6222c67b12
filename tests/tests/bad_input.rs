//! Bad archives get a clear error and leave the store exactly as it was: no new
//! image, layer, blob or staging file, and nothing written outside the store.

use berth_tests::{Daemon, Tar, TestImage, docker_save_tar, oci_layout_tar};

/// A tar whose single entry has `name` written raw into the header (so `..` and
/// other names tar::Builder refuses can be made).
fn raw_entry_tar(name: &str, data: &[u8]) -> Vec<u8> {
    let mut h = tar::Header::new_old();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    let field = &mut h.as_old_mut().name;
    field.fill(0);
    field[..name.len()].copy_from_slice(name.as_bytes());
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512 + 1024, 0);
    out
}

struct Fixture {
    d: Daemon,
    good: TestImage,
}

impl Fixture {
    fn new() -> Self {
        let d = Daemon::start(&[]).expect("start");
        let good = TestImage::busybox(&["busybox:latest"]);
        d.load(&docker_save_tar(std::slice::from_ref(&good), false)).expect("load good");
        Fixture { d, good }
    }

    /// Loads `tar`, expects failure with `needle` in the message, and checks nothing changed.
    fn refuse(&self, what: &str, tar: &[u8], needle: &str) {
        let out = self.d.docker_with_input(&["load"], tar).expect("docker load");
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!out.status.success(), "{what}: load must fail");
        assert!(err.contains(needle), "{what}: expected {needle:?} in {err:?}");
        let ids = self.d.docker(&["images", "-q", "--no-trunc"]).expect("images");
        assert_eq!(ids.trim(), self.good.id(), "{what}: the store changed");
        assert_eq!(self.d.content_counts(), (1, 1), "{what}: layers or blobs left behind");
        assert_eq!(self.d.staging_leftovers(), 0, "{what}: staging left behind");
    }
}

#[test]
fn broken_archives_change_nothing() {
    let f = Fixture::new();
    let other =
        TestImage::busybox(&["other:1"]).with_layer(Tar::new().file("x", &[7u8; 5000], 0o644).finish(), &["other:1"]);
    let full = docker_save_tar(std::slice::from_ref(&other), false);

    f.refuse("truncated", &full[..full.len() / 2], "invalid archive: unexpected EOF");
    f.refuse("not a tar", b"this is not a tarball at all, just some text", "invalid");
    f.refuse("empty", b"", "empty or not a tar file");

    // A layer whose bytes do not match the diff ID in the config.
    let mut bad = other.clone();
    let mut bad_layers = bad.layers.clone();
    let cfg = bad.config_bytes();
    let last = bad_layers.len() - 1;
    let tampered = Tar::new().file("x", &[8u8; 5000], 0o644).finish();
    bad_layers[last] = tampered;
    bad.layers = bad_layers;
    // Keep the old config (old diff IDs) but ship the tampered layer.
    let tar = {
        let mut t = Tar::new();
        let mut paths = vec![];
        for (i, l) in bad.layers.iter().enumerate() {
            t = t.file(&format!("l{i}/layer.tar"), l, 0o644);
            paths.push(format!("l{i}/layer.tar"));
        }
        t = t.file("config.json", &cfg, 0o644);
        let manifest = serde_json::json!([{"Config": "config.json", "RepoTags": ["bad:1"], "Layers": paths}]);
        t.file("manifest.json", &serde_json::to_vec(&manifest).expect("json"), 0o644).finish()
    };
    f.refuse("diff id mismatch", &tar, "but the config expects");

    // An OCI blob whose content does not match its digest.
    let mut oci = oci_layout_tar(std::slice::from_ref(&other));
    let needle = b"\x1f\x8b";
    let pos = oci.windows(2).rposition(|w| w == needle).expect("a gzip layer");
    oci[pos + 40] ^= 0xff;
    // The flipped byte breaks the deflate stream before the digest is complete.
    f.refuse("oci digest mismatch", &oci, "corrupt deflate stream");

    // A manifest.json far over the size limit.
    let huge = Tar::new().file("manifest.json", &vec![b' '; 9 * 1024 * 1024], 0o644).finish();
    f.refuse("huge manifest", &huge, "too large");

    // A config that names more layers than the manifest ships.
    let cfg = serde_json::to_vec(&serde_json::json!({"rootfs": {"type": "layers", "diff_ids": [berth_tests::digest(b"a"), berth_tests::digest(b"b")]}})).expect("json");
    let tar = Tar::new()
        .file("c.json", &cfg, 0o644)
        .file("manifest.json", br#"[{"Config":"c.json","RepoTags":["x:1"],"Layers":[]}]"#, 0o644)
        .finish();
    f.refuse("layer count mismatch", &tar, "names 2 layers");

    // Archive paths that climb out of the archive.
    let tar = Tar::new()
        .file("manifest.json", br#"[{"Config":"../../etc/passwd","RepoTags":["x:1"],"Layers":[]}]"#, 0o644)
        .finish();
    f.refuse("config path escapes", &tar, "escapes");
}

fn image_with_layer(layer: Vec<u8>, tag: &str) -> Vec<u8> {
    let img = TestImage {
        layers: vec![layer],
        tags: vec![tag.into()],
        config: serde_json::json!({}),
        created: "2024-01-01T00:00:00Z".into(),
    };
    docker_save_tar(&[img], false)
}

#[test]
fn layers_cannot_write_outside_themselves() {
    let f = Fixture::new();
    let outside = tempfile::tempdir().expect("tmp");
    let target = outside.path().to_string_lossy().to_string();

    // `..` in an entry name.
    f.refuse(
        "dotdot entry",
        &image_with_layer(raw_entry_tar("../../../escaped", b"x"), "dotdot:1"),
        "escapes the layer with '..'",
    );

    // A symlink to an absolute directory, then a file through it.
    let layer = Tar::new().symlink("evil", &target).file("evil/pwned", b"x", 0o644).finish();
    f.refuse("through symlink", &image_with_layer(layer, "symlink:1"), "through the symlink");
    assert!(!outside.path().join("pwned").exists());

    // A relative symlink climbing out, then a file through it.
    let layer = Tar::new().symlink("up", "../../../../../../..").file("up/tmp/pwned2", b"x", 0o644).finish();
    f.refuse("through relative symlink", &image_with_layer(layer, "symlink:2"), "through the symlink");

    // A hard link to a file outside the layer.
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Link);
    h.set_size(0);
    h.set_mode(0o644);
    let mut b = tar::Builder::new(Vec::new());
    b.append_link(&mut h, "shadow", "etc/shadow-missing").expect("link");
    f.refuse("dangling hard link", &image_with_layer(b.into_inner().expect("tar"), "link:1"), "hard link");

    // An absolute symlink that is only a symlink is fine: it resolves inside the container.
    let layer = Tar::new().dir("bin/").file("bin/busybox", b"#!", 0o755).symlink("bin/sh", "/bin/busybox").finish();
    f.d.load(&image_with_layer(layer, "abs:1")).expect("absolute symlinks are legitimate");
}

#[test]
fn whiteouts_become_overlay_whiteouts() {
    use std::os::unix::fs::FileTypeExt;
    let d = Daemon::start(&[]).expect("start");
    let base = TestImage::busybox(&[]);
    let top = Tar::new().file("etc/.wh.passwd", b"", 0o644).dir("root/").file("root/.wh..wh..opq", b"", 0o644).finish();
    let img = base.with_layer(top, &["wh:1"]);
    d.load(&docker_save_tar(&[img], false)).expect("load");
    let upper = d.docker(&["image", "inspect", "--format", "{{.GraphDriver.Data.UpperDir}}", "wh:1"]).expect("inspect");
    let upper = std::path::PathBuf::from(upper.trim());
    let meta = std::fs::symlink_metadata(upper.join("etc/passwd")).expect("whiteout exists");
    assert!(meta.file_type().is_char_device(), "a whiteout is a 0/0 character device");
    assert!(!upper.join("etc/.wh.passwd").exists());
    // getfattr comes from Debian's attr package, which `make test` installs.
    let out = std::process::Command::new("getfattr")
        .args(["-n", "trusted.overlay.opaque", "--only-values"])
        .arg(upper.join("root"))
        .output()
        .expect("getfattr");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "y");
    assert!(!upper.join("root/.wh..wh..opq").exists());
}

#[test]
fn out_of_range_times_in_filters_are_400s_not_panics() {
    let d = Daemon::start(&[]).expect("start");
    // {"until":["99999999999999999999h"]} and friends, URL-encoded.
    for (path, value) in [
        ("/images/json?filters=", "99999999999999999999h"),
        ("/images/prune?filters=", "1e400"),
        ("/containers/prune?filters=", "99999999999999999999h"),
        ("/networks/prune?filters=", "NaN"),
    ] {
        let filters = format!("%7B%22until%22%3A%5B%22{value}%22%5D%7D");
        let method = if path.contains("prune") { "POST" } else { "GET" };
        let (status, _, body) = berth_tests::raw_http(&d.sock(), method, &format!("{path}{filters}"), b"")
            .unwrap_or_else(|e| panic!("{path}: no answer ({e}): a panicking handler drops the connection"));
        let body = String::from_utf8_lossy(&body).to_string();
        assert_eq!(status, 400, "{path}{value}: {body}");
        assert!(body.contains(&format!("invalid filter 'until={value}'")), "{body}");
    }
    // Durations work for prunes too, as on dockerd.
    let (status, _, body) =
        berth_tests::raw_http(&d.sock(), "POST", "/containers/prune?filters=%7B%22until%22%3A%5B%2224h%22%5D%7D", b"")
            .expect("prune");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
}

#[test]
fn bad_json_bodies_get_gos_words() {
    let d = Daemon::start(&[]).expect("start");
    for (path, body, want) in [
        ("/containers/create", "{invalid}", "invalid character 'i' looking for beginning of object key string"),
        ("/networks/create", "{\"Name\":\"x\",}", "invalid character '}' looking for beginning of object key string"),
        ("/volumes/create", "{\"Name\":", "unexpected end of JSON input"),
        ("/containers/create", "{\"Image\":\"busybox\"} trailing", "invalid character 't' after top-level value"),
    ] {
        let (status, _, answer) = berth_tests::raw_http(&d.sock(), "POST", path, body.as_bytes()).expect("answer");
        let answer: serde_json::Value = serde_json::from_slice(&answer).expect("a JSON error");
        assert_eq!(status, 400, "{path} {body}: {answer}");
        assert_eq!(answer["message"], want, "{path} {body}");
    }
}
