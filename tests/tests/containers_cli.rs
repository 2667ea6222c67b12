//! Container records through the docker CLI and bollard: create with the image's
//! config merged in, ps with filters, inspect, rename, rm, name and ID
//! resolution, dockerd's errors, images pinned by containers, restart persistence.

use berth_tests::{Daemon, TestImage, docker_save_tar};

fn busybox_daemon() -> (Daemon, TestImage) {
    let d = Daemon::start(&[]).expect("start");
    let img = TestImage::busybox(&["busybox:latest"]);
    d.load(&docker_save_tar(std::slice::from_ref(&img), false)).expect("load");
    (d, img)
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn create_inspect_ps_rename_rm() {
    let (mut d, img) = busybox_daemon();
    let id = d
        .docker(&["create", "--name", "web", "-e", "A=1", "--label", "tier=web", "busybox", "echo", "hi"])
        .expect("create");
    let id = id.trim().to_string();
    assert_eq!(id.len(), 64, "{id}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));

    let inspect: serde_json::Value =
        serde_json::from_str(&d.docker(&["inspect", "web"]).expect("inspect")).expect("json");
    let c = &inspect[0];
    assert_eq!(c["Id"], id.as_str());
    assert_eq!(c["Name"], "/web");
    assert_eq!(c["State"]["Status"], "created");
    assert_eq!(c["State"]["Running"], false);
    assert_eq!(c["Path"], "echo");
    assert_eq!(c["Args"], serde_json::json!(["hi"]));
    assert_eq!(c["Image"], img.id().as_str());
    assert_eq!(c["Config"]["Image"], "busybox");
    assert_eq!(c["Config"]["Hostname"], &id[..12]);
    let env: Vec<String> = serde_json::from_value(c["Config"]["Env"].clone()).expect("env");
    assert!(env.contains(&"A=1".to_string()) && env.iter().any(|e| e.starts_with("PATH=")), "{env:?}");
    assert_eq!(c["Config"]["Labels"]["tier"], "web");
    assert_eq!(c["HostConfig"]["NetworkMode"], "bridge");

    // By unique ID prefix too.
    let name = d.docker(&["inspect", "--format", "{{.Name}}", &id[..8]]).expect("prefix");
    assert_eq!(name.trim(), "/web");

    // The image's command applies when none is given.
    d.docker(&["create", "--name", "shell", "busybox"]).expect("create default cmd");
    let path = d.docker(&["inspect", "--format", "{{.Path}}", "shell"]).expect("inspect");
    assert_eq!(path.trim(), "sh");

    // ps: created containers only with -a; filters; formats.
    assert_eq!(d.docker(&["ps", "-q"]).expect("ps").trim(), "");
    let all = d.docker(&["ps", "-a", "--format", "{{.Names}}|{{.Status}}|{{.Image}}"]).expect("ps -a");
    let mut lines: Vec<&str> = all.lines().collect();
    lines.sort();
    assert_eq!(lines, vec!["shell|Created|busybox", "web|Created|busybox"]);
    assert_eq!(d.docker(&["ps", "-a", "-q", "--filter", "label=tier=web"]).expect("label").trim(), &id[..12]);
    assert_eq!(d.docker(&["ps", "-a", "--no-trunc", "-q", "--filter", "name=we"]).expect("name").trim(), id);
    assert_eq!(d.docker(&["ps", "-a", "-q", "--filter", "ancestor=busybox"]).expect("ancestor").lines().count(), 2);
    assert_eq!(d.docker(&["ps", "-q", "--filter", "status=created"]).expect("status").lines().count(), 2);
    assert_eq!(d.docker(&["ps", "-l", "--format", "{{.Names}}"]).expect("latest").trim(), "shell");
    assert_eq!(d.docker(&["ps", "-n", "5", "-q"]).expect("-n").lines().count(), 2);
    let out = d.docker_out(&["ps", "--filter", "status=sleepy"]).expect("ps");
    assert!(stderr(&out).contains("invalid filter 'status=sleepy'"), "{}", stderr(&out));

    // Names are unique.
    let out = d.docker_out(&["create", "--name", "web", "busybox"]).expect("clash");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("The container name \"/web\" is already in use by container"), "{}", stderr(&out));
    let out = d.docker_out(&["create", "--name", "bad name", "busybox"]).expect("bad name");
    assert!(stderr(&out).contains("Invalid container name"), "{}", stderr(&out));

    // Rename.
    d.docker(&["rename", "web", "web2"]).expect("rename");
    assert_eq!(d.docker(&["inspect", "--format", "{{.Name}}", &id]).expect("inspect").trim(), "/web2");
    let out = d.docker_out(&["rename", "web2", "shell"]).expect("rename clash");
    assert!(stderr(&out).contains("already in use"), "{}", stderr(&out));

    // Records survive a restart.
    d.restart().expect("restart");
    assert_eq!(d.docker(&["ps", "-a", "-q"]).expect("ps").lines().count(), 2);

    // A missing container is a 404 for every lifecycle call.
    let out = d.docker_out(&["start", "ghost"]).expect("start ghost");
    assert!(stderr(&out).contains("No such container: ghost"), "{}", stderr(&out));

    // rm.
    assert_eq!(d.docker(&["rm", "web2"]).expect("rm").trim(), "web2");
    let out = d.docker_out(&["inspect", "--type", "container", "web2"]).expect("inspect");
    assert!(stderr(&out).contains("No such container: web2"), "{}", stderr(&out));
    let out = d.docker_out(&["rm", "web2"]).expect("rm again");
    assert!(stderr(&out).contains("No such container: web2"), "{}", stderr(&out));
}

#[test]
fn create_errors_match_dockerd() {
    let (d, _) = busybox_daemon();
    // A missing image: the CLI is told 404 "No such image" and tries to pull.
    let out = d.docker_out(&["create", "nosuchimage"]).expect("create");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("Unable to find image 'nosuchimage:latest' locally"), "{}", stderr(&out));
    let (status, _, body) =
        berth_tests::raw_http(&d.sock(), "POST", "/containers/create?name=x1", br#"{"Image":"nosuchimage"}"#)
            .expect("raw");
    assert_eq!(status, 404);
    assert!(String::from_utf8_lossy(&body).contains("No such image: nosuchimage"));
    let out = d.docker_out(&["create", "--memory", "1k", "busybox"]).expect("memory");
    assert!(stderr(&out).contains("Minimum memory limit allowed is 6MB"), "{}", stderr(&out));
    let out = d
        .docker_out(&["create", "--mount", "type=bind,source=/definitely/not/here,target=/x", "busybox"])
        .expect("bind");
    assert!(stderr(&out).contains("bind source path does not exist"), "{}", stderr(&out));
    let (status, _, _) = berth_tests::raw_http(&d.sock(), "POST", "/containers/create", b"{not json").expect("raw");
    assert_eq!(status, 400);
    let (status, _, _) = berth_tests::raw_http(&d.sock(), "POST", "/containers/create", b"").expect("raw");
    assert_eq!(status, 400);
    // Nothing was half-created.
    assert_eq!(d.docker(&["ps", "-a", "-q"]).expect("ps").trim(), "");
}

#[test]
fn containers_pin_their_image() {
    let (d, img) = busybox_daemon();
    let id = d.docker(&["create", "busybox", "true"]).expect("create").trim().to_string();
    let out = d.docker_out(&["rmi", "busybox"]).expect("rmi");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!(
            "unable to remove repository reference \"busybox\" (must force) - container {} is using its referenced image {}",
            &id[..12],
            &img.id()[7..19]
        )),
        "{}",
        stderr(&out)
    );
    let out = d.docker_out(&["rmi", &img.id()]).expect("rmi by id");
    assert!(stderr(&out).contains("image is being used by stopped container"), "{}", stderr(&out));
    // Forced: untagged, but the content stays for the container.
    let out = d.docker(&["rmi", "-f", "busybox"]).expect("rmi -f");
    assert_eq!(out.trim(), "Untagged: busybox:latest");
    assert_eq!(d.docker(&["images", "-q", "--no-trunc"]).expect("images").trim(), img.id());
    assert_eq!(d.content_counts(), (1, 1));
    // Once the container is gone the image can go.
    d.docker(&["rm", &id]).expect("rm");
    let out = d.docker(&["rmi", &img.id()]).expect("rmi");
    assert!(out.contains(&format!("Deleted: {}", img.id())), "{out}");
    assert_eq!(d.content_counts(), (0, 0));
}

