"""Network interface traffic from /proc/net/dev, plus link state from /sys/class/net.

Names as node_exporter's netdev collector (``node_network_receive_bytes_total``
...) and the cheap part of its netclass collector (``node_network_up``,
``node_network_info``, ``node_network_mtu_bytes``, ``node_network_speed_bytes``,
``node_network_carrier``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from collector.model import Desc, Sample, counter, gauge
from collector.procfs import read_attr, read_text
from collector.registry import CollectorFailure, Context, register
from collector.schema import Duration, Regex, compile_regex

# Column order of /proc/net/dev after "iface:".
FIELDS = (
    "receive_bytes", "receive_packets", "receive_errs", "receive_drop",
    "receive_fifo", "receive_frame", "receive_compressed", "receive_multicast",
    "transmit_bytes", "transmit_packets", "transmit_errs", "transmit_drop",
    "transmit_fifo", "transmit_colls", "transmit_carrier", "transmit_compressed",
)
STATS: tuple[Desc, ...] = tuple(
    counter(f"node_network_{f}_total", f"Network device statistic {f}.") for f in FIELDS
)

UP = gauge("node_network_up", "Value is 1 if operstate is 'up', 0 otherwise.")
INFO = gauge("node_network_info", "Non-numeric data from /sys/class/net/<iface>, value is always 1.")
MTU = gauge("node_network_mtu_bytes", "Network device property: mtu_bytes")
SPEED = gauge("node_network_speed_bytes", "Network device property: speed_bytes")
CARRIER = gauge("node_network_carrier", "Network device property: carrier")

MBIT_TO_BYTES = 1_000_000 / 8  # sysfs "speed" is in Mbit/s
LINK_VALUES = (("mtu", MTU, 1.0), ("speed", SPEED, MBIT_TO_BYTES), ("carrier", CARRIER, 1.0))


def parse_net_dev(text: str) -> dict[str, tuple[int, ...]]:
    """Parse /proc/net/dev into device -> the 16 counters in ``FIELDS`` order.

    A line that is not two header lines or ``iface: 16 numbers`` raises ValueError naming it.
    """
    out: dict[str, tuple[int, ...]] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if lineno <= 2 or not line.strip():
            continue  # the two header lines
        dev, sep, rest = line.partition(":")
        values = rest.split()
        try:
            if not sep or len(values) < len(FIELDS):
                raise ValueError
            out[dev.strip()] = tuple(int(v) for v in values[: len(FIELDS)])
        except ValueError:
            raise ValueError(f"line {lineno}: malformed net/dev line {line[:80]!r}") from None
    return out


@dataclass(frozen=True)
class NetdevConfig:
    """Options of the netdev collector."""

    enabled: bool | None = None
    # own collection interval and deadline; unset: schedule.interval and schedule.timeout
    interval: Duration | None = None
    timeout: Duration | None = None
    # interfaces not reported (RE2), e.g. "^(lo|veth.*)$"; default: none excluded
    device_exclude: Regex | None = None
    # if set, only interfaces matching it are reported
    device_include: Regex | None = None
    # also read link state from /sys/class/net (node_network_up, _info, _mtu_bytes, _speed_bytes)
    link_state: bool = True


@register("netdev", config=NetdevConfig)
class NetdevCollector:
    """Bytes, packets, errors and drops per network interface, and whether each link is up."""

    name = "netdev"

    def __init__(self, config: NetdevConfig):
        self.config = config
        self._exclude = compile_regex(config.device_exclude) if config.device_exclude else None
        self._include = compile_regex(config.device_include) if config.device_include else None

    def collect(self, ctx: Context) -> Iterator[Sample]:
        path = ctx.paths.proc / "net" / "dev"
        try:
            devices = parse_net_dev(read_text(path))
        except ValueError as e:
            raise CollectorFailure(f"{path}: {e}") from e
        sys_net = str(ctx.paths.sys / "class" / "net")
        for dev, values in devices.items():
            if (self._exclude and self._exclude.search(dev)) or (
                self._include and not self._include.search(dev)
            ):
                continue
            lab = {"device": dev}
            for desc, v in zip(STATS, values):
                yield desc.sample(v, lab)
            if self.config.link_state:
                yield from self._link(f"{sys_net}/{dev}", lab)

    @staticmethod
    def _link(base: str, lab: dict[str, str]) -> Iterator[Sample]:
        operstate = read_attr(f"{base}/operstate")
        if operstate is None:
            return  # not in sysfs (another network namespace's view): traffic only
        yield UP.sample(1 if operstate == "up" else 0, lab)
        yield INFO.sample(1, {
            "address": read_attr(f"{base}/address") or "",
            "broadcast": read_attr(f"{base}/broadcast") or "",
            "device": lab["device"],
            "duplex": read_attr(f"{base}/duplex") or "",
            "ifalias": read_attr(f"{base}/ifalias") or "",
            "operstate": operstate,
        })
        for attr, desc, scale in LINK_VALUES:
            text = read_attr(f"{base}/{attr}")
            if text and text.lstrip("-").isdigit() and int(text) >= 0:  # speed -1: unknown, skipped
                yield desc.sample(int(text) * scale, lab)
