"""Start the real ``opsagent run`` as a subprocess on a free loopback port (shared by tests)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from tests.loopback import free_port

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config.example.yaml"


def example_config(tmp: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    """config.example.yaml with a private state file and a free port, sections merged in."""
    cfg = yaml.safe_load(EXAMPLE.read_text())
    cfg["agent"]["state_file"] = str(tmp / "state.db")
    cfg["web"]["listen_address"] = f"127.0.0.1:{free_port()}"
    for name, values in sections.items():
        cfg.setdefault(name, {}).update(values)
    return cfg


def write_config(path: Path, cfg: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def cli(*args: str, timeout: float = 60, env: dict[str, str] | None = None) -> Any:
    """Run the opsagent CLI as a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )


class Agent:
    """A running ``opsagent run -c FILE``; stop() sends SIGTERM."""

    def __init__(self, config_path: Path, cfg: dict[str, Any], scheme: str = "http"):
        self.config_path = config_path
        self.cfg = cfg
        host, _, port = cfg["web"]["listen_address"].rpartition(":")
        self.url = f"{scheme}://{host}:{port}"
        self.stderr_path = config_path.with_suffix(".log")
        self._err = open(self.stderr_path, "w")  # closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "run", "-c", str(config_path)],
            stdout=subprocess.DEVNULL,
            stderr=self._err,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )

    def wait_ready(self, timeout: float = 20, **kw: Any) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"agent exited {self.proc.returncode}: {self.log()}")
            try:
                self.get("/healthz", **kw)
                return
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.1)
        raise AssertionError(f"agent not ready: {self.log()}")

    def get(self, path: str, headers: dict[str, str] | None = None, **kw: Any) -> tuple[int, bytes, Any]:
        return self.request("GET", path, headers=headers, **kw)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        **kw: Any,
    ) -> tuple[int, bytes, Any]:
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=10, **kw) as r:
                return r.status, r.read(), r.headers
        except urllib.error.HTTPError as e:
            return e.code, e.read(), e.headers

    def metric(self, name: str) -> float | None:
        """The value of an unlabelled series in /metrics."""
        _, body, _ = self.get("/metrics")
        for line in body.decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None

    def log(self) -> str:
        if not self._err.closed:
            self._err.flush()
        return self.stderr_path.read_text()

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 10) -> float:
        """SIGTERM; returns seconds until exit."""
        t0 = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._err.close()
        return time.monotonic() - t0


def wait_for(cond: Any, timeout: float = 30, step: float = 0.1) -> Any:
    """Poll cond() until it is truthy; return its last value.

    The generous default (30 s) costs nothing when the condition comes true
    quickly, and keeps reload/cycle assertions from failing on a machine busy
    with the rest of the suite (a 10 s wait once did).
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(step)
    return cond()
