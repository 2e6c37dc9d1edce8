"""``opsagent baseline``: show the recorded security baseline, or accept the current state as it."""

from __future__ import annotations

import argparse
import datetime as dt
import time
from pathlib import Path
from typing import Any

from agent.cli_store import collector_state
from agent.errors import UserError

COLLECTOR = "baseline"
NAMESPACE = f"collector/{COLLECTOR}"  # where the daemon keeps its state


def add_parsers(sub: Any) -> None:
    """Register ``baseline accept|show``."""
    p = sub.add_parser("baseline", help="security baseline: accept the current state, show the recorded one")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
    bsub = p.add_subparsers(dest="baseline_command", metavar="COMMAND")
    a = bsub.add_parser("accept", help="record the current state of this host as the new baseline")
    a.add_argument("-c", "--config", type=Path, help="config file (default /etc/opsagent/config.yaml)")
    a.add_argument("--root", type=Path, default=Path("/"), help=argparse.SUPPRESS)
    a.add_argument("--proc", type=Path, default=Path("/proc"), help=argparse.SUPPRESS)
    a.set_defaults(func=cmd_accept)
    s = bsub.add_parser("show", help="the recorded baseline, per area")
    s.add_argument("-c", "--config", type=Path, help="config file (default /etc/opsagent/config.yaml)")
    s.add_argument("--area", help="only this area (ports, accounts, groups, sudoers, sshd, setuid, crontabs)")
    s.set_defaults(func=cmd_show)


def cmd_accept(args: argparse.Namespace) -> int:
    from collector.baseline import accept

    with collector_state(args.config, COLLECTOR) as (kv, section):
        counts = accept(section, kv, args.root, args.proc, time.time())
    for area, n in counts.items():
        print(f"{area:<10} {n:>6} items recorded")
    print("baseline accepted: later drift is measured against this state")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from collector.baseline import AREAS, load_baseline

    if args.area and args.area not in AREAS:
        raise UserError(f"unknown area {args.area!r} (use one of {', '.join(AREAS)})")
    with collector_state(args.config, COLLECTOR) as (kv, _):
        shown = 0
        for area in [args.area] if args.area else AREAS:
            recorded = load_baseline(kv, area)
            if recorded is None:
                continue
            items, ts = recorded
            when = dt.datetime.fromtimestamp(ts).astimezone().strftime("%Y-%m-%d %H:%M:%S %z")
            print(f"[{area}] recorded {when}, {len(items)} items")
            for item in sorted(items):
                print(f"  {item}")
            shown += 1
    if not shown:
        raise UserError("no baseline recorded yet: run the agent once or 'opsagent baseline accept'")
    return 0
