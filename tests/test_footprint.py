"""Memory footprint of the running agent: what `opsagent run` keeps alive, what the history retains."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from daemon_harness import ROOT, example_config, write_config


def test_run_keeps_neither_other_commands_nor_parsers_alive(tmp_path: Path) -> None:
    # the daemon runs for months: the other areas' CLI modules and every argparse
    # parser built to read its command line would be dead weight all that time
    path = write_config(tmp_path / "c.yaml", example_config(tmp_path))
    script = f"""
import argparse, gc, sys
import agent.daemon
from agent.cli import main
def run(self):
    gc.collect()
    parsers = [o for o in gc.get_objects() if isinstance(o, argparse.ArgumentParser)]
    print(sorted(m for m in sys.modules if m.startswith("agent.cli")), len(parsers))
    return 0
agent.daemon.Daemon.run = run
sys.exit(main(["run", "-c", {str(path)!r}]))
"""
    r = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=60,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "['agent.cli', 'agent.cli_core', 'agent.cli_parser'] 0"
