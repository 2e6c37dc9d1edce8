"""Each host collector on the fixture tree in tests/fixtures/host, with exact values."""

from __future__ import annotations

import ctypes
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from collector.cpu import CpuCollector, CpuConfig
from collector.diskstats import DiskstatsCollector, DiskstatsConfig
from collector.filesystem import FilesystemCollector, FilesystemConfig
from collector.hwmon import HwmonCollector
from collector.load import LoadCollector
from collector.meminfo import MeminfoCollector
from collector.model import Sample
from collector.netdev import NetdevCollector, NetdevConfig
from collector.registry import CollectorFailure, Context, EmptyConfig, NoData, Paths
from collector.runner import Job, Runner
from collector.schema import Regex
from collector.stat import StatCollector, StatConfig
from collector.time import TimeCollector
from collector.timex import STA_NANO, TIME_ERROR, Timex, TimexCollector
from collector.uname import UnameCollector

FX = Path(__file__).parent / "fixtures" / "host"
PATHS = Paths(proc=FX / "proc", sys=FX / "sys", root=FX, run=FX / "run")


def ctx(paths: Paths = PATHS, now: float = 1_700_000_000.25) -> Context:
    return Context(config=None, paths=paths, clock=lambda: now)


def values(samples) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for s in samples:
        assert isinstance(s, Sample)
        assert s.key() not in out, f"duplicate series {s.key()}"
        out[s.key()] = s.value
    return out


def v(d, name, **labels):
    return d[(name, tuple(sorted(labels.items())))]


def names(d) -> set[str]:
    return {k[0] for k in d}


# ---------------------------------------------------------------- cpu / stat / meminfo / load


def test_cpu_seconds_per_cpu_and_mode():
    d = values(CpuCollector(CpuConfig()).collect(ctx()))
    # fixture: cpu0 1178 0 694 49463 100 0 17 3 0 0 (jiffies, USER_HZ 100)
    assert v(d, "node_cpu_seconds_total", cpu="0", mode="user") == pytest.approx(11.78)
    assert v(d, "node_cpu_seconds_total", cpu="0", mode="system") == pytest.approx(6.94)
    assert v(d, "node_cpu_seconds_total", cpu="0", mode="idle") == pytest.approx(494.63)
    assert v(d, "node_cpu_seconds_total", cpu="1", mode="iowait") == pytest.approx(2.68)
    assert v(d, "node_cpu_seconds_total", cpu="1", mode="steal") == pytest.approx(0.06)
    assert v(d, "node_cpu_guest_seconds_total", cpu="0", mode="nice") == 0
    assert len(d) == 2 * 8 + 2 * 2


def test_cpu_guest_can_be_turned_off():
    d = values(CpuCollector(CpuConfig(guest=False)).collect(ctx()))
    assert names(d) == {"node_cpu_seconds_total"}


def test_cpu_counters_never_go_backwards(tmp_path):
    proc = tmp_path / "proc"
    proc.mkdir()
    c = CpuCollector(CpuConfig())
    p = Paths(proc=proc)
    (proc / "stat").write_text("cpu0 100 0 50 1000 30 0 0 0 0 0\n")
    list(c.collect(ctx(p)))
    # iowait steps back (a known kernel quirk): the reported counter holds
    (proc / "stat").write_text("cpu0 110 0 55 1010 20 0 0 0 0 0\n")
    d = values(c.collect(ctx(p)))
    assert v(d, "node_cpu_seconds_total", cpu="0", mode="iowait") == pytest.approx(0.30)
    assert v(d, "node_cpu_seconds_total", cpu="0", mode="user") == pytest.approx(1.10)


def test_stat_collector():
    d = values(StatCollector(StatConfig()).collect(ctx()))
    assert d == {
        ("node_boot_time_seconds", ()): 1795303546,
        ("node_context_switches_total", ()): 324334,
        ("node_forks_total", ()): 9367,
        ("node_intr_total", ()): 149577,
        ("node_procs_running", ()): 1,
        ("node_procs_blocked", ()): 0,
    }


def test_stat_softirq_vectors():
    d = values(StatCollector(StatConfig(softirq=True)).collect(ctx()))
    assert v(d, "node_softirqs_total", vector="timer") == 12713
    assert v(d, "node_softirqs_total", vector="rcu") == 25759


def test_meminfo_collector():
    d = values(MeminfoCollector(EmptyConfig()).collect(ctx()))
    assert v(d, "node_memory_MemTotal_bytes") == 24683656 * 1024
    assert v(d, "node_memory_Active_anon_bytes") == 1560 * 1024
    assert v(d, "node_memory_HugePages_Total") == 0
    assert "node_memory_SwapTotal_bytes" in names(d)


