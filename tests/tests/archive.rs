//! A container's files from outside: `docker diff`, `docker export` and
//! `docker cp` both ways, on running, stopped and never-started containers,
//! with volumes; paths the container turned into symlinks to `/` (and keeps
//! swapping while the copy runs) never reach the host.

use berth_tests::{Daemon, raw_http};

fn unique(tag: &str) -> String {
    format!("berth-cp-{tag}-{}-{}", std::process::id(), berth_tests::free_port())
}

#[test]
fn diff_and_export_show_what_the_container_changed() {
    let d = Daemon::with_busybox();
    d.docker(&["run", "--name", "changer", "busybox", "sh", "-c", "touch /tmp/a; rm /bin/ls; mkdir -p /newdir/sub"])
        .expect("run");
    let diff = d.docker(&["diff", "changer"]).expect("diff");
    let lines: Vec<&str> = diff.lines().collect();
    for want in ["C /tmp", "A /tmp/a", "C /bin", "D /bin/ls", "A /newdir", "A /newdir/sub"] {
        assert!(lines.contains(&want), "{want} missing in\n{diff}");
    }
    let (code, _, err) = d.out(&["diff", "nope"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("No such container"), "{err}");

    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("fs.tar");
    d.docker(&["export", "-o", &out.display().to_string(), "changer"]).expect("export");
    let list = std::process::Command::new("tar").arg("-tf").arg(&out).output().expect("tar");
    let names = String::from_utf8_lossy(&list.stdout).to_string();
    let names: Vec<&str> = names.lines().collect();
    assert!(names.contains(&"bin/busybox") && names.contains(&"tmp/a") && names.contains(&"newdir/sub/"), "{names:?}");
    assert!(!names.contains(&"bin/ls"), "a deleted file is not exported");
    assert!(!names.iter().any(|n| n.starts_with("proc/") && n.len() > 5), "no /proc contents");
}

#[test]
fn cp_both_ways_on_running_stopped_and_created_containers() {
    let d = Daemon::with_busybox();
    let dir = tempfile::tempdir().expect("tmp");
    let local = dir.path().join("app.conf");
    std::fs::write(&local, "setting=1\n").expect("local file");
    let local_s = local.display().to_string();

    // Into a container that never started: it sees the file when it does.
    d.docker(&["create", "--name", "fresh", "busybox", "cat", "/etc/app.conf"]).expect("create");
    d.docker(&["cp", &local_s, "fresh:/etc/app.conf"]).expect("cp into a created container");
    d.docker(&["start", "fresh"]).expect("start");
    d.docker(&["wait", "fresh"]).expect("wait");
    assert_eq!(d.docker(&["logs", "fresh"]).expect("logs").trim(), "setting=1");

    // A running container, a volume inside it, files, folders and symlinks out.
    d.docker(&[
        "run",
        "-d",
        "--name",
        "live",
        "-v",
        "cpdata:/data",
        "busybox",
        "sh",
        "-c",
        "mkdir -p /srv/tree/sub && echo deep > /srv/tree/sub/f && ln -sf /srv/tree/sub/f /srv/link && sleep 300",
    ])
    .expect("run -d");
    std::thread::sleep(std::time::Duration::from_millis(300));
    d.docker(&["cp", &local_s, "live:/data/"]).expect("cp into a volume");
    assert_eq!(d.docker(&["exec", "live", "cat", "/data/app.conf"]).expect("exec").trim(), "setting=1");
    let seen = d.docker(&["run", "--rm", "-v", "cpdata:/v", "busybox", "cat", "/v/app.conf"]).expect("other");
    assert_eq!(seen.trim(), "setting=1", "the copy went into the volume, not the container's layer");

    let tree = dir.path().join("tree-copy");
    d.docker(&["cp", "live:/srv/tree", &tree.display().to_string()]).expect("cp a folder out");
    assert_eq!(std::fs::read_to_string(tree.join("sub/f")).expect("deep file"), "deep\n");
    let link = dir.path().join("link");
    d.docker(&["cp", "live:/srv/link", &link.display().to_string()]).expect("cp a symlink out");
    assert_eq!(std::fs::read_link(&link).expect("a symlink").display().to_string(), "/srv/tree/sub/f");
    let followed = dir.path().join("followed");
    d.docker(&["cp", "-L", "live:/srv/link", &followed.display().to_string()]).expect("cp -L");
    assert_eq!(std::fs::read_to_string(&followed).expect("the target"), "deep\n");
    let (code, _, err) = d.out(&["cp", "live:/nope", &dir.path().display().to_string()]);
    assert_ne!(code, Some(0));
    assert!(err.contains("Could not find the file /nope in container live"), "{err}");

    // A stopped container: its layer and its volume.
    d.docker(&["stop", "-t", "1", "live"]).expect("stop");
    std::fs::write(&local, "setting=2\n").expect("local file");
    d.docker(&["cp", &local_s, "live:/data/again.conf"]).expect("cp into a stopped container's volume");
    d.docker(&["cp", &local_s, "live:/etc/"]).expect("cp into a stopped container's layer");
    let back = dir.path().join("back.conf");
    d.docker(&["cp", "live:/etc/app.conf", &back.display().to_string()]).expect("cp out of a stopped container");
    assert_eq!(std::fs::read_to_string(&back).expect("back"), "setting=2\n");
    let seen = d.docker(&["run", "--rm", "-v", "cpdata:/v", "busybox", "cat", "/v/again.conf"]).expect("other");
    assert_eq!(seen.trim(), "setting=2");
    d.docker(&["start", "live"]).expect("start again after the copies");
    assert_eq!(d.docker(&["exec", "live", "cat", "/etc/app.conf"]).expect("exec").trim(), "setting=2");

    // The stat header, as HEAD answers it, and dockerd's 404 and 400.
    let sock = d.sock();
    let (status, headers, _) = raw_http(&sock, "HEAD", "/containers/live/archive?path=/srv/link", b"").expect("head");
    assert_eq!(status, 200);
    let stat = headers.iter().find(|(k, _)| k == "x-docker-container-path-stat").map(|(_, v)| v.clone());
    let stat = stat.expect("the stat header");
    use base64::Engine;
    let doc: serde_json::Value =
        serde_json::from_slice(&base64::engine::general_purpose::STANDARD.decode(stat).expect("base64")).expect("json");
    assert_eq!((doc["name"].as_str(), doc["linkTarget"].as_str()), (Some("link"), Some("/srv/tree/sub/f")));
    let (status, _, _) = raw_http(&sock, "HEAD", "/containers/live/archive?path=/nope", b"").expect("head");
    assert_eq!(status, 404);
    let (status, _, body) = raw_http(&sock, "PUT", "/containers/live/archive", b"").expect("put");
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    let (code, _, err) = d.out(&["cp", &local_s, "live:/etc/hostname/"]);
    assert_ne!(code, Some(0), "{err}");
}

#[test]
fn symlinks_to_the_host_root_stay_in_the_container_even_while_swapped() {
    let d = Daemon::with_busybox();
    let dir = tempfile::tempdir().expect("tmp");
    let name = unique("escape");
    let local = dir.path().join(&name);
    std::fs::write(&local, "payload\n").expect("local");
    d.docker(&[
        "run",
        "-d",
        "--name",
        "evil",
        "--hostname",
        "inside-box",
        "busybox",
        "sh",
        "-c",
        "ln -s / /escape; mkdir /w; while true; do rm -rf /w; ln -s / /w; rm -f /w; mkdir /w; done",
    ])
    .expect("run -d");
    std::thread::sleep(std::time::Duration::from_millis(300));
    // Out: /escape/etc/hostname is the container's own.
    let out = dir.path().join("hostname");
    d.docker(&["cp", "evil:/escape/etc/hostname", &out.display().to_string()]).expect("cp out through the link");
    assert_eq!(std::fs::read_to_string(&out).expect("copied").trim(), "inside-box");
    // In: through the link, and through a path swapped back and forth meanwhile.
    d.docker(&["cp", &local.display().to_string(), "evil:/escape/tmp/"]).expect("cp in through the link");
    assert_eq!(d.docker(&["exec", "evil", "cat", &format!("/tmp/{name}")]).expect("exec").trim(), "payload");
    for _ in 0..20 {
        let _ = d.out(&["cp", &local.display().to_string(), "evil:/w/"]);
        let _ = d.out(&["cp", &local.display().to_string(), "evil:/w/tmp/"]);
    }
    assert!(!std::path::Path::new(&format!("/{name}")).exists(), "the host's root got the file");
    assert!(!std::path::Path::new(&format!("/tmp/{name}")).exists(), "the host's /tmp got the file");
    d.docker(&["rm", "-f", "evil"]).expect("rm");
}

#[tokio::test]
async fn bollard_uploads_and_downloads() {
    use bollard::query_parameters::{DownloadFromContainerOptionsBuilder, UploadToContainerOptionsBuilder};
    use futures::StreamExt;
    let d = Daemon::with_busybox();
    d.docker(&["create", "--name", "box", "busybox", "true"]).expect("create");
    let docker = bollard::Docker::connect_with_unix(&d.host, 60, bollard::API_DEFAULT_VERSION).expect("bollard");
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(6);
    h.set_mode(0o600);
    h.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut h, "conf/app.txt", &b"hello\n"[..]).expect("append");
    let bytes = tar.into_inner().expect("tar");
    // The destination must exist, as on dockerd.
    let missing = UploadToContainerOptionsBuilder::default().path("/opt").build();
    let err = docker.upload_to_container("box", Some(missing), bollard::body_full(Vec::new().into())).await;
    assert!(matches!(err, Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. })), "{err:?}");
    let opts = UploadToContainerOptionsBuilder::default().path("/tmp").build();
    docker
        .upload_to_container("box", Some(opts), bollard::body_full(bytes.into()))
        .await
        .expect("upload into a created container");
    let opts = DownloadFromContainerOptionsBuilder::default().path("/tmp/conf/app.txt").build();
    let mut stream = docker.download_from_container("box", Some(opts));
    let mut got = Vec::new();
    while let Some(chunk) = stream.next().await {
        got.extend_from_slice(&chunk.expect("chunk"));
    }
    let mut archive = tar::Archive::new(&got[..]);
    let mut entry = archive.entries().expect("entries").next().expect("one entry").expect("entry");
    assert_eq!(entry.path().expect("path").to_str(), Some("app.txt"));
    assert_eq!(entry.header().mode().expect("mode") & 0o777, 0o600);
    let mut body = String::new();
    std::io::Read::read_to_string(&mut entry, &mut body).expect("read");
    assert_eq!(body, "hello\n");
}

