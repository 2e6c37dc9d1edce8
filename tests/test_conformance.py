"""The conformance corpus: every promtool test file in tests/promql passes under the real promtool
(the oracle) and under opsagent's own runner."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from rules.unittest import run_test_files

CORPUS = sorted((Path(__file__).parent / "promql").glob("*.yml"))
PROMTOOL = shutil.which("promtool") or ("/usr/bin/promtool" if Path("/usr/bin/promtool").exists() else None)


def test_corpus_is_large_enough():
    assert len(CORPUS) >= 40


@pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian package prometheus) is not installed")
def test_promtool_passes_every_file():
    # One promtool run for all files keeps CI fast; the report names any file that fails.
    r = subprocess.run([PROMTOOL, "test", "rules", *map(str, CORPUS)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_opsagent_passes(path):
    ok, report = run_test_files([str(path)])
    assert ok, report


def test_a_wrong_expectation_fails_like_promtool(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "tests:\n  - interval: 1m\n    input_series:\n"
        "      - series: 'up{job=\"a\"}'\n        values: '1 0'\n"
        "    promql_expr_test:\n      - expr: up == 1\n        eval_time: 1m\n"
        "        exp_samples:\n          - labels: 'up{job=\"a\"}'\n            value: 1\n"
    )
    ok, report = run_test_files([str(bad)])
    assert not ok
    assert "FAILED" in report and 'expr: \'up == 1\', time: 1m0s' in report
    assert "exp: [up{job=\"a\"} 1]" in report and "got: []" in report
