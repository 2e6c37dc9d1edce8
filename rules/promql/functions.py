"""PromQL functions: their signatures (checked at parse time) and their arithmetic (Prometheus 2.x semantics).

Range functions receive the samples of one series inside the window as two arrays (timestamps in
milliseconds, values) and return a float, or None for "no output". Element-wise functions map one
float to another. The engine does the selection, labels and output assembly.
"""

from __future__ import annotations

import calendar
import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from rules.promql.ast import ValueType

# Prometheus functions we know about but do not implement: refused at parse time by name.
UNSUPPORTED = frozenset({
    "histogram_quantile", "histogram_count", "histogram_sum", "histogram_fraction", "holt_winters",
    "double_exponential_smoothing", "mad_over_time", "sort_by_label", "sort_by_label_desc", "info",
    "acos", "acosh", "asin", "asinh", "atan", "atanh", "cos", "cosh", "sin", "sinh", "tan", "tanh",
    "deg", "rad", "pi", "histogram_avg", "histogram_stddev", "histogram_stdvar", "limitk", "limit_ratio",
    "ts_of_max_over_time", "ts_of_min_over_time", "ts_of_last_over_time", "first_over_time",
})


@dataclass(frozen=True, slots=True)
class Signature:
    """Argument types, how many may be left out at the end (``optional``), variadic tail, result type."""

    args: tuple[ValueType, ...]
    returns: ValueType = "vector"
    optional: int = 0
    variadic: bool = False


def _sig(*args: ValueType, returns: ValueType = "vector", optional: int = 0,
         variadic: bool = False) -> Signature:
    return Signature(tuple(args), returns, optional, variadic)


_DATE = _sig("vector", optional=1)

SIGNATURES: dict[str, Signature] = {
    **{f: _sig("matrix") for f in (
        "rate", "irate", "increase", "delta", "idelta", "deriv", "changes", "resets",
        "avg_over_time", "min_over_time", "max_over_time", "sum_over_time", "count_over_time",
        "last_over_time", "stddev_over_time", "stdvar_over_time", "present_over_time", "absent_over_time")},
    "quantile_over_time": _sig("scalar", "matrix"),
    "predict_linear": _sig("matrix", "scalar"),
    "absent": _sig("vector"),
    "time": _sig(returns="scalar"),
    "timestamp": _sig("vector"),
    **{f: _sig("vector") for f in ("abs", "ceil", "floor", "sqrt", "exp", "ln", "log2", "log10", "sgn",
                                   "sort", "sort_desc")},
    "round": _sig("vector", "scalar", optional=1),
    "clamp": _sig("vector", "scalar", "scalar"),
    "clamp_min": _sig("vector", "scalar"),
    "clamp_max": _sig("vector", "scalar"),
    "label_replace": _sig("vector", "string", "string", "string", "string"),
    "label_join": _sig("vector", "string", "string", "string", variadic=True),
    "vector": _sig("scalar"),
    "scalar": _sig("vector", returns="scalar"),
    **{f: _DATE for f in ("hour", "minute", "day_of_week", "day_of_month", "days_in_month", "month", "year",
                          "day_of_year")},
}

# Functions whose output keeps the metric name (all others drop it, as Prometheus does).
KEEPS_NAME = frozenset({"last_over_time", "sort", "sort_desc", "label_replace", "label_join"})


# ---------------------------------------------------------------- float helpers with Go semantics


def go_max(a: float, b: float) -> float:
    """Go's math.Max: NaN wins."""
    if a != a or b != b:
        return math.nan
    return a if a > b else b


def go_min(a: float, b: float) -> float:
    """Go's math.Min: NaN wins."""
    if a != a or b != b:
        return math.nan
    return a if a < b else b


def kahan_inc(inc: float, s: float, c: float) -> tuple[float, float]:
    """One step of Neumaier-compensated summation, as Prometheus' kahanSumInc."""
    t = s + inc
    if abs(s) >= abs(inc):
        c += (s - t) + inc
    else:
        c += (inc - t) + s
    return t, c


