"""The PromQL syntax tree: small frozen nodes, built once by the parser and evaluated many times."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

ValueType = Literal["scalar", "vector", "matrix", "string"]


class Expr:
    """Base of every node; ``pos`` is the character offset of the node in the source text."""

    __slots__ = ()
    pos: int

    @property
    def type(self) -> ValueType:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class NumberLiteral(Expr):
    """A number: ``1``, ``1.5e3``, ``0x1f``, ``Inf``, ``NaN``."""

    value: float
    pos: int = 0

    @property
    def type(self) -> ValueType:
        return "scalar"


@dataclass(frozen=True, slots=True)
class StringLiteral(Expr):
    """A quoted string, already unescaped."""

    value: str
    pos: int = 0

    @property
    def type(self) -> ValueType:
        return "string"


MatchOp = Literal["=", "!=", "=~", "!~"]


@dataclass(frozen=True, slots=True, eq=False)
class Matcher:
    """One label matcher; ``test`` is the compiled predicate (RE2 for regex matchers)."""

    name: str
    op: MatchOp
    value: str
    test: Callable[[str], bool] = field(repr=False, compare=False)

    def matches_empty(self) -> bool:
        return self.test("")


@dataclass(frozen=True, slots=True, eq=False)
class VectorSelector(Expr):
    """``name{matchers} offset d``; ``name`` is the metric name when given by an equality matcher."""

    name: str | None
    matchers: tuple[Matcher, ...]
    offset: float = 0.0  # seconds
    pos: int = 0

    @property
    def type(self) -> ValueType:
        return "vector"


@dataclass(frozen=True, slots=True, eq=False)
class MatrixSelector(Expr):
    """``selector[range]``: the samples of the last ``range`` seconds."""

    selector: VectorSelector
    range: float  # seconds
    pos: int = 0

    @property
    def type(self) -> ValueType:
        return "matrix"


@dataclass(frozen=True, slots=True, eq=False)
class ParenExpr(Expr):
    """``( expr )``."""

    expr: Expr
    pos: int = 0

    @property
    def type(self) -> ValueType:
        return self.expr.type


@dataclass(frozen=True, slots=True, eq=False)
class UnaryExpr(Expr):
    """``-expr`` or ``+expr``."""

    op: str
    expr: Expr
    pos: int = 0

    @property
    def type(self) -> ValueType:
        return self.expr.type


@dataclass(frozen=True, slots=True)
class VectorMatching:
    """How two vectors are matched: ``on``/``ignoring`` labels, cardinality and ``group_x`` extra labels."""

    card: Literal["one-to-one", "many-to-one", "one-to-many", "many-to-many"]
    on: bool = False
    labels: tuple[str, ...] = ()
    include: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, eq=False)
class BinaryExpr(Expr):
    """``lhs op [bool] [on/ignoring(...)] [group_x(...)] rhs``."""

    op: str
    lhs: Expr
    rhs: Expr
    matching: VectorMatching | None = None
    return_bool: bool = False
    pos: int = 0

    @property
    def type(self) -> ValueType:
        if self.lhs.type == "scalar" and self.rhs.type == "scalar":
            return "scalar"
        return "vector"


@dataclass(frozen=True, slots=True, eq=False)
class AggregateExpr(Expr):
    """``op [by|without (labels)] ([param,] expr)``."""

    op: str
    expr: Expr
    param: Expr | None = None
    grouping: tuple[str, ...] = ()
    without: bool = False
    pos: int = 0

    @property
    def type(self) -> ValueType:
        return "vector"


@dataclass(frozen=True, slots=True, eq=False)
class Call(Expr):
    """A function call; ``func`` names an entry of ``rules.promql.functions.FUNCTIONS``."""

    func: str
    args: tuple[Expr, ...]
    return_type: ValueType = "vector"
    pos: int = 0

    @property
    def type(self) -> ValueType:
        return self.return_type


def unwrap(e: Expr) -> Expr:
    """The expression inside any number of parentheses."""
    while isinstance(e, ParenExpr):
        e = e.expr
    return e


def lookbehind(e: Expr, lookback: float) -> dict[str | None, float]:
    """Seconds of history before the evaluation time that ``e`` reads, per metric name.

    A range selector reads its range plus its offset; an instant selector the engine's
    ``lookback`` plus its offset. The key ``None`` stands for selectors without a metric
    name (``{job="x"}``), which may read any series.
    """
    out: dict[str | None, float] = {}

    def need(sel: VectorSelector, seconds: float) -> None:
        seconds = max(0.0, seconds + sel.offset)  # a negative offset looks forward
        if seconds > out.get(sel.name, -1.0):
            out[sel.name] = seconds

    def walk(x: Expr | None) -> None:
        if isinstance(x, MatrixSelector):
            need(x.selector, x.range)
        elif isinstance(x, VectorSelector):
            need(x, lookback)
        elif isinstance(x, (ParenExpr, UnaryExpr)):
            walk(x.expr)
        elif isinstance(x, BinaryExpr):
            walk(x.lhs)
            walk(x.rhs)
        elif isinstance(x, AggregateExpr):
            walk(x.param)
            walk(x.expr)
        elif isinstance(x, Call):
            for a in x.args:
                walk(a)

    walk(e)
    return out
