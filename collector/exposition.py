"""Prometheus text exposition format (version 0.0.4)."""

from __future__ import annotations

from collections.abc import Iterable

from collector.model import Sample, describe

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape_label(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n")


_INF = float("inf")


def format_value(v: float) -> str:
    """A sample value as the text format writes it (integers without a fraction, NaN, +Inf, -Inf)."""
    if v != v:
        return "NaN"
    if v == _INF or v == -_INF:
        return "+Inf" if v > 0 else "-Inf"
    if v.is_integer() and -1e15 < v < 1e15:
        return str(int(v))
    return repr(v)


class _LabelCache:
    """Rendered ``{k="v",...}`` strings by label set, reused across cycles.

    Most series keep their labels from one cycle to the next, so sorting and
    escaping them once saves most of the rendering work. Bounded by what the
    renders use: a label value that changes every cycle (a pid, a duration)
    would otherwise add an entry per cycle -- ~0.5 KB each, 10 MB before the
    old clear-at-20,000 rule kicked in, and pymalloc keeps such memory. When
    the cache holds more than twice the label sets of the last render, it
    starts a new generation: entries used since move over, the rest go at the
    next turn.
    """

    def __init__(self, floor: int = 256):
        self.floor = floor
        self.d: dict[tuple[tuple[str, str], ...], tuple[tuple[tuple[str, str], ...], str]] = {}
        self.old: dict[tuple[tuple[str, str], ...], tuple[tuple[tuple[str, str], ...], str]] = {}

    def __len__(self) -> int:
        return len(self.d) + len(self.old)

    def get(self, labels: tuple[tuple[str, str], ...]) -> tuple[tuple[tuple[str, str], ...], str]:
        hit = self.d.get(labels)
        if hit is None:
            hit = self.old.pop(labels, None)
            if hit is None:
                key = tuple(sorted(labels))
                text = "{" + ",".join(f'{k}="{_escape_label(v)}"' for k, v in key) + "}" if key else ""
                hit = (key, text)
            self.d[labels] = hit
        return hit

    def settle(self, used: int) -> None:
        """After a render of ``used`` samples: turn a generation when the cache outgrew them."""
        if len(self.d) > 2 * used + self.floor:
            self.old = self.d
            self.d = {}


_LABELS = _LabelCache()
_HEADERS: dict[str, str] = {}


def _header(name: str) -> str:
    h = _HEADERS.get(name)
    if h is None:
        d = describe(name)
        h = f"# HELP {name} {_escape_help(d.help)}\n" if d.help else ""
        h += f"# TYPE {name} {'gauge' if d.type == 'info' else d.type}\n"
        if d.type != "untyped":  # an undeclared name may still be declared later
            _HEADERS[name] = h
    return h


def render(samples: Iterable[Sample]) -> str:
    """Render samples grouped by family, families sorted by name, series sorted by labels.

    Of several samples of one series the last wins.
    """
    fams: dict[str, dict[tuple[tuple[str, str], ...], tuple[str, float]]] = {}
    labels_of = _LABELS.get
    used = 0
    for s in samples:
        used += 1
        key, text = labels_of(tuple(s.labels.items()))
        fam = fams.get(s.name)
        if fam is None:
            fam = fams[s.name] = {}
        fam[key] = (text, s.value)
    out: list[str] = []
    for name in sorted(fams):
        out.append(_header(name))
        fam = fams[name]
        for key in sorted(fam):
            text, value = fam[key]
            out.append(f"{name}{text} {format_value(value)}\n")
    _LABELS.settle(used)
    return "".join(out)