def _regression_sum(values: Sequence[float]) -> float:
    """Sum as Prometheus' linearRegression does (Kahan), fast when the exact sum is finite.

    math.fsum is exactly rounded, which equals Kahan's result in practice and runs in C; it raises
    on ``inf - inf`` or an intermediate overflow, and Kahan turns any infinity into NaN (its
    compensation term becomes ``inf - inf``). So a sum that is not finite is recomputed Kahan's way.
    """
    try:
        s = math.fsum(values)
    except (ValueError, OverflowError):
        s = math.inf
    if math.isfinite(s):
        return s
    total = c = 0.0
    for v in values:
        total, c = kahan_inc(v, total, c)
    return total + c


def quantile(q: float, values: list[float]) -> float:
    """Prometheus' quantile with linear interpolation; q outside [0, 1] gives -Inf/+Inf, NaN sorts first."""
    if not values:
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    if q != q:
        return math.nan
    vs = sorted(values, key=lambda v: (v == v, v if v == v else 0.0))
    n = len(vs)
    rank = q * (n - 1)
    lower = max(0, math.floor(rank))
    upper = min(n - 1, lower + 1)
    weight = rank - math.floor(rank)
    return vs[int(lower)] * (1 - weight) + vs[int(upper)] * weight


def go_mod(a: float, b: float) -> float:
    """Go's math.Mod: the result has the sign of ``a``."""
    if b == 0 or a != a or b != b or math.isinf(a):
        return math.nan
    if math.isinf(b):
        return a
    return math.fmod(a, b)


def go_pow(a: float, b: float) -> float:
    """Go's math.Pow, without Python's exceptions."""
    try:
        r = math.pow(a, b)
    except OverflowError:
        return math.inf if a > 0 or (float(b).is_integer() and int(b) % 2 == 0) else -math.inf
    except ValueError:
        if a == 0 and b < 0:
            return math.inf if not (float(b).is_integer() and int(b) % 2 == 1 and math.copysign(1, a) < 0) \
                else -math.inf
        return math.nan
    return r


def go_div(a: float, b: float) -> float:
    """IEEE division: x/0 is +-Inf, 0/0 is NaN."""
    try:
        return a / b
    except ZeroDivisionError:
        if a != a or a == 0:
            return math.nan
        return math.copysign(math.inf, a) * math.copysign(1, b)


# ---------------------------------------------------------------- range functions


def extrapolated_rate(ts: Sequence[float], vs: Sequence[float], range_start: float, range_end: float,
                      range_s: float, is_counter: bool, is_rate: bool) -> float | None:
    """rate/increase/delta: Prometheus' extrapolatedRate (timestamps in ms)."""
    n = len(vs)
    if n < 2:
        return None
    result = vs[-1] - vs[0]
    if is_counter:
        last = 0.0
        for v in vs:
            if v < last:
                result += last
            last = v
    duration_to_start = (ts[0] - range_start) / 1000
    duration_to_end = (range_end - ts[-1]) / 1000
    sampled = (ts[-1] - ts[0]) / 1000
    avg_between = sampled / (n - 1)
    if is_counter and result > 0 and vs[0] >= 0:
        duration_to_zero = sampled * (vs[0] / result)
        if duration_to_zero < duration_to_start:
            duration_to_start = duration_to_zero
    threshold = avg_between * 1.1
    interval = sampled
    interval += duration_to_start if duration_to_start < threshold else avg_between / 2
    interval += duration_to_end if duration_to_end < threshold else avg_between / 2
    factor = interval / sampled
    if is_rate:
        factor /= range_s
    return result * factor


def instant_value(ts: Sequence[float], vs: Sequence[float], is_rate: bool) -> float | None:
    """irate/idelta: the last two samples."""
    if len(vs) < 2:
        return None
    last, prev = vs[-1], vs[-2]
    result = last if is_rate and last < prev else last - prev
    interval = ts[-1] - ts[-2]
    if interval == 0:
        return None
    if is_rate:
        result /= interval / 1000
    return result