def test_load_collector():
    d = values(LoadCollector(EmptyConfig()).collect(ctx()))
    assert d == {("node_load1", ()): 0.22, ("node_load5", ()): 0.24, ("node_load15", ()): 0.11}


# ---------------------------------------------------------------- disks, network, filesystems


def test_diskstats_units_and_default_exclusions():
    d = values(DiskstatsCollector(DiskstatsConfig()).collect(ctx()))
    devices = {dict(k[1])["device"] for k in d}
    # partitions (vda1, nvme0n1p1) and loop devices are excluded by node_exporter's default
    assert devices == {"vda", "zram0", "sdb", "nvme0n1"}
    assert v(d, "node_disk_reads_completed_total", device="vda") == 34419
    assert v(d, "node_disk_read_bytes_total", device="vda") == 2236002 * 512
    assert v(d, "node_disk_written_bytes_total", device="vda") == 1936672 * 512
    assert v(d, "node_disk_read_time_seconds_total", device="vda") == pytest.approx(8.433)
    assert v(d, "node_disk_io_time_weighted_seconds_total", device="vda") == pytest.approx(13.756)
    assert v(d, "node_disk_discard_time_seconds_total", device="vda") == pytest.approx(0.436)
    assert v(d, "node_disk_flush_requests_total", device="vda") == 1259
    assert v(d, "node_disk_io_now", device="sdb") == 2
    # a pre-4.18 kernel line has no discard or flush columns: those series are absent
    assert ("node_disk_discards_completed_total", (("device", "sdb"),)) not in d
    info = {k: val for k, val in d.items() if k[0] == "node_disk_info"}
    assert info[("node_disk_info", (
        ("device", "vda"), ("major", "254"), ("minor", "0"), ("model", "Virtio_Disk"),
        ("path", "pci-0000:00:04.0"), ("revision", "1.0"), ("serial", "vd-0001"),
        ("wwn", "0x5000c500a1b2c3d4"),
    ))] == 1
    assert len(info) == 4


def test_diskstats_include_and_exclude_options():
    c = DiskstatsCollector(DiskstatsConfig(device_exclude=Regex("^$"), device_include=Regex("^vda")))
    devices = {dict(k[1])["device"] for k in values(c.collect(ctx()))}
    assert devices == {"vda", "vda1"}


def test_netdev_traffic_and_link_state():
    d = values(NetdevCollector(NetdevConfig()).collect(ctx()))
    assert v(d, "node_network_receive_bytes_total", device="lo") == 66814
    assert v(d, "node_network_transmit_packets_total", device="eth0") == 992
    assert v(d, "node_network_up", device="eth0") == 1
    assert v(d, "node_network_up", device="lo") == 0  # operstate "unknown", as node_exporter reports it
    assert v(d, "node_network_speed_bytes", device="eth0") == 125_000_000
    assert v(d, "node_network_mtu_bytes", device="lo") == 65536
    assert v(d, "node_network_info", address="02:fc:00:00:00:01", broadcast="ff:ff:ff:ff:ff:ff",
             device="eth0", duplex="unknown", ifalias="", operstate="up") == 1
    # speed -1 (unknown) is not reported; ifb1 has no sysfs entry: traffic only
    assert ("node_network_speed_bytes", (("device", "ifb0"),)) not in d
    assert v(d, "node_network_receive_bytes_total", device="ifb1") == 0
    assert ("node_network_up", (("device", "ifb1"),)) not in d


def test_netdev_exclude_and_no_link_state():
    c = NetdevCollector(NetdevConfig(device_exclude=Regex("^(lo|ifb.*)$"), link_state=False))
    d = values(c.collect(ctx()))
    assert {dict(k[1])["device"] for k in d} == {"eth0"}
    assert "node_network_up" not in names(d)


def fake_statvfs(calls: list[str]):
    def stat(path: str):
        calls.append(path)
        if path.endswith("/data/nfs"):
            raise OSError(5, "Input/output error")
        return SimpleNamespace(f_bsize=4096, f_frsize=4096, f_blocks=1000, f_bfree=600, f_bavail=500,
                               f_files=100, f_ffree=70)
    return stat


