"""Run rule unit tests written in promtool's format (``promtool test rules``), over our own engine.

A test file names ``rule_files`` (relative to itself), an ``evaluation_interval`` and ``tests``; each
test loads ``input_series`` in expanding notation (``0+10x100``, ``1-1x5``, ``_``, ``stale``), then
checks ``alert_rule_test`` (firing alerts at ``eval_time``, with labels and rendered annotations)
and ``promql_expr_test`` (an instant query's samples). The report reads like promtool's; the same
files run unchanged under promtool.
"""

from __future__ import annotations

import dataclasses
import glob
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from rules.history import STALE_NAN, History
from rules.promql import Engine, EvalError, PromQLError, Scalar, parse
from rules.promql.lexer import parse_duration, tokenize

_NUM = (r"(?:[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?|[0-9]+\.(?:[eE][-+]?[0-9]+)?|0[xX][0-9a-fA-F]+"
        r"|[Ii]nf|NaN|nan)")
_ITEM = re.compile(rf"(?P<a>[-+]?{_NUM})(?:(?P<op>[-+])(?P<b>{_NUM}))?(?:x(?P<n>[0-9]+))?")
_BLANK = re.compile(r"_(?:x(?P<n>[0-9]+))?")

Point = float | None  # None: no sample at this step ("_")


class TestFileError(ValueError):
    """A test file that cannot be read or has a bad value; the message names the file and the part."""


def _num(text: str) -> float:
    t = text.lstrip("+-")
    sign = -1.0 if text.startswith("-") else 1.0
    if t[:2].lower() == "0x":
        return sign * float(int(t, 16))
    return sign * float(t)


def parse_values(text: str) -> list[Point]:
    """Expand promtool's series notation into one value (or None, or the stale marker) per step.

    ``a+bxn`` gives n+1 values a, a+b, ... (accumulated, as promtool does); ``axn`` repeats a n+1
    times; ``_xn`` is n missing steps; ``stale`` is a staleness marker.
    """
    out: list[Point] = []
    for word in str(text).split():
        m = _BLANK.fullmatch(word)
        if m:
            out.extend([None] * (int(m.group("n")) if m.group("n") else 1))
            continue
        if word == "stale":
            out.append(STALE_NAN)
            continue
        m = _ITEM.fullmatch(word)
        if not m:
            raise TestFileError(f"bad series value {word!r} (expected e.g. 1, 0+10x100, 1-1x5, _x3, stale)")
        a = _num(m.group("a"))
        if m.group("n") is None:
            if m.group("op"):
                raise TestFileError(f"bad series value {word!r}: a step needs a count, e.g. {word}x10")
            out.append(a)
            continue
        n = int(m.group("n"))
        b = _num(m.group("op") + m.group("b")) if m.group("op") else 0.0
        out.append(a)
        for _ in range(n):
            a += b
            out.append(a)
    return out


def parse_metric(text: str) -> dict[str, str]:
    """Labels of ``name{a="b"}`` or ``{__name__="x", a="b"}`` (only ``=`` allowed)."""
    toks = tokenize(text)
    labels: dict[str, str] = {}
    i = 0
    if toks[i].kind == "IDENT":
        labels["__name__"] = toks[i].text
        i += 1
    if toks[i].text == "{":
        i += 1
        while toks[i].text != "}":
            name, eq, value = toks[i], toks[i + 1], toks[i + 2]
            if name.kind != "IDENT" or eq.text != "=" or value.kind != "STRING":
                raise PromQLError(f"bad label matcher in series {text!r}", name.pos)
            labels[name.text] = str(value.value)
            i += 3
            if toks[i].text == ",":
                i += 1
            elif toks[i].text != "}":
                raise PromQLError(f"expected ',' or '}}' in series {text!r}", toks[i].pos)
        i += 1
    if toks[i].kind != "EOF":
        raise PromQLError(f"unexpected {toks[i].text!r} in series {text!r}", toks[i].pos)
    return labels


def _duration(value: Any, what: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and value == 0:
        return 0.0
    text = str(value).strip()
    if text == "0":
        return 0.0
    try:
        return parse_duration(text)
    except PromQLError as e:
        raise TestFileError(f"{what}: {e}") from None


def go_duration(seconds: float) -> str:
    """Go's time.Duration.String for whole milliseconds (1m0s, 1h30m0s, 500ms)."""
    if seconds == 0:
        return "0s"
    if abs(seconds) < 1:
        return f"{round(seconds * 1000)}ms"
    sign = "-" if seconds < 0 else ""
    s = abs(seconds)
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    sec_s = f"{sec:.3f}".rstrip("0").rstrip(".") + "s"
    if h:
        return f"{sign}{int(h)}h{int(m)}m{sec_s}"
    if m:
        return f"{sign}{int(m)}m{sec_s}"
    return sign + sec_s


def _fmt_labels(labels: Mapping[str, str]) -> str:
    return "{" + ", ".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items())) + "}"


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _fmt_metric(labels: Mapping[str, str]) -> str:
    name = labels.get("__name__", "")
    rest = {k: v for k, v in labels.items() if k != "__name__"}
    if name and not rest:
        return name
    return name + _fmt_labels(rest)


