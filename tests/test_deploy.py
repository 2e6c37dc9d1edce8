"""deploy/opsagent.service: systemd accepts every line, and the hardening stays in place."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parent.parent / "deploy" / "opsagent.service"


def directives() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_accepts_every_line_of_the_unit(tmp_path: Path) -> None:
    # a misspelt directive is only a warning to systemd, and the protection it
    # was meant to give silently does not exist: any finding fails the test
    exe = Path(sys.executable).with_name("opsagent")
    if not exe.exists():
        pytest.skip("opsagent is not installed in this environment (pip install -e .)")
    unit = tmp_path / "opsagent.service"
    unit.write_text(UNIT.read_text().replace("/opt/opsagent/.venv/bin/opsagent", str(exe)))
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout + r.stderr) == (0, "")


def test_unit_runs_unprivileged_read_only_and_reloads_by_sighup() -> None:
    d = directives()
    assert d["ExecStart"] == ["/opt/opsagent/.venv/bin/opsagent run -c /etc/opsagent/config.yaml"]
    assert d["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert d["DynamicUser"] == ["yes"] and d["NoNewPrivileges"] == ["yes"]
    assert d["ProtectSystem"] == ["strict"] and d["ReadWritePaths"] == ["/var/lib/opsagent"]
    assert d["StateDirectory"] == ["opsagent"]
    assert d["CapabilityBoundingSet"] == [""]
    # the agent stops within 5 s of SIGTERM; systemd must not kill it sooner
    assert d["KillSignal"] == ["SIGTERM"] and float(d["TimeoutStopSec"][0].rstrip("s")) >= 5
