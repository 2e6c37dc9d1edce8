"""Evaluate a parsed PromQL expression at one instant over a History, with Prometheus 2.x semantics."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

from rules.promql import functions as fn
from rules.promql.ast import (
    AggregateExpr,
    BinaryExpr,
    Call,
    Expr,
    Matcher,
    MatrixSelector,
    NumberLiteral,
    ParenExpr,
    StringLiteral,
    UnaryExpr,
    VectorMatching,
    VectorSelector,
    unwrap,
)
from rules.promql.errors import EvalError
from rules.promql.parser import COMPARISONS, make_matcher

if TYPE_CHECKING:
    from rules.history import History

Labels = dict[str, str]


@dataclass(slots=True)
class Series:
    """One element of an instant vector. ``labels`` include ``__name__`` when the metric name is kept;
    treat them as read-only (they may be shared with the history)."""

    labels: Labels
    value: float


@dataclass(frozen=True, slots=True)
class Scalar:
    """A scalar result."""

    value: float


@dataclass(frozen=True, slots=True)
class String:
    """A string result."""

    value: str


@dataclass(slots=True)
class RangeSeries:
    """One series of a range vector: timestamps in milliseconds and values."""

    labels: Labels
    ts: Sequence[float]
    values: Sequence[float]


Vector = list[Series]
Matrix = list[RangeSeries]
Value = Union[Vector, Scalar, String, Matrix]  # noqa: UP007 - a runtime alias

_ARITHMETIC: dict[str, Callable[[float, float], float]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": fn.go_div,
    "%": fn.go_mod,
    "^": fn.go_pow,
}
_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
}


def drop_name(labels: Labels) -> Labels:
    """The labels without ``__name__`` (a copy only when needed)."""
    if "__name__" not in labels:
        return labels
    out = dict(labels)
    del out["__name__"]
    return out


def _set_label(labels: Labels, name: str, value: str) -> Labels:
    """A copy of ``labels`` with ``name`` set to ``value``; an empty value removes it, as in Prometheus."""
    out = dict(labels)
    if value:
        out[name] = value
    else:
        out.pop(name, None)
    return out


def _key(labels: Labels) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


def _check_unique(vec: Vector, pos: int) -> None:
    seen = set()
    for s in vec:
        k = _key(s.labels)
        if k in seen:
            raise EvalError("vector cannot contain metrics with the same labelset", pos)
        seen.add(k)


def _single_name(vec: Vector) -> bool:
    """All elements share one metric name (or none), so dropping the name keeps label sets unique."""
    first = vec[0].labels.get("__name__") if vec else None
    return all(s.labels.get("__name__") == first for s in vec)


def _map_values(vec: Vector, f: Callable[[float], float], pos: int) -> Vector:
    """``f`` applied to every value, the metric name dropped; an error if that makes two series alike."""
    check = not _single_name(vec)
    out = [Series(drop_name(s.labels), f(s.value)) for s in vec]
    if check:
        _check_unique(out, pos)
    return out


def _fmt_labels(labels: Labels) -> str:
    name = labels.get("__name__", "")
    inner = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
    return f"{name}{{{inner}}}"


def _absent_labels(e: Expr) -> Labels:
    e = unwrap(e)
    if isinstance(e, MatrixSelector):
        e = e.selector
    if not isinstance(e, VectorSelector):
        return {}
    out: Labels = {}
    has: set[str] = set()
    for m in e.matchers:
        if m.name == "__name__":
            continue
        if m.op == "=" and m.name not in has:
            out[m.name] = m.value
            has.add(m.name)
        else:
            out.pop(m.name, None)
    return out


def go_expand(template: str, match: object, groupindex: dict[str, int], ngroups: int) -> str:
    """Go's regexp.Expand: ``$1``, ``${1}``, ``$name``, ``${name}``, ``$$``; unknown groups are empty."""
    out: list[str] = []
    i = 0
    while True:
        j = template.find("$", i)
        if j < 0:
            out.append(template[i:])
            return "".join(out)
        out.append(template[i:j])
        rest = template[j + 1 :]
        if rest.startswith("$"):
            out.append("$")
            i = j + 2
            continue
        brace = rest.startswith("{")
        k = 1 if brace else 0
        start = k
        while k < len(rest) and (rest[k].isalnum() or rest[k] == "_"):
            k += 1
        name = rest[start:k]
        if not name or (brace and (k >= len(rest) or rest[k] != "}")):
            out.append("$")  # malformed: a literal dollar
            i = j + 1
            continue
        if brace:
            k += 1
        i = j + 1 + k
        idx: int | None
        if name.isdigit() and not (name[0] == "0" and len(name) > 1) and name.isascii():
            idx = int(name)
        else:
            idx = groupindex.get(name)
        if idx is not None and idx <= ngroups:
            g = match.group(idx)  # type: ignore[attr-defined]
            if g is not None:
                out.append(g)


