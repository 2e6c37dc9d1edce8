"""``opsagent check NAME`` (run a named check now) and ``opsagent check history`` (past runs).

Exit codes of ``check NAME``: 0 when no firing alert is at P1/P2, 1 when one
is, 2 for a configuration error (as every subcommand).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from agent.cli_core import DEFAULT_CONFIG


def add_parsers(sub: Any) -> None:
    """Register ``check`` on ``sub`` (an argparse subparsers object)."""
    p = sub.add_parser(
        "check",
        help="run a named check now (morning, evening, weekly, ...) and print its checklist",
        description="Run the named check now and print its checklist; 'check history' lists past runs."
        " Exit code 0 when no P1/P2 alert fires, 1 when one does, 2 for a configuration error.",
    )
    p.add_argument("name", metavar="NAME", help="check name (morning, evening, weekly, ...), or 'history'")
    p.add_argument(
        "-c", "--config", type=Path, default=DEFAULT_CONFIG, help=f"config file (default {DEFAULT_CONFIG})"
    )
    p.add_argument("--json", action="store_true", help="print the report (or history) as JSON")
    p.add_argument("--no-color", action="store_true", help="no ANSI colours even on a terminal")
    p.add_argument("--limit", type=int, default=30, help="history: how many runs (default 30)")
    # node_exporter's --path.* flags: check a fixture tree or a host mounted elsewhere
    p.add_argument("--path.procfs", dest="procfs", type=Path, default=Path("/proc"), help=argparse.SUPPRESS)
    p.add_argument("--path.sysfs", dest="sysfs", type=Path, default=Path("/sys"), help=argparse.SUPPRESS)
    p.add_argument("--path.rootfs", dest="rootfs", type=Path, default=Path("/"), help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_check)


def use_color(stream: Any, disabled: bool) -> bool:
    """Colour only on a terminal, unless --no-color, NO_COLOR (no-color.org) or TERM=dumb."""
    if disabled or os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def cmd_check(args: argparse.Namespace) -> int:
    from agent.config import load_config
    from agent.errors import UserError
    from agent.logging import setup_logging
    from agent.store import Store, StoreError

    config = load_config(args.config)
    setup_logging("warning", config.agent.log_format)
    known = {"morning", "evening", "weekly", *config.schedule.checks, *config.checks.profiles}
    if args.name != "history" and args.name not in known:
        raise UserError(f"unknown check {args.name!r} (configured: {', '.join(sorted(known))})")
    try:
        store = Store(config.agent.state_file)
    except StoreError as e:
        raise UserError(str(e)) from None
    try:
        if args.name == "history":
            return _history(store, config, args)
        return _run(store, config, args)
    finally:
        store.close()


def _run(store: Any, config: Any, args: argparse.Namespace) -> int:
    from agent.checks import render_text
    from agent.checks_stage import report_language, report_zone, run_once
    from collector.registry import Paths

    paths = Paths(proc=args.procfs, sys=args.sysfs, root=args.rootfs)
    report = run_once(config, args.name, store, paths=paths)
    if args.json:
        sys.stdout.write(json.dumps(report.to_json(), ensure_ascii=False, indent=2, sort_keys=True) + "\n")
    else:
        color = use_color(sys.stdout, args.no_color)
        sys.stdout.write(render_text(report, color, report_language(config), report_zone(config)))
    return 1 if report.urgent else 0


def _history(store: Any, config: Any, args: argparse.Namespace) -> int:
    from agent.checks import render_history
    from agent.checks_stage import list_runs, report_zone

    rows = list_runs(store, limit=args.limit)
    if args.json:
        sys.stdout.write(json.dumps(rows, ensure_ascii=False, indent=2) + "\n")
    elif not rows:
        print("no check runs recorded yet")
    else:
        sys.stdout.write(render_history(rows, report_zone(config)))
    return 0
