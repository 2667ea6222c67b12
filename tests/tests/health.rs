//! Healthchecks as dockerd runs them: `--health-*` flags and an image's
//! HEALTHCHECK, `State.Health`, `(healthy)` in ps, the health filter,
//! `health_status` events, timeouts, the start period, and monitors that keep
//! going across a berthd restart.

use std::time::{Duration, Instant};

use berth_tests::{Daemon, TestImage, docker_save_tar};

fn health(d: &Daemon, name: &str) -> serde_json::Value {
    let out = d.docker(&["inspect", "-f", "{{json .State.Health}}", name]).expect("inspect");
    serde_json::from_str(out.trim()).expect("health JSON")
}

/// Polls until the container's health status is `want` (or fails after 20 s).
fn wait_for(d: &Daemon, name: &str, want: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let h = health(d, name);
        if h["Status"] == want {
            return h;
        }
        assert!(Instant::now() < deadline, "{name} never became {want}: {h}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn probes_make_containers_healthy_or_unhealthy() {
    let d = Daemon::with_busybox();
    d.docker(&[
        "run",
        "-d",
        "--name",
        "good",
        "--health-cmd",
        "echo fine",
        "--health-interval",
        "1s",
        "busybox",
        "sleep",
        "300",
    ])
    .expect("run good");
    d.docker(&[
        "run",
        "-d",
        "--name",
        "bad",
        "--health-cmd",
        "echo broken; exit 1",
        "--health-interval",
        "1s",
        "--health-retries",
        "2",
        "busybox",
        "sleep",
        "300",
    ])
    .expect("run bad");
    assert_eq!(health(&d, "good")["Status"], "starting", "before the first probe");
    let ps = d.docker(&["ps", "--format", "{{.Names}} {{.Status}}"]).expect("ps");
    assert!(ps.contains("(health: starting)"), "{ps}");

    let good = wait_for(&d, "good", "healthy");
    assert_eq!(good["FailingStreak"], 0);
    let log = good["Log"].as_array().expect("log");
    assert_eq!(log.last().map(|l| (&l["ExitCode"], &l["Output"])), Some((&0.into(), &"fine\n".into())));
    let bad = wait_for(&d, "bad", "unhealthy");
    assert!(bad["FailingStreak"].as_i64().unwrap_or(0) >= 2, "{bad}");
    assert_eq!(bad["Log"][0]["Output"], "broken\n");

    let ps = d.docker(&["ps", "--format", "{{.Names}} {{.Status}}"]).expect("ps");
    assert!(ps.lines().any(|l| l.starts_with("good Up") && l.ends_with("(healthy)")), "{ps}");
    assert!(ps.lines().any(|l| l.starts_with("bad Up") && l.ends_with("(unhealthy)")), "{ps}");
    let healthy = d.docker(&["ps", "--filter", "health=healthy", "--format", "{{.Names}}"]).expect("ps health");
    assert_eq!(healthy.trim(), "good");
    let (code, _, err) = d.out(&["ps", "--filter", "health=sick"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("Unrecognised filter value for health: sick"), "{err}");

    // Five results at most; events at each change.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(health(&d, "good")["Log"].as_array().map(Vec::len), Some(5));
    let since = berth_tests::unix_time(-60);
    let until = berth_tests::unix_time(1);
    let events = d
        .docker(&[
            "events",
            "--since",
            &since,
            "--until",
            &until,
            "--filter",
            "event=health_status",
            "--format",
            "{{.Actor.Attributes.name}} {{.Action}}",
        ])
        .expect("events");
    assert!(events.lines().any(|l| l == "good health_status: healthy"), "{events}");
    assert!(events.lines().any(|l| l == "bad health_status: unhealthy"), "{events}");
}

#[test]
fn timeouts_start_periods_and_no_healthcheck() {
    let d = Daemon::with_busybox();
    d.docker(&[
        "run",
        "-d",
        "--name",
        "slow",
        "--health-cmd",
        "sleep 30",
        "--health-timeout",
        "1s",
        "--health-interval",
        "1s",
        "--health-retries",
        "1",
        "busybox",
        "sleep",
        "300",
    ])
    .expect("run slow");
    let slow = wait_for(&d, "slow", "unhealthy");
    assert_eq!(slow["Log"][0]["ExitCode"], -1);
    assert_eq!(slow["Log"][0]["Output"], "Health check exceeded timeout (1s)");
    // The probe that ran past its timeout was killed.
    let top = d.docker(&["top", "slow"]).expect("top");
    assert!(!top.contains("sleep 47"), "{top}");

    // Failures within the start period do not count.
    d.docker(&[
        "run",
        "-d",
        "--name",
        "warming",
        "--health-cmd",
        "exit 1",
        "--health-interval",
        "1s",
        "--health-retries",
        "1",
        "--health-start-period",
        "60s",
        "--health-start-interval",
        "1s",
        "busybox",
        "sleep",
        "300",
    ])
    .expect("run warming");
    std::thread::sleep(Duration::from_secs(4));
    let warming = health(&d, "warming");
    assert_eq!(warming["Status"], "starting", "{warming}");
    assert!(warming["Log"].as_array().map(Vec::len).unwrap_or(0) >= 2, "probed every second meanwhile: {warming}");
    assert_eq!(warming["FailingStreak"], 0);

    // An image's HEALTHCHECK applies; --no-healthcheck turns it off.
    let mut img = TestImage::busybox(&["checked:1"]);
    img.config["Healthcheck"] = serde_json::json!({"Test": ["CMD-SHELL", "true"], "Interval": 1_000_000_000});
    d.load(&docker_save_tar(&[img], false)).expect("load");
    d.docker(&["run", "-d", "--name", "inherited", "checked:1", "sleep", "300"]).expect("run inherited");
    wait_for(&d, "inherited", "healthy");
    d.docker(&["run", "-d", "--name", "unchecked", "--no-healthcheck", "checked:1", "sleep", "300"]).expect("run");
    let out = d.docker(&["inspect", "-f", "{{json .State.Health}}", "unchecked"]).expect("inspect");
    assert_eq!(out.trim(), "null");

    // dockerd's checks of the values.
    let body = br#"{"Image":"busybox","Healthcheck":{"Test":["CMD","true"],"Interval":100}}"#;
    let (status, _, reply) = berth_tests::raw_http(&d.sock(), "POST", "/containers/create", body).expect("create");
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&reply).contains("Interval in Healthcheck cannot be less than 1ms"));
    let body = br#"{"Image":"busybox","Healthcheck":{"Test":["CMD","true"],"Retries":-1}}"#;
    let (status, _, _) = berth_tests::raw_http(&d.sock(), "POST", "/containers/create", body).expect("create");
    assert_eq!(status, 400);
}

#[test]
fn monitors_go_on_across_a_berthd_restart() {
    let mut d = Daemon::with_busybox();
    d.docker(&[
        "run",
        "-d",
        "--name",
        "kept",
        "--health-cmd",
        "true",
        "--health-interval",
        "1s",
        "busybox",
        "sleep",
        "300",
    ])
    .expect("run");
    wait_for(&d, "kept", "healthy");
    d.restart().expect("restart berthd");
    let before = health(&d, "kept");
    assert_eq!(before["Status"], "healthy", "the stored state: {before}");
    let last = |h: &serde_json::Value| h["Log"].as_array().and_then(|l| l.last()).map(|l| l["Start"].clone());
    let deadline = Instant::now() + Duration::from_secs(15);
    while last(&health(&d, "kept")) == last(&before) {
        assert!(Instant::now() < deadline, "no probe after the restart");
        std::thread::sleep(Duration::from_millis(300));
    }
}