#[test]
fn commit_makes_an_image_of_the_changes() {
    let d = Daemon::with_busybox();
    d.docker(&["run", "--name", "src", "busybox", "sh", "-c", "echo hi > /greeting; rm /bin/ls; mkdir -p /etc/app"])
        .expect("run");
    let id = d
        .docker(&[
            "commit",
            "--change",
            r#"CMD ["cat", "/greeting"]"#,
            "--change",
            "ENV MODE=prod",
            "-m",
            "add greeting",
            "-a",
            "Ann <ann@example.com>",
            "src",
            "greeted:v1",
        ])
        .expect("commit");
    assert!(id.trim().starts_with("sha256:"), "{id}");
    assert_eq!(d.docker(&["run", "--rm", "greeted:v1"]).expect("run the commit").trim(), "hi");
    let env = d.docker(&["run", "--rm", "greeted:v1", "sh", "-c", "echo $MODE; test -e /bin/ls || echo gone"]);
    assert_eq!(env.expect("run").trim(), "prod\ngone", "the deletion is a whiteout in the new layer");
    let f = "{{.Comment}}|{{.Author}}|{{json .Config.Cmd}}|{{len .RootFS.Layers}}";
    let got = d.docker(&["image", "inspect", "-f", f, "greeted:v1"]).expect("inspect");
    let base = d.docker(&["image", "inspect", "-f", "{{len .RootFS.Layers}}", "busybox"]).expect("inspect busybox");
    let layers: usize = base.trim().parse::<usize>().expect("count") + 1;
    assert_eq!(got.trim(), format!(r#"add greeting|Ann <ann@example.com>|["cat","/greeting"]|{layers}"#));
    let history = d.docker(&["history", "--no-trunc", "--format", "{{.CreatedBy}}|{{.Comment}}", "greeted:v1"]);
    let history = history.expect("history");
    assert!(
        history.lines().next().is_some_and(|l| l.contains("echo hi > /greeting") && l.ends_with("|add greeting")),
        "{history}"
    );

    // A running container is paused for the copy and running again after.
    d.docker(&["run", "-d", "--name", "live", "busybox", "sh", "-c", "echo a > /a; sleep 300"]).expect("run -d");
    std::thread::sleep(std::time::Duration::from_millis(300));
    d.docker(&["commit", "live", "live:snap"]).expect("commit a running container");
    assert_eq!(d.docker(&["inspect", "-f", "{{.State.Status}}", "live"]).expect("inspect").trim(), "running");
    assert_eq!(d.docker(&["run", "--rm", "live:snap", "cat", "/a"]).expect("run").trim(), "a");
    let (code, _, err) = d.out(&["commit", "nope"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("No such container"), "{err}");
}
