"""Core subcommands: ``run``, ``config check``, ``collectors``, ``collect``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from agent.errors import UserError

DEFAULT_CONFIG = Path("/etc/opsagent/config.yaml")


def add_parsers(sub: Any) -> None:
    """Register the core subcommands on ``sub`` (an argparse subparsers object)."""
    p = sub.add_parser("run", help="run the agent in the foreground (logs to stderr)")
    p.add_argument(
        "-c", "--config", type=Path, default=DEFAULT_CONFIG, help=f"config file (default {DEFAULT_CONFIG})"
    )
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("config", help="configuration commands")
    csub = p.add_subparsers(dest="config_command", metavar="COMMAND")
    csub.required = True
    c = csub.add_parser("check", help="validate a config file: every problem as file:line: key: message")
    c.add_argument("file", type=Path, nargs="?", default=DEFAULT_CONFIG)
    c.set_defaults(func=cmd_config_check)

    p = sub.add_parser("collectors", help="list the collectors: name, enabled, default, description")
    p.add_argument("-c", "--config", type=Path, help=f"config file (default {DEFAULT_CONFIG} if present)")
    p.set_defaults(func=cmd_collectors)

    p = sub.add_parser("collect", help="collect once now and print the samples in exposition format")
    p.add_argument("-c", "--config", type=Path, help=f"config file (default {DEFAULT_CONFIG} if present)")
    p.add_argument(
        "--collector",
        action="append",
        metavar="NAME",
        help="only this collector (repeatable; runs it even if disabled)",
    )
    p.set_defaults(func=cmd_collect)


def _config_or_default(path: Path | None) -> Any:
    from agent.config import Config, load_config

    if path is not None:
        return load_config(path)
    if DEFAULT_CONFIG.exists():
        return load_config(DEFAULT_CONFIG)
    return Config()


def cmd_run(args: argparse.Namespace) -> int:
    from agent.config import load_config
    from agent.daemon import Daemon
    from agent.logging import setup_logging

    config = load_config(args.config)
    setup_logging(config.agent.log_level, config.agent.log_format)
    daemon = Daemon(config, args.config)
    daemon.install_signals()
    return daemon.run()


def cmd_config_check(args: argparse.Namespace) -> int:
    from agent.config import load_config
    from agent.rules_stage import check_rule_files

    config = load_config(args.file)  # a ConfigError is printed by agent.cli, one problem per line, exit 2
    check_rule_files(config)  # the rule files it names (and the packs) must load too
    print("config OK")
    return 0


def cmd_collectors(args: argparse.Namespace) -> int:
    from collector.registry import discover, enabled

    config = _config_or_default(args.config)
    rows = [("NAME", "ENABLED", "DEFAULT", "DESCRIPTION")]
    for name, reg in discover().items():
        on = enabled(reg, config.collector_section(name))
        rows.append((name, "yes" if on else "no", "yes" if reg.default else "no", reg.doc))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}".rstrip())
    return 0


def cmd_collect(args: argparse.Namespace) -> int:
    import time

    from agent.cycle import build_jobs
    from agent.logging import setup_logging
    from collector.exposition import render
    from collector.registry import Context, discover
    from collector.runner import Runner, self_metrics

    config = _config_or_default(args.config)
    setup_logging("warning", config.agent.log_format)
    known = discover()
    for name in args.collector or []:
        if name not in known:
            import difflib  # only for a typo's hint; kept out of the daemon's imports

            hint = difflib.get_close_matches(name, list(known), n=1)
            raise UserError(
                f"unknown collector {name!r}"
                + (f" (did you mean {hint[0]!r}?)" if hint else "")
                + f"; known: {', '.join(known)}"
            )
    jobs = build_jobs(config, only=args.collector)
    runner = Runner(jobs, lambda job: Context(config=job.section, instance=config.agent.instance_name))
    results = runner.run()
    samples = [s for r in results for s in r.samples]
    samples.extend(self_metrics(results, time.time()))
    sys.stdout.write(render(samples))
    failed = [r for r in results if not r.success]
    for r in failed:
        print(f"opsagent: collector {r.name} failed: {r.error}", file=sys.stderr)
    return 1 if failed else 0
