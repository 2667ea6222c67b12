//! `berthd --userns-remap default`: each container runs in a user namespace
//! whose root is an unprivileged host user (dockerd's `dockremap` and its
//! subordinate range, made when missing). Its files (layers, volumes, Berth's
//! own hosts/resolv.conf) show with their owners; host paths do not belong to
//! it, and what it writes lands on disk with the IDs it sees.

use berth_tests::{Daemon, TestImage, docker_save_tar};

fn inspect(d: &Daemon, name: &str, format: &str) -> String {
    d.docker(&["inspect", "-f", format, name]).expect("inspect").trim().to_string()
}

/// The first host ID of `dockremap`'s range in `/etc/subuid` or `/etc/subgid`.
fn range_start(file: &str) -> u64 {
    let text = std::fs::read_to_string(file).expect("read subordinate IDs");
    let line = text.lines().find(|l| l.starts_with("dockremap:")).expect("dockremap's range");
    line.split(':').nth(1).and_then(|s| s.parse().ok()).expect("range start")
}

/// `Uid:` or `Gid:` (real) of a host process.
fn host_id(pid: &str, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let line = status.lines().find(|l| l.starts_with(field)).expect("field");
    line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("id")
}

#[test]
fn remapped_containers_are_root_only_inside_their_own_namespace() {
    let d = Daemon::start(&["--userns-remap", "default"]).expect("start berthd");
    d.load(&docker_save_tar(&[TestImage::busybox(&["busybox:latest"])], false)).expect("load busybox");
    let (uid0, gid0) = (range_start("/etc/subuid"), range_start("/etc/subgid"));
    let info = d.docker(&["info", "--format", "{{json .SecurityOptions}}"]).expect("info");
    assert!(info.contains("name=userns"), "{info}");

    // Inside: root, with a map onto the range; the image's files are root's.
    let map = d.docker(&["run", "--rm", "busybox", "cat", "/proc/self/uid_map", "/proc/self/gid_map"]).expect("run");
    let map: Vec<Vec<u64>> =
        map.lines().map(|l| l.split_whitespace().filter_map(|f| f.parse().ok()).collect()).collect();
    assert_eq!(map, [vec![0, uid0, 65536], vec![0, gid0, 65536]]);
    let out = d.docker(&["run", "--rm", "busybox", "sh", "-c", "id -u; stat -c '%u:%g' /bin /etc/hosts"]).expect("run");
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["0", "0:0", "0:0"], "{out}");

    // Outside: the container's root is the range's first ID; what it writes is
    // stored with the IDs it sees (the layer on disk is not shifted).
    d.docker(&[
        "run",
        "-d",
        "--name",
        "remapped",
        "busybox",
        "sh",
        "-c",
        "echo hi > /made; chown 7:8 /made; sleep 300",
    ])
    .expect("run -d");
    let pid = inspect(&d, "remapped", "{{.State.Pid}}");
    assert_eq!((host_id(&pid, "Uid:"), host_id(&pid, "Gid:")), (uid0, gid0));
    let id = inspect(&d, "remapped", "{{.Id}}");
    let made = d.data_root().join(format!("runtime/containers/{id}/upper/made"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !made.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let meta = std::fs::metadata(&made).expect("the file in the writable layer");
    use std::os::unix::fs::MetadataExt;
    assert_eq!((meta.uid(), meta.gid()), (7, 8));
    // docker exec joins the namespace; the writable layer is its own.
    assert_eq!(d.docker(&["exec", "remapped", "id", "-u"]).expect("exec").trim(), "0");
    assert_eq!(d.docker(&["exec", "-u", "1000", "remapped", "id", "-u"]).expect("exec -u").trim(), "1000");
    assert_eq!(d.docker(&["exec", "remapped", "stat", "-c", "%u:%g", "/made"]).expect("exec").trim(), "7:8");
    let diff = d.docker(&["diff", "remapped"]).expect("diff");
    assert!(diff.lines().any(|l| l == "A /made"), "{diff}");
    let tty = d.docker(&["exec", "-t", "remapped", "tty"]).expect("exec -t");
    assert!(tty.trim().starts_with("/dev/pts/"), "{tty}");

    // docker cp both ways with the owners the container sees (its files show
    // through idmapped layers with host IDs, and are written as its root).
    let files = tempfile::tempdir().expect("tempdir");
    let given = files.path().join("given");
    std::fs::write(&given, b"from the host").expect("write");
    std::os::unix::fs::chown(&given, Some(1234), Some(55)).expect("chown");
    d.docker(&["cp", &given.display().to_string(), "remapped:/tmp/"]).expect("cp into a running container");
    let owner = d.docker(&["exec", "remapped", "stat", "-c", "%u:%g", "/tmp/given"]).expect("stat");
    assert_eq!(owner.trim(), "1234:55");
    let tar = d.docker_out(&["cp", "remapped:/made", "-"]).expect("cp out");
    let mut archive = tar::Archive::new(&tar.stdout[..]);
    let entry = archive.entries().expect("tar").next().expect("an entry").expect("entry");
    assert_eq!((entry.header().uid().ok(), entry.header().gid().ok()), (Some(7), Some(8)));

    // Root of its namespace, not of the host: a host directory it did not
    // get (owned by the host's root) cannot be written, nor can the host's
    // kernel settings, and no device can be made.
    let host_dir = tempfile::tempdir().expect("tempdir");
    let bind = format!("{}:/host", host_dir.path().display());
    let (code, _, err) = d.out(&["run", "--rm", "-v", &bind, "busybox", "touch", "/host/x"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(!host_dir.path().join("x").exists());
    assert!(err.contains("Permission denied"), "{err}");
    let (code, _, _) = d.out(&["run", "--rm", "--cap-add", "MKNOD", "busybox", "mknod", "/tmp/sda", "b", "8", "0"]);
    assert_ne!(code, Some(0), "mknod in a user namespace");
    // ... while its own namespaces are its: a capability it is given counts there.
    let add_address = "ip addr add 10.9.9.9/32 dev lo && ip addr show lo";
    let ip = d.docker(&["run", "--rm", "--cap-add", "NET_ADMIN", "busybox", "sh", "-c", add_address]);
    assert!(ip.expect("an address in its own network namespace").contains("10.9.9.9"));
    let (code, _, err) = d.out(&["run", "--rm", "busybox", "sh", "-c", add_address]);
    assert_ne!(code, Some(0), "without NET_ADMIN: {err}");
    let host = d.docker(&["run", "--rm", "--cap-add", "SYS_ADMIN", "busybox", "hostname", "renamed"]);
    assert!(host.is_ok(), "sethostname in its own UTS namespace: {host:?}");

    // A named volume is the container's: written as root inside, stored unshifted.
    let out =
        d.docker(&["run", "--rm", "-v", "vol:/data", "busybox", "sh", "-c", "echo x > /data/f && stat -c %u /data/f"]);
    assert_eq!(out.expect("volume").trim(), "0");
    let mountpoint = d.docker(&["volume", "inspect", "-f", "{{.Mountpoint}}", "vol"]).expect("volume inspect");
    let meta = std::fs::metadata(std::path::Path::new(mountpoint.trim()).join("f")).expect("volume file");
    assert_eq!(meta.uid(), 0);

    // dockerd's conflicts, and --userns=host as the way out.
    let (code, _, err) = d.out(&["run", "--rm", "--privileged", "busybox", "true"]);
    assert_eq!(code, Some(125));
    assert!(err.contains("privileged mode is incompatible with user namespaces"), "{err}");
    let (code, _, err) = d.out(&["run", "--rm", "--network", "host", "busybox", "true"]);
    assert_eq!(code, Some(125));
    assert!(err.contains("cannot share the host's network namespace"), "{err}");
    let out = d.docker(&["run", "--rm", "--userns", "host", "busybox", "cat", "/proc/self/uid_map"]).expect("host");
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["0", "0", "4294967295"]);
    assert_eq!(inspect(&d, "remapped", "{{.HostConfig.UsernsMode}}"), "");

    // TTYs, --init and restarts work as without remapping.
    let tty = d.docker(&["run", "--rm", "-t", "busybox", "tty"]).expect("run -t");
    assert!(tty.trim().starts_with("/dev/pts/"), "{tty}");
    let init = d.docker(&["run", "--rm", "--init", "busybox", "id", "-u"]).expect("run --init");
    assert_eq!(init.trim(), "0");
    d.docker(&["restart", "-t", "1", "remapped"]).expect("restart");
    assert_eq!(d.docker(&["exec", "remapped", "cat", "/made"]).expect("exec after restart").trim(), "hi");
    d.docker(&["rm", "-f", "remapped"]).expect("rm");
}
