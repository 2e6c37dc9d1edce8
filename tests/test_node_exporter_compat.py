"""Our host collectors against the real node_exporter, and our exposition against promtool.

node_exporter (Debian's prometheus-node-exporter) runs on a free loopback
port; both expositions are parsed with prometheus_client's parser and
compared: same types and label names for every shared metric name, equal
sizes, counters read between two node_exporter scrapes.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from collector.exposition import render
from collector.model import Sample
from collector.registry import Context, discover
from collector.runner import Job, Runner
from tests.loopback import free_port

HOST_COLLECTORS = (
    "cpu", "diskstats", "filesystem", "hwmon", "load", "meminfo", "netdev", "stat", "time", "timex", "uname",
    "vmstat",
)
# the node_exporter collectors that cover the same ground (netclass: link state)
PEER_COLLECTORS = (
    "cpu", "diskstats", "filesystem", "hwmon", "loadavg", "meminfo", "netdev", "netclass", "stat", "time",
    "timex", "uname", "vmstat",
)


def node_exporter_binary() -> str | None:
    path = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
    if path:
        return path
    try:
        files = subprocess.run(["dpkg", "-L", "prometheus-node-exporter"], capture_output=True, text=True,
                               timeout=10).stdout.split()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return next((f for f in files if f.endswith("/prometheus-node-exporter") and Path(f).is_file()), None)


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as r:
        return str(r.read().decode())


@pytest.fixture(scope="module")
def node_exporter() -> Iterator[str]:
    binary = node_exporter_binary()
    if binary is None:
        pytest.skip("prometheus-node-exporter is not installed")
    port = free_port()
    args = [binary, f"--web.listen-address=127.0.0.1:{port}", "--collector.disable-defaults",
            # Debian's build excludes lo by default; upstream (and we) do not
            "--collector.netdev.device-exclude=^$"]
    args += [f"--collector.{c}" for c in PEER_COLLECTORS]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        for _ in range(100):  # up to ~10 s to start
            if proc.poll() is not None:
                err = proc.stderr.read().decode()[-500:] if proc.stderr else ""
                pytest.fail(f"node_exporter exited: {err}")
            try:
                scrape(url)
                break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("node_exporter did not answer within 10 s")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def our_samples() -> list[Sample]:
    regs = discover()
    jobs = [Job(n, regs[n].factory(regs[n].config()), regs[n].config(), 15, 10) for n in HOST_COLLECTORS]
    results = Runner(jobs, lambda job: Context(config=job.section)).run()
    failed = {r.name: r.error for r in results if not r.success}
    assert not failed
    return [s for r in results for s in r.samples]


def families(text: str) -> dict[str, tuple[str, set[frozenset[str]], dict[tuple, float]]]:
    """sample name -> (family type, label-name sets, {sorted labels: value})."""
    out: dict[str, tuple[str, set[frozenset[str]], dict[tuple, float]]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            _, labelsets, vals = out.setdefault(s.name, (fam.type, set(), {}))
            labelsets.add(frozenset(s.labels))
            vals[tuple(sorted(s.labels.items()))] = s.value
    return out


@pytest.fixture(scope="module")
def compared(node_exporter):
    before = families(scrape(node_exporter))
    ours = families(render(our_samples()))
    after = families(scrape(node_exporter))
    return before, ours, after


def test_shared_metrics_have_same_type_and_label_names(compared):
    peer, ours, _ = compared
    shared = sorted(set(ours) & set(peer))
    assert len(shared) > 60, f"too few shared names: {shared}"
    mismatched = {
        name: (ours[name][:2], peer[name][:2])
        for name in shared
        if ours[name][0] != peer[name][0] or ours[name][1] != peer[name][1]
    }
    assert mismatched == {}


def test_core_node_exporter_names_are_all_exported(compared):
    _, ours, _ = compared
    expected = {
        "node_cpu_seconds_total", "node_memory_MemTotal_bytes", "node_memory_MemAvailable_bytes",
        "node_filesystem_avail_bytes", "node_disk_read_bytes_total", "node_network_receive_bytes_total",
        "node_load1", "node_boot_time_seconds", "node_time_seconds", "node_timex_sync_status",
        "node_procs_running", "node_context_switches_total", "node_uname_info",
    }
    assert expected - set(ours) == set()


def test_sizes_are_equal(compared):
    peer, ours, _ = compared
    assert ours["node_memory_MemTotal_bytes"][2] == peer["node_memory_MemTotal_bytes"][2]
    root = {k: v for k, v in ours["node_filesystem_size_bytes"][2].items() if ("mountpoint", "/") in k}
    assert root, "no filesystem mounted at /"
    assert root == {k: v for k, v in peer["node_filesystem_size_bytes"][2].items() if k in root}
    assert ours["node_boot_time_seconds"][2] == peer["node_boot_time_seconds"][2]


def total(fam, **match) -> float:
    return sum(v for k, v in fam[2].items() if all((lk, lv) in k for lk, lv in match.items()))


@pytest.mark.parametrize(("name", "labels", "slack"), [
    ("node_cpu_seconds_total", {}, 0.05),  # /proc/stat ticks are 10 ms per CPU
    ("node_network_receive_bytes_total", {"device": "lo"}, 0),
    ("node_context_switches_total", {}, 0),
    ("node_forks_total", {}, 0),
    ("node_vmstat_pgfault", {}, 0),
])
def test_counters_agree_with_node_exporter(compared, name, labels, slack):
    """Read between two node_exporter scrapes, our counter lies between its two values."""
    before, ours, after = compared
    low, mine, high = (total(f[name], **labels) for f in (before, ours, after))
    assert low - slack <= mine <= high + slack


def test_exposition_passes_promtool_check_metrics(tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (Debian package prometheus) is not installed")
    text = render(our_samples())
    proc = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True,
                          timeout=30)
    # node_exporter's own names (node_memory_MemTotal_bytes) draw camelCase
    # warnings: they are the compatibility target. Anything else is a finding.
    camel = re.compile(r"^\S+ metric names should be written in 'snake_case' not 'camelCase'$")
    lines = (proc.stdout + "\n" + proc.stderr).splitlines()
    findings = [ln for ln in lines if ln.strip() and not camel.match(ln)]
    assert findings == []
    assert proc.returncode in (0, 3), proc.returncode  # 3: warnings only
