"""A Berth daemon on a temporary root for each test module, as the Rust
harness (tests/src/lib.rs) starts one: berthd from BERTH_BIN_DIR, its own
bridge, busybox:latest loaded (a `docker save` tarball of Debian's static
busybox), and everything it made removed afterwards, even when a test failed."""

import hashlib
import io
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
import time

import docker
import pytest

BIN_DIR = os.environ.get("BERTH_BIN_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "target", "debug"))
APPLETS = ["sh", "echo", "cat", "sleep", "ls", "id", "wc", "tr", "env", "true", "false", "grep", "mkdir", "rm",
           "touch", "stat", "ps", "hostname", "httpd", "nc", "wget", "nslookup", "ping", "seq", "test", "head"]


def busybox_save_tar():
    """A `docker save` tarball of busybox:latest."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as t:
        for d in ["bin", "etc", "tmp", "root"]:
            ti = tarfile.TarInfo(d)
            ti.type, ti.mode = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755
            t.addfile(ti)
        with open("/bin/busybox", "rb") as f:
            data = f.read()
        ti = tarfile.TarInfo("bin/busybox")
        ti.size, ti.mode = len(data), 0o755
        t.addfile(ti, io.BytesIO(data))
        for a in APPLETS:
            ti = tarfile.TarInfo("bin/" + a)
            ti.type, ti.linkname = tarfile.SYMTYPE, "busybox"
            t.addfile(ti)
        for name, text in [("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n"),
                           ("etc/group", "root:x:0:\nnogroup:x:65534:\n")]:
            ti = tarfile.TarInfo(name)
            ti.size = len(text)
            t.addfile(ti, io.BytesIO(text.encode()))
    layer = layer.getvalue()
    diff = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["sh"], "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [diff]},
        "history": [{"created_by": "busybox-static"}],
    }).encode()
    cid = hashlib.sha256(config).hexdigest()
    manifest = json.dumps([{"Config": cid + ".json", "RepoTags": ["busybox:latest"], "Layers": ["l/layer.tar"]}])
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as t:
        for name, data in [(cid + ".json", config), ("l/layer.tar", layer), ("manifest.json", manifest.encode())]:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
    return out.getvalue()


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Berth:
    def __init__(self, extra=()):
        self.root = tempfile.mkdtemp(prefix="berth-py-")
        self.sock = os.path.join(self.root, "berth.sock")
        self.url = "unix://" + self.sock
        # bt + 8 hex: the Rust harness sweeps such bridges when no live process names them.
        self.bridge = "bt" + secrets.token_hex(4)
        self.log = open(os.path.join(self.root, "berthd.log"), "wb")
        self.proc = subprocess.Popen(
            [os.path.join(BIN_DIR, "berthd"), "--data-root", os.path.join(self.root, "data"),
             "--exec-root", os.path.join(self.root, "exec"), "--config-file", "/dev/null",
             "-H", self.url, "--bridge", self.bridge, *extra],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        deadline = time.time() + 30
        while True:
            try:
                s = socket.socket(socket.AF_UNIX)
                s.connect(self.sock)
                s.close()
                break
            except OSError:
                if self.proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError("berthd did not start: " + self.logs())
                time.sleep(0.02)
        self.client = docker.DockerClient(base_url=self.url, timeout=120)

    def logs(self):
        with open(os.path.join(self.root, "berthd.log"), "rb") as f:
            return f.read().decode(errors="replace")[-4000:]

    def close(self):
        try:
            for c in self.client.containers.list(all=True):
                c.remove(force=True)
            self.client.networks.prune()
        except Exception:
            pass
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        subprocess.run(["ip", "link", "delete", self.bridge], stderr=subprocess.DEVNULL)
        subprocess.run(["nft", "delete", "table", "inet", "berth_" + self.bridge], stderr=subprocess.DEVNULL)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def berth():
    b = Berth()
    try:
        b.client.images.load(busybox_save_tar())
        yield b
    finally:
        b.close()
