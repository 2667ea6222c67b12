"""A three-service project driven by Debian's docker-compose 1.29.2: a database
with a healthcheck, an API that waits for it (`condition: service_healthy`)
on two networks, a web front built from a Dockerfile (`build:` with args) with
a published port, aliases and a named volume; then ps, logs, exec, run --rm,
pause/unpause, top, restart, scale, stop/start, kill -s and down -v, each checked by what it
changed."""

import os
import shutil
import subprocess
import time
import urllib.request

import pytest

from conftest import free_port

COMPOSE = shutil.which("docker-compose")

PROJECT = """
services:
  db:
    image: busybox
    command: sh -c "mkdir -p /www && echo db-ok > /www/index.html && echo stored > /data/db.txt && httpd -f -p 5432 -h /www"
    healthcheck:
      test: ["CMD", "wget", "-q", "-O-", "http://127.0.0.1:5432/"]
      interval: 1s
      retries: 30
    networks:
      back:
        aliases: [database]
    volumes: [data:/data]
  api:
    image: busybox
    command: sh -c "mkdir -p /www && wget -q -O /www/index.html http://database:5432/ && httpd -f -p 8000 -h /www"
    depends_on:
      db:
        condition: service_healthy
    networks: [back, front]
    volumes: [data:/data]
  web:
    build:
      context: ./web
      args:
        GREETING: built-by-compose
    image: bp-web:local
    command: sh -c "mkdir -p /www; until wget -q -O /www/index.html http://api:8000/; do sleep 0.2; done; echo web-up; cat /greeting; httpd -f -p 80 -h /www"
    depends_on: [api]
    ports: ["127.0.0.1:${WEB_PORT}:80"]
    networks: [front]
networks:
  front: {}
  back: {}
volumes:
  data: {}
"""


@pytest.mark.skipif(COMPOSE is None, reason="make test-deps installs docker-compose")
def test_a_compose_project_comes_up_and_goes(berth, tmp_path):
    (tmp_path / "docker-compose.yml").write_text(PROJECT)
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "Dockerfile").write_text("FROM busybox\nARG GREETING\nRUN echo $GREETING > /greeting\n")
    port = free_port()
    env = dict(os.environ, DOCKER_HOST=berth.url, WEB_PORT=str(port), COMPOSE_PROJECT_NAME="bp")

    def compose(*args, check=True):
        r = subprocess.run([COMPOSE, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
        if check:
            assert r.returncode == 0, f"docker-compose {' '.join(args)}:\n{r.stdout}\n{r.stderr}\n{berth.logs()}"
        return r

    # Compose 1.29 builds with the classic builder through POST /build.
    built = compose("build", "web")
    assert "Successfully tagged bp-web:local" in built.stdout + built.stderr, built.stdout + built.stderr
    def page():
        for _ in range(150):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                    return r.read().decode()
            except OSError:
                time.sleep(0.1)
        return None

    compose("up", "-d")
    try:
        assert page() == "db-ok\n", "web got the page from api, which got it from db by its alias"
        ps = compose("ps").stdout
        assert "bp_db_1" in ps and "(healthy)" in ps and "bp_api_1" in ps and f"127.0.0.1:{port}->80/tcp" in ps, ps
        web_logs = compose("logs", "web").stdout
        assert "web-up" in web_logs and "built-by-compose" in web_logs, web_logs
        assert compose("exec", "-T", "api", "cat", "/data/db.txt").stdout == "stored\n", "the volume is shared"
        assert compose("run", "--rm", "-T", "api", "echo", "one-off").stdout.strip().endswith("one-off")
        compose("pause", "db")
        assert "Paused" in compose("ps", "db").stdout
        compose("unpause", "db")
        assert "httpd" in compose("top", "db").stdout
        compose("restart", "-t", "1", "api")
        compose("up", "-d", "--scale", "api=2", "--no-recreate")
        assert "bp_api_2" in compose("ps").stdout
        # A second `up` changes nothing: the networks are as compose made them.
        second = compose("up", "-d", "--scale", "api=2")
        assert "needs to be recreated" not in second.stderr, second.stderr
        compose("stop", "-t", "1", "web")
        assert "Exit" in compose("ps", "web").stdout
        compose("start", "web")
        assert page() == "db-ok\n", "web serves again after start"
        compose("kill", "-s", "SIGKILL", "web")
        assert "Exit 137" in compose("ps", "web").stdout
    finally:
        compose("down", "-v", "-t", "1", check=False)
    left = berth.client.containers.list(all=True, filters={"label": "com.docker.compose.project=bp"})
    assert left == [], left
    assert [v for v in berth.client.volumes.list() if v.name == "bp_data"] == []
    assert [n for n in berth.client.networks.list() if n.name.startswith("bp_")] == []
