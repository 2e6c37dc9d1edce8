"""A live agent's /metrics passes ``promtool check metrics`` (camelCase node_* names excepted)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from daemon_harness import Agent, example_config, write_config

# node_exporter's own names (node_memory_MemTotal_bytes, ...) are the compatibility target
ALLOWED = re.compile(r"^node_\w+ metric names should be written in 'snake_case' not 'camelCase'$")


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool not installed (apt-get install prometheus)"
)
def test_live_metrics_pass_promtool(tmp_path: Path) -> None:
    cfg = example_config(tmp_path, schedule={"interval": "1h", "checks": {}})
    a = Agent(write_config(tmp_path / "c.yaml", cfg), cfg)
    try:
        a.wait_ready()
        status, body, _ = a.get("/metrics")
    finally:
        a.stop()
    assert status == 200 and body
    r = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True, timeout=60)
    findings = [ln for ln in (r.stdout + r.stderr).decode().splitlines() if ln.strip()]
    other = [f for f in findings if not ALLOWED.match(f)]
    assert other == [], "promtool findings:\n" + "\n".join(other)
    assert r.returncode in (0, 3) and (r.returncode == 0) == (not findings)
