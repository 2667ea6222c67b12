//! The image commands of the docker CLI against berthd: load, save, import, tag,
//! rmi, images with filters, history, inspect, prune, and restart persistence.

use berth_tests::{Daemon, Tar, TestImage, busybox_layer, docker_save_tar, oci_layout_tar};

fn ids(d: &Daemon, args: &[&str]) -> Vec<String> {
    let mut full = vec!["images", "--no-trunc", "--format", "{{.ID}}"];
    full.extend_from_slice(args);
    let mut v: Vec<String> = d.docker(&full).expect("images").lines().map(str::to_string).collect();
    v.sort();
    v.dedup();
    v
}

#[test]
fn load_gives_dockerd_ids_and_shares_layers() {
    let d = Daemon::start(&[]).expect("start");
    let base = TestImage::busybox(&["busybox:latest"]);
    let app = base
        .clone()
        .with_layer(Tar::new().dir("app/").file("app/hello.txt", b"hello\n", 0o644).finish(), &["team/app:v1"]);
    let out = d.load(&docker_save_tar(std::slice::from_ref(&base), false)).expect("load busybox");
    assert!(out.contains("Loaded image: busybox:latest"), "{out}");
    let out = d.load(&docker_save_tar(std::slice::from_ref(&app), true)).expect("load app (gzip)");
    assert!(out.contains("Loaded image: team/app:v1"), "{out}");

    // IDs are the config digests, as dockerd computes them.
    let inspect = d.docker(&["image", "inspect", "--format", "{{.Id}}", "busybox"]).expect("inspect");
    assert_eq!(inspect.trim(), base.id());
    assert_eq!(ids(&d, &[]), {
        let mut v = vec![base.id(), app.id()];
        v.sort();
        v
    });

    // The busybox layer is unpacked once: 2 layers for 2 images sharing a base.
    let layers = std::fs::read_dir(d.data_root().join("image/layers")).expect("layers").count();
    assert_eq!(layers, 2);
    let blobs = std::fs::read_dir(d.data_root().join("image/blobs/sha256")).expect("blobs").count();
    assert_eq!(blobs, 2);
    // The unpacked layer really holds busybox.
    let rootfs =
        d.docker(&["image", "inspect", "--format", "{{.GraphDriver.Data.UpperDir}}", "busybox"]).expect("inspect");
    assert!(std::path::Path::new(rootfs.trim()).join("bin/busybox").exists(), "{rootfs}");
    let layers = d.docker(&["image", "inspect", "--format", "{{len .RootFS.Layers}}", "team/app:v1"]).expect("inspect");
    assert_eq!(layers.trim(), "2");

    // Loading the same tarball again changes nothing.
    d.load(&docker_save_tar(std::slice::from_ref(&base), false)).expect("load again");
    assert_eq!(ids(&d, &[]).len(), 2);
}

