"""The installed package carries its data files: a `pip install .` agent must start."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_contains_migrations_and_rule_packs(tmp_path: Path) -> None:
    # build from a clean copy: setuptools' build/ directory in the tree would hide a missing entry
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".venv", ".git", "build", "*.egg-info", "var",
                                                             "__pycache__", ".*_cache"))
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(src)],
        capture_output=True, text=True, timeout=300,
    )
    assert r.returncode == 0, r.stderr
    (wheel,) = tmp_path.glob("opsagent-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    migrations = {p.name for p in (ROOT / "agent/store/migrations").glob("*.sql")}
    packs = {p.name for p in (ROOT / "rules/packs").glob("*.yml")}
    assert migrations and packs
    assert {f"agent/store/migrations/{m}" for m in migrations} <= names
    assert {f"rules/packs/{p}" for p in packs} <= names