def _fmt_value(v: float) -> str:
    from rules.template import go_shortest

    return go_shortest(v)


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


class _TestGroup:
    def __init__(self, spec: Mapping[str, Any], eval_interval: float, index: int):
        if not isinstance(spec, Mapping):
            raise TestFileError(f"tests[{index}]: must be a mapping")
        self.spec = spec
        self.index = index
        self.name = str(spec.get("name", ""))
        self.interval = _duration(spec.get("interval", eval_interval or 60), f"tests[{index}].interval") \
            if spec.get("interval") is not None else eval_interval
        self.external_labels = {str(k): str(v) for k, v in (spec.get("external_labels") or {}).items()}
        self.external_url = str(spec.get("external_url", "") or "")

    def points(self) -> list[tuple[float, dict[str, str], float]]:
        """Every input point as (time, labels, value), in time order, for loading them lazily."""
        out: list[tuple[float, dict[str, str], float]] = []
        for j, s in enumerate(self.spec.get("input_series") or []):
            where = f"tests[{self.index}].input_series[{j}]"
            if not isinstance(s, Mapping) or "series" not in s:
                raise TestFileError(f"{where}: needs 'series' and 'values'")
            try:
                labels = parse_metric(str(s["series"]))
            except PromQLError as e:
                raise TestFileError(f"{where}.series: {e}") from None
            try:
                values = parse_values(str(s.get("values", "")))
            except TestFileError as e:
                raise TestFileError(f"{where}.values: {e}") from None
            out.extend((k * self.interval, labels, v) for k, v in enumerate(values) if v is not None)
        out.sort(key=lambda p: p[0])  # stable: each series stays in time order
        return out


class _LazyHistory:
    """The group's history, filled only up to the time asked, as promtool's LazyLoader does: a
    rule evaluated at t sees no later samples (a negative offset finds nothing, as in a real
    Prometheus), and expression tests see samples up to the group's last eval_time."""

    def __init__(self, points: list[tuple[float, dict[str, str], float]]):
        self.history = History(retention=1e12)
        self._points = points
        self._next = 0

    def load_till(self, t: float) -> History:
        """Add the points at or before ``t`` seconds; return the history."""
        points, i = self._points, self._next
        while i < len(points) and points[i][0] <= t + 1e-9:
            at, labels, value = points[i]
            self.history.add_point(labels, at, value)
            i += 1
        self._next = i
        return self.history


def _alert_errors(test: Mapping[str, Any], got_alerts: list[Any], where: str) -> list[str]:
    name = str(test.get("alertname", ""))
    eval_time = _duration(test.get("eval_time", 0), f"{where}.eval_time")
    exp = []
    for a in test.get("exp_alerts") or []:
        a = a or {}
        labels = {str(k): str(v) for k, v in (a.get("exp_labels") or {}).items()}
        labels["alertname"] = name
        ann = {str(k): str(v) for k, v in (a.get("exp_annotations") or {}).items()}
        exp.append((labels, ann))
    got = [({k: v for k, v in g.labels.items()}, dict(g.annotations)) for g in got_alerts
           if g.state == "firing" and g.name == name]
    key = lambda la: (sorted(la[0].items()), sorted(la[1].items()))  # noqa: E731
    exp.sort(key=key)
    got.sort(key=key)
    if exp == got:
        return []

    def show(items: list[tuple[dict[str, str], dict[str, str]]]) -> str:
        if not items:
            return "[]"
        rows = "".join(f"\n            {i}:\n              Labels:{_fmt_labels(la)}\n"
                       f"              Annotations:{_fmt_labels(an)}" for i, (la, an) in enumerate(items))
        return f"[{rows}\n            ]"

    return [f"    alertname: {name}, time: {go_duration(eval_time)}, \n        exp:{show(exp)}, \n"
            f"        got:{show(got)}"]


def _expr_errors(test: Mapping[str, Any], engine: Engine, where: str) -> list[str]:
    expr = str(test.get("expr", ""))
    eval_time = _duration(test.get("eval_time", 0), f"{where}.eval_time")
    head = f"    expr: {expr!r}, time: {go_duration(eval_time)}"
    try:
        result = engine.instant(parse(expr), eval_time)
    except (PromQLError, EvalError) as e:
        return [f"{head}, err: {e}"]
    got: list[tuple[dict[str, str], float]]
    if isinstance(result, Scalar):
        got = [({}, result.value)]
    elif isinstance(result, list) and all(hasattr(s, "value") and hasattr(s, "labels") for s in result):
        got = [(dict(s.labels), float(s.value)) for s in result]  # type: ignore[union-attr]
    else:
        return [f"{head}, err: query result is not a vector or scalar"]
    exp = []
    for j, s in enumerate(test.get("exp_samples") or []):
        try:
            labels = parse_metric(str(s.get("labels", "{}")))
        except PromQLError as e:
            return [f"{head}, err: exp_samples[{j}].labels: {e}"]
        v = s.get("value", 0)
        exp.append((labels, float(v) if not isinstance(v, str) else _num(v.strip())))
    exp.sort(key=lambda x: sorted(x[0].items()))
    got.sort(key=lambda x: sorted(x[0].items()))
    if len(exp) == len(got) and all(e[0] == g[0] and _same(e[1], g[1]) for e, g in zip(exp, got)):
        return []

    def show(items: list[tuple[dict[str, str], float]]) -> str:
        return "[" + ", ".join(f"{_fmt_metric(la)} {_fmt_value(v)}" for la, v in items) + "]"

    return [f"{head},\n        exp: {show(exp)}\n        got: {show(got)}"]


