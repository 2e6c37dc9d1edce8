"""A hung mount (dead NFS) must not hang the filesystem collector."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace

from collector.filesystem import FilesystemCollector, FilesystemConfig
from collector.registry import Context, Paths
from collector.schema import Duration

FX = Path(__file__).parent / "fixtures" / "host"
PATHS = Paths(proc=FX / "proc", sys=FX / "sys", root=FX)
HUNG = "/srv/my data"
LABELS = {"device": "/dev/vdb", "fstype": "xfs", "mountpoint": HUNG}


class HangingStat:
    """statvfs that blocks on one mount until released, like a stat on a dead NFS server."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls: list[str] = []

    def __call__(self, path: str):
        self.calls.append(path)
        if path.endswith(HUNG):
            self.release.wait(30)  # bounded, so a broken test cannot leave a thread forever
        return SimpleNamespace(f_bsize=4096, f_blocks=10, f_bfree=5, f_bavail=4, f_files=3, f_ffree=2)


def collect(c: FilesystemCollector) -> tuple[dict, float]:
    t0 = time.monotonic()
    samples = c.collect(Context(config=None, paths=PATHS))
    out = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in samples}
    return out, time.monotonic() - t0


def get(d, name, labels):
    return d.get((name, tuple(sorted(labels.items()))))


def test_hung_mount_times_out_is_reported_and_skipped_until_it_answers():
    stat = HangingStat()
    c = FilesystemCollector(FilesystemConfig(stat_timeout=Duration(0.3)), statfs=stat)
    try:
        d, took = collect(c)
        # returned after about one deadline, not after the 30 s the stat blocks
        assert took < 5
        assert get(d, "node_filesystem_device_error", LABELS) == 1
        assert get(d, "node_filesystem_size_bytes", LABELS) is None
        # mounts before and after the hung one are reported normally
        root = {"device": "/dev/vda", "fstype": "ext4", "mountpoint": "/"}
        nfs = {"device": "nfs.example:/export", "fstype": "nfs4", "mountpoint": "/data/nfs"}
        assert get(d, "node_filesystem_size_bytes", root) == 40960
        assert get(d, "node_filesystem_size_bytes", nfs) == 40960
        assert get(d, "node_filesystem_device_error", nfs) == 0

        # next run: the stuck mount is not stat'ed again (no second thread piles up on it)
        stat.calls.clear()
        d, took = collect(c)
        assert all(not p.endswith(HUNG) for p in stat.calls)
        assert get(d, "node_filesystem_device_error", LABELS) == 1
        assert took < 0.3
    finally:
        stat.release.set()

    # once the pending stat returns, the mount is stat'ed and reported again
    for _ in range(100):
        if not c._stuck:
            break
        time.sleep(0.02)
    d, _ = collect(c)
    assert get(d, "node_filesystem_device_error", LABELS) == 0
    assert get(d, "node_filesystem_readonly", LABELS) == 1
    assert get(d, "node_filesystem_size_bytes", LABELS) == 40960


def test_stat_timeout_must_be_positive():
    from collector.schema import Builder, compose

    b = Builder("config.yaml")
    b.build(FilesystemConfig, compose("stat_timeout: 0s\n", "config.yaml"))
    assert [str(p) for p in b.problems] == ["config.yaml:1: stat_timeout: must be greater than 0"]


def test_idle_stat_worker_thread_exits(monkeypatch):
    import collector.filesystem as fs

    monkeypatch.setattr(fs, "WORKER_IDLE", 0.05)
    stat = HangingStat()
    stat.release.set()
    c = FilesystemCollector(FilesystemConfig(), statfs=stat)
    before = set(threading.enumerate())
    collect(c)
    (worker,) = [t for t in threading.enumerate() if t not in before and t.name == "filesystem-statfs"]
    worker.join(5)
    assert not worker.is_alive()
    d, _ = collect(c)  # and a new worker is started when needed
    assert get(d, "node_filesystem_device_error", LABELS) == 0


def test_mount_points_under_the_root_path_are_labelled_as_the_host_sees_them(tmp_path):
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "mounts").write_text(
        "overlay / overlay rw 0 0\n/dev/vda /host ext4 rw 0 0\n/dev/vdb /host/srv xfs rw 0 0\n"
    )
    stat = HangingStat()
    c = FilesystemCollector(FilesystemConfig(), statfs=stat)
    d = {(s.name, s.labels["mountpoint"]): s.value
         for s in c.collect(Context(config=None, paths=Paths(proc=proc, root=Path("/host"))))}
    assert stat.calls == ["/host/", "/host/srv"]
    assert d[("node_filesystem_size_bytes", "/")] == 40960
    assert d[("node_filesystem_size_bytes", "/srv")] == 40960


def test_invalid_exclude_pattern_is_a_located_config_error():
    from collector.schema import Builder, compose

    b = Builder("config.yaml")
    b.build(FilesystemConfig, compose('stat_timeout: 2s\nfs_types_exclude: "(tmpfs"\n', "config.yaml"))
    (problem,) = b.problems
    assert (problem.line, problem.path) == (2, "fs_types_exclude")
    assert "invalid regular expression '(tmpfs'" in problem.message


def test_several_hung_mounts_are_waited_for_at_once_so_the_collector_keeps_its_deadline(tmp_path):
    # a dead NFS server usually takes several mounts with it; stat'ed one after
    # another they would cost 4 x stat_timeout and the whole collector (the
    # root filesystem included) would miss its own deadline
    from collector.runner import Job, Runner

    proc = tmp_path / "proc"
    proc.mkdir()
    dead = ["/home", "/data", "/backup", "/srv/share"]
    (proc / "mounts").write_text(
        "/dev/vda / ext4 rw 0 0\n" + "".join(f"nas:/export{mp} {mp} nfs4 rw 0 0\n" for mp in dead)
    )

    class DeadServer:
        def __init__(self) -> None:
            self.release = threading.Event()

        def __call__(self, path: str):
            if path in dead:
                self.release.wait(30)
            return SimpleNamespace(f_bsize=4096, f_blocks=10, f_bfree=5, f_bavail=4, f_files=3, f_ffree=2)

    stat = DeadServer()
    c = FilesystemCollector(FilesystemConfig(stat_timeout=Duration(1)), statfs=stat)
    job = Job("filesystem", c, None, 15, 2.5)  # the collector's deadline: 2.5 stat_timeouts
    runner = Runner([job], lambda j: Context(config=None, paths=Paths(proc=proc, root=Path("/"))))
    try:
        (result,) = runner.run()
        assert result.success, result.error
        d = {(s.name, s.labels["mountpoint"]): s.value for s in result.samples}
        assert d[("node_filesystem_device_error", "/")] == 0
        assert d[("node_filesystem_size_bytes", "/")] == 40960
        assert {mp: d[("node_filesystem_device_error", mp)] for mp in dead} == dict.fromkeys(dead, 1)

        # the next run skips the stuck mounts at once
        (result,) = runner.run()
        assert result.success and result.duration < 0.5
    finally:
        stat.release.set()
        runner.close()
