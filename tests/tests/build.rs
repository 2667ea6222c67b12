//! `docker build` with the classic builder (`DOCKER_BUILDKIT=0`): the
//! instructions, build arguments, targets and multi-stage COPY --from,
//! `.dockerignore`, the cache, failing steps, and the stream docker-py and
//! compose read, through the CLI and raw HTTP.

use std::path::Path;

use berth_tests::Daemon;

/// A context directory with these files.
fn context(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tmp");
    for (name, body) in files {
        let p = dir.path().join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(p, body).expect("write");
    }
    dir
}

/// `docker build` with the classic builder: (exit code, stdout, stderr).
fn build(d: &Daemon, dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = d
        .docker_cmd(&[&["build"], args, &[&dir.display().to_string()]].concat())
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .expect("docker build");
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn a_dockerfile_builds_and_its_image_runs_as_written() {
    let d = Daemon::with_busybox();
    let ctx = context(&[
        (
            "Dockerfile",
            "# a comment\nARG BASE=busybox\nFROM ${BASE}\nARG GREETING=hello\nENV APP_HOME=/app \\\n    MODE=\"prod mode\"\nLABEL team=core version=\"1.0\"\nWORKDIR $APP_HOME\nCOPY files/ ./\nCOPY --chown=1000:1000 one.txt /owned/\nRUN echo \"$GREETING from build\" > built.txt && \\\n    chmod 640 built.txt\nUSER 1000\nEXPOSE 8080/tcp\nVOLUME /data\nSTOPSIGNAL SIGINT\nHEALTHCHECK --interval=5s --retries=2 CMD true\nCMD [\"cat\", \"built.txt\"]\n",
        ),
        ("files/a.txt", "A\n"),
        ("files/sub/b.txt", "B\n"),
        ("one.txt", "1\n"),
    ]);
    let (code, out, err) = build(&d, ctx.path(), &["-t", "app:v1", "-t", "app:latest", "--build-arg", "GREETING=hi"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("Step 1/15 : ARG BASE=busybox"), "{out}");
    assert!(out.contains("Step 3/15 : ARG GREETING=hello"), "{out}");
    assert!(out.contains(" ---> Running in ") && out.contains("Removing intermediate container "), "{out}");
    assert!(out.contains("Successfully built ") && out.contains("Successfully tagged app:v1"), "{out}");
    assert_eq!(d.docker(&["run", "--rm", "app:v1"]).expect("run").trim(), "hi from build");
    let check = d
        .docker(&[
            "run",
            "--rm",
            "app:latest",
            "sh",
            "-c",
            "pwd; cat a.txt sub/b.txt; echo $MODE; id -u; stat -c '%u %a' /owned/one.txt built.txt",
        ])
        .expect("run");
    assert_eq!(check.trim(), "/app\nA\nB\nprod mode\n1000\n1000 644\n0 640");
    let f = "{{.Config.User}}|{{json .Config.ExposedPorts}}|{{json .Config.Volumes}}|{{.Config.StopSignal}}|{{.Config.Labels.team}}|{{json .Config.Healthcheck.Test}}|{{.Config.Healthcheck.Retries}}";
    let got = d.docker(&["image", "inspect", "-f", f, "app:v1"]).expect("inspect");
    assert_eq!(got.trim(), r#"1000|{"8080/tcp":{}}|{"/data":{}}|SIGINT|core|["CMD-SHELL","true"]|2"#);
    let history = d.docker(&["history", "--no-trunc", "--format", "{{.CreatedBy}}", "app:v1"]).expect("history");
    assert!(history.lines().next().is_some_and(|l| l.contains("CMD [\"cat\",\"built.txt\"]")), "{history}");
    assert!(history.contains("|1 GREETING=hi /bin/sh -c echo"), "RUN records the build args it saw: {history}");
}

#[test]
fn the_cache_reuses_steps_until_a_source_changes() {
    let d = Daemon::with_busybox();
    let ctx = context(&[
        ("Dockerfile", "FROM busybox\nRUN echo one > /one\nCOPY a.txt /a.txt\nRUN cat /a.txt > /copy\n"),
        ("a.txt", "first\n"),
    ]);
    let (code, first, err) = build(&d, ctx.path(), &["-t", "cached"]);
    assert_eq!(code, Some(0), "{first}\n{err}");
    assert!(!first.contains("Using cache"), "{first}");
    let (code, second, err) = build(&d, ctx.path(), &["-t", "cached"]);
    assert_eq!(code, Some(0), "{second}\n{err}");
    assert_eq!(second.matches("Using cache").count(), 3, "{second}");
    let id = |out: &str| out.lines().find_map(|l| l.strip_prefix("Successfully built ")).map(str::to_string);
    assert_eq!(id(&first), id(&second), "the same image");
    // A changed source busts its step and those after it, not those before.
    std::fs::write(ctx.path().join("a.txt"), "second\n").expect("write");
    let (code, third, err) = build(&d, ctx.path(), &["-t", "cached"]);
    assert_eq!(code, Some(0), "{third}\n{err}");
    assert_eq!(third.matches("Using cache").count(), 1, "{third}");
    assert_eq!(d.docker(&["run", "--rm", "cached", "cat", "/copy"]).expect("run").trim(), "second");
    let (_, fourth, _) = build(&d, ctx.path(), &["--no-cache", "-t", "cached"]);
    assert!(!fourth.contains("Using cache"), "{fourth}");
}

#[test]
fn multi_stage_targets_and_dockerignore() {
    let d = Daemon::with_busybox();
    let ctx = context(&[
        (
            "Dockerfile",
            "FROM busybox AS builder\nRUN mkdir /out && echo artifact > /out/bin.txt && echo one > /out/a.md && echo two > /out/b.md\nFROM busybox AS unused\nRUN exit 1\nFROM busybox AS final\nCOPY --from=builder /out/bin.txt /bin.txt\nCOPY --from=builder /out/*.md /docs/\nCOPY . /ctx/\nCMD [\"cat\", \"/bin.txt\"]\nFROM final AS debug\nRUN echo debug > /debug\n",
        ),
        (".dockerignore", "*.log\nsecret/\n!secret/public.txt\n"),
        ("keep.txt", "k"),
        ("noise.log", "x"),
        ("secret/key", "s"),
        ("secret/public.txt", "p"),
    ]);
    let (code, out, err) = build(&d, ctx.path(), &["--target", "final", "-t", "ms"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(!out.contains("exit 1"), "an unneeded stage is not built: {out}");
    assert!(!out.contains("echo debug"), "stages after the target are not built");
    assert_eq!(d.docker(&["run", "--rm", "ms"]).expect("run").trim(), "artifact");
    let docs = d.docker(&["run", "--rm", "ms", "sh", "-c", "ls /docs; cat /docs/*"]).expect("wildcard from a stage");
    assert_eq!(docs.split_whitespace().collect::<Vec<_>>(), ["a.md", "b.md", "one", "two"]);
    let list = "for f in /ctx/* /ctx/.[a-z]* /ctx/secret/*; do test -f $f && echo $f; done";
    let files = d.docker(&["run", "--rm", "ms", "sh", "-c", list]).expect("list");
    let mut files: Vec<&str> = files.lines().collect();
    files.sort();
    assert_eq!(files, ["/ctx/.dockerignore", "/ctx/Dockerfile", "/ctx/keep.txt", "/ctx/secret/public.txt"]);
    let (code, _, err) = build(&d, ctx.path(), &["--target", "nope"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("failed to reach build target nope"), "{err}");
}

#[test]
fn failures_say_why_and_leave_nothing_behind() {
    let d = Daemon::with_busybox();
    let ctx = context(&[("Dockerfile", "FROM busybox\nRUN echo before-failing && exit 3\nRUN echo never\n")]);
    let (code, out, err) = build(&d, ctx.path(), &["-t", "broken", "--force-rm"]);
    assert_eq!(code, Some(1), "{out}\n{err}");
    assert!(out.contains("before-failing"), "the step's output comes first: {out}");
    assert!(
        err.contains("The command '/bin/sh -c echo before-failing && exit 3' returned a non-zero code: 3"),
        "{err}"
    );
    let left = d.docker(&["ps", "-aq"]).expect("ps");
    assert_eq!(left.trim(), "", "no container left with --force-rm");
    // Without it, as on dockerd, the failed step's container stays for a look.
    let (code, _, _) = build(&d, ctx.path(), &["-t", "broken"]);
    assert_eq!(code, Some(1));
    assert_eq!(d.docker(&["ps", "-aq"]).expect("ps").lines().count(), 1, "the failed step's container");
    assert!(d.out(&["image", "inspect", "broken"]).0 != Some(0), "no image tagged");
    // Escapes from the context are refused or stay inside it.
    let escape = context(&[("Dockerfile", "FROM busybox\nCOPY ../../etc/passwd /p\n")]);
    let (code, out, err) = build(&d, escape.path(), &["-t", "escape"]);
    assert_ne!(code, Some(0), "{out}");
    assert!(err.contains("not found in build context") || err.contains("forbidden path"), "{err}");
    let (code, _, err) = build(&d, ctx.path(), &["-f", "Nope.dockerfile"]);
    assert_ne!(code, Some(0));
    assert!(err.to_lowercase().contains("nope.dockerfile"), "{err}");
}

#[test]
fn the_raw_stream_is_dockerds() {
    let d = Daemon::with_busybox();
    let ctx = context(&[("Dockerfile", "FROM busybox\nRUN echo streamed\n")]);
    let tar =
        std::process::Command::new("tar").arg("-C").arg(ctx.path()).args(["-cf", "-", "."]).output().expect("tar");
    let (status, headers, body) =
        berth_tests::raw_http(&d.sock(), "POST", "/build?t=raw:1&rm=1", &tar.stdout).expect("post /build");
    assert_eq!(status, 200);
    assert!(headers.iter().any(|(k, v)| k == "content-type" && v == "application/json"), "{headers:?}");
    let text = String::from_utf8_lossy(&body).to_string();
    let lines: Vec<serde_json::Value> =
        text.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    assert_eq!(lines[0]["stream"], "Step 1/2 : FROM busybox\n");
    assert!(lines.iter().any(|l| l["stream"] == "streamed\n"), "{text}");
    let aux = lines.iter().find_map(|l| l["aux"]["ID"].as_str()).expect("aux ID");
    assert!(aux.starts_with("sha256:"));
    let built = format!("Successfully built {}\n", &aux[7..19]);
    assert!(lines.iter().any(|l| l["stream"] == built.as_str()), "{text}");
    assert!(lines.iter().any(|l| l["stream"] == "Successfully tagged raw:1\n"), "{text}");
    let (status, _, body) =
        berth_tests::raw_http(&d.sock(), "POST", "/build?remote=http://10.0.0.1/ctx.tar", b"").expect("post");
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    // Compressed contexts, as the API allows them.
    for (tool, tag) in [("gzip", "gz"), ("bzip2", "bz2"), ("xz", "xz")] {
        let mut child = std::process::Command::new(tool)
            .arg("-c")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect(tool);
        std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), &tar.stdout).expect("compress");
        let packed = child.wait_with_output().expect(tool).stdout;
        let (status, _, body) =
            berth_tests::raw_http(&d.sock(), "POST", &format!("/build?t=packed:{tag}"), &packed).expect("post /build");
        let text = String::from_utf8_lossy(&body);
        assert_eq!(status, 200, "{text}");
        assert!(text.contains("Successfully tagged packed:"), "{tool}: {text}");
    }
}

#[test]
fn add_onbuild_scratch_shell_and_copy_from_an_image() {
    let d = Daemon::with_busybox();
    // A local tar that ADD extracts (gzip), and one COPY keeps as a file.
    let inner = tempfile::tempdir().expect("tmp");
    std::fs::create_dir_all(inner.path().join("pkg")).expect("mkdir");
    std::fs::write(inner.path().join("pkg/tool.sh"), "echo tool\n").expect("write");
    let ctx = context(&[(
        "Dockerfile",
        "FROM busybox AS base\nONBUILD RUN echo triggered > /onbuild\nSHELL [\"/bin/sh\", \"-e\", \"-c\"]\nRUN echo shell-ok\nADD bundle.tar.gz /opt/\nADD bundle.tar.xz /opt-xz/\nCOPY bundle.tar.gz /keep/\nCOPY --chown=nobody:nogroup --from=busybox /etc/passwd /from-image/passwd\n",
    )]);
    let tgz = ctx.path().join("bundle.tar.gz");
    let made = std::process::Command::new("tar").arg("-czf").arg(&tgz).arg("-C").arg(inner.path()).arg("pkg").status();
    assert!(made.expect("tar").success());
    let txz = ctx.path().join("bundle.tar.xz");
    let made = std::process::Command::new("tar").arg("-cJf").arg(&txz).arg("-C").arg(inner.path()).arg("pkg").status();
    assert!(made.expect("tar").success());
    let (code, out, err) = build(&d, ctx.path(), &["-t", "base:1"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("shell-ok"), "{out}");
    let got = d
        .docker(&["run", "--rm", "base:1", "sh", "-c",
            "cat /opt/pkg/tool.sh /opt-xz/pkg/tool.sh; test -f /keep/bundle.tar.gz && echo kept; stat -c '%U' /from-image/passwd; test -e /onbuild || echo no-trigger-yet"])
        .expect("run");
    assert_eq!(got.trim(), "echo tool\necho tool\nkept\nnobody\nno-trigger-yet");
    // A child image runs the trigger.
    let child = context(&[("Dockerfile", "FROM base:1\nRUN cat /onbuild\n")]);
    let (code, out, err) = build(&d, child.path(), &["-t", "child:1"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("# Executing 1 build trigger") && out.contains("triggered"), "{out}");
    let onbuild = d.docker(&["image", "inspect", "-f", "{{json .Config.OnBuild}}", "child:1"]).expect("inspect");
    assert_eq!(onbuild.trim(), "null", "triggers do not pass on");
    // FROM scratch with a static binary.
    let scratch = context(&[(
        "Dockerfile",
        "FROM scratch\nCOPY busybox /bin/busybox\nCMD [\"/bin/busybox\", \"echo\", \"from scratch\"]\n",
    )]);
    std::fs::copy("/bin/busybox", scratch.path().join("busybox")).expect("copy busybox");
    let (code, out, err) = build(&d, scratch.path(), &["-t", "tiny"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert_eq!(d.docker(&["run", "--rm", "tiny"]).expect("run").trim(), "from scratch");
    let layers = d.docker(&["image", "inspect", "-f", "{{len .RootFS.Layers}}", "tiny"]).expect("inspect");
    assert_eq!(layers.trim(), "1");
}

#[test]
fn cache_from_images_that_came_without_their_build() {
    let dockerfile = "FROM busybox\nRUN cat /proc/sys/kernel/random/uuid > /stamp\nENV MODE=cached\nCOPY a.txt /a.txt\nRUN cat /a.txt /stamp > /both\n";
    let ctx = context(&[("Dockerfile", dockerfile), ("a.txt", "first\n")]);
    let a = Daemon::with_busybox();
    let (code, out, err) = build(&a, ctx.path(), &["-t", "src:v1"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    let stamp = a.docker(&["run", "--rm", "src:v1", "cat", "/stamp"]).expect("stamp");
    let saved = a.docker_out(&["save", "src:v1"]).expect("save").stdout;

    // Another daemon gets the image as a registry would give it: no parents, no build.
    let b = Daemon::with_busybox();
    b.load(&saved).expect("load");
    let (code, cold, err) = build(&b, ctx.path(), &["-t", "again"]);
    assert_eq!(code, Some(0), "{cold}\n{err}");
    assert!(!cold.contains("Using cache"), "no local cache to use: {cold}");
    let (code, warm, err) = build(&b, ctx.path(), &["--cache-from", "src:v1", "-t", "warm"]);
    assert_eq!(code, Some(0), "{warm}\n{err}");
    assert_eq!(warm.matches("Using cache").count(), 4, "{warm}");
    assert!(!warm.contains("Running in"), "nothing ran: {warm}");
    assert_eq!(b.docker(&["run", "--rm", "warm", "cat", "/stamp"]).expect("run"), stamp, "the cached layer");
    assert_eq!(b.docker(&["run", "--rm", "warm", "sh", "-c", "echo $MODE"]).expect("env").trim(), "cached");

    // A changed source: the steps before it come from the cache, the rest run.
    std::fs::write(ctx.path().join("a.txt"), "second\n").expect("write");
    let (code, changed, err) = build(&b, ctx.path(), &["--cache-from", "src:v1", "-t", "changed"]);
    assert_eq!(code, Some(0), "{changed}\n{err}");
    assert_eq!(changed.matches("Using cache").count(), 2, "{changed}");
    let both = b.docker(&["run", "--rm", "changed", "cat", "/both"]).expect("run");
    assert_eq!(both, format!("second\n{stamp}"));
}

#[test]
fn intermediate_images_hide_and_go_with_their_image() {
    let d = Daemon::with_busybox();
    let ctx = context(&[("Dockerfile", "FROM busybox\nENV A=1\nRUN echo x > /x\nCMD [\"cat\", \"/x\"]\n")]);
    let (code, out, err) = build(&d, ctx.path(), &["-t", "layered"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    let top = d.docker(&["images", "-q"]).expect("images");
    assert_eq!(top.lines().count(), 2, "busybox and layered only: {top}");
    let all = d.docker(&["images", "-aq"]).expect("images -a");
    assert_eq!(all.lines().count(), 4, "with the two intermediate images: {all}");
    let dangling = d.docker(&["images", "-q", "--filter", "dangling=true"]).expect("dangling");
    assert_eq!(dangling.trim(), "", "intermediate images are not dangling");
    d.docker(&["image", "prune", "-f"]).expect("prune");
    assert_eq!(d.docker(&["images", "-aq"]).expect("images -a").lines().count(), 4, "prune keeps the build's chain");
    // They are the build cache: system df lists them there, not as images.
    let df = d.docker(&["system", "df", "--format", "{{.Type}}={{.TotalCount}}"]).expect("system df");
    assert!(df.contains("Images=2") && df.contains("Build Cache=2"), "{df}");
    // A container made from an intermediate image keeps it when its child goes.
    let chain = d.docker(&["history", "-q", "layered"]).expect("history");
    let chain: Vec<&str> = chain.lines().filter(|l| !l.contains("missing")).collect();
    assert!(chain.len() >= 3, "{chain:?}");
    d.docker(&["create", "--name", "pinned", chain[2]]).expect("create from the first step's image");
    let removed = d.docker(&["rmi", "layered"]).expect("rmi");
    assert!(removed.contains(chain[1]) && !removed.contains(chain[2]), "{removed}");
    assert_eq!(d.docker(&["images", "-aq"]).expect("images -a").lines().count(), 2, "busybox and the pinned step");
    d.docker(&["rm", "pinned"]).expect("rm");
    d.docker(&["image", "prune", "-f"]).expect("prune");
    assert_eq!(d.docker(&["images", "-aq"]).expect("images -a").lines().count(), 1, "only busybox is left");
}

#[test]
fn builder_prune_drops_the_cache_and_keeps_the_images() {
    let d = Daemon::with_busybox();
    let ctx = context(&[("Dockerfile", "FROM busybox\nENV A=1\nRUN echo x > /x\nCMD [\"cat\", \"/x\"]\n")]);
    let (code, out, err) = build(&d, ctx.path(), &["-t", "kept"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    let pruned = d.docker(&["builder", "prune", "-f"]).expect("builder prune");
    assert!(pruned.contains("Total reclaimed space"), "{pruned}");
    assert_eq!(pruned.matches("sha256:").count(), 2, "the two intermediate images: {pruned}");
    assert_eq!(d.docker(&["images", "-aq"]).expect("images -a").lines().count(), 2, "busybox and kept");
    let df = d.docker(&["system", "df", "--format", "{{.Type}}={{.TotalCount}}"]).expect("system df");
    assert!(df.contains("Build Cache=0"), "{df}");
    assert_eq!(d.docker(&["run", "--rm", "kept"]).expect("run").trim(), "x");
    let parent = d.docker(&["image", "inspect", "-f", "{{.Parent}}", "kept"]).expect("inspect");
    assert_eq!(parent.trim(), "", "no link to an image that is gone");
    let (code, again, err) = build(&d, ctx.path(), &["-t", "kept"]);
    assert_eq!(code, Some(0), "{again}\n{err}");
    assert!(!again.contains("Using cache"), "the cache is gone: {again}");
    // Nothing left to prune; an invalid filter is refused.
    let pruned = d.docker(&["builder", "prune", "-f", "--filter", "until=1h"]).expect("builder prune until");
    assert!(pruned.contains("Total reclaimed space"), "{pruned}");
    let (code, _, err) = d.out(&["builder", "prune", "-f", "--filter", "bogus=1"]);
    assert_ne!(code, Some(0), "{err}");
}

#[tokio::test]
async fn bollard_builds_and_reads_the_stream() {
    use bollard::query_parameters::BuildImageOptionsBuilder;
    use futures::StreamExt;
    let d = Daemon::with_busybox();
    let docker = bollard::Docker::connect_with_unix(&d.host, 120, bollard::API_DEFAULT_VERSION).expect("bollard");
    let context = |dockerfile: &str| {
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(dockerfile.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, "Dockerfile", dockerfile.as_bytes()).expect("append");
        tar.into_inner().expect("tar")
    };
    let args = std::collections::HashMap::from([("WHO", "bollard")]);
    let opts = BuildImageOptionsBuilder::default().t("bollard:built").buildargs(&args).rm(true).build();
    let body = context("FROM busybox\nARG WHO\nRUN echo hello $WHO\n");
    let mut stream = docker.build_image(opts, None, Some(bollard::body_full(body.into())));
    let (mut text, mut aux) = (String::new(), None);
    while let Some(item) = stream.next().await {
        let info = item.expect("a build message");
        text.push_str(info.stream.as_deref().unwrap_or(""));
        if let Some(a) = info.aux {
            aux = a.id;
        }
    }
    assert!(text.contains("hello bollard") && text.contains("Successfully tagged bollard:built"), "{text}");
    assert!(aux.as_deref().is_some_and(|id| id.starts_with("sha256:")), "{aux:?}");
    // A failing step ends the stream with its error.
    let opts = BuildImageOptionsBuilder::default().t("bollard:broken").build();
    let mut stream =
        docker.build_image(opts, None, Some(bollard::body_full(context("FROM busybox\nRUN exit 7\n").into())));
    let mut failure = None;
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) if info.error.is_some() => failure = info.error,
            Ok(_) => {}
            Err(e) => failure = Some(e.to_string()),
        }
    }
    assert!(failure.as_deref().is_some_and(|e| e.contains("returned a non-zero code: 7")), "{failure:?}");
}

#[test]
fn a_dockerfile_outside_the_context() {
    // `-f` names a file outside the context: the CLI adds it to the context
    // tar under another name, and that tar ends without padding or end blocks.
    let d = Daemon::with_busybox();
    let ctx = context(&[("data.txt", "from the context\n"), (".dockerignore", "*.log\n"), ("noise.log", "x")]);
    let outside = tempfile::tempdir().expect("tmp");
    let file = outside.path().join("Build.dockerfile");
    std::fs::write(&file, "FROM busybox\nCOPY . /ctx/\nCMD [\"cat\", \"/ctx/data.txt\"]\n").expect("dockerfile");
    let (code, out, err) = build(&d, ctx.path(), &["-f", &file.display().to_string(), "-t", "outside"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert_eq!(d.docker(&["run", "--rm", "outside"]).expect("run"), "from the context\n");
    let files = d.docker(&["run", "--rm", "outside", "ls", "-A", "/ctx"]).expect("ls");
    assert!(!files.contains("noise.log"), ".dockerignore still applies: {files}");
}