def _go_heap_push(h: list[Series], s: Series, less: Callable[[Series, Series], bool]) -> None:
    h.append(s)
    j = len(h) - 1
    while True:
        i = (j - 1) // 2 if j > 0 else 0
        if i == j or not less(h[j], h[i]):
            break
        h[i], h[j] = h[j], h[i]
        j = i


def _go_heap_down(h: list[Series], less: Callable[[Series, Series], bool]) -> None:
    i, n = 0, len(h)
    while True:
        j1 = 2 * i + 1
        if j1 >= n:
            break
        j = j1
        j2 = j1 + 1
        if j2 < n and less(h[j2], h[j1]):
            j = j2
        if not less(h[j], h[i]):
            break
        h[i], h[j] = h[j], h[i]
        i = j


def _less_value(a: Series, b: Series) -> bool:
    return a.value != a.value or a.value < b.value


def _less_reverse(a: Series, b: Series) -> bool:
    return a.value != a.value or a.value > b.value


class Engine:
    """Evaluates expressions over a History: ``instant(expr, t)`` with t in seconds since the epoch."""

    def __init__(self, history: History, lookback: float = 300.0):
        self.history = history
        self.lookback_ms = lookback * 1000

    def instant(self, expr: Expr, t: float) -> Value:
        """The value of ``expr`` at time ``t``; raises EvalError for errors that depend on the data."""
        return self._eval(expr, float(round(t * 1000)))

    # ------------------------------------------------------------ dispatch
    def _eval(self, e: Expr, t: float) -> Value:
        if isinstance(e, VectorSelector):
            return self._vector(e, t)
        if isinstance(e, Call):
            return self._call(e, t)
        if isinstance(e, BinaryExpr):
            return self._binary(e, t)
        if isinstance(e, NumberLiteral):
            return Scalar(e.value)
        if isinstance(e, AggregateExpr):
            return self._aggregate(e, t)
        if isinstance(e, ParenExpr):
            return self._eval(e.expr, t)
        if isinstance(e, UnaryExpr):
            v = self._eval(e.expr, t)
            if isinstance(v, Scalar):
                return Scalar(-v.value)
            vec = self._as_vector(v)
            check = not _single_name(vec)
            out = [Series(drop_name(s.labels), -s.value) for s in vec]
            if check:
                _check_unique(out, e.pos)
            return out
        if isinstance(e, StringLiteral):
            return String(e.value)
        if isinstance(e, MatrixSelector):
            return self._matrix(e, t)
        raise EvalError(f"cannot evaluate {type(e).__name__}", e.pos)

    @staticmethod
    def _as_vector(v: Value) -> Vector:
        assert isinstance(v, list)
        return v  # type: ignore[return-value]

    def _scalar(self, e: Expr, t: float) -> float:
        v = self._eval(e, t)
        assert isinstance(v, Scalar)
        return v.value

    def _string(self, e: Expr, t: float) -> str:
        v = self._eval(e, t)
        assert isinstance(v, String)
        return v.value

    # ------------------------------------------------------------ selectors
    def _vector(self, e: VectorSelector, t: float) -> Vector:
        ref = t - e.offset * 1000
        lookback = self.lookback_ms
        out = []
        for ring in self.history.select(e.name, e.matchers):
            p = ring.at(ref, lookback)
            if p is not None:
                out.append(Series(ring.labels, p[1]))
        return out

    def _vector_timestamps(self, e: VectorSelector, t: float) -> Vector:
        ref = t - e.offset * 1000
        out = []
        for ring in self.history.select(e.name, e.matchers):
            p = ring.at(ref, self.lookback_ms)
            if p is not None:
                out.append(Series(drop_name(ring.labels), p[0] / 1000))
        return out

    def _matrix(self, e: MatrixSelector, t: float) -> Matrix:
        hi = t - e.selector.offset * 1000
        lo = hi - e.range * 1000
        out = []
        for ring in self.history.select(e.selector.name, e.selector.matchers):
            ts, vs = ring.window(lo, hi)
            if len(ts):
                out.append(RangeSeries(ring.labels, ts, vs))
        return out

    # ------------------------------------------------------------ functions
    def _call(self, e: Call, t: float) -> Value:
        name = e.func
        args = e.args
        if name == "time":
            return Scalar(t / 1000)
        if any(a.type == "matrix" for a in args):
            return self._range_call(e, t)
        if name == "timestamp":
            inner = unwrap(args[0])
            if isinstance(inner, VectorSelector):
                return self._vector_timestamps(inner, t)
            return [Series(drop_name(s.labels), t / 1000) for s in self._as_vector(self._eval(inner, t))]
        if name == "vector":
            return [Series({}, self._scalar(args[0], t))]
        if name == "scalar":
            vec = self._as_vector(self._eval(args[0], t))
            return Scalar(vec[0].value if len(vec) == 1 else math.nan)
        if name in fn.DATE_FUNCTIONS:
            vec = self._as_vector(self._eval(args[0], t)) if args else [Series({}, t / 1000)]
            dated = []
            for s in vec:
                d = fn.date_value(name, s.value)
                dated.append(Series(drop_name(s.labels), math.nan if d is None else d))
            return dated
        if name == "absent":
            vec = self._as_vector(self._eval(args[0], t))
            return [] if vec else [Series(_absent_labels(args[0]), 1.0)]
        vec = self._as_vector(self._eval(args[0], t))
        out: Vector
        if name in fn.ELEMENTWISE:
            return _map_values(vec, fn.ELEMENTWISE[name], e.pos)
        if name == "sort":
            return sorted(vec, key=lambda s: (s.value != s.value, s.value if s.value == s.value else 0.0))
        if name == "sort_desc":
            return sorted(vec, key=lambda s: (s.value != s.value, -s.value if s.value == s.value else 0.0))
        if name in ("clamp", "clamp_min", "clamp_max", "round"):
            if name == "clamp":
                lo, hi = self._scalar(args[1], t), self._scalar(args[2], t)
                if hi < lo:
                    return []
                f2: Callable[[float], float] = lambda v: fn.go_max(lo, fn.go_min(hi, v))  # noqa: E731
            elif name == "clamp_min":
                lo = self._scalar(args[1], t)
                f2 = lambda v: fn.go_max(lo, v)  # noqa: E731
            elif name == "clamp_max":
                hi = self._scalar(args[1], t)
                f2 = lambda v: fn.go_min(hi, v)  # noqa: E731
            else:
                to = self._scalar(args[1], t) if len(args) > 1 else 1.0
                f2 = lambda v: fn.round_to(v, to)  # noqa: E731
            return _map_values(vec, f2, e.pos)
        if name == "label_replace":
            return self._label_replace(e, vec, t)
        if name == "label_join":
            dst = self._string(args[1], t)
            sep = self._string(args[2], t)
            srcs = [self._string(a, t) for a in args[3:]]
            out = []
            for s in vec:
                out.append(Series(_set_label(s.labels, dst, sep.join(s.labels.get(x, "") for x in srcs)),
                                  s.value))
            _check_unique(out, e.pos)
            return out
        raise EvalError(f"function '{name}' is not supported", e.pos)

    def _label_replace(self, e: Call, vec: Vector, t: float) -> Vector:
        dst = self._string(e.args[1], t)
        repl = self._string(e.args[2], t)
        src = self._string(e.args[3], t)
        regex = self._string(e.args[4], t)
        from collector.schema import compile_regex

        try:
            rx = compile_regex(f"^(?:{regex})$")
        except Exception as err:  # re2.error and re.error share no base class
            raise EvalError(f"invalid regular expression in label_replace(): {regex}", e.pos) from err
        groupindex = dict(getattr(rx, "groupindex", {}) or {})
        ngroups = int(getattr(rx, "groups", 0))
        out = []
        for s in vec:
            m = rx.match(s.labels.get(src, ""))
            if m is None:
                out.append(s)
                continue
            out.append(Series(_set_label(s.labels, dst, go_expand(repl, m, groupindex, ngroups)), s.value))
        _check_unique(out, e.pos)
        return out

    def _range_call(self, e: Call, t: float) -> Vector:
        name = e.func
        sel = unwrap(next(a for a in e.args if a.type == "matrix"))
        assert isinstance(sel, MatrixSelector)
        mat = self._matrix(sel, t)
        if name == "absent_over_time":
            return [] if mat else [Series(_absent_labels(sel), 1.0)]
        range_end = t - sel.selector.offset * 1000
        range_start = range_end - sel.range * 1000
        keep_name = name in fn.KEEPS_NAME
        f: Callable[[Sequence[float], Sequence[float]], float | None]
        if name in ("rate", "increase", "delta"):
            counter, is_rate = name != "delta", name == "rate"
            rng = sel.range

            def f(ts: Sequence[float], vs: Sequence[float]) -> float | None:
                return fn.extrapolated_rate(ts, vs, range_start, range_end, rng, counter, is_rate)
        elif name in ("irate", "idelta"):
            is_rate = name == "irate"

            def f(ts: Sequence[float], vs: Sequence[float]) -> float | None:
                return fn.instant_value(ts, vs, is_rate)
        elif name == "deriv":
            def f(ts: Sequence[float], vs: Sequence[float]) -> float | None:
                return fn.linear_regression(ts, vs, ts[0])[0] if len(vs) >= 2 else None
        elif name == "predict_linear":
            duration = self._scalar(e.args[1], t)

            def f(ts: Sequence[float], vs: Sequence[float]) -> float | None:
                if len(vs) < 2:
                    return None
                slope, intercept = fn.linear_regression(ts, vs, t)
                return slope * duration + intercept
        elif name == "quantile_over_time":
            q = self._scalar(e.args[0], t)

            def f(ts: Sequence[float], vs: Sequence[float]) -> float | None:
                return fn.quantile(q, list(vs))
        else:
            simple: dict[str, Callable[[Sequence[float]], float]] = {
                "avg_over_time": fn.avg_over_time,
                "sum_over_time": fn.sum_over_time,
                "min_over_time": fn.min_over_time,
                "max_over_time": fn.max_over_time,
                "count_over_time": lambda vs: float(len(vs)),
                "last_over_time": lambda vs: vs[-1],
                "present_over_time": lambda vs: 1.0,
                "stddev_over_time": lambda vs: math.sqrt(fn.stdvar_over_time(vs)),
                "stdvar_over_time": fn.stdvar_over_time,
                "changes": fn.changes,
                "resets": fn.resets,
            }
            g = simple[name]

            def f(ts: Sequence[float], vs: Sequence[float]) -> float | None:
                return g(vs)
        out = []
        names = set()
        for rs in mat:
            v = f(rs.ts, rs.values)
            if v is not None:
                labels = rs.labels if keep_name else drop_name(rs.labels)
                names.add(rs.labels.get("__name__"))
                out.append(Series(labels, v))
        if len(names) > 1 and not keep_name:
            _check_unique(out, e.pos)
        return out

    # ------------------------------------------------------------ binary operators
    def _binary(self, e: BinaryExpr, t: float) -> Value:
        lhs = self._eval(e.lhs, t)
        rhs = self._eval(e.rhs, t)
        op = e.op
        if isinstance(lhs, Scalar) and isinstance(rhs, Scalar):
            if op in COMPARISONS:
                return Scalar(1.0 if _COMPARE[op](lhs.value, rhs.value) else 0.0)
            return Scalar(_ARITHMETIC[op](lhs.value, rhs.value))
        if isinstance(rhs, Scalar):
            return self._vector_scalar(op, self._as_vector(lhs), rhs.value, False, e)
        if isinstance(lhs, Scalar):
            return self._vector_scalar(op, self._as_vector(rhs), lhs.value, True, e)
        lv, rv = self._as_vector(lhs), self._as_vector(rhs)
        matching = e.matching or VectorMatching("one-to-one")
        if op == "and":
            sigs = {self._signature(s.labels, matching) for s in rv}
            return [s for s in lv if self._signature(s.labels, matching) in sigs]
        if op == "unless":
            sigs = {self._signature(s.labels, matching) for s in rv}
            return [s for s in lv if self._signature(s.labels, matching) not in sigs]
        if op == "or":
            sigs = {self._signature(s.labels, matching) for s in lv}
            return lv + [s for s in rv if self._signature(s.labels, matching) not in sigs]
        return self._vector_vector(op, lv, rv, matching, e)

    def _vector_scalar(self, op: str, vec: Vector, scalar: float, swap: bool, e: BinaryExpr) -> Vector:
        out = []
        if op in COMPARISONS:
            cmp = _COMPARE[op]
            for s in vec:
                keep = cmp(scalar, s.value) if swap else cmp(s.value, scalar)
                if e.return_bool:
                    out.append(Series(drop_name(s.labels), 1.0 if keep else 0.0))
                elif keep:
                    out.append(s)
            if e.return_bool and not _single_name(vec):
                _check_unique(out, e.pos)
            return out
        f = _ARITHMETIC[op]
        for s in vec:
            v = f(scalar, s.value) if swap else f(s.value, scalar)
            out.append(Series(drop_name(s.labels), v))
        if not _single_name(vec):
            _check_unique(out, e.pos)
        return out

    @staticmethod
    def _signature(labels: Labels, m: VectorMatching) -> tuple[object, ...]:
        if m.on:
            return tuple(labels.get(n, "") for n in m.labels)
        ignored = m.labels
        return tuple(sorted((k, v) for k, v in labels.items() if k != "__name__" and k not in ignored))

    def _vector_vector(self, op: str, lhs: Vector, rhs: Vector, m: VectorMatching, e: BinaryExpr) -> Vector:
        one_to_many = m.card == "one-to-many"
        if one_to_many:
            lhs, rhs = rhs, lhs
        right: dict[tuple[object, ...], Series] = {}
        for rs in rhs:
            sig = self._signature(rs.labels, m)
            if sig in right:
                dup = right[sig]
                side = "left-hand side" if one_to_many else "right-hand side"
                raise EvalError(
                    f"found duplicate series for the match group on the {side} of the operation: "
                    f"[{_fmt_labels(rs.labels)}, {_fmt_labels(dup.labels)}];"
                    "many-to-many matching not allowed: matching labels must be unique on one side", e.pos)
            right[sig] = rs
        is_cmp = op in COMPARISONS
        arith = _ARITHMETIC.get(op)
        cmp = _COMPARE.get(op)
        matched: dict[tuple[object, ...], set[tuple[tuple[str, str], ...]] | None] = {}
        out = []
        for ls in lhs:
            sig = self._signature(ls.labels, m)
            if sig not in right:
                continue
            rs = right[sig]
            vl, vr = ls.value, rs.value
            if one_to_many:
                vl, vr = vr, vl
            if is_cmp:
                assert cmp is not None
                keep = cmp(vl, vr)
                value = vl
            else:
                assert arith is not None
                keep, value = True, arith(vl, vr)
            if e.return_bool:
                value = 1.0 if keep else 0.0
            elif not keep:
                continue
            metric = self._result_labels(ls.labels, rs.labels, op, m)
            if e.return_bool:
                metric = drop_name(metric)
            if m.card == "one-to-one":
                if sig in matched:
                    raise EvalError("multiple matches for labels: many-to-one matching must be explicit "
                                    "(group_left/group_right)", e.pos)
                matched[sig] = None
            else:
                inserted = matched.get(sig)
                if inserted is None:
                    inserted = set()
                    matched[sig] = inserted
                mk = _key(metric)
                if mk in inserted:
                    raise EvalError("multiple matches for labels: grouping labels must ensure unique matches",
                                    e.pos)
                inserted.add(mk)
            out.append(Series(metric, value))
        return out

    @staticmethod
    def _result_labels(lhs: Labels, rhs: Labels, op: str, m: VectorMatching) -> Labels:
        drop = op not in COMPARISONS
        if m.card == "one-to-one":
            if m.on:
                keep = set(m.labels)
                out = {k: v for k, v in lhs.items() if k in keep and not (drop and k == "__name__")}
            else:
                ignored = set(m.labels)
                out = {k: v for k, v in lhs.items() if k not in ignored and not (drop and k == "__name__")}
        else:
            out = drop_name(lhs) if drop else lhs
        if m.include:
            out = dict(out)
            for name in m.include:
                v = rhs.get(name, "")
                if v:
                    out[name] = v
                else:
                    out.pop(name, None)
        return out

    # ------------------------------------------------------------ aggregation
    def _aggregate(self, e: AggregateExpr, t: float) -> Vector:
        vec = self._as_vector(self._eval(e.expr, t))
        op = e.op
        k = 0
        q = 0.0
        value_label = ""
        if op in ("topk", "bottomk"):
            assert e.param is not None
            kf = self._scalar(e.param, t)
            if kf != kf or math.isinf(kf):
                raise EvalError(f"Scalar value {fn.format_float(kf)} overflows int64", e.pos)
            k = int(kf)
            if k < 1:
                return []
        elif op == "quantile":
            assert e.param is not None
            q = self._scalar(e.param, t)
        elif op == "count_values":
            assert e.param is not None
            value_label = self._string(e.param, t)
        grouping, without = e.grouping, e.without
        excluded = set(grouping) | {"__name__"}

        def group_labels(labels: Labels) -> Labels:
            if without:
                return {n: v for n, v in labels.items() if n not in excluded}
            return {n: labels[n] for n in grouping if n in labels}

        if op == "count_values":
            counts: dict[tuple[tuple[str, str], ...], list[object]] = {}
            for s in vec:
                gl = group_labels(s.labels)
                gl[value_label] = fn.format_float(s.value)
                ck = _key(gl)
                entry = counts.get(ck)
                if entry is None:
                    counts[ck] = [gl, 1]
                else:
                    entry[1] = int(entry[1]) + 1  # type: ignore[call-overload]
            return [Series(gl, float(n)) for gl, n in counts.values()]  # type: ignore[arg-type]

        groups: dict[object, list[object]] = {}
        heaps: dict[object, list[Series]] = {}
        for s in vec:
            if without:
                gkey: object = tuple(sorted((n, v) for n, v in s.labels.items() if n not in excluded))
            else:
                gkey = tuple(s.labels.get(n) for n in grouping)
            gk = gkey
            v = s.value
            g = groups.get(gk)
            if g is None:
                # [labels, value, mean, count]
                groups[gk] = [s.labels, v, v, 1]
                if op in ("topk", "bottomk", "quantile"):
                    heaps[gk] = [s]
                elif op in ("stddev", "stdvar"):
                    groups[gk][1] = 0.0
                elif op == "group":
                    groups[gk][1] = 1.0
                continue
            if op == "sum":
                g[1] += v  # type: ignore[operator]
            elif op == "avg":
                g[3] += 1  # type: ignore[operator]
                mean = float(g[2])  # type: ignore[arg-type]
                n = float(g[3])  # type: ignore[arg-type]
                if math.isinf(mean) and (
                        (math.isinf(v) and (mean > 0) == (v > 0)) or (not math.isinf(v) and v == v)):
                    continue
                g[2] = mean + (v / n - mean / n)
            elif op == "max":
                cur = float(g[1])  # type: ignore[arg-type]
                if cur < v or cur != cur:
                    g[1] = v
            elif op == "min":
                cur = float(g[1])  # type: ignore[arg-type]
                if cur > v or cur != cur:
                    g[1] = v
            elif op == "count":
                g[3] += 1  # type: ignore[operator]
            elif op in ("stddev", "stdvar"):
                g[3] += 1  # type: ignore[operator]
                delta = v - float(g[2])  # type: ignore[arg-type]
                g[2] = float(g[2]) + delta / float(g[3])  # type: ignore[arg-type]
                g[1] = float(g[1]) + delta * (v - float(g[2]))  # type: ignore[arg-type]
            elif op == "topk":
                h = heaps[gk]
                if len(h) < k:
                    _go_heap_push(h, s, _less_value)
                elif h[0].value < v or (h[0].value != h[0].value and v == v):
                    h[0] = s
                    if k > 1:
                        _go_heap_down(h, _less_value)
            elif op == "bottomk":
                h = heaps[gk]
                if len(h) < k:
                    _go_heap_push(h, s, _less_reverse)
                elif h[0].value > v or (h[0].value != h[0].value and v == v):
                    h[0] = s
                    if k > 1:
                        _go_heap_down(h, _less_reverse)
            elif op == "quantile":
                heaps[gk].append(s)
            # "group": the value stays 1

        out: Vector = []
        for gk, g in groups.items():
            labels = g[0]
            assert isinstance(labels, dict)
            if op in ("topk", "bottomk"):
                h = heaps[gk]
                if op == "topk":
                    h = sorted(h, key=lambda s: (s.value == s.value, s.value if s.value == s.value else 0),
                               reverse=True)
                else:
                    h = sorted(h, key=lambda s: (s.value != s.value, s.value if s.value == s.value else 0))
                out.extend(h)
                continue
            gl = group_labels(labels)
            if op == "avg":
                value = float(g[2])  # type: ignore[arg-type]
            elif op == "count":
                value = float(g[3])  # type: ignore[arg-type]
            elif op == "stdvar":
                value = float(g[1]) / float(g[3])  # type: ignore[arg-type]
            elif op == "stddev":
                value = math.sqrt(float(g[1]) / float(g[3]))  # type: ignore[arg-type]
            elif op == "quantile":
                value = fn.quantile(q, [s.value for s in heaps[gk]])
            else:
                value = float(g[1])  # type: ignore[arg-type]
            out.append(Series(gl, value))
        return out


def selector_matcher(name: str, op: str, value: str) -> Matcher:
    """A label matcher for programmatic selectors (same RE2 anchoring as parsed ones)."""
    return make_matcher(name, op, value)  # type: ignore[arg-type]