def linear_regression(ts: Sequence[float], vs: Sequence[float], intercept_time: float) -> tuple[float, float]:
    """Least-squares slope and intercept, x in seconds relative to ``intercept_time`` (ms).

    Sums are exactly rounded (math.fsum, in C) where Prometheus uses Kahan summation: the same
    results in practice, and fast enough for hundreds of series over hours of history; sums that
    are not finite follow Kahan's (see ``_regression_sum``).
    """
    init_y = vs[0]
    n = len(vs)
    if vs.count(init_y) == n:  # constant series: slope 0 (NaN count never equals, as in Go)
        if math.isinf(init_y):
            return math.nan, math.nan
        return 0.0, init_y
    xs = [(t - intercept_time) / 1e3 for t in ts]
    sum_x = _regression_sum(xs)
    sum_y = _regression_sum(vs)
    sum_xy = _regression_sum(list(map(operator.mul, xs, vs)))
    sum_x2 = _regression_sum(list(map(operator.mul, xs, xs)))
    cov_xy = sum_xy - sum_x * sum_y / n
    var_x = sum_x2 - sum_x * sum_x / n
    slope = go_div(cov_xy, var_x)
    intercept = sum_y / n - slope * sum_x / n
    return slope, intercept


def avg_over_time(vs: Sequence[float]) -> float:
    mean = count = c = 0.0
    for v in vs:
        count += 1
        if math.isinf(mean):
            if math.isinf(v) and (mean > 0) == (v > 0):
                continue
            if not math.isinf(v) and v == v:
                continue
        mean, c = kahan_inc(v / count - mean / count, mean, c)
    if math.isinf(mean):
        return mean
    return mean + c


def sum_over_time(vs: Sequence[float]) -> float:
    s = c = 0.0
    for v in vs:
        s, c = kahan_inc(v, s, c)
    if math.isinf(s):
        return s
    return s + c


def stdvar_over_time(vs: Sequence[float]) -> float:
    count = mean = c_mean = aux = c_aux = 0.0
    for v in vs:
        count += 1
        delta = v - (mean + c_mean)
        mean, c_mean = kahan_inc(delta / count, mean, c_mean)
        aux, c_aux = kahan_inc(delta * (v - (mean + c_mean)), aux, c_aux)
    return (aux + c_aux) / count


def max_over_time(vs: Sequence[float]) -> float:
    m = vs[0]
    for v in vs:
        if v > m or m != m:
            m = v
    return m


def min_over_time(vs: Sequence[float]) -> float:
    m = vs[0]
    for v in vs:
        if v < m or m != m:
            m = v
    return m


def changes(vs: Sequence[float]) -> float:
    n = 0
    prev = vs[0]
    for v in vs[1:]:
        if v != prev and not (v != v and prev != prev):
            n += 1
        prev = v
    return float(n)


def resets(vs: Sequence[float]) -> float:
    n = 0
    prev = vs[0]
    for v in vs[1:]:
        if v < prev:
            n += 1
        prev = v
    return float(n)


# ---------------------------------------------------------------- element-wise functions


def _safe(f: Callable[[float], float]) -> Callable[[float], float]:
    def g(v: float) -> float:
        try:
            return f(v)
        except ValueError:  # log of a negative number, sqrt(-1): NaN as in Go
            if (f is math.log and v == 0) or (f in (math.log2, math.log10) and v == 0):
                return -math.inf
            return math.nan
        except OverflowError:
            return math.inf
    return g


# Go's math.Log (FreeBSD's e_log.c), ported so results agree with Prometheus to the last bit.
_LN2_HI, _LN2_LO = 6.93147180369123816490e-01, 1.90821492927058770002e-10
_L1, _L2, _L3, _L4 = 6.666666666666735130e-01, 3.999999999940941908e-01, 2.857142874366239149e-01, \
    2.222219843214978396e-01