def test_filesystem_on_fixture_mounts():
    calls: list[str] = []
    c = FilesystemCollector(FilesystemConfig(), statfs=fake_statvfs(calls))
    d = values(c.collect(ctx()))
    # pseudo filesystems, /run, /dev, /sys, /mnt and docker layers are excluded by default;
    # the duplicate "/" line is reported once
    assert calls == [f"{FX}/", f"{FX}/srv/my data", f"{FX}/data/nfs"]
    root = {"device": "/dev/vda", "fstype": "ext4", "mountpoint": "/"}
    assert v(d, "node_filesystem_size_bytes", **root) == 4096 * 1000
    assert v(d, "node_filesystem_free_bytes", **root) == 4096 * 600
    assert v(d, "node_filesystem_avail_bytes", **root) == 4096 * 500
    assert v(d, "node_filesystem_files", **root) == 100
    assert v(d, "node_filesystem_files_free", **root) == 70
    assert v(d, "node_filesystem_readonly", **root) == 0
    assert v(d, "node_filesystem_device_error", **root) == 0
    data = {"device": "/dev/vdb", "fstype": "xfs", "mountpoint": "/srv/my data"}
    assert v(d, "node_filesystem_readonly", **data) == 1
    nfs = {"device": "nfs.example:/export", "fstype": "nfs4", "mountpoint": "/data/nfs"}
    assert v(d, "node_filesystem_device_error", **nfs) == 1
    assert ("node_filesystem_size_bytes", tuple(sorted(nfs.items()))) not in d


def test_filesystem_falls_back_to_proc_mounts(tmp_path):
    proc = tmp_path / "proc"
    proc.mkdir()
    shutil.copy(FX / "proc" / "mounts", proc / "mounts")  # no proc/1: hidepid
    calls: list[str] = []
    d = values(FilesystemCollector(FilesystemConfig(), statfs=fake_statvfs(calls)).collect(
        ctx(Paths(proc=proc, root=Path("/")))))
    assert calls == ["/"]
    assert v(d, "node_filesystem_device_error", device="/dev/vda", fstype="ext4", mountpoint="/") == 0


# ---------------------------------------------------------------- time, timex, hwmon, uname


def test_time_collector_uses_the_injected_clock(monkeypatch):
    monkeypatch.setenv("TZ", "Asia/Shanghai")
    import time

    time.tzset()
    try:
        d = values(TimeCollector(EmptyConfig()).collect(ctx(now=1_700_000_000.25)))
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert v(d, "node_time_seconds") == 1_700_000_000.25
    assert v(d, "node_time_zone_offset_seconds", time_zone="CST") == 8 * 3600
    assert v(d, "node_time_clocksource_current_info", clocksource="tsc", device="0") == 1
    assert v(d, "node_time_clocksource_available_info", clocksource="kvm-clock", device="0") == 1


def test_timex_values_and_sync_status():
    tx = Timex(offset=-1500, freq=65536 * 12, maxerror=16000, esterror=250, status=0, constant=7,
               tick=10000, tai=37)
    d = values(TimexCollector(EmptyConfig(), read=lambda: (0, tx)).collect(ctx()))
    assert v(d, "node_timex_sync_status") == 1
    assert v(d, "node_timex_offset_seconds") == pytest.approx(-0.0015)  # µs without STA_NANO
    assert v(d, "node_timex_frequency_adjustment_ratio") == pytest.approx(1.000012)
    assert v(d, "node_timex_maxerror_seconds") == pytest.approx(0.016)
    assert v(d, "node_timex_tick_seconds") == pytest.approx(0.01)
    assert v(d, "node_timex_tai_offset_seconds") == 37
    tx.status = STA_NANO | 0x40
    d = values(TimexCollector(EmptyConfig(), read=lambda: (TIME_ERROR, tx)).collect(ctx()))
    assert v(d, "node_timex_sync_status") == 0
    assert v(d, "node_timex_offset_seconds") == pytest.approx(-0.0000015)  # ns with STA_NANO
    assert v(d, "node_timex_status") == STA_NANO | 0x40


def test_timex_struct_matches_the_kernel_abi():
    # struct timex is 208 bytes on LP64 Linux; a wrong layout would corrupt memory
    if ctypes.sizeof(ctypes.c_long) == 8:
        assert ctypes.sizeof(Timex) == 208


def test_hwmon_chips_named_as_node_exporter():
    d = values(HwmonCollector(EmptyConfig()).collect(ctx()))
    assert v(d, "node_hwmon_temp_celsius", chip="platform_coretemp_0", sensor="temp1") == 55.0
    assert v(d, "node_hwmon_temp_max_celsius", chip="platform_coretemp_0", sensor="temp1") == 84.0
    assert v(d, "node_hwmon_temp_crit_celsius", chip="platform_coretemp_0", sensor="temp1") == 100.0
    assert v(d, "node_hwmon_temp_crit_alarm_celsius", chip="platform_coretemp_0", sensor="temp1") == 0
    assert v(d, "node_hwmon_sensor_label", chip="platform_coretemp_0", label="Core 0", sensor="temp2") == 1
    assert v(d, "node_hwmon_chip_names", chip="platform_coretemp_0", chip_name="coretemp") == 1
    assert v(d, "node_hwmon_temp_celsius", chip="nvme", sensor="temp1") == pytest.approx(38.85)
    assert v(d, "node_hwmon_fan_rpm", chip="nvme", sensor="fan1") == 1200
    assert v(d, "node_hwmon_in_volts", chip="nvme", sensor="in0") == pytest.approx(1.05)
    assert v(d, "node_hwmon_temp_celsius", chip="hwmon2", sensor="temp1") == 41.0
    # a non-numeric reading is skipped, not reported as 0
    assert ("node_hwmon_temp_celsius", (("chip", "hwmon2"), ("sensor", "temp2"))) not in d


