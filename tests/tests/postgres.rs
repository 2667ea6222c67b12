//! berthd with its state in Postgres: nothing in SQLite files, state kept
//! across restarts of berthd, 503s while Postgres is down and service again
//! when it is back, and no acknowledged write lost when Postgres is killed.

use std::time::{Duration, Instant};

use berth_tests::postgres::Postgres;
use berth_tests::{Daemon, TestImage, docker_save_tar, raw_http};

fn daemon_on(pg: &Postgres) -> (Daemon, String) {
    let url = pg.create_database().expect("database");
    let d = Daemon::start(&[&format!("--state-url={url}")]).expect("start berthd");
    d.load(&docker_save_tar(&[TestImage::busybox(&["busybox:latest"])], false)).expect("load busybox");
    (d, url)
}

fn db_files(d: &Daemon) -> Vec<String> {
    ["image", "runtime", "network", "volume"]
        .iter()
        .flat_map(|s| std::fs::read_dir(d.data_root().join(s)).into_iter().flatten().flatten())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".db") || n.ends_with(".db-wal"))
        .collect()
}

#[test]
fn berthd_keeps_its_state_in_postgres_across_restarts() {
    let pg = Postgres::start().expect("postgres");
    let (mut d, url) = daemon_on(&pg);
    d.docker(&["volume", "create", "--label", "k=v", "keep"]).expect("volume");
    d.docker(&["network", "create", "--subnet", "10.231.7.0/24", "pgnet"]).expect("network");
    // Exits 3: the CLI fails with it, the record keeps it.
    let (code, _, err) = d.out(&[
        "run",
        "--name",
        "pgrun",
        "--network",
        "pgnet",
        "-v",
        "keep:/data",
        "busybox",
        "sh",
        "-c",
        "echo hi > /data/f; exit 3",
    ]);
    assert_eq!(code, Some(3), "{err}");
    d.docker(&["tag", "busybox", "mine:1"]).expect("tag");
    assert!(db_files(&d).is_empty(), "no SQLite file with a state-url: {:?}", db_files(&d));
    let db = url.rsplit('/').next().expect("db");
    let schemas = pg
        .psql(db, "SELECT string_agg(nspname, ',' ORDER BY nspname) FROM pg_namespace WHERE nspname LIKE 'berth_%'")
        .expect("psql");
    assert_eq!(schemas, "berth_image,berth_network,berth_runtime,berth_volume");
    let rows =
        pg.psql(db, "SELECT name || ' ' || status || ' ' || exit_code FROM berth_runtime.containers").expect("psql");
    assert_eq!(rows, "pgrun exited 3");

    d.restart().expect("restart berthd");
    assert_eq!(
        d.docker(&["inspect", "-f", "{{.State.ExitCode}} {{.HostConfig.NetworkMode}}", "pgrun"])
            .expect("inspect")
            .trim(),
        "3 pgnet"
    );
    assert_eq!(d.docker(&["volume", "inspect", "-f", "{{.Labels.k}}", "keep"]).expect("volume").trim(), "v");
    assert!(d.docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"]).expect("images").contains("mine:1"));
    let (code, _, err) = d.out(&["start", "-a", "pgrun"]);
    assert_eq!(code, Some(3), "started again from the records Postgres kept: {err}");
    assert_eq!(d.docker(&["run", "--rm", "-v", "keep:/data", "busybox", "cat", "/data/f"]).expect("cat").trim(), "hi");
    assert_eq!(
        d.docker(&["inspect", "-f", "{{.RestartCount}} {{.State.Status}}", "pgrun"]).expect("inspect").trim(),
        "0 exited"
    );
}

fn status_of(d: &Daemon, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let (status, _, body) = raw_http(&d.sock(), method, path, body).expect("http");
    (status, String::from_utf8_lossy(&body).to_string())
}

#[test]
fn postgres_down_means_503_then_service_again() {
    let pg = Postgres::start().expect("postgres");
    let (d, _) = daemon_on(&pg);
    d.docker(&["volume", "create", "before"]).expect("volume");
    d.docker(&["create", "--name", "made-before", "busybox", "true"]).expect("create");
    pg.stop().expect("stop postgres");
    // A write needs the database: refused as unavailable, with dockerd's error body.
    let (status, body) = status_of(&d, "POST", "/volumes/create", br#"{"Name":"during"}"#);
    assert_eq!(status, 503, "{body}");
    assert!(body.starts_with("{\"message\":") && body.contains("database"), "{body}");
    let (status, body) =
        status_of(&d, "POST", "/containers/create?name=during", br#"{"Image":"busybox","Cmd":["true"]}"#);
    assert_eq!(status, 503, "{body}");
    assert!(!d.log().contains("panicked"), "{}", d.log());

    pg.restart().expect("restart postgres");
    // The pool notices the dropped connections and makes new ones.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = status_of(&d, "POST", "/volumes/create", br#"{"Name":"after"}"#);
        if status == 201 {
            break;
        }
        assert!(Instant::now() < deadline, "no service 30s after Postgres came back: {status} {body}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let vols = d.docker(&["volume", "ls", "-q"]).expect("ls");
    assert!(vols.contains("before") && vols.contains("after") && !vols.contains("during"), "{vols}");
    let names = d.docker(&["ps", "-a", "--format", "{{.Names}}"]).expect("ps");
    assert!(names.contains("made-before") && !names.contains("during"), "{names}");
    d.docker(&["start", "made-before"]).expect("start after the gap");
}

#[test]
fn killing_postgres_mid_requests_loses_no_acknowledged_write() {
    let pg = Postgres::start().expect("postgres");
    let (d, _) = daemon_on(&pg);
    let sock = d.sock();
    let writer = std::thread::spawn(move || {
        // Volume creates, one after another, until 3 s after the first failure.
        let mut acknowledged = Vec::new();
        let mut first_failure: Option<Instant> = None;
        for i in 0..2000 {
            let body = format!(r#"{{"Name":"v{i}"}}"#);
            match raw_http(&sock, "POST", "/volumes/create", body.as_bytes()) {
                Ok((201, _, _)) => acknowledged.push(format!("v{i}")),
                Ok((status, _, _)) => {
                    assert!(status == 503 || status == 500, "unexpected status {status}");
                    first_failure.get_or_insert_with(Instant::now);
                }
                Err(_) => {
                    first_failure.get_or_insert_with(Instant::now);
                }
            }
            if first_failure.is_some_and(|t| t.elapsed() > Duration::from_secs(3)) {
                break;
            }
        }
        (acknowledged, first_failure.is_some())
    });
    // Let some writes land, then crash the database under them.
    std::thread::sleep(Duration::from_millis(700));
    pg.kill9().expect("kill -9 postgres");
    let (acknowledged, failed) = writer.join().expect("writer");
    assert!(failed, "the crash came while the writes went on (none failed)");
    assert!(acknowledged.len() > 3, "some writes landed before the crash: {acknowledged:?}");
    pg.restart().expect("postgres recovers");
    let deadline = Instant::now() + Duration::from_secs(30);
    let listed = loop {
        match d.docker(&["volume", "ls", "-q"]) {
            Ok(out) => break out,
            Err(e) => assert!(Instant::now() < deadline, "no service after recovery: {e}"),
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let listed: Vec<&str> = listed.lines().collect();
    let lost: Vec<&String> = acknowledged.iter().filter(|v| !listed.contains(&v.as_str())).collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    // The volumes' directories and records agree.
    for v in &acknowledged {
        assert!(d.data_root().join("volumes").join(v).join("_data").is_dir(), "{v}");
    }
}
