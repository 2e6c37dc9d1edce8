"""The agent's state: one SQLite file (WAL, ``synchronous=NORMAL``, one writer).

Usage::

    store = Store("/var/lib/opsagent/state.db")
    with store.tx() as db:          # BEGIN IMMEDIATE ... COMMIT (ROLLBACK on exception)
        db.execute("INSERT INTO check_runs ...", (...))
    with store.read() as db:
        rows = db.execute("SELECT ...").fetchall()   # sqlite3.Row
    store.close()

Writes are serialized by one lock, so every part of the agent can write from
its own thread; a ``tx()`` opened inside another ``tx()`` on the same thread
joins the outer transaction (so an outbox row and the state change that
caused it commit together). Reads use a second connection and, thanks to
WAL, never wait for a writer; a ``read()`` inside a ``tx()`` therefore does
not see that transaction's uncommitted rows (query the ``tx()`` connection).

Schema migrations are files ``migrations/NNNN_name.sql`` applied in numeric
order, each in its own transaction, and recorded in
``schema_migrations(version, name, applied_at)``. Ranges: 0001-0009 agent
core, 0010-0019 tickets and outbox, 0020-0029 checks, logs, files and
baselines. Numbers may have gaps; a migration, once released, is never
edited (add a new one). A migration file holds plain SQL without
BEGIN/COMMIT.
"""

from __future__ import annotations

import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_MIGRATION_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class StoreError(Exception):
    """The state file cannot be opened or migrated; the message names the file."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One numbered schema change."""

    version: int
    name: str
    sql: str


def read_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migration files of ``directory`` in numeric order; a malformed name is an error."""
    out: list[Migration] = []
    seen: dict[int, str] = {}
    for p in sorted(directory.glob("*.sql")):
        m = _MIGRATION_RE.match(p.name)
        if not m:
            raise StoreError(f"{p}: migration files are named NNNN_name.sql (lower case)")
        version = int(m.group(1))
        if version in seen:
            raise StoreError(f"{p}: migration number {version:04d} also used by {seen[version]}")
        seen[version] = p.name
        out.append(Migration(version, m.group(2), p.read_text(encoding="utf-8")))
    return sorted(out, key=lambda mig: mig.version)


def _connect(path: str) -> sqlite3.Connection:
    # isolation_level=None: we issue BEGIN/COMMIT ourselves, so transactions are explicit
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def _create_private(path: Path) -> None:
    """Create an absent state file readable by its owner only (SQLite gives -wal and -shm its mode).

    The file holds ticket texts, contacts and tracked configuration files, so
    it must not be world-readable whatever the umask; an existing file keeps
    the mode its owner gave it.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(fd)