#[test]
fn oci_layout_loads() {
    let d = Daemon::start(&[]).expect("start");
    let img = TestImage::busybox(&["oci/box:1.0", "oci/box:latest"]);
    let out = d.load(&oci_layout_tar(std::slice::from_ref(&img))).expect("load oci");
    assert!(out.contains("Loaded image: oci/box:1.0"), "{out}");
    let id = d.docker(&["image", "inspect", "--format", "{{.Id}}", "oci/box"]).expect("inspect");
    assert_eq!(id.trim(), img.id());
    let tags = d.docker(&["image", "inspect", "--format", "{{json .RepoTags}}", "oci/box:1.0"]).expect("inspect");
    assert_eq!(tags.trim(), r#"["oci/box:1.0","oci/box:latest"]"#);
}

#[test]
fn save_load_round_trip_keeps_ids() {
    let d = Daemon::start(&[]).expect("start");
    let a = TestImage::busybox(&["busybox:latest"]);
    let b = a.clone().with_layer(Tar::new().file("etc/motd", b"hi\n", 0o644).finish(), &["motd:1"]);
    d.load(&docker_save_tar(&[a.clone(), b.clone()], false)).expect("load");
    let out_path = d.root.path().join("saved.tar");
    let out_str = out_path.to_string_lossy().to_string();
    d.docker(&["save", "-o", &out_str, "busybox", "motd:1"]).expect("save");
    let saved = std::fs::read(&out_path).expect("read saved");

    // Into a fresh daemon: same IDs, same tags.
    let d2 = Daemon::start(&[]).expect("start second");
    let out = d2.load(&saved).expect("load saved");
    assert!(out.contains("Loaded image: busybox:latest") && out.contains("Loaded image: motd:1"), "{out}");
    assert_eq!(ids(&d2, &[]), ids(&d, &[]));
    let id = d2.docker(&["image", "inspect", "--format", "{{.Id}}", "motd:1"]).expect("inspect");
    assert_eq!(id.trim(), b.id());

    // Saving by ID keeps no tag.
    d.docker(&["save", "-o", &out_str, &a.id()]).expect("save by id");
    let d3 = Daemon::start(&[]).expect("start third");
    let out = d3.load(&std::fs::read(&out_path).expect("read")).expect("load by id");
    assert!(out.contains(&format!("Loaded image ID: {}", a.id())), "{out}");
}

#[test]
fn import_with_changes() {
    let d = Daemon::start(&[]).expect("start");
    let out = d
        .docker_with_input(
            &[
                "import",
                "--change",
                "CMD [\"/bin/sh\",\"-c\",\"echo hi\"]",
                "--change",
                "ENV A=1",
                "--change",
                "WORKDIR /srv",
                "--change",
                "ENTRYPOINT [\"/bin/busybox\"]",
                "-m",
                "from test",
                "-",
                "imported:v1",
            ],
            &busybox_layer(),
        )
        .expect("import");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");
    let cfg = d.docker(&["image", "inspect", "--format", "{{json .Config}}", "imported:v1"]).expect("inspect");
    let cfg: serde_json::Value = serde_json::from_str(&cfg).expect("json");
    assert_eq!(cfg["Cmd"], serde_json::json!(["/bin/sh", "-c", "echo hi"]));
    assert_eq!(cfg["Env"], serde_json::json!(["A=1"]));
    assert_eq!(cfg["WorkingDir"], "/srv");
    assert_eq!(cfg["Entrypoint"], serde_json::json!(["/bin/busybox"]));
    let hist = d.docker(&["history", "--no-trunc", "--format", "{{.Comment}}", "imported:v1"]).expect("history");
    assert_eq!(hist.trim(), "from test");
    // A gzip tarball imports too; a bad change is refused.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &busybox_layer()).expect("gz");
    let out = d.docker_with_input(&["import", "-", "gz:1"], &gz.finish().expect("gz")).expect("import gz");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = d.docker_with_input(&["import", "--change", "RUN make", "-", "bad:1"], &busybox_layer()).expect("import");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("RUN"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn tag_rmi_and_prune() {
    let d = Daemon::start(&[]).expect("start");
    let a = TestImage::busybox(&["busybox:latest"]);
    d.load(&docker_save_tar(std::slice::from_ref(&a), false)).expect("load");
    d.docker(&["tag", "busybox", "mine/box:1"]).expect("tag");
    d.docker(&["tag", &a.id()[7..19], "127.0.0.1:5000/box:v2"]).expect("tag by short id");
    let tags = d.docker(&["image", "inspect", "--format", "{{json .RepoTags}}", "busybox"]).expect("inspect");
    assert_eq!(tags.trim(), r#"["127.0.0.1:5000/box:v2","busybox:latest","mine/box:1"]"#);

    // Removing by ID with several tags needs -f.
    let out = d.docker_out(&["rmi", &a.id()]).expect("rmi");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("must be forced") && err.contains("referenced in multiple repositories"), "{err}");

    // Removing a tag only untags.
    let out = d.docker(&["rmi", "mine/box:1"]).expect("untag");
    assert_eq!(out.trim(), "Untagged: mine/box:1");
    let out = d.docker(&["rmi", "127.0.0.1:5000/box:v2"]).expect("untag");
    assert_eq!(out.trim(), "Untagged: 127.0.0.1:5000/box:v2");
    // The last tag deletes the image and its layer.
    let out = d.docker(&["rmi", "busybox"]).expect("delete");
    assert!(out.contains("Untagged: busybox:latest") && out.contains(&format!("Deleted: {}", a.id())), "{out}");
    assert_eq!(std::fs::read_dir(d.data_root().join("image/layers")).expect("layers").count(), 0);
    assert_eq!(std::fs::read_dir(d.data_root().join("image/blobs/sha256")).expect("blobs").count(), 0);
    let out = d.docker_out(&["rmi", "busybox"]).expect("rmi missing");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("No such image: busybox"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // -f with several tags deletes all of them.
    d.load(&docker_save_tar(std::slice::from_ref(&a), false)).expect("load");
    d.docker(&["tag", "busybox", "other:1"]).expect("tag");
    let out = d.docker(&["rmi", "-f", &a.id()]).expect("rmi -f");
    assert!(out.contains("Untagged: other:1") && out.contains("Deleted:"), "{out}");

    // Prune removes dangling images only, unless -a.
    let b = a.clone().with_layer(Tar::new().file("x", b"x", 0o644).finish(), &["keep:1"]);
    d.load(&docker_save_tar(&[a.clone(), b.clone()], false)).expect("load");
    d.docker(&["rmi", "busybox"]).expect("untag busybox");
    // busybox was untagged and deleted since it had no other tag; make a dangling one by retagging.
    d.load(&docker_save_tar(std::slice::from_ref(&a), false)).expect("load a");
    let c = TestImage { created: "2024-03-01T00:00:00Z".into(), ..a.clone() };
    d.load(&docker_save_tar(std::slice::from_ref(&c), false)).expect("load c, takes busybox:latest");
    assert_eq!(ids(&d, &["--filter", "dangling=true"]), vec![a.id()]);
    let out = d.docker(&["image", "prune", "-f"]).expect("prune");
    assert!(out.contains(&a.id()), "{out}");
    assert_eq!(ids(&d, &[]), {
        let mut v = vec![b.id(), c.id()];
        v.sort();
        v
    });
    d.docker(&["image", "prune", "-a", "-f"]).expect("prune -a");
    assert!(ids(&d, &[]).is_empty());
}

#[test]
fn images_filters_and_history() {
    let d = Daemon::start(&[]).expect("start");
    let mut a = TestImage::busybox(&["busybox:latest"]);
    a.config["Labels"] = serde_json::json!({"tier": "base"});
    let b = a.clone().with_layer(Tar::new().file("b", b"b", 0o644).finish(), &["team/app:v1"]);
    let mut c = b.clone().with_layer(Tar::new().file("c", b"c", 0o644).finish(), &["team/app:v2"]);
    c.created = "2024-03-01T00:00:00Z".into();
    c.config["Labels"] = serde_json::json!({"tier": "app"});
    d.load(&docker_save_tar(&[a.clone(), b.clone(), c.clone()], false)).expect("load");

    assert_eq!(ids(&d, &["--filter", "reference=team/*"]), {
        let mut v = vec![b.id(), c.id()];
        v.sort();
        v
    });
    assert_eq!(ids(&d, &["--filter", "reference=team/app:v2"]), vec![c.id()]);
    // Several references are ORed, and an image lists only the ones that matched.
    d.docker(&["tag", "team/app:v2", "other/name:x"]).expect("tag");
    let both = d
        .docker(&[
            "images",
            "--format",
            "{{.Repository}}:{{.Tag}}",
            "--filter",
            "reference=team/app:v2",
            "--filter",
            "reference=busybox",
        ])
        .expect("images");
    let mut both: Vec<&str> = both.lines().collect();
    both.sort();
    assert_eq!(both, ["busybox:latest", "team/app:v2"], "other/name:x is not listed");
    d.docker(&["rmi", "other/name:x"]).expect("untag");
    assert_eq!(ids(&d, &["busybox"]), vec![a.id()]);
    assert_eq!(ids(&d, &["--filter", "label=tier=app"]), vec![c.id()]);
    assert_eq!(ids(&d, &["--filter", "label=tier"]), {
        let mut v = vec![a.id(), b.id(), c.id()];
        v.sort();
        v
    });
    assert_eq!(ids(&d, &["--filter", "before=team/app:v1"]), vec![a.id()]);
    assert_eq!(ids(&d, &["--filter", "since=team/app:v1"]), vec![c.id()]);
    assert!(ids(&d, &["--filter", "dangling=true"]).is_empty());
    let out = d.docker_out(&["images", "--filter", "colour=red"]).expect("images");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("invalid filter 'colour'"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let hist =
        d.docker(&["history", "--no-trunc", "--format", "{{.ID}}|{{.CreatedBy}}", "team/app:v2"]).expect("history");
    let lines: Vec<&str> = hist.lines().collect();
    assert_eq!(lines, vec![format!("{}|layer 2", c.id()).as_str(), "<missing>|layer 1", "<missing>|layer 0"]);
}

#[test]
fn images_survive_restart_and_kill() {
    let mut d = Daemon::start(&[]).expect("start");
    let a = TestImage::busybox(&["busybox:latest"]);
    d.load(&docker_save_tar(std::slice::from_ref(&a), false)).expect("load");
    d.docker(&["tag", "busybox", "kept:1"]).expect("tag");
    d.restart().expect("restart");
    assert_eq!(ids(&d, &[]), vec![a.id()]);
    let tags = d.docker(&["image", "inspect", "--format", "{{json .RepoTags}}", "kept:1"]).expect("inspect");
    assert_eq!(tags.trim(), r#"["busybox:latest","kept:1"]"#);
    // A crash (SIGKILL) loses nothing that was acknowledged.
    d.kill9().expect("kill -9");
    let _ = std::fs::remove_file(d.root.path().join("berth.sock"));
    d.restart().expect("start after crash");
    assert_eq!(ids(&d, &[]), vec![a.id()]);
}

#[test]
fn a_crash_mid_load_leaves_no_half_image() {
    use std::io::Write;
    let mut d = Daemon::start(&[]).expect("start");
    // A large layer (64 MiB of incompressible-ish bytes) so the load is still running when berthd dies.
    let mut big = vec![0u8; 64 * 1024 * 1024];
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for chunk in big.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    let img = TestImage::busybox(&["big:1"]).with_layer(Tar::new().file("big.bin", &big, 0o644).finish(), &["big:1"]);
    let tar = docker_save_tar(std::slice::from_ref(&img), false);
    let mut child = d
        .docker_cmd(&["load"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("docker load");
    let mut stdin = child.stdin.take().expect("stdin");
    // Send half, then crash the daemon while the upload is in flight.
    stdin.write_all(&tar[..tar.len() / 2]).expect("half the tarball");
    std::thread::sleep(std::time::Duration::from_millis(300));
    d.kill9().expect("kill -9");
    drop(stdin);
    let _ = child.wait();
    let _ = std::fs::remove_file(d.sock());
    d.restart().expect("start again");
    assert!(ids(&d, &[]).is_empty(), "no image may appear from an interrupted load");
    assert_eq!(d.content_counts(), (0, 0), "the start-up sweep removes partial content");
    assert_eq!(d.staging_leftovers(), 0);
    // And the same tarball loads fine afterwards.
    d.load(&tar).expect("load after crash");
    assert_eq!(ids(&d, &[]), vec![img.id()]);
}
