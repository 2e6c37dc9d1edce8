"""A PromQL subset with Prometheus semantics: ``parse(text)`` once at load, ``Engine(history).instant``
at every evaluation. Anything outside the subset is refused by ``parse`` with a PromQLError.

Results: a Vector is a ``list[Series]`` (``Series.labels`` include ``__name__`` when kept, ``.value``);
a ``Scalar`` or ``String`` has ``.value``; a range-vector query returns ``list[RangeSeries]``.
"""

from rules.promql.ast import Expr
from rules.promql.engine import Engine, Matrix, RangeSeries, Scalar, Series, String, Value, Vector
from rules.promql.errors import EvalError, PromQLError
from rules.promql.parser import parse

__all__ = ["Engine", "EvalError", "Expr", "Matrix", "PromQLError", "RangeSeries", "Scalar", "Series",
           "String", "Value", "Vector", "parse"]
