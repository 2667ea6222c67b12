//! How confined a default container is, tried as a user (or an attacker)
//! would: its capability sets (for the command, an exec and an `--init`
//! process), and `no-new-privileges`.

use berth_tests::Daemon;

/// dockerd's default capabilities as the kernel's mask: CHOWN, DAC_OVERRIDE,
/// FOWNER, FSETID, KILL, SETGID, SETUID, SETPCAP, NET_BIND_SERVICE, NET_RAW,
/// SYS_CHROOT, MKNOD, AUDIT_WRITE, SETFCAP.
const DEFAULT_CAPS: &str = "00000000a80425fb";

/// The `Key:` lines of a /proc/PID/status, as (key, value) pairs.
fn status_of(text: &str, key: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(':')))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("no {key} in {text:?}"))
}

fn proc_status(d: &Daemon, args: &[&str]) -> String {
    let (code, out, err) = d.out(args);
    assert_eq!(code, Some(0), "docker {}: {err}", args.join(" "));
    out
}

#[test]
fn capability_sets_are_dockerds_for_command_exec_and_init() {
    let d = Daemon::with_busybox();
    let own = proc_status(&d, &["run", "--rm", "busybox", "cat", "/proc/self/status"]);
    for key in ["CapEff", "CapPrm", "CapBnd"] {
        assert_eq!(status_of(&own, key), DEFAULT_CAPS, "{key} of the command");
    }
    assert_eq!(status_of(&own, "CapInh"), "0000000000000000");
    assert_eq!(status_of(&own, "CapAmb"), "0000000000000000");

    // --init: PID 1 is Berth's init; it holds no more than the command.
    let init = proc_status(&d, &["run", "--rm", "--init", "busybox", "cat", "/proc/1/status"]);
    assert_eq!(status_of(&init, "Name"), "docker-init");
    for key in ["CapEff", "CapPrm", "CapBnd"] {
        assert_eq!(status_of(&init, key), DEFAULT_CAPS, "{key} of the --init process");
    }
    let init_user = proc_status(&d, &["run", "--rm", "--init", "--user", "1000", "busybox", "cat", "/proc/1/status"]);
    assert_eq!(status_of(&init_user, "CapEff"), "0000000000000000", "the init of a non-root command");
    assert_eq!(status_of(&init_user, "CapPrm"), "0000000000000000");
    assert_eq!(status_of(&init_user, "CapBnd"), DEFAULT_CAPS);

    // An exec gets the container's sets.
    d.docker(&["run", "-d", "--name", "box", "busybox", "sleep", "300"]).expect("run -d");
    let exec = proc_status(&d, &["exec", "box", "cat", "/proc/self/status"]);
    assert_eq!(status_of(&exec, "CapEff"), DEFAULT_CAPS, "CapEff of an exec");
    assert_eq!(status_of(&exec, "CapBnd"), DEFAULT_CAPS, "CapBnd of an exec");

    // --cap-drop ALL leaves nothing, not even in the bounding set; --cap-add adds exactly one.
    let none = proc_status(&d, &["run", "--rm", "--cap-drop", "ALL", "busybox", "cat", "/proc/self/status"]);
    assert_eq!(status_of(&none, "CapBnd"), "0000000000000000");
    assert_eq!(status_of(&none, "CapEff"), "0000000000000000");
    let admin = proc_status(&d, &["run", "--rm", "--cap-add", "SYS_ADMIN", "busybox", "cat", "/proc/self/status"]);
    assert_eq!(status_of(&admin, "CapEff"), "00000000a82425fb", "SYS_ADMIN is bit 21");
    // A user other than root has none effective, as on dockerd.
    let user = proc_status(&d, &["run", "--rm", "--user", "1000", "busybox", "cat", "/proc/self/status"]);
    assert_eq!(status_of(&user, "CapEff"), "0000000000000000");
}

#[test]
fn no_new_privileges_is_honoured() {
    let d = Daemon::with_busybox();
    let plain = proc_status(&d, &["run", "--rm", "busybox", "cat", "/proc/self/status"]);
    assert_eq!(status_of(&plain, "NoNewPrivs"), "0");
    let nnp =
        proc_status(&d, &["run", "--rm", "--security-opt", "no-new-privileges", "busybox", "cat", "/proc/self/status"]);
    assert_eq!(status_of(&nnp, "NoNewPrivs"), "1");
    let nnp_true = proc_status(
        &d,
        &["run", "--rm", "--security-opt", "no-new-privileges:true", "--init", "busybox", "cat", "/proc/1/status"],
    );
    assert_eq!(status_of(&nnp_true, "NoNewPrivs"), "1", "the --init process too");
    d.docker(&["run", "-d", "--name", "nnp", "--security-opt", "no-new-privileges", "busybox", "sleep", "300"])
        .expect("run -d");
    let exec = proc_status(&d, &["exec", "nnp", "cat", "/proc/self/status"]);
    assert_eq!(status_of(&exec, "NoNewPrivs"), "1", "an exec in such a container");
}
