"""``opsagent rules check|test|export``: validate, unit-test and export alerting rules."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def add_parsers(sub: Any) -> None:
    """Add the ``rules`` command and its subcommands."""
    p = sub.add_parser("rules", help="check, test and export alerting rules")
    rsub = p.add_subparsers(dest="rules_command", metavar="SUBCOMMAND")
    rsub.required = True

    c = rsub.add_parser("check", help="validate rule files (exit 2 on errors)")
    c.add_argument("files", nargs="+", metavar="FILE")
    c.set_defaults(func=cmd_check)

    t = rsub.add_parser("test", help="run rule unit tests in promtool's format (exit 1 on failures)")
    t.add_argument("files", nargs="+", metavar="FILE")
    t.set_defaults(func=cmd_test)

    e = rsub.add_parser("export", help="write the active rules as a Prometheus rule file")
    e.add_argument("-c", "--config", metavar="CONFIG", help="configuration file (default: packs only)")
    e.add_argument("-o", "--output", metavar="FILE", help="output file (default: standard output)")
    e.set_defaults(func=cmd_export)


def cmd_check(args: argparse.Namespace) -> int:
    """Load each file on its own, print ``FILE: N rules OK``; all problems of all files at once."""
    from collector.schema import ConfigError
    from rules.loader import load_files

    problems = []
    for f in args.files:
        try:
            rs = load_files([f])
        except ConfigError as e:
            problems.extend(e.problems)
            continue
        print(f"{f}: {len(rs)} rules OK")
    if problems:
        raise ConfigError(problems)
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    """Run promtool-format rule tests; print promtool's style of report."""
    from rules.unittest import run_test_files

    ok, report = run_test_files(args.files)
    if report:
        print(report.rstrip("\n"))
    return 0 if ok else 1


def cmd_export(args: argparse.Namespace) -> int:
    """Export packs plus configured rule files, levels expanded, as one Prometheus rule file."""
    from agent.config import load_config
    from agent.rules_stage import active_rule_paths, rules_options
    from rules.export import render_export
    from rules.loader import load_files

    if args.config:
        cfg = load_config(args.config)
    else:
        from agent.config import Config

        cfg = Config()
    options = rules_options(cfg)
    ruleset = load_files(active_rule_paths(cfg), options)
    text = render_export(ruleset, options, source=args.config or "default packs")
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"{args.output}: {len(ruleset)} rules exported", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