#[tokio::test]
async fn bollard_creates_and_lists() {
    use bollard::models::ContainerCreateBody;
    use bollard::query_parameters::{CreateContainerOptions, ListContainersOptions, RemoveContainerOptions};
    let (d, img) = busybox_daemon();
    let client = bollard::Docker::connect_with_unix(&d.host, 30, bollard::API_DEFAULT_VERSION).expect("connect");
    let created = client
        .create_container(
            Some(CreateContainerOptions { name: Some("from-bollard".into()), platform: String::new() }),
            ContainerCreateBody {
                image: Some("busybox".into()),
                cmd: Some(vec!["sleep".into(), "1".into()]),
                ..Default::default()
            },
        )
        .await
        .expect("create");
    let info = client
        .inspect_container("from-bollard", None::<bollard::query_parameters::InspectContainerOptions>)
        .await
        .expect("inspect");
    assert_eq!(info.id.as_deref(), Some(created.id.as_str()));
    assert_eq!(info.image.as_deref(), Some(img.id().as_str()));
    assert_eq!(info.args, Some(vec!["1".to_string()]));
    let list =
        client.list_containers(Some(ListContainersOptions { all: true, ..Default::default() })).await.expect("list");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].names, Some(vec!["/from-bollard".to_string()]));
    client.remove_container("from-bollard", Some(RemoveContainerOptions::default())).await.expect("rm");
    let err = client
        .inspect_container("from-bollard", None::<bollard::query_parameters::InspectContainerOptions>)
        .await
        .expect_err("gone");
    assert!(matches!(err, bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }), "{err:?}");
}
