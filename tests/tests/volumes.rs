//! Volumes end to end: `docker volume create/ls/inspect/rm/prune`, `-v`,
//! `--mount type=volume`, anonymous volumes (`-v /path`, the image's VOLUME),
//! `--volumes-from`, copy-up with ownership, in-use protection across a crash,
//! data across containers and restarts, `system df -v`, and bollard.

use berth_tests::{Daemon, Tar, TestImage, docker_save_tar};
use serde_json::Value;

fn daemon() -> Daemon {
    let d = Daemon::start(&[]).expect("start");
    d.load(&docker_save_tar(&[TestImage::busybox(&["busybox:latest"]), seeded()], false)).expect("load");
    d
}

/// busybox with `VOLUME /seed`, where /seed holds a file owned by 1000:1000
/// (mode 640), a private directory (700, 1000:1000) and a symlink.
fn seeded() -> TestImage {
    let layer = Tar::new()
        .owned("seed/", None, 0o755, 1000, 1000)
        .owned("seed/file", Some(b"from the image\n"), 0o640, 1000, 1000)
        .owned("seed/private/", None, 0o700, 1000, 1000)
        .owned("seed/private/inner", Some(b"inner\n"), 0o600, 1000, 1000)
        .symlink("seed/link", "file")
        .finish();
    let mut img = TestImage::busybox(&[]).with_layer(layer, &["seeded:latest"]);
    img.config["Volumes"] = serde_json::json!({"/seed": {}});
    img
}

fn json(d: &Daemon, args: &[&str]) -> Value {
    serde_json::from_str(&d.docker(args).expect("docker")).expect("json")
}

fn volume_names(d: &Daemon, filters: &[&str]) -> Vec<String> {
    let mut args = vec!["volume", "ls", "-q"];
    for f in filters {
        args.extend(["--filter", f]);
    }
    d.docker(&args).expect("volume ls").lines().map(str::to_string).collect()
}

