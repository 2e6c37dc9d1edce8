"""The ``opsagent`` command. Each area adds its subcommands from its own ``cli_*`` module."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from agent import __version__
from agent.cli_parser import Parser
from agent.errors import UserError
from collector.schema import ConfigError

# Each module defines ``add_parsers(subparsers)``; a handler is set with
# ``parser.set_defaults(func=handler)`` and returns the exit code.
# Heavy imports belong inside the handlers.
SUBCOMMAND_MODULES = (
    "agent.cli_core",
    "agent.cli_rules",
    "agent.cli_tickets",
    "agent.cli_checks",
    "agent.cli_files",
    "agent.cli_baseline",
)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="opsagent", description="Monitoring and auto-ticketing agent.")
    parser.add_argument("--version", action="version", version=f"opsagent {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for name in SUBCOMMAND_MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:  # that area is not built yet
                continue
            raise
        mod.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as e:
        for p in e.problems:
            print(f"opsagent: {p}", file=sys.stderr)
        return 2
    except UserError as e:
        print(f"opsagent: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
