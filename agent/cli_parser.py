"""The argparse parser class of the ``opsagent`` command, without ``shutil``.

argparse's HelpFormatter asks ``shutil.get_terminal_size()`` for its width,
and argparse builds a formatter for every ``add_argument`` call (to check the
metavar). ``shutil`` imports ``bz2`` and ``lzma``, which map libbz2 and
liblzma into the daemon (~0.6 MB RSS) for nothing: ``opsagent run`` never
prints help. This formatter asks ``os.get_terminal_size`` directly.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any


def terminal_columns(default: int = 80) -> int:
    """Columns of the terminal: $COLUMNS, else stdout's terminal, else default (as shutil does)."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns > 0:
        return columns
    stdout = sys.__stdout__
    if stdout is None:
        return default
    try:
        return os.get_terminal_size(stdout.fileno()).columns or default
    except (AttributeError, ValueError, OSError):
        return default


class HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, sized to the terminal as argparse does, without shutil."""

    def __init__(
        self, prog: str, indent_increment: int = 2, max_help_position: int = 24, width: int | None = None
    ):
        if width is None:
            width = terminal_columns() - 2
        super().__init__(prog, indent_increment, max_help_position, width)


class Parser(argparse.ArgumentParser):
    """ArgumentParser whose help formatter (and its subparsers') does not import shutil."""

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
