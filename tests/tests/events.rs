//! `docker events`: what dockerd reports for a container's life, a network's
//! and a volume's, the history with `--since`/`--until`, a live stream, and
//! filters; through the CLI, bollard and raw HTTP.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use berth_tests::Daemon;

fn now() -> u64 {
    berth_tests::unix_time(0).parse().expect("a Unix time")
}

/// The events between `since` and now, as `Type Action NAME` lines (a
/// volume's name is its ID; it has no name attribute, as on dockerd).
fn history(d: &Daemon, since: u64, extra: &[&str]) -> Vec<String> {
    let (since, until) = (since.to_string(), (now() + 1).to_string());
    let mut args = vec![
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--format",
        "{{.Type}} {{.Action}} {{with .Actor.Attributes.name}}{{.}}{{else}}{{.Actor.ID}}{{end}}",
    ];
    args.extend_from_slice(extra);
    d.docker(&args).expect("events").lines().map(String::from).collect()
}

#[test]
fn a_containers_life_in_events() {
    let d = Daemon::with_busybox();
    let t0 = now() - 1;
    d.docker(&["network", "create", "evnet"]).expect("network create");
    d.docker(&["volume", "create", "evvol"]).expect("volume create");
    d.docker(&[
        "run",
        "-d",
        "--name",
        "box",
        "--label",
        "team=a",
        "--network",
        "evnet",
        "-v",
        "evvol:/data",
        "busybox",
        "sleep",
        "300",
    ])
    .expect("run -d");
    d.docker(&["exec", "box", "true"]).expect("exec");
    d.docker(&["exec", "-d", "box", "sh", "-c", "sleep 0.2; exit 4"]).expect("exec -d");
    std::thread::sleep(std::time::Duration::from_millis(700));
    d.docker(&["pause", "box"]).expect("pause");
    d.docker(&["unpause", "box"]).expect("unpause");
    d.docker(&["stop", "-t", "1", "box"]).expect("stop");
    d.docker(&["rename", "box", "box2"]).expect("rename");
    d.docker(&["rm", "box2"]).expect("rm");
    d.docker(&["run", "--rm", "--name", "quick", "busybox", "sh", "-c", "exit 3"]).expect_err("exit 3");
    d.docker(&["volume", "rm", "evvol"]).expect("volume rm");
    d.docker(&["network", "rm", "evnet"]).expect("network rm");
    d.docker(&["tag", "busybox", "busybox:evtag"]).expect("tag");
    d.docker(&["rmi", "busybox:evtag"]).expect("rmi");

    let lines = history(&d, t0, &[]);
    let pos = |want: &str| lines.iter().position(|l| l == want).unwrap_or_else(|| panic!("no {want:?} in {lines:#?}"));
    // Each in order, as dockerd reports them.
    let order = [
        "network create evnet",
        "volume create evvol",
        "container create box",
        "network connect evnet",
        "volume mount evvol",
        "container start box",
        "container pause box",
        "container unpause box",
        "container kill box",
        "container die box",
        "volume unmount evvol",
        "container stop box",
        "container rename box2",
        "container destroy box2",
        "container die quick",
        "container destroy quick",
        "volume destroy evvol",
        "network destroy evnet",
        "image tag busybox:evtag",
        "image untag busybox:evtag",
    ];
    let at: Vec<usize> = order.iter().map(|w| pos(w)).collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "out of order: {lines:#?}");
    // The network lets go of a container after its exit (off the path of
    // `docker stop`, which answers once the exit is recorded).
    assert!(pos("container die box") < pos("network disconnect evnet"), "{lines:#?}");
    assert!(lines.iter().any(|l| l.starts_with("container exec_create: true")), "{lines:#?}");
    assert!(lines.iter().any(|l| l.starts_with("container exec_die")), "{lines:#?}");

    // Attributes: exit code, signal, old name, labels, image.
    let attrs = |filter: &str, format: &str| -> String {
        let since = t0.to_string();
        let until = (now() + 1).to_string();
        d.docker(&["events", "--since", &since, "--until", &until, "--filter", filter, "--format", format])
            .expect("events")
            .trim()
            .to_string()
    };
    assert_eq!(attrs("container=quick", "{{if eq .Action \"die\"}}{{.Actor.Attributes.exitCode}}{{end}}"), "3");
    // `stop -t 1` of a PID 1 that ignores SIGTERM: the stop signal, then SIGKILL.
    assert_eq!(attrs("event=kill", "{{.Actor.Attributes.signal}}"), "15\n9");
    assert_eq!(attrs("event=rename", "{{.Actor.Attributes.oldName}}"), "/box");
    // A detached exec's exit is an event too.
    let codes = attrs("event=exec_die", "{{.Actor.Attributes.exitCode}}");
    assert!(codes.lines().any(|c| c == "4") && codes.lines().any(|c| c == "0"), "{codes}");
    let created = attrs("event=create", "{{.Actor.Attributes.team}} {{.Actor.Attributes.image}} {{.From}}");
    assert!(created.lines().any(|l| l == "a busybox busybox"), "{created}");

    // Filters: by label, by type, by event, by container name.
    let team = history(&d, t0, &["--filter", "label=team=a"]);
    assert!(
        !team.is_empty()
            && team.iter().all(|l| l.starts_with("container ") && (l.ends_with(" box") || l.ends_with(" box2"))),
        "{team:#?}"
    );
    let nets = history(&d, t0, &["--filter", "type=network", "--filter", "event=create"]);
    assert_eq!(nets, ["network create evnet"]);
    let quick = history(&d, t0, &["--filter", "container=quick"]);
    assert!(quick.len() >= 4 && quick.iter().all(|l| l.ends_with(" quick")), "{quick:#?}");
    // A bad filter is dockerd's 400.
    let (status, _, body) =
        berth_tests::raw_http(&d.sock(), "GET", "/events?filters=%7B%22bogus%22%3A%7B%22x%22%3Atrue%7D%7D", b"")
            .expect("bad filter");
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
}

