"""``opsagent files``: the history of tracked configuration files, diffs between versions, restore.

Versions are read from the agent's store (namespace of the ``configfiles``
collector); diffs mask secrets, restores write the exact stored bytes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
from pathlib import Path
from typing import Any

from agent.cli_store import collector_state
from agent.errors import UserError

COLLECTOR = "configfiles"
NAMESPACE = f"collector/{COLLECTOR}"  # where the daemon keeps its state


def add_parsers(sub: Any) -> None:
    """Register ``files history|diff|restore``."""
    p = sub.add_parser("files", help="tracked configuration files: history, diff, restore")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
    fsub = p.add_subparsers(dest="files_command", metavar="COMMAND")

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("-c", "--config", type=Path, help="config file (default /etc/opsagent/config.yaml)")
        sp.add_argument("path", help="the tracked file, as configured (absolute path)")

    h = fsub.add_parser("history", help="versions of a tracked file: number, time, size, sha256")
    common(h)
    h.set_defaults(func=cmd_history)
    d = fsub.add_parser("diff", help="unified diff between two versions (secrets masked)")
    common(d)
    d.add_argument("v1", type=int, help="older version number")
    d.add_argument("v2", type=int, nargs="?", help="newer version number (default: the latest)")
    d.set_defaults(func=cmd_diff)
    r = fsub.add_parser("restore", help="write a stored version back (the current content is kept first)")
    common(r)
    r.add_argument("--version", type=int, required=True, help="version number to restore")
    r.set_defaults(func=cmd_restore)


def _index(kv: Any, path: str) -> list[Any]:
    from collector.configfiles import read_index, tracked_paths

    index = read_index(kv, path)
    if not index:
        known = tracked_paths(kv)
        hint = f"; tracked: {', '.join(known[:10])}" if known else "; no file is tracked yet"
        raise UserError(f"{path} has no recorded versions{hint}")
    return index


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts).astimezone().strftime("%Y-%m-%d %H:%M:%S %z")


def cmd_history(args: argparse.Namespace) -> int:
    with collector_state(args.config, COLLECTOR) as (kv, _):
        index = _index(kv, args.path)
        print(f"{'VERSION':>7}  {'RECORDED':<25}  {'SIZE':>9}  {'MODE':>4}  SHA256")
        for v in index:
            if v.deleted:
                print(f"{v.v:>7}  {_when(v.ts):<25}  {'-':>9}  {'-':>4}  (deleted)")
            else:
                print(f"{v.v:>7}  {_when(v.ts):<25}  {v.size:>9}  {v.mode:04o}  {v.sha256}")
    return 0


def _content(kv: Any, path: str, index: list[Any], n: int) -> bytes:
    from collector.configfiles import read_version

    ver = next((v for v in index if v.v == n), None)
    if ver is None:
        have = ", ".join(str(v.v) for v in index)
        raise UserError(f"{path} has no version {n} (versions: {have})")
    if ver.deleted:
        return b""
    data = read_version(kv, path, n)
    if data is None:
        raise UserError(f"version {n} of {path} is no longer stored (pruned by keep_versions)")
    return data


def cmd_diff(args: argparse.Namespace) -> int:
    from collector.configfiles import Masker, masked_diff

    with collector_state(args.config, COLLECTOR) as (kv, section):
        index = _index(kv, args.path)
        v2 = args.v2 if args.v2 is not None else index[-1].v
        old, new = _content(kv, args.path, index, args.v1), _content(kv, args.path, index, v2)
        masker = Masker(getattr(section, "mask_patterns", ()))
        diff = masked_diff(old, new, f"{args.path}@v{args.v1}", f"{args.path}@v{v2}", masker)
        print(diff or f"versions {args.v1} and {v2} of {args.path} are identical", end="" if diff else "\n")
    return 0


def write_atomically(target: Path, data: bytes, mode: int, uid: int, gid: int) -> None:
    """Write via a temporary file in the same directory, fsync, rename; keep mode and owner."""
    # tempfile imports shutil, random (and bz2, lzma): not in the daemon, which imports this module
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".opsagent-restore", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        if uid >= 0 and gid >= 0 and hasattr(os, "chown"):
            try:
                os.chown(tmp, uid, gid)
            except PermissionError:
                pass  # not root: the file keeps the restoring user as owner
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dfd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)  # the rename itself must survive a crash
    finally:
        os.close(dfd)


def restore(kv: Any, path: str, version: int, root: Path, now: float, keep: int = 100) -> tuple[int, int]:
    """Restore ``version`` of ``path``; the current content is recorded first.

    Returns (version saved from the current content or 0 if unchanged, the
    version number the restored content is recorded as).
    """
    import hashlib

    from collector.configfiles import record_version

    index = _index(kv, path)
    data = _content(kv, path, index, version)
    ver = next(v for v in index if v.v == version)
    if ver.deleted:
        raise UserError(f"version {version} of {path} records a deletion; restore an earlier version")
    target = root / path.lstrip("/")
    saved = 0
    try:
        st: os.stat_result | None = os.stat(target)
        current = target.read_bytes()
    except FileNotFoundError:
        st, current = None, None
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror or e}") from None
    last = index[-1]
    if current is not None and (last.deleted or last.sha256 != hashlib.sha256(current).hexdigest()):
        saved = record_version(kv, path, current, now, st, keep).v
    mode = st.st_mode & 0o7777 if st else ver.mode
    uid = st.st_uid if st else ver.uid
    gid = st.st_gid if st else ver.gid
    try:
        write_atomically(target, data, mode, uid, gid)
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror or e}") from None
    new_st = os.stat(target)
    recorded = record_version(kv, path, data, now, new_st, keep).v
    return saved, recorded


def cmd_restore(args: argparse.Namespace) -> int:
    import time

    with collector_state(args.config, COLLECTOR) as (kv, section):
        saved, recorded = restore(kv, args.path, args.version, Path("/"), time.time(),
                                  getattr(section, "keep_versions", 100))
    if saved:
        print(f"kept the current content of {args.path} as version {saved}")
    print(f"restored {args.path} to the content of version {args.version} (recorded as version {recorded})")
    return 0