class Store:
    """One SQLite database with numbered migrations, a serialized writer and a reader."""

    def __init__(self, path: str | Path, migrations_dir: Path = MIGRATIONS_DIR):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _create_private(self.path)
            self._writer = _connect(str(self.path))
            mode = self._writer.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            self._writer.execute("PRAGMA synchronous = NORMAL")
            self._reader = _connect(str(self.path))
            self._reader.execute("PRAGMA synchronous = NORMAL")
        except (OSError, sqlite3.Error) as e:
            raise StoreError(f"cannot open state file {self.path}: {e}") from None
        self.journal_mode = str(mode)
        self._write_lock = threading.RLock()
        self._read_lock = threading.RLock()
        self._depth = 0
        self.migrate(read_migrations(migrations_dir))

    # -- transactions

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (BEGIN IMMEDIATE); commit on success, rollback on exception."""
        with self._write_lock:
            if self._depth:  # nested on this thread: join the outer transaction
                self._depth += 1
                try:
                    yield self._writer
                finally:
                    self._depth -= 1
                return
            self._writer.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield self._writer
            except BaseException:
                self._writer.execute("ROLLBACK")
                raise
            else:
                self._writer.execute("COMMIT")
            finally:
                self._depth = 0

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A connection for reads (a consistent snapshot for the duration of the block)."""
        with self._read_lock:
            if self._reader.in_transaction:  # nested read on this thread: same snapshot
                yield self._reader
                return
            self._reader.execute("BEGIN")
            try:
                yield self._reader
            finally:
                self._reader.execute("COMMIT")

    def close(self) -> None:
        """Close both connections (checkpointing the WAL)."""
        with self._write_lock, self._read_lock:
            for conn in (self._reader, self._writer):
                try:
                    conn.close()
                except sqlite3.Error:  # closing is best effort at shutdown
                    pass

    # -- schema

    def applied(self) -> dict[int, str]:
        """Applied migration versions and their names."""
        with self.read() as db:
            rows = db.execute("SELECT version, name FROM schema_migrations ORDER BY version").fetchall()
        return {int(r["version"]): str(r["name"]) for r in rows}

    def migrate(self, migrations: list[Migration]) -> list[int]:
        """Apply the migrations not yet recorded, each in its own transaction; return their versions."""
        with self._write_lock:
            self._writer.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
            )
            done: list[int] = []
            for mig in migrations:
                # re-checked inside the write transaction: another process may have applied it
                self._writer.execute("BEGIN IMMEDIATE")
                try:
                    row = self._writer.execute(
                        "SELECT 1 FROM schema_migrations WHERE version = ?", (mig.version,)
                    ).fetchone()
                    if row is None:
                        _run_script(self._writer, mig.sql)
                        self._writer.execute(
                            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                            (mig.version, mig.name, time.time()),
                        )
                        done.append(mig.version)
                except sqlite3.Error as e:
                    self._writer.execute("ROLLBACK")
                    raise StoreError(
                        f"{self.path}: migration {mig.version:04d}_{mig.name} failed: {e}"
                    ) from None
                self._writer.execute("COMMIT")
            return done


def _run_script(conn: sqlite3.Connection, sql: str) -> None:
    """Run each statement of ``sql`` inside the current transaction.

    ``executescript`` would commit first, so statements are split with
    ``sqlite3.complete_statement`` (which understands quotes and triggers).
    """
    buf = ""
    for line in sql.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                conn.execute(buf)
            buf = ""
    if buf.strip() and not _only_comments(buf):
        conn.execute(buf)


def _only_comments(text: str) -> bool:
    return all(not ln.strip() or ln.strip().startswith("--") for ln in text.splitlines())


class StoreKeyValue:
    """Durable key/value state for one namespace (a collector's read positions, baselines).

    Implements ``collector.registry.KeyValue`` over the ``kv`` table.
    """

    def __init__(self, store: Store, namespace: str):
        self.store = store
        self.namespace = namespace

    def get(self, key: str) -> bytes | None:
        """The value stored under ``key``, or None."""
        with self.store.read() as db:
            row = db.execute(
                "SELECT value FROM kv WHERE namespace = ? AND key = ?", (self.namespace, key)
            ).fetchone()
        return bytes(row["value"]) if row is not None else None

    def put(self, key: str, value: bytes) -> None:
        """Store ``value`` under ``key`` (replacing any previous value)."""
        with self.store.tx() as db:
            db.execute(
                "INSERT INTO kv (namespace, key, value, updated_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value,"
                " updated_at = excluded.updated_at",
                (self.namespace, key, bytes(value), time.time()),
            )

    def delete(self, key: str) -> None:
        """Forget ``key`` (no error when absent)."""
        with self.store.tx() as db:
            db.execute("DELETE FROM kv WHERE namespace = ? AND key = ?", (self.namespace, key))

    def keys(self, prefix: str = "") -> list[str]:
        """Keys starting with ``prefix``, sorted."""
        with self.store.read() as db:
            rows = db.execute(
                "SELECT key FROM kv WHERE namespace = ? AND substr(key, 1, ?) = ? ORDER BY key",
                (self.namespace, len(prefix), prefix),
            ).fetchall()
        return [str(r["key"]) for r in rows]