#[test]
fn events_stream_live_and_end_at_until() {
    let d = Daemon::with_busybox();
    let mut watcher = berth_tests::ChildGuard(
        d.docker_cmd(&[
            "events",
            "--filter",
            "type=container",
            "--filter",
            "event=start",
            "--format",
            "{{.Actor.Attributes.name}}",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("docker events"),
    );
    // The stream is open before anything happens; give the CLI a moment to connect.
    std::thread::sleep(std::time::Duration::from_millis(500));
    d.docker(&["run", "-d", "--name", "live1", "busybox", "sleep", "300"]).expect("run");
    d.docker(&["run", "-d", "--name", "live2", "busybox", "sleep", "300"]).expect("run");
    let mut lines = BufReader::new(watcher.0.stdout.take().expect("stdout")).lines();
    assert_eq!(lines.next().and_then(|l| l.ok()).as_deref(), Some("live1"));
    assert_eq!(lines.next().and_then(|l| l.ok()).as_deref(), Some("live2"));

    // `until` in the future ends the stream when it comes.
    let until = (now() + 2).to_string();
    let started = std::time::Instant::now();
    d.docker(&["events", "--until", &until]).expect("events --until");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

#[tokio::test]
async fn bollard_reads_the_history() {
    use futures::StreamExt;
    let d = Daemon::with_busybox();
    let since = now() - 1;
    d.docker(&["create", "--name", "hist", "busybox", "true"]).expect("create");
    let client = bollard::Docker::connect_with_unix(&d.host, 30, bollard::API_DEFAULT_VERSION).expect("connect");
    let options = bollard::query_parameters::EventsOptions {
        since: Some(since.to_string()),
        until: Some((now() + 1).to_string()),
        filters: Some([("type".to_string(), vec!["container".to_string()])].into_iter().collect()),
    };
    let events: Vec<_> = client.events(Some(options)).collect().await;
    let events: Vec<_> = events.into_iter().map(|e| e.expect("event")).collect();
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!(e.action.as_deref(), Some("create"));
    assert_eq!(e.typ, Some(bollard::models::EventMessageTypeEnum::CONTAINER));
    let actor = e.actor.as_ref().expect("actor");
    assert_eq!(actor.attributes.as_ref().and_then(|a| a.get("name")).map(String::as_str), Some("hist"));
    assert!(e.time_nano.unwrap_or(0) >= (since as i64) * 1_000_000_000);
}
