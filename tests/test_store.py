"""The store: numbered migrations applied once across restarts, transactions, key/value state."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from agent.store import MIGRATIONS_DIR, Store, StoreError, StoreKeyValue, read_migrations


def test_migration_files_are_numbered_and_named() -> None:
    migs = read_migrations()
    versions = [m.version for m in migs]
    assert versions == sorted(set(versions))
    assert versions[:2] == [1, 2]
    for p in MIGRATIONS_DIR.glob("*"):
        assert p.suffix == ".sql", p


def test_new_store_is_wal_and_has_every_migration(tmp_path: Path) -> None:
    store = Store(tmp_path / "sub" / "state.db")
    assert store.journal_mode == "wal"
    assert set(store.applied()) == {m.version for m in read_migrations()}
    with store.read() as db:
        tables = {r["name"] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"schema_migrations", "kv", "check_runs"} <= tables
    store.close()


def test_migrations_are_idempotent_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    Store(path).close()
    store = Store(path)
    with store.read() as db:
        rows = db.execute("SELECT version, COUNT(*) AS n FROM schema_migrations GROUP BY version").fetchall()
    assert all(r["n"] == 1 for r in rows)
    assert store.migrate(read_migrations()) == []
    store.close()


def test_migrations_apply_in_numeric_order_with_gaps(tmp_path: Path) -> None:
    d = tmp_path / "migs"
    d.mkdir()
    (d / "0001_a.sql").write_text("CREATE TABLE a (x INTEGER);\n")
    (d / "0010_b.sql").write_text("-- depends on a\nINSERT INTO a VALUES (10);\n")
    (d / "0002_c.sql").write_text("INSERT INTO a VALUES (2);\n")
    store = Store(tmp_path / "s.db", migrations_dir=d)
    with store.read() as db:
        assert [r["x"] for r in db.execute("SELECT x FROM a ORDER BY rowid")] == [2, 10]
    assert list(store.applied()) == [1, 2, 10]
    # a later release adds 0020; only it is applied
    (d / "0020_d.sql").write_text("INSERT INTO a VALUES (20);\n")
    store.close()
    store = Store(tmp_path / "s.db", migrations_dir=d)
    with store.read() as db:
        assert [r["x"] for r in db.execute("SELECT x FROM a ORDER BY rowid")] == [2, 10, 20]
    store.close()


def test_failed_migration_is_rolled_back_and_named(tmp_path: Path) -> None:
    d = tmp_path / "migs"
    d.mkdir()
    (d / "0001_ok.sql").write_text("CREATE TABLE a (x INTEGER);\n")
    (d / "0002_bad.sql").write_text("CREATE TABLE b (y INTEGER);\nINSERT INTO nosuch VALUES (1);\n")
    with pytest.raises(StoreError, match="0002_bad"):
        Store(tmp_path / "s.db", migrations_dir=d)
    db = sqlite3.connect(tmp_path / "s.db")
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "a" in tables and "b" not in tables
    assert [r[0] for r in db.execute("SELECT version FROM schema_migrations")] == [1]
    db.close()


def test_badly_named_migration_is_an_error(tmp_path: Path) -> None:
    d = tmp_path / "migs"
    d.mkdir()
    (d / "1_x.sql").write_text("SELECT 1;")
    with pytest.raises(StoreError, match=r"NNNN_name\.sql"):
        read_migrations(d)


def test_tx_commits_or_rolls_back_and_nests(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    kv = StoreKeyValue(store, "t")
    with store.tx() as db:
        db.execute("INSERT INTO kv VALUES ('t', 'a', x'01', 0)")
        with store.tx() as inner:  # joins the outer transaction
            inner.execute("INSERT INTO kv VALUES ('t', 'b', x'02', 0)")
    assert kv.keys() == ["a", "b"]
    with pytest.raises(RuntimeError), store.tx() as db:
        db.execute("INSERT INTO kv VALUES ('t', 'c', x'03', 0)")
        raise RuntimeError("boom")
    assert kv.keys() == ["a", "b"]
    store.close()


def test_concurrent_writers_are_serialized(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")

    def writer(n: int) -> None:
        kv = StoreKeyValue(store, f"w{n}")
        for i in range(50):
            kv.put(str(i), b"x")

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with store.read() as db:
        assert db.execute("SELECT COUNT(*) FROM kv").fetchone()[0] == 200
    store.close()


def test_key_value_survives_restart(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = Store(path)
    kv = StoreKeyValue(store, "collector/logs")
    kv.put("pos/syslog", b"1234")
    kv.put("pos/auth", b"9")
    kv.put("other", b"")
    StoreKeyValue(store, "collector/else").put("pos/syslog", b"other namespace")
    kv.put("pos/auth", b"10")
    kv.delete("other")
    kv.delete("missing")
    store.close()
    kv = StoreKeyValue(Store(path), "collector/logs")
    assert kv.get("pos/syslog") == b"1234"
    assert kv.get("pos/auth") == b"10"
    assert kv.get("other") is None
    assert kv.keys("pos/") == ["pos/auth", "pos/syslog"]
    assert kv.keys("%") == []  # a prefix is not a LIKE pattern
    kv.store.close()


def test_unwritable_location_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StoreError, match="cannot open state file"):
        Store(blocker / "state.db")


def test_new_state_file_and_its_wal_are_private_whatever_the_umask(tmp_path: Path) -> None:
    # the state holds tickets, contacts and copies of configuration files
    import os
    import stat

    old = os.umask(0o022)
    try:
        store = Store(tmp_path / "state.db")
        with store.tx() as db:
            db.execute("CREATE TABLE t (x)")
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
        store.close()
    finally:
        os.umask(old)
    assert modes["state.db"] == 0o600
    assert modes["state.db-wal"] == 0o600


def test_existing_state_file_keeps_its_mode(tmp_path: Path) -> None:
    import stat

    Store(tmp_path / "state.db").close()
    (tmp_path / "state.db").chmod(0o640)  # e.g. opened to an operators' group on purpose
    Store(tmp_path / "state.db").close()
    assert stat.S_IMODE((tmp_path / "state.db").stat().st_mode) == 0o640