#[test]
fn named_volumes_from_create_to_prune() {
    let mut d = daemon();
    assert_eq!(d.docker(&["volume", "create", "--label", "team=blue", "data"]).expect("create").trim(), "data");
    let v = &json(&d, &["volume", "inspect", "data"])[0];
    assert_eq!(v["Driver"], "local");
    assert_eq!(v["Scope"], "local");
    assert_eq!(v["Labels"]["team"], "blue");
    let mountpoint = v["Mountpoint"].as_str().expect("mountpoint").to_string();
    assert!(
        mountpoint.starts_with(&d.data_root().to_string_lossy().to_string()) && mountpoint.ends_with("/data/_data")
    );
    assert!(!v["CreatedAt"].as_str().unwrap_or("").is_empty());
    // Creating it again is no error; with other options it is.
    assert_eq!(d.docker(&["volume", "create", "data"]).expect("again").trim(), "data");
    let (code, _, err) = d.out(&["volume", "create", "--opt", "type=tmpfs", "--opt", "device=tmpfs", "data"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("already exists with different options"), "{err}");
    let (code, _, err) = d.out(&["volume", "create", "a/b"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("includes invalid characters for a local volume name"), "{err}");
    let (_, _, err) = d.out(&["volume", "create", "--opt", "colour=red", "x1"]);
    assert!(err.contains("invalid option: \"colour\""), "{err}");
    let (_, _, err) = d.out(&["volume", "inspect", "nope"]);
    assert!(err.contains("no such volume"), "{err}");

    // Written by one container, read by the next, through -v and --mount.
    d.docker(&["run", "--rm", "-v", "data:/data", "busybox", "sh", "-c", "echo hello > /data/f"]).expect("write");
    let read = d
        .docker(&["run", "--rm", "--mount", "type=volume,src=data,dst=/d,readonly", "busybox", "cat", "/d/f"])
        .expect("read");
    assert_eq!(read.trim(), "hello");
    let (code, _, _) = d.out(&["run", "--rm", "-v", "data:/data:ro", "busybox", "touch", "/data/g"]);
    assert_ne!(code, Some(0), "read-only");
    // A volume named by -v that does not exist yet is made.
    d.docker(&["run", "--rm", "-v", "implicit:/x", "busybox", "true"]).expect("implicit");
    assert!(volume_names(&d, &[]).contains(&"implicit".to_string()));
    // A host directory named by -v that does not exist is made (by dockerd
    // too; a --mount bind's must exist), and the bind works.
    let host = d.root.path().join("made/by/bind");
    let bind = format!("{}:/b", host.display());
    d.docker(&["run", "--rm", "-v", &bind, "busybox", "sh", "-c", "echo through > /b/f"]).expect("-v a missing dir");
    assert_eq!(std::fs::read_to_string(host.join("f")).expect("on the host"), "through\n");

    // Filters.
    assert_eq!(volume_names(&d, &["label=team=blue"]), vec!["data"]);
    assert_eq!(volume_names(&d, &["name=impl"]), vec!["implicit"]);
    assert_eq!(volume_names(&d, &["driver=local"]).len(), 2);

    // In use by a container (running or not): 409, also with -f, also after kill -9.
    d.docker(&["run", "-d", "--name", "user", "-v", "data:/data", "busybox", "sleep", "300"]).expect("user");
    assert!(volume_names(&d, &["dangling=true"]) == vec!["implicit"], "{:?}", volume_names(&d, &["dangling=true"]));
    let (code, _, err) = d.out(&["volume", "rm", "data"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("volume is in use"), "{err}");
    d.kill9().expect("kill -9");
    d.restart().expect("restart");
    let (code, _, err) = d.out(&["volume", "rm", "-f", "data"]);
    assert!(code != Some(0) && err.contains("volume is in use"), "after a crash: {err}");
    // The data is still there for the running container.
    assert_eq!(d.docker(&["exec", "user", "cat", "/data/f"]).expect("exec").trim(), "hello");
    d.docker(&["rm", "-f", "user"]).expect("rm");
    assert_eq!(d.docker(&["volume", "rm", "data"]).expect("rm volume").trim(), "data");
    assert!(!std::path::Path::new(&mountpoint).exists(), "its directory went with it");
    let (code, _, _) = d.out(&["volume", "rm", "data"]);
    assert_ne!(code, Some(0), "gone");
    d.out(&["volume", "rm", "-f", "data"]).0.filter(|c| *c == 0).expect("-f: a missing volume is no error");

    // A plain prune leaves named volumes; --all takes them.
    assert!(d.docker(&["volume", "prune", "-f"]).expect("prune").contains("Total reclaimed space"));
    assert!(volume_names(&d, &[]).contains(&"implicit".to_string()));
    let pruned = d.docker(&["volume", "prune", "-af"]).expect("prune all");
    assert!(pruned.contains("implicit"), "{pruned}");
    assert!(volume_names(&d, &[]).is_empty());
}

#[test]
fn anonymous_volumes_go_with_rm_v_and_rm() {
    let d = daemon();
    d.docker(&["run", "--name", "anon", "-v", "/scratch", "busybox", "sh", "-c", "echo x > /scratch/x"]).expect("run");
    let c = &json(&d, &["inspect", "anon"])[0];
    let mounts = c["Mounts"].as_array().expect("mounts");
    assert_eq!(mounts.len(), 1, "{mounts:?}");
    assert_eq!(mounts[0]["Type"], "volume");
    assert_eq!(mounts[0]["Destination"], "/scratch");
    assert_eq!(mounts[0]["RW"], true);
    let name = mounts[0]["Name"].as_str().expect("name").to_string();
    assert_eq!(name.len(), 64);
    let v = &json(&d, &["volume", "inspect", &name])[0];
    assert!(v["Labels"].as_object().is_some_and(|l| l.contains_key("com.docker.volume.anonymous")), "{v}");
    d.docker(&["rm", "-v", "anon"]).expect("rm -v");
    assert!(!volume_names(&d, &[]).contains(&name), "rm -v removes the anonymous volume");

    // --rm takes its anonymous volumes, never named ones.
    d.docker(&["run", "--rm", "-v", "/a", "-v", "kept:/b", "busybox", "true"]).expect("--rm");
    assert_eq!(volume_names(&d, &[]), vec!["kept"]);

    // Without -v the anonymous volume stays, dangling; a plain prune takes it.
    d.docker(&["create", "--name", "leave", "-v", "/c", "busybox"]).expect("create");
    d.docker(&["rm", "leave"]).expect("rm");
    let left = volume_names(&d, &["dangling=true"]);
    assert_eq!(left.len(), 2, "{left:?}");
    let pruned = d.docker(&["volume", "prune", "-f"]).expect("prune");
    assert!(!pruned.contains("kept"), "{pruned}");
    assert_eq!(volume_names(&d, &[]), vec!["kept"]);

    // --volumes-from shares the same volumes, read-only when asked.
    d.docker(&["run", "-d", "--name", "src", "-v", "kept:/b", "-v", "/anon2", "busybox", "sleep", "300"]).expect("src");
    d.docker(&["exec", "src", "sh", "-c", "echo shared > /b/s; echo a2 > /anon2/a"]).expect("write");
    let got = d
        .docker(&["run", "--rm", "--volumes-from", "src:ro", "busybox", "sh", "-c", "cat /b/s /anon2/a"])
        .expect("volumes-from");
    assert_eq!(got, "shared\na2\n");
    let (code, _, _) = d.out(&["run", "--rm", "--volumes-from", "src:ro", "busybox", "touch", "/b/t"]);
    assert_ne!(code, Some(0), "read-only volumes-from");
    let (code, _, err) = d.out(&["run", "--rm", "--volumes-from", "nosuch", "busybox", "true"]);
    assert!(code != Some(0) && err.contains("No such container"), "{err}");
    d.docker(&["rm", "-f", "-v", "src"]).expect("rm src");
    assert_eq!(volume_names(&d, &[]), vec!["kept"], "the anonymous one went, the named one stayed");
}

#[test]
fn copy_up_keeps_owners_modes_and_links() {
    let mut d = daemon();
    // The image's VOLUME becomes an anonymous volume seeded from the image.
    let script = "stat -c '%u:%g %a %n' /seed/file /seed/private /seed; readlink /seed/link; cat /seed/private/inner";
    let got = d.docker(&["run", "--rm", "-u", "1000", "seeded", "sh", "-c", script]).expect("run seeded");
    assert_eq!(got, "1000:1000 640 /seed/file\n1000:1000 700 /seed/private\n1000:1000 755 /seed\nfile\ninner\n");
    // A fresh named volume is filled too, once: what a container writes stays.
    d.docker(&["run", "--rm", "-v", "seedvol:/seed", "seeded", "sh", "-c", "echo changed > /seed/file"])
        .expect("write");
    d.kill9().expect("kill -9");
    d.restart().expect("restart");
    let got = d.docker(&["run", "--rm", "-v", "seedvol:/seed", "seeded", "cat", "/seed/file"]).expect("read");
    assert_eq!(got, "changed\n", "data outlives containers and berthd restarts; no copy over it");
    // nocopy: nothing from the image.
    let got = d
        .docker(&[
            "run",
            "--rm",
            "--mount",
            "type=volume,src=bare,dst=/seed,volume-nocopy",
            "seeded",
            "ls",
            "-A",
            "/seed",
        ])
        .expect("nocopy");
    assert_eq!(got, "", "volume-nocopy");
    let got = d.docker(&["run", "--rm", "-v", "bare2:/seed:nocopy", "seeded", "ls", "-A", "/seed"]).expect("nocopy");
    assert_eq!(got, "");
    // Volume sizes in system df -v.
    // seedvol holds "changed\n" (8 bytes), private/inner (6) and the link to "file" (4).
    let df = d.docker(&["system", "df", "-v"]).expect("df");
    let line = df.lines().find(|l| l.starts_with("seedvol")).unwrap_or_default().to_string();
    assert!(line.contains("B"), "{df}");
    let df: Value =
        serde_json::from_str(&d.docker(&["system", "df", "-v", "--format", "{{json .}}"]).expect("df json"))
            .expect("json");
    let seedvol = df["Volumes"].as_array().and_then(|l| l.iter().find(|v| v["Name"] == "seedvol")).cloned();
    let seedvol = seedvol.unwrap_or_default();
    assert_eq!(seedvol["Size"], "18B", "{seedvol}");
    assert_eq!(seedvol["Links"], "0", "no container uses it now: {seedvol}");
}

#[test]
fn bad_mounts_get_dockerds_answers() {
    let d = daemon();
    for (args, want) in [
        (vec!["-v", "v1:/"], "destination can't be '/'"),
        (vec!["--mount", "type=volume,src=v1,dst=rel"], "must be absolute"),
        (vec!["-v", "v1:/a:bogus"], "invalid mode: bogus"),
        (vec!["-v", "bad@name:/a"], "includes invalid characters"),
        (vec!["-v", "v1:/a", "-v", "v2:/a"], "Duplicate mount point"),
    ] {
        let mut run = vec!["run", "--rm"];
        run.extend(args.iter().copied());
        run.extend(["busybox", "true"]);
        let (code, _, err) = d.out(&run);
        assert_eq!(code, Some(125), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    assert!(volume_names(&d, &[]).is_empty(), "nothing half-made: {:?}", volume_names(&d, &[]));
    // A symlink a container places in its volume leads nowhere on the host:
    // neither the size walk (`system df -v`) nor removal follows it.
    d.docker(&["run", "--rm", "-v", "trap:/t", "busybox", "ln", "-s", "/", "/t/escape"]).expect("symlink");
    let v = &json(&d, &["volume", "inspect", "trap"])[0];
    let mountpoint = std::path::PathBuf::from(v["Mountpoint"].as_str().unwrap_or(""));
    let df: Value = serde_json::from_str(&d.docker(&["system", "df", "-v", "--format", "{{json .}}"]).expect("df"))
        .expect("df json");
    let trap =
        df["Volumes"].as_array().and_then(|l| l.iter().find(|v| v["Name"] == "trap")).cloned().unwrap_or_default();
    // The CLI prints sizes in units: a walk of / would be GB, not a few bytes.
    let size = trap["Size"].as_str().unwrap_or("").to_string();
    let bytes: Option<u64> = size.strip_suffix('B').and_then(|n| n.parse().ok());
    assert!(bytes.is_some_and(|b| b < 4096), "the walk did not follow the link: {trap}");
    d.docker(&["volume", "rm", "trap"]).expect("rm trap");
    assert!(!mountpoint.exists());
    assert!(std::path::Path::new("/etc/passwd").exists(), "removing the volume did not follow its symlink");
}

#[tokio::test(flavor = "multi_thread")]
async fn bollard_volumes() {
    use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountTypeEnum, VolumeCreateOptions};
    use bollard::query_parameters::{
        CreateContainerOptions, ListVolumesOptions, PruneVolumesOptions, RemoveContainerOptions, RemoveVolumeOptions,
    };
    let d = daemon();
    let client = bollard::Docker::connect_with_unix(&d.host, 30, bollard::API_DEFAULT_VERSION).expect("connect");
    let v = client
        .create_volume(VolumeCreateOptions {
            name: Some("bv".into()),
            labels: Some([("k".to_string(), "v".to_string())].into()),
            ..Default::default()
        })
        .await
        .expect("create");
    assert_eq!(v.name, "bv");
    assert_eq!(v.labels.get("k").map(String::as_str), Some("v"));
    let listed = client
        .list_volumes(Some(ListVolumesOptions {
            filters: Some([("label".to_string(), vec!["k=v".to_string()])].into()),
        }))
        .await
        .expect("list");
    assert_eq!(listed.volumes.unwrap_or_default().iter().map(|v| v.name.clone()).collect::<Vec<_>>(), vec!["bv"]);
    client
        .create_container(
            Some(CreateContainerOptions { name: Some("bc".into()), platform: String::new() }),
            ContainerCreateBody {
                image: Some("busybox".into()),
                cmd: Some(vec!["true".into()]),
                host_config: Some(HostConfig {
                    mounts: Some(vec![Mount {
                        target: Some("/m".into()),
                        source: Some("bv".into()),
                        typ: Some(MountTypeEnum::VOLUME),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await
        .expect("create container");
    let rm = client.remove_volume("bv", None::<RemoveVolumeOptions>).await;
    assert!(matches!(rm, Err(bollard::errors::Error::DockerResponseServerError { status_code: 409, .. })), "{rm:?}");
    let inspected = client.inspect_volume("bv").await.expect("inspect");
    assert_eq!(inspected.mountpoint, v.mountpoint);
    client.remove_container("bc", None::<RemoveContainerOptions>).await.expect("rm container");
    let pruned = client
        .prune_volumes(Some(PruneVolumesOptions {
            filters: Some([("all".to_string(), vec!["true".to_string()])].into()),
        }))
        .await
        .expect("prune");
    assert_eq!(pruned.volumes_deleted, Some(vec!["bv".to_string()]));
    let gone = client.inspect_volume("bv").await;
    assert!(
        matches!(gone, Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. })),
        "{gone:?}"
    );
}

#[test]
fn local_driver_options_tmpfs_and_bind() {
    let d = daemon();
    d.docker(&["volume", "create", "--opt", "type=tmpfs", "--opt", "device=tmpfs", "--opt", "o=size=2m", "tv"])
        .expect("tmpfs volume");
    let df = d.docker(&["run", "--rm", "-v", "tv:/t", "busybox", "sh", "-c", "mount | grep ' /t '"]).expect("mount");
    assert!(df.contains("tmpfs") && df.contains("size=2048k"), "{df}");
    let v = &json(&d, &["volume", "inspect", "tv"])[0];
    assert_eq!(v["Options"]["type"], "tmpfs");
    let mountpoint = v["Mountpoint"].as_str().unwrap_or("").to_string();

    // A bind of a host directory: writes land there, and removing the volume
    // leaves the host's data alone.
    let host = tempfile::tempdir().expect("tmp");
    std::fs::write(host.path().join("before"), b"kept").expect("seed");
    let device = format!("device={}", host.path().display());
    d.docker(&["volume", "create", "--opt", "type=none", "--opt", "o=bind", "--opt", &device, "bv"])
        .expect("bind volume");
    let got = d
        .docker(&["run", "--rm", "-v", "bv:/b", "busybox", "sh", "-c", "cat /b/before; echo new > /b/after"])
        .expect("use bind volume");
    assert_eq!(got, "kept");
    assert_eq!(std::fs::read(host.path().join("after")).expect("after"), b"new\n");
    d.docker(&["volume", "rm", "bv", "tv"]).expect("rm");
    assert!(host.path().join("before").exists() && host.path().join("after").exists(), "host data untouched");
    assert!(!std::path::Path::new(&mountpoint).exists());
    let (code, _, err) =
        d.out(&["volume", "create", "--opt", "type=none", "--opt", "o=bind", "--opt", "device=/no/such/dir", "bad"]);
    assert!(code != Some(0) && err.contains("no such file or directory"), "{err}");
}

#[test]
fn volume_subpaths_stay_inside_their_volume() {
    let d = daemon();
    d.docker(&["volume", "create", "shared"]).expect("volume create");
    let fill = "mkdir -p /v/app/conf && echo app > /v/app/conf/x && echo top > /v/top && ln -s / /v/escape && ln -s /app/conf /v/conf";
    d.docker(&["run", "--rm", "-v", "shared:/v", "busybox", "sh", "-c", fill]).expect("fill");
    let sub = |path: &str| format!("type=volume,src=shared,dst=/data,volume-subpath={path}");
    let out = d.docker(&["run", "--rm", "--mount", &sub("app/conf"), "busybox", "sh", "-c", "ls /data; cat /data/x"]);
    assert_eq!(out.expect("subpath").split_whitespace().collect::<Vec<_>>(), ["x", "app"]);
    // Symlinks in the volume resolve inside it: `/` is the volume's root, not the host's.
    let out = d.docker(&["run", "--rm", "--mount", &sub("escape"), "busybox", "sh", "-c", "cat /data/top; ls /data"]);
    let out = out.expect("a symlink to /");
    assert!(out.starts_with("top\n") && !out.contains("proc"), "{out}");
    let out = d.docker(&["run", "--rm", "--mount", &sub("conf"), "busybox", "cat", "/data/x"]);
    assert_eq!(out.expect("an absolute symlink inside").trim(), "app");
    // Written through the subpath, seen at the volume's root.
    d.docker(&["run", "--rm", "--mount", &sub("app"), "busybox", "sh", "-c", "echo new > /data/made"]).expect("write");
    let out = d.docker(&["run", "--rm", "-v", "shared:/v", "busybox", "cat", "/v/app/made"]).expect("read");
    assert_eq!(out.trim(), "new");
    // A path out of the volume is refused at create, a missing one at start.
    let (code, _, err) = d.out(&["create", "--mount", &sub("../etc"), "busybox"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("subpath must be a relative path within the volume"), "{err}");
    let (code, _, err) = d.out(&["run", "--rm", "--mount", &sub("nope"), "busybox", "true"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("nope"), "{err}");
}

#[test]
fn non_recursive_binds_leave_the_mounts_below_out() {
    let d = daemon();
    let dir = tempfile::tempdir().expect("tmp");
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).expect("mkdir");
    let mounted = std::process::Command::new("mount").args(["-t", "tmpfs", "tmpfs"]).arg(&sub).status();
    assert!(mounted.is_ok_and(|s| s.success()), "mount a tmpfs");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(sub.clone());
    std::fs::write(sub.join("below"), "below\n").expect("write");
    let src = dir.path().display().to_string();
    let recursive =
        d.docker(&["run", "--rm", "--mount", &format!("type=bind,src={src},dst=/b"), "busybox", "ls", "/b/sub"]);
    assert_eq!(recursive.expect("recursive").trim(), "below");
    let flat = format!("type=bind,src={src},dst=/b,bind-recursive=disabled");
    let out = d.docker(&["run", "--rm", "--mount", &flat, "busybox", "ls", "-A", "/b/sub"]).expect("non-recursive");
    assert_eq!(out.trim(), "", "the tmpfs below is not there");
    let hc = d.docker(&["create", "--mount", &flat, "busybox"]).expect("create");
    let shown = d.docker(&["inspect", "-f", "{{json .HostConfig.Mounts}}", hc.trim()]).expect("inspect");
    assert!(shown.contains("\"NonRecursive\":true"), "{shown}");
}

#[test]
fn a_tmpfs_over_an_image_volume_makes_no_volume() {
    let d = daemon();
    let out = d.docker(&["run", "--rm", "--tmpfs", "/seed", "seeded", "sh", "-c", "grep ' /seed ' /proc/mounts"]);
    assert!(out.expect("run").contains("tmpfs"), "the tmpfs is there");
    assert_eq!(d.docker(&["volume", "ls", "-q"]).expect("volume ls").trim(), "", "no anonymous volume was made");
}

#[test]
fn mountpoints_are_under_the_root_docker_info_reports() {
    let d = daemon();
    d.docker(&["volume", "create", "placed"]).expect("create");
    let root = d.docker(&["info", "--format", "{{.DockerRootDir}}"]).expect("info");
    let mountpoint = d.docker(&["volume", "inspect", "-f", "{{.Mountpoint}}", "placed"]).expect("inspect");
    assert_eq!(mountpoint.trim(), format!("{}/volumes/placed/_data", root.trim()));
    let v = json(&d, &["volume", "inspect", "placed"]);
    for field in ["CreatedAt", "Driver", "Labels", "Mountpoint", "Name", "Options", "Scope"] {
        assert!(v[0].get(field).is_some(), "{field} in {v}");
    }
    assert_eq!(v[0]["Scope"], "local");
    // As dockerd 20.10 writes them: no labels or options are null, the time is to the second.
    assert!(v[0]["Labels"].is_null() && v[0]["Options"].is_null(), "{v}");
    let created = v[0]["CreatedAt"].as_str().unwrap_or_default();
    assert!(created.len() == 20 && created.ends_with('Z') && !created.contains('.'), "{created}");
}
