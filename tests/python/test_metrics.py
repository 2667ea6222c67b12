"""berthd's /metrics (--metrics-addr) read by the Prometheus project's own
Python client parser, and its counters moving with the requests made."""

import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from conftest import Berth, busybox_save_tar, free_port


def scrape(addr):
    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=10) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = r.read().decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(families, name, sample, **labels):
    for s in families[name].samples:
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    return 0.0


def test_metrics_parse_with_the_prometheus_client_and_move():
    addr = f"127.0.0.1:{free_port()}"
    b = Berth(["--metrics-addr", addr])
    try:
        b.client.images.load(busybox_save_tar())
        before = scrape(addr)
        assert before["berth_api_requests"].type == "counter"
        assert before["berth_api_request_duration_seconds"].type == "histogram"
        assert before["engine_daemon_container_states_containers"].type == "gauge"
        ps = dict(sample="berth_api_requests_total", method="GET", route="/containers/json", status="200")
        start = dict(sample="berth_api_requests_total", method="POST", route="/containers/{id}/start", status="204")
        n_ps = value(before, "berth_api_requests", **ps)
        for _ in range(3):
            b.client.containers.list(all=True)
        b.client.containers.run("busybox", ["true"], remove=True)
        b.client.containers.run("busybox", ["sleep", "60"], detach=True, name="up")
        after = scrape(addr)
        assert value(after, "berth_api_requests", **ps) == n_ps + 3
        assert value(after, "berth_api_requests", **start) == value(before, "berth_api_requests", **start) + 2
        assert value(after, "berth_shim_starts", "berth_shim_starts_total", result="ok") >= 2
        assert value(after, "engine_daemon_container_states_containers",
                     "engine_daemon_container_states_containers", state="running") == 1
        buckets = [s for s in after["berth_api_request_duration_seconds"].samples
                   if s.name.endswith("_bucket") and s.labels.get("route") == "/containers/json"]
        assert buckets and buckets[-1].labels["le"] == "+Inf" and buckets[-1].value >= 3
    finally:
        b.close()
