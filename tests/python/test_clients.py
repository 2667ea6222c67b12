"""docker-py and testcontainers against Berth, as they drive dockerd: the
behaviours the docker CLI hides (exec without a stream, the networks of a
created container, streamed responses read line by line, options echoed as
given), each checked by its result, not its exit status."""

import io
import tarfile
import time
import urllib.request

import docker

from conftest import busybox_save_tar


def context(files):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, text in files.items():
            data = text.encode()
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
    buf.seek(0)
    return buf


def http_get(port, path="/", tries=100):
    last = None
    for _ in range(tries):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
                return r.read().decode()
        except OSError as e:
            last = e
            time.sleep(0.1)
    raise AssertionError(f"no answer on port {port}: {last}")


def test_exec_without_a_stream_returns_all_output(berth):
    c = berth.client.containers.run("busybox", "sleep 300", detach=True)
    try:
        # Fast commands, many times: their output must not be lost with the 101 answer.
        for _ in range(25):
            assert c.exec_run("echo hello") == (0, b"hello\n")
            assert c.exec_run("sh -c 'echo out; echo err >&2; exit 3'", demux=True) == (3, (b"out\n", b"err\n"))
        assert c.exec_run("echo tty", tty=True).output == b"tty\r\n"
        assert c.exec_run("id -u", user="1234").output == b"1234\n"
    finally:
        c.remove(force=True)


def test_streamed_logs_and_images_load_read_line_by_line(berth):
    c = berth.client.containers.run("busybox", "sh -c 'echo one; sleep 0.3; echo two'", detach=True)
    assert b"".join(c.logs(stream=True, follow=True)) == b"one\ntwo\n"
    assert c.wait()["StatusCode"] == 0
    c.remove()
    # load streams JSON lines; docker-py reads them as separate documents.
    loaded = berth.client.images.load(busybox_save_tar())
    assert [i.tags for i in loaded] == [["busybox:latest"]]


def test_a_created_container_is_on_its_networks_and_takes_aliases(berth):
    net = berth.client.networks.create("pyfront", labels={"t": "py"})
    try:
        created = berth.client.containers.create("busybox", "sleep 300", network="pyfront", name="pyweb")
        attrs = berth.client.api.inspect_container(created.id)
        on = attrs["NetworkSettings"]["Networks"]["pyfront"]
        assert on["NetworkID"] == net.id and on["IPAddress"] == ""
        # Compose's dance: disconnect the created container, connect it with aliases.
        net.disconnect(created)
        assert "pyfront" not in berth.client.api.inspect_container(created.id)["NetworkSettings"]["Networks"]
        net.connect(created, aliases=["web"])
        created.start()
        client = berth.client.containers.run("busybox", "sleep 300", detach=True, network="pyfront")
        try:
            ip = berth.client.api.inspect_container(created.id)["NetworkSettings"]["Networks"]["pyfront"]["IPAddress"]
            assert ip
            out = client.exec_run("nslookup web 127.0.0.11").output.decode()
            assert ip in out, out
        finally:
            client.remove(force=True)
            created.remove(force=True)
    finally:
        net.remove()


def test_network_options_are_echoed_as_given(berth):
    plain = berth.client.networks.create("pyplain")
    given = berth.client.networks.create("pyopts", options={"com.docker.network.bridge.enable_icc": "true"})
    try:
        assert berth.client.api.inspect_network(plain.id)["Options"] == {}
        assert berth.client.api.inspect_network(given.id)["Options"] == {"com.docker.network.bridge.enable_icc": "true"}
    finally:
        plain.remove()
        given.remove()


def test_ipv6_networks_as_docker_py_makes_them(berth):
    ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet="fd42:71::/64")])
    net = berth.client.networks.create("pysix", enable_ipv6=True, ipam=ipam)
    try:
        info = berth.client.api.inspect_network(net.id)
        assert info["EnableIPv6"] is True
        assert "fd42:71::/64" in [p["Subnet"] for p in info["IPAM"]["Config"]]
        srv = berth.client.containers.run("busybox", ["sleep", "300"], detach=True, network="pysix", name="pysrv")
        try:
            srv.reload()
            ep = srv.attrs["NetworkSettings"]["Networks"]["pysix"]
            assert ep["GlobalIPv6Address"] == "fd42:71::2" and ep["GlobalIPv6PrefixLen"] == 64
            out = berth.client.containers.run("busybox", ["nslookup", "-type=aaaa", "pysrv"], network="pysix",
                                              remove=True)
            assert b"fd42:71::2" in out
        finally:
            srv.remove(force=True)
    finally:
        net.remove()


def test_ports_files_volumes_and_builds(berth):
    image, logs = berth.client.images.build(
        fileobj=context({"Dockerfile": "FROM busybox\nRUN mkdir /www && echo built-by-py > /www/index.html\n"
                                       "CMD [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n"}),
        custom_context=True, tag="py:web", rm=True)
    assert "py:web" in image.tags
    assert any("Successfully built" in (entry.get("stream") or "") for entry in logs)
    web = berth.client.containers.run("py:web", detach=True, ports={"8080/tcp": None})
    try:
        web.reload()
        port = web.ports["8080/tcp"][0]["HostPort"]
        assert http_get(port) == "built-by-py\n"
        assert web.put_archive("/www", context({"extra.html": "copied in\n"}).getvalue())
        assert http_get(port, "/extra.html") == "copied in\n"
        bits, stat = web.get_archive("/www/index.html")
        assert stat["name"] == "index.html" and stat["size"] == len("built-by-py\n")
        got = tarfile.open(fileobj=io.BytesIO(b"".join(bits))).extractfile("index.html").read()
        assert got == b"built-by-py\n"
    finally:
        web.remove(force=True)
    # A volume given no name is anonymous (dockerd 23+): a plain prune takes it.
    anon = berth.client.volumes.create()
    assert "com.docker.volume.anonymous" in (anon.attrs.get("Labels") or {})
    assert anon.name in berth.client.volumes.prune()["VolumesDeleted"]
    vol = berth.client.volumes.create("pydata")
    try:
        berth.client.containers.run("busybox", "sh -c 'echo kept > /v/f'", volumes={"pydata": {"bind": "/v"}}, remove=True)
        out = berth.client.containers.run("busybox", "cat /v/f", volumes={"pydata": {"bind": "/v", "mode": "ro"}},
                                          remove=True)
        assert out == b"kept\n"
    finally:
        vol.remove()


def test_testcontainers_starts_reads_ports_and_logs(berth, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", berth.url)
    # Its reaper image comes from Docker Hub, which tests here cannot reach.
    monkeypatch.setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.wait_strategies import LogMessageWaitStrategy

    cmd = "sh -c 'mkdir -p /www && echo from-testcontainers > /www/index.html && echo ready && httpd -f -p 8080 -h /www'"
    container = DockerContainer("busybox").with_command(cmd).with_exposed_ports(8080)
    with container.waiting_for(LogMessageWaitStrategy("ready")) as c:
        port = c.get_exposed_port(8080)
        assert http_get(port) == "from-testcontainers\n"
        assert c.exec("echo inside").output == b"inside\n"
        cid = c.get_wrapped_container().id
    assert berth.client.containers.list(all=True, filters={"id": cid}) == [], "removed when the block ends"
