"""Collector registry: ``@register("name")`` on a class, modules discovered by package scan."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from collector.model import Evidence, Sample
from collector.schema import Duration


class NoData(Exception):
    """Expected absence (no hwmon sensors on a VM): not a collector failure."""


class CollectorFailure(Exception):
    """A collector could not do its work; the message is shown to the user."""


@dataclass(frozen=True, slots=True)
class Paths:
    """Root paths, injected so collectors run against fixture trees in tests."""

    proc: Path = Path("/proc")
    sys: Path = Path("/sys")
    root: Path = Path("/")
    dev: Path = Path("/dev")
    run: Path = Path("/run")


class KeyValue(Protocol):
    """Durable per-collector state (read positions, baselines), backed by the agent's store."""

    def get(self, key: str) -> bytes | None: ...
    def put(self, key: str, value: bytes) -> None: ...
    def delete(self, key: str) -> None: ...
    def keys(self, prefix: str = "") -> list[str]: ...


class MemoryKeyValue:
    """A KeyValue kept in memory (for ``opsagent collect`` and tests)."""

    def __init__(self) -> None:
        self._d: dict[str, bytes] = {}

    def get(self, key: str) -> bytes | None:
        return self._d.get(key)

    def put(self, key: str, value: bytes) -> None:
        self._d[key] = value

    def delete(self, key: str) -> None:
        self._d.pop(key, None)

    def keys(self, prefix: str = "") -> list[str]:
        return sorted(k for k in self._d if k.startswith(prefix))


@dataclass
class Context:
    """What a collector gets for one run: the clock, root paths, its config, where to keep things."""

    config: Any
    paths: Paths = field(default_factory=Paths)
    clock: Callable[[], float] = field(default=lambda: __import__("time").time())
    instance: str = "localhost"
    state: KeyValue = field(default_factory=MemoryKeyValue)
    evidence: list[Evidence] = field(default_factory=list)

    def now(self) -> float:
        return self.clock()

    def add_evidence(self, ev: Evidence) -> None:
        self.evidence.append(ev)


class Collector(Protocol):
    """A collector observes and yields samples; it never thresholds or acts."""

    name: str

    def collect(self, ctx: Context) -> Iterable[Sample]: ...


@dataclass(frozen=True, slots=True)
class Registration:
    name: str
    factory: Callable[[Any], Collector]
    config: type
    default: bool
    doc: str


@dataclass(frozen=True)
class EmptyConfig:
    """A collector with no options besides ``enabled``, ``interval`` and ``timeout``."""

    enabled: bool | None = None
    # own collection interval and deadline; unset: schedule.interval and schedule.timeout
    interval: Duration | None = None
    timeout: Duration | None = None


_REGISTRY: dict[str, Registration] = {}


def register(name: str, *, config: type = EmptyConfig, default: bool = True) -> Callable[[type], type]:
    """Class decorator: make a collector known under ``name`` (also its config section).

    ``config`` is a frozen dataclass with an ``enabled: bool | None`` field;
    the class is constructed with the validated section.
    """

    def deco(cls: type) -> type:
        if name in _REGISTRY and _REGISTRY[name].factory is not cls:
            raise RuntimeError(f"collector {name!r} registered twice")
        cls.name = name  # type: ignore[attr-defined]
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        _REGISTRY[name] = Registration(name, cls, config, default, doc)
        return cls

    return deco


def discover() -> Mapping[str, Registration]:
    """Import every module of the ``collector`` package and return the registry."""
    import collector

    for mod in pkgutil.iter_modules(collector.__path__):
        if mod.name not in _FRAMEWORK_MODULES and not mod.name.startswith("_"):
            importlib.import_module(f"collector.{mod.name}")
    return dict(sorted(_REGISTRY.items()))


_FRAMEWORK_MODULES = {"model", "registry", "runner", "schema", "exposition", "procfs", "digest"}


def enabled(reg: Registration, section: Any) -> bool:
    """A collector runs when its section says ``enabled: true``, or by default when unset."""
    flag = getattr(section, "enabled", None)
    return reg.default if flag is None else bool(flag)
