"""Pure parsers of /proc text, tested with strings."""

from __future__ import annotations

import pytest

from collector.diskstats import parse_diskstats, parse_udev_properties
from collector.filesystem import Mount, parse_mounts
from collector.load import parse_loadavg
from collector.meminfo import parse_meminfo
from collector.netdev import parse_net_dev
from collector.procfs import parse_proc_stat


def test_meminfo_names_units_and_parentheses_as_node_exporter():
    info = parse_meminfo(
        "MemTotal:       16314516 kB\n"
        "Active(anon):       1560 kB\n"
        "HugePages_Total:       0\n"
        "Hugepagesize:       2048 kB\n"
        "\n"
    )
    assert info == {
        "MemTotal_bytes": 16314516 * 1024,
        "Active_anon_bytes": 1560 * 1024,
        "HugePages_Total": 0,
        "Hugepagesize_bytes": 2048 * 1024,
    }


@pytest.mark.parametrize("text", ["MemTotal: lots kB\n", "MemTotal 1 kB\n", "MemTotal: 1 kB extra\n"])
def test_meminfo_malformed_line_is_named(text):
    with pytest.raises(ValueError, match="line 1"):
        parse_meminfo(text)


def test_proc_stat():
    st = parse_proc_stat(
        "cpu  10 0 5 100 1 0 0 0 0 0\n"
        "cpu0 6 0 3 50 1 0 0 0 2 1\n"
        "cpu1 4 0 2 50 0 0 0 0 0 0\n"
        "intr 149577 0 0 1\n"
        "ctxt 324334\n"
        "btime 1795303546\n"
        "processes 9367\n"
        "procs_running 3\n"
        "procs_blocked 1\n"
        "softirq 104050 0 12713 4 1857 39893 0 2 23822 0 25759\n"
    )
    assert st.cpus == {"cpu0": [6, 0, 3, 50, 1, 0, 0, 0, 2, 1], "cpu1": [4, 0, 2, 50, 0, 0, 0, 0, 0, 0]}
    assert (st.intr, st.ctxt, st.btime, st.processes) == (149577, 324334, 1795303546, 9367)
    assert (st.procs_running, st.procs_blocked) == (3, 1)
    assert st.softirq[:3] == [104050, 0, 12713]


def test_proc_stat_old_kernel_without_steal_or_guest_columns():
    st = parse_proc_stat("cpu0 6 0 3 50\nbtime 1\nctxt 2\n")
    assert st.cpus["cpu0"] == [6, 0, 3, 50]
    assert st.procs_running is None


def test_proc_stat_malformed_line_is_named():
    with pytest.raises(ValueError, match=r"line 2: malformed 'ctxt'"):
        parse_proc_stat("cpu0 1 2 3 4\nctxt many\n")


def test_diskstats_modern_and_old_kernels():
    disks = parse_diskstats(
        " 254 0 vda 34419 7805 2236002 8433 10668 13813 1936672 4816 0 4916 13756 3959 67 98968 436 1259 69\n"
        "   8      16 sdb 1200 30 96000 450 800 20 64000 900 2 1000 1350\n"
    )
    assert disks[0].major == 254 and disks[0].minor == 0 and disks[0].device == "vda"
    assert len(disks[0].counters) == 17 and disks[0].counters[-1] == 69
    assert disks[1].device == "sdb" and len(disks[1].counters) == 11


def test_diskstats_malformed_line_is_named():
    with pytest.raises(ValueError, match="line 1"):
        parse_diskstats("8 0 sda 1 2 x 4\n")


def test_udev_properties():
    props = parse_udev_properties("S:disk/by-id/x\nE:ID_MODEL=Virtio_Disk\nE:ID_PATH=pci-0000:00:04.0\n")
    assert props == {"ID_MODEL": "Virtio_Disk", "ID_PATH": "pci-0000:00:04.0"}


NET_DEV = """Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:   66814     115    0    0    0     0          0         0    66814     115    0    0    0     0       0          0
  eth0:67040293    1635    1    2    3     4          5         6   114148     992    7    8    9    10      11         12
"""  # noqa: E501 - the kernel's own layout


def test_net_dev_including_a_counter_glued_to_the_colon():
    devs = parse_net_dev(NET_DEV)
    assert devs["lo"][0] == 66814 and devs["lo"][8] == 66814
    assert devs["eth0"] == (67040293, 1635, 1, 2, 3, 4, 5, 6, 114148, 992, 7, 8, 9, 10, 11, 12)


def test_net_dev_malformed_line_is_named():
    with pytest.raises(ValueError, match="line 3"):
        parse_net_dev(NET_DEV.splitlines()[0] + "\n" + NET_DEV.splitlines()[1] + "\n  eth0: 1 2 3\n")


def test_mounts_unescape_space_and_tab():
    mounts = parse_mounts("/dev/vdb /srv/my\\040data xfs ro,relatime 0 0\n/dev/vdc /a\\011b ext4 rw 0 0\n")
    assert mounts == [
        Mount("/dev/vdb", "/srv/my data", "xfs", "ro,relatime"),
        Mount("/dev/vdc", "/a\tb", "ext4", "rw"),
    ]


def test_mounts_malformed_line_is_named():
    with pytest.raises(ValueError, match="line 2"):
        parse_mounts("/dev/vda / ext4 rw 0 0\n/dev/vdb /srv\n")


def test_loadavg():
    assert parse_loadavg("0.22 0.24 0.11 1/100 9366\n") == (0.22, 0.24, 0.11)
