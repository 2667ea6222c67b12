//! Restart policies as dockerd applies them: on-failure with a count, always
//! until a stop, the back-off, invalid policies, and what berthd does with
//! `always` and `unless-stopped` containers when it starts again.

use std::time::{Duration, Instant};

use berth_tests::Daemon;

fn inspect(d: &Daemon, name: &str, format: &str) -> String {
    d.docker(&["inspect", "-f", format, name]).expect("inspect").trim().to_string()
}

/// Polls `format` of `name` until `ok` holds (20 s at most).
fn wait_until(d: &Daemon, name: &str, format: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = inspect(d, name, format);
        if ok(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{name}: {format} stayed {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn on_failure_counts_and_always_runs_until_stopped() {
    let d = Daemon::with_busybox();
    d.docker(&["run", "-d", "--name", "flaky", "--restart", "on-failure:2", "busybox", "sh", "-c", "exit 3"])
        .expect("run on-failure");
    d.docker(&["run", "-d", "--name", "fine", "--restart", "on-failure", "busybox", "true"]).expect("run");
    d.docker(&["run", "-d", "--name", "forever", "--restart", "always", "busybox", "sh", "-c", "sleep 0.2"])
        .expect("run always");

    // Three runs: the first and two restarts, then it stays exited.
    wait_until(&d, "flaky", "{{.RestartCount}} {{.State.Status}}", |v| v == "2 exited");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(inspect(&d, "flaky", "{{.RestartCount}} {{.State.Status}} {{.State.ExitCode}}"), "2 exited 3");
    assert_eq!(
        inspect(&d, "flaky", "{{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}"),
        "on-failure:2"
    );
    assert_eq!(inspect(&d, "fine", "{{.RestartCount}} {{.State.Status}}"), "0 exited", "a success is not restarted");

    // always: again and again (ps shows it restarting or up), until docker stop.
    wait_until(&d, "forever", "{{.RestartCount}}", |v| v.parse::<u32>().unwrap_or(0) >= 3);
    d.docker(&["stop", "forever"]).expect("stop");
    let after = inspect(&d, "forever", "{{.RestartCount}} {{.State.Status}}");
    assert!(after.ends_with(" exited"), "{after}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(inspect(&d, "forever", "{{.RestartCount}} {{.State.Status}}"), after, "the loop ended");
    // A start by hand begins afresh.
    d.docker(&["start", "forever"]).expect("start");
    let count = inspect(&d, "forever", "{{.RestartCount}}").parse::<u32>().unwrap_or(99);
    assert!(count <= 1, "the count starts again: {count}");
    d.docker(&["rm", "-f", "forever"]).expect("rm -f");
}

#[test]
fn invalid_policies_are_refused_as_dockerd_refuses_them() {
    let d = Daemon::with_busybox();
    let (code, _, err) = d.out(&["run", "-d", "--restart", "sometimes", "busybox", "true"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("invalid restart policy: unknown policy 'sometimes'"), "{err}");
    let (code, _, err) = d.out(&["run", "-d", "--restart", "always:3", "busybox", "true"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("maximum retry count can only be used with 'on-failure'"), "{err}");
    let body = br#"{"Image":"busybox","HostConfig":{"AutoRemove":true,"RestartPolicy":{"Name":"always"}}}"#;
    let (status, _, reply) = berth_tests::raw_http(&d.sock(), "POST", "/containers/create", body).expect("create");
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&reply).contains("can't create 'AutoRemove' container with restart policy"));
    let body = br#"{"Image":"busybox","HostConfig":{"RestartPolicy":{"Name":"on-failure","MaximumRetryCount":-1}}}"#;
    let (status, _, _) = berth_tests::raw_http(&d.sock(), "POST", "/containers/create", body).expect("create");
    assert_eq!(status, 400);
}

#[test]
fn berthd_starting_again_restarts_always_and_unless_stopped_and_adopts_the_running() {
    let mut d = Daemon::with_busybox();
    for (name, policy) in [
        ("up", "always"),
        ("died", "unless-stopped"),
        ("stopped-always", "always"),
        ("stopped-unless", "unless-stopped"),
        ("plain", "no"),
    ] {
        d.docker(&["run", "-d", "--name", name, "--restart", policy, "busybox", "sleep", "300"]).expect("run");
    }
    d.docker(&["stop", "-t", "0", "stopped-always", "stopped-unless"]).expect("stop");
    let up_pid = inspect(&d, "up", "{{.State.Pid}}");
    let doomed: Vec<String> = ["died", "plain"].iter().map(|n| inspect(&d, n, "{{.State.Pid}}")).collect();
    // berthd goes away; meanwhile two containers die (as after a crash of their processes).
    d.kill9().expect("kill berthd");
    for pid in &doomed {
        let _ = std::process::Command::new("kill").args(["-9", pid]).status();
    }
    std::thread::sleep(Duration::from_millis(500));
    d.restart().expect("start berthd again");
    // Adopted, not restarted: the same process.
    assert_eq!(inspect(&d, "up", "{{.State.Status}} {{.State.Pid}}"), format!("running {up_pid}"));
    wait_until(&d, "died", "{{.State.Status}}", |v| v == "running");
    wait_until(&d, "stopped-always", "{{.State.Status}}", |v| v == "running");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(inspect(&d, "stopped-unless", "{{.State.Status}}"), "exited", "stopped by the user");
    assert_eq!(inspect(&d, "plain", "{{.State.Status}}"), "exited", "no policy");
}