def run_test_file(path: str | Path, options: Any = None) -> list[str]:
    """The failures of one test file (empty when it passes); raises TestFileError for a bad file."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise TestFileError(str(e)) from None
    if not isinstance(doc, Mapping):
        raise TestFileError("a test file must be a mapping with 'rule_files' and 'tests'")
    eval_interval = _duration(doc.get("evaluation_interval", "1m"), "evaluation_interval")
    rule_paths: list[str] = []
    for pattern in doc.get("rule_files") or []:
        full = str(pattern) if Path(str(pattern)).is_absolute() else str(path.parent / str(pattern))
        found = sorted(glob.glob(full))
        if not found:
            raise TestFileError(f"rule_files: no file matches {pattern!r}")
        rule_paths.extend(found)
    ruleset = None
    if rule_paths:
        from collector.schema import ConfigError
        from rules.loader import load_files

        try:
            ruleset = load_files(rule_paths)
        except ConfigError as e:
            raise TestFileError(f"rule_files: {e}") from None
    errors: list[str] = []
    for i, spec in enumerate(doc.get("tests") or []):
        group = _TestGroup(spec, eval_interval, i)
        errors.extend(_run_group(group, ruleset, eval_interval, options))
    return errors


def _run_group(group: _TestGroup, ruleset: Any, eval_interval: float, options: Any) -> list[str]:
    lazy = _LazyHistory(group.points())
    engine = Engine(lazy.history)
    spec = group.spec
    alert_tests = list(spec.get("alert_rule_test") or [])
    expr_tests = list(spec.get("promql_expr_test") or [])
    where = f"tests[{group.index}]"
    times = [(_duration(a.get("eval_time", 0), f"{where}.alert_rule_test[{j}].eval_time"), j)
             for j, a in enumerate(alert_tests)]
    expr_times = [_duration(p.get("eval_time", 0), f"{where}.promql_expr_test[{j}].eval_time")
                  for j, p in enumerate(expr_tests)]
    max_t = max([t for t, _ in times] + expr_times + [0.0])
    errors: list[str] = []
    if ruleset is not None and (alert_tests or expr_tests):
        from rules.evaluator import RuleEvaluator
        from rules.loader import RulesOptions

        opts = options or RulesOptions(flapping=False)
        opts = dataclasses.replace(opts, external_labels={**opts.external_labels, **group.external_labels})
        evaluator = RuleEvaluator(ruleset, opts)
        pending = sorted(times)
        step = 0
        while True:
            ts = step * eval_interval
            if ts > max_t + 1e-9:
                break
            alerts = evaluator.evaluate(lazy.load_till(ts), ts)
            while pending and ts <= pending[0][0] < ts + eval_interval:
                _, j = pending.pop(0)
                errors.extend(_alert_errors(alert_tests[j], alerts, f"{where}.alert_rule_test[{j}]"))
            step += 1
        for _, j in pending:  # eval_time before 0 never happens; kept for safety
            errors.extend(_alert_errors(alert_tests[j], [], f"{where}.alert_rule_test[{j}]"))
    elif alert_tests:
        errors.append(f"    {where}: alert_rule_test needs rule_files")
    lazy.load_till(max_t)
    for j, p in enumerate(expr_tests):
        errors.extend(_expr_errors(p, engine, f"{where}.promql_expr_test[{j}]"))
    if errors and group.name:
        errors.insert(0, f"    name: {group.name},")
    return errors


def run_test_files(paths: Sequence[str | Path], options: Any = None) -> tuple[bool, str]:
    """Run promtool-format rule test files; return (all passed, a report like promtool's)."""
    ok = True
    out: list[str] = []
    for p in paths:
        out.append(f"Unit Testing:  {p}")
        try:
            errors = run_test_file(p, options)
        except TestFileError as e:
            ok = False
            out.append(f"  FAILED:\n    {p}: {e}")
            out.append("")
            continue
        if errors:
            ok = False
            out.append("  FAILED:")
            out.extend(errors)
        else:
            out.append("  SUCCESS")
        out.append("")
    return ok, "\n".join(out)
