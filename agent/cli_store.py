"""The CLI's access to the agent's state file.

Subcommands open the same SQLite file as the daemon (WAL lets both run at
once); a file that cannot be opened is a user error, not a traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agent.errors import UserError


def open_store(state_file: str | Path) -> Any:
    """The :class:`agent.store.Store` at ``state_file``; :class:`UserError` when it cannot be opened."""
    from agent.store import Store, StoreError

    try:
        return Store(state_file)
    except StoreError as e:
        raise UserError(str(e)) from None


@contextmanager
def collector_state(config_path: Path | None, collector: str) -> Iterator[tuple[Any, Any]]:
    """(key/value state, config section) of ``collector``, as the daemon keeps them; closed on exit.

    The state's namespace is the daemon's (``collector/NAME``, see :mod:`agent.cycle`).
    """
    from agent.cli_core import _config_or_default
    from agent.store import StoreKeyValue

    config = _config_or_default(config_path)
    store = open_store(config.agent.state_file)
    try:
        yield StoreKeyValue(store, f"collector/{collector}"), config.collector_section(collector)
    finally:
        store.close()
