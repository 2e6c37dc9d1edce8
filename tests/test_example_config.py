"""config.example.yaml validates, and every registered collector has a section in it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from agent.config import load_config
from collector.registry import discover

EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.yaml"


def test_example_config_validates() -> None:
    cfg = load_config(EXAMPLE)
    assert cfg.web.listen_address.endswith(":9934")


@pytest.mark.parametrize("name", sorted(discover()))
def test_every_collector_has_a_section_in_the_example(name: str) -> None:
    sections = yaml.safe_load(EXAMPLE.read_text()).get("collectors") or {}
    assert name in sections, f"config.example.yaml has no collectors.{name} section"
    cfg = load_config(EXAMPLE)
    assert cfg.collector_section(name) is not None