_L5, _L6, _L7 = 1.818357216161805012e-01, 1.531383769920937332e-01, 1.479819860511658591e-01
_INV_LN10 = 0.4342944819032518  # float64(1/Ln10), as Go's constant arithmetic rounds it
_INV_LN2 = 1.4426950408889634  # float64(1/Ln2)


def _ln(x: float) -> float:
    if x != x or x == math.inf:
        return x
    if x < 0:
        return math.nan
    if x == 0:
        return -math.inf
    f1, ki = math.frexp(x)
    if f1 < math.sqrt(2) / 2:
        f1 *= 2
        ki -= 1
    f = f1 - 1
    k = float(ki)
    s = f / (2 + f)
    s2 = s * s
    s4 = s2 * s2
    t1 = s2 * (_L1 + s4 * (_L3 + s4 * (_L5 + s4 * _L7)))
    t2 = s4 * (_L2 + s4 * (_L4 + s4 * _L6))
    r = t1 + t2
    hfsq = 0.5 * f * f
    return k * _LN2_HI - ((hfsq - (s * (hfsq + r) + k * _LN2_LO)) - f)


def _log2(x: float) -> float:
    if x != x or x <= 0 or math.isinf(x):
        return _ln(x)
    frac, exp = math.frexp(x)
    if frac == 0.5:  # exact powers of two give exact answers
        return float(exp - 1)
    return _ln(frac) * _INV_LN2 + float(exp)


def _log10(x: float) -> float:
    return _ln(x) * _INV_LN10


def _sgn(v: float) -> float:
    if v < 0:
        return -1.0
    if v > 0:
        return 1.0
    return v  # 0 or NaN


def _ceil(v: float) -> float:
    return v if math.isinf(v) or v != v else float(math.ceil(v))


def _floor(v: float) -> float:
    return v if math.isinf(v) or v != v else float(math.floor(v))


ELEMENTWISE: dict[str, Callable[[float], float]] = {
    "abs": abs,
    "ceil": _ceil,
    "floor": _floor,
    "sqrt": _safe(math.sqrt),
    "exp": _safe(math.exp),
    "ln": _ln,
    "log2": _log2,
    "log10": _log10,
    "sgn": _sgn,
}


def round_to(v: float, to_nearest: float) -> float:
    """Prometheus' round: floor(v/to + 0.5) * to, computed through the inverse as Go does."""
    inv = go_div(1.0, to_nearest)
    x = v * inv + 0.5
    if math.isinf(x) or x != x:
        return go_div(x, inv)
    return go_div(float(math.floor(x)), inv)


def _utc(v: float) -> datetime:
    return datetime.fromtimestamp(int(v), UTC)


DATE_FUNCTIONS: dict[str, Callable[[datetime], float]] = {
    "hour": lambda d: float(d.hour),
    "minute": lambda d: float(d.minute),
    "day_of_week": lambda d: float((d.weekday() + 1) % 7),
    "day_of_month": lambda d: float(d.day),
    "day_of_year": lambda d: float(d.timetuple().tm_yday),
    "days_in_month": lambda d: float(calendar.monthrange(d.year, d.month)[1]),
    "month": lambda d: float(d.month),
    "year": lambda d: float(d.year),
}


def date_value(func: str, v: float) -> float | None:
    """A calendar field of the Unix time ``v`` (UTC); None when ``v`` is not a representable time."""
    if v != v or math.isinf(v):
        return None
    try:
        return DATE_FUNCTIONS[func](_utc(v))
    except (OverflowError, OSError, ValueError):
        return None


def format_float(v: float) -> str:
    """Go's strconv.FormatFloat(v, 'f', -1, 64): shortest digits, never an exponent."""
    if v != v:
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    r = repr(v)
    if "e" not in r and "E" not in r:
        return r[:-2] if r.endswith(".0") else r
    from decimal import Decimal

    s = format(Decimal(r), "f")
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return s
