"""Kernel and host identity, as node_exporter's uname collector."""

from __future__ import annotations

import os
from collections.abc import Iterator

from collector.model import Sample, gauge
from collector.procfs import read_text
from collector.registry import Context, EmptyConfig, register

INFO = gauge("node_uname_info", "Labeled system information as provided by the uname system call.")

# node_uname_info label -> file under /proc/sys/kernel (what uname(2) reports)
FILES = {
    "domainname": "domainname",
    "nodename": "hostname",
    "release": "osrelease",
    "sysname": "ostype",
    "version": "version",
}


@register("uname", config=EmptyConfig)
class UnameCollector:
    """Kernel name, release, version, machine and host name (node_uname_info)."""

    name = "uname"

    def __init__(self, config: EmptyConfig):
        self.config = config

    def collect(self, ctx: Context) -> Iterator[Sample]:
        kernel = ctx.paths.proc / "sys" / "kernel"
        labels = {label: read_text(kernel / f).strip() for label, f in FILES.items()}
        # the machine (architecture) is not in /proc; it is the running kernel's
        labels["machine"] = os.uname().machine
        yield INFO.sample(1, labels)
