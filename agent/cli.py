"""The ``opsagent`` command. Each area adds its subcommands from its own ``cli_*`` module."""

from __future__ import annotations

import argparse
import gc
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


# The daemon's own subcommand and the module that defines it: ``opsagent run``
# builds only that module's parsers, so the other areas' modules and parsers
# (~0.3 MB) are not kept alive for the daemon's lifetime.
RUN_COMMAND = "run"
RUN_MODULE = "agent.cli_core"


def build_parser(modules: Sequence[str] = SUBCOMMAND_MODULES) -> argparse.ArgumentParser:
    """The ``opsagent`` parser with the subcommands of ``modules`` (default: all areas)."""
    parser = Parser(prog="opsagent", description="Monitoring and auto-ticketing agent.")
    parser.add_argument("--version", action="version", version=f"opsagent {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for name in modules:
        importlib.import_module(name).add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``opsagent`` command line ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    words = list(sys.argv[1:] if argv is None else argv)
    # `run` is only ever the first word (the top level has no options taking a value)
    parser = build_parser((RUN_MODULE,) if words[:1] == [RUN_COMMAND] else SUBCOMMAND_MODULES)
    args = parser.parse_args(words)
    # the parsers are cyclic garbage once parsed; free them before a daemon runs for months
    del parser
    gc.collect()
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