def test_hwmon_without_sensors_is_no_data(tmp_path):
    with pytest.raises(NoData):
        list(HwmonCollector(EmptyConfig()).collect(ctx(Paths(sys=tmp_path))))


def test_uname_info():
    d = values(UnameCollector(EmptyConfig()).collect(ctx()))
    ((name, labels),) = d
    lab = dict(labels)
    assert name == "node_uname_info"
    assert lab["sysname"] == "Linux" and lab["nodename"] == "vm" and lab["domainname"] == "(none)"
    assert lab["release"] == "6.18.44-fc-v769"
    assert set(lab) == {"domainname", "machine", "nodename", "release", "sysname", "version"}


# ---------------------------------------------------------------- unreadable /proc


PROC_COLLECTORS = [
    ("stat", lambda: CpuCollector(CpuConfig())),
    ("stat", lambda: StatCollector(StatConfig())),
    ("meminfo", lambda: MeminfoCollector(EmptyConfig())),
    ("diskstats", lambda: DiskstatsCollector(DiskstatsConfig())),
    ("net/dev", lambda: NetdevCollector(NetdevConfig())),
    ("loadavg", lambda: LoadCollector(EmptyConfig())),
    ("mounts", lambda: FilesystemCollector(FilesystemConfig())),
]


@pytest.mark.parametrize(("entry", "make"), PROC_COLLECTORS)
def test_unreadable_proc_entry_is_a_clear_failure(tmp_path, entry, make):
    proc = tmp_path / "proc"
    (proc / entry).mkdir(parents=True)  # a directory where a file should be: read fails (even as root)
    with pytest.raises(CollectorFailure, match=rf"cannot read {proc / entry}: Is a directory"):
        list(make().collect(ctx(Paths(proc=proc, sys=tmp_path))))


def test_missing_proc_entry_is_reported_by_the_runner_without_traceback(tmp_path, caplog):
    job = Job("meminfo", MeminfoCollector(EmptyConfig()), EmptyConfig(), interval=15, timeout=5)
    runner = Runner([job], lambda j: ctx(Paths(proc=tmp_path)))
    (res,) = runner.run()
    assert not res.success
    assert res.error == f"cannot read {tmp_path / 'meminfo'}: No such file or directory"
    assert "Traceback" not in caplog.text


def test_malformed_proc_entry_names_file_and_line(tmp_path):
    (tmp_path / "meminfo").write_text("MemTotal: 1 kB\nMemFree: lots kB\n")
    with pytest.raises(CollectorFailure, match=rf"{tmp_path / 'meminfo'}: line 2: invalid value"):
        list(MeminfoCollector(EmptyConfig()).collect(ctx(Paths(proc=tmp_path))))


# ---------------------------------------------------------------- documentation


HOST_MODULES = ("cpu", "stat", "meminfo", "load", "filesystem", "diskstats", "netdev", "time", "timex",
                "hwmon", "uname")


@pytest.mark.parametrize("module", HOST_MODULES)
def test_every_declared_metric_and_option_is_documented(module):
    import dataclasses
    import importlib

    from collector.model import Desc
    from collector.registry import discover

    docs = (Path(__file__).parent.parent / "docs" / "collectors.md").read_text()
    mod = importlib.import_module(f"collector.{module}")
    def descs(value):
        if isinstance(value, Desc):
            yield value.name
        elif isinstance(value, tuple):
            for item in value:
                yield from descs(item)

    declared = {n for value in vars(mod).values() for n in descs(value)}
    assert declared or module in ("meminfo", "hwmon")
    assert [n for n in sorted(declared) if f"`{n}" not in docs] == []
    reg = next(r for r in discover().values() if r.factory.__module__ == f"collector.{module}")
    assert f"### {reg.name}\n" in docs
    # enabled, interval and timeout: every section's, documented once at the top
    common = ("enabled", "interval", "timeout")
    options = [f.name for f in dataclasses.fields(reg.config) if f.name not in common]
    assert [o for o in options if f"`{o}`" not in docs] == []
