"""Parse PromQL text into a checked syntax tree; anything outside the supported subset is refused here."""

from __future__ import annotations

import re
from collections.abc import Callable

from collector.schema import compile_regex
from rules.promql.ast import (
    AggregateExpr,
    BinaryExpr,
    Call,
    Expr,
    Matcher,
    MatchOp,
    MatrixSelector,
    NumberLiteral,
    ParenExpr,
    StringLiteral,
    UnaryExpr,
    ValueType,
    VectorMatching,
    VectorSelector,
    unwrap,
)
from rules.promql.errors import PromQLError
from rules.promql.functions import SIGNATURES, UNSUPPORTED
from rules.promql.lexer import Token, tokenize

AGGREGATORS = frozenset({"sum", "avg", "min", "max", "count", "count_values", "topk", "bottomk", "quantile",
                         "stddev", "stdvar", "group"})
_UNSUPPORTED_AGGREGATORS = frozenset({"limitk", "limit_ratio"})
_PARAM_TYPES: dict[str, ValueType] = {"topk": "scalar", "bottomk": "scalar", "quantile": "scalar",
                                      "count_values": "string"}
# Binary operator precedence, loosest first; "^" is the only right-associative one.
_PRECEDENCE = {"or": 1, "and": 2, "unless": 2, "==": 3, "!=": 3, "<=": 3, "<": 3, ">=": 3, ">": 3,
               "+": 4, "-": 4, "*": 5, "/": 5, "%": 5, "atan2": 5, "^": 6}
_UNARY_PRECEDENCE = 5
COMPARISONS = frozenset({"==", "!=", "<=", "<", ">=", ">"})
SET_OPERATORS = frozenset({"and", "or", "unless"})
_KEYWORDS = frozenset({"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
                       "bool", "offset", "atan2"})
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_TYPE_NAMES = {"scalar": "scalar", "vector": "instant vector", "matrix": "range vector", "string": "string"}


def type_name(t: ValueType) -> str:
    """The Prometheus name of a value type, for messages."""
    return _TYPE_NAMES[t]


def make_matcher(name: str, op: MatchOp, value: str, pos: int = 0) -> Matcher:
    """A label matcher; regexes are fully anchored and compiled with RE2 (a bad one is a PromQLError)."""
    test: Callable[[str], bool]
    if op == "=":
        test = value.__eq__
    elif op == "!=":
        test = value.__ne__
    else:
        try:
            rx = compile_regex(f"^(?:{value})$")
        except Exception as e:  # re2.error and re.error share no base class
            why = e.args[0] if e.args else e
            why = why.decode(errors="replace") if isinstance(why, bytes) else why
            raise PromQLError(f"invalid regular expression {value!r}: {why}", pos) from None
        match = rx.match
        if op == "=~":
            def test(v: str) -> bool:
                return match(v) is not None
        else:
            def test(v: str) -> bool:
                return match(v) is None
    return Matcher(name, op, value, test)


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0

    # -- token helpers
    def peek(self, k: int = 0) -> Token:
        return self.tokens[min(self.i + k, len(self.tokens) - 1)]

    def next(self) -> Token:
        t = self.tokens[self.i]
        if t.kind != "EOF":
            self.i += 1
        return t

    def at(self, text: str) -> bool:
        t = self.peek()
        return t.kind in ("OP", "IDENT") and t.text == text

    def expect(self, text: str, context: str) -> Token:
        t = self.peek()
        if not self.at(text):
            raise PromQLError(f"unexpected {self.describe(t)} in {context}, expected \"{text}\"", t.pos)
        return self.next()

    @staticmethod
    def describe(t: Token) -> str:
        if t.kind == "EOF":
            return "end of input"
        kind = {"NUMBER": "number", "DURATION": "duration", "STRING": "string", "IDENT": "identifier",
                "OP": "character"}[t.kind]
        return f'{kind} "{t.text}"'

    # -- expressions
    def parse(self) -> Expr:
        if self.peek().kind == "EOF":
            raise PromQLError("no expression found in input", 0)
        e = self.expr(0)
        t = self.peek()
        if t.kind != "EOF":
            raise PromQLError(f"unexpected {self.describe(t)}", t.pos)
        return e

    def binary_op(self) -> str | None:
        t = self.peek()
        if t.kind == "OP" and t.text in _PRECEDENCE:
            return t.text
        if t.kind == "IDENT" and t.text.lower() in ("and", "or", "unless", "atan2"):
            return t.text.lower()
        return None

    def expr(self, min_prec: int) -> Expr:
        lhs = self.unary()
        while True:
            op = self.binary_op()
            if op is None:
                return lhs
            prec = _PRECEDENCE[op]
            if prec < min_prec:
                return lhs
            op_tok = self.next()
            if op == "atan2":
                raise PromQLError("operator 'atan2' is not supported", op_tok.pos)
            return_bool = False
            if self.at("bool"):
                self.next()
                return_bool = True
            matching = self.matching(op)
            rhs = self.expr(prec if op == "^" else prec + 1)
            lhs = self.check_binary(op, lhs, rhs, matching, return_bool, op_tok.pos)

    def matching(self, op: str) -> VectorMatching | None:
        on, explicit = False, False
        labels: tuple[str, ...] = ()
        if self.peek().kind == "IDENT" and self.peek().text in ("on", "ignoring"):
            on = self.next().text == "on"
            labels = self.label_list()
            explicit = True
        card = "many-to-many" if op in SET_OPERATORS else "one-to-one"
        include: tuple[str, ...] = ()
        if self.peek().kind == "IDENT" and self.peek().text in ("group_left", "group_right"):
            t = self.next()
            if op in SET_OPERATORS:
                raise PromQLError(f'no grouping allowed for "{op}" operation', t.pos)
            card = "many-to-one" if t.text == "group_left" else "one-to-many"
            if self.at("("):
                include = self.label_list()
            for name in include:
                if on and name in labels:
                    raise PromQLError(f'label "{name}" must not occur in ON and GROUP clause at once', t.pos)
            explicit = True
        if not explicit and op not in SET_OPERATORS:
            return VectorMatching("one-to-one")
        return VectorMatching(card, on, labels, include)  # type: ignore[arg-type]

    def check_binary(self, op: str, lhs: Expr, rhs: Expr, matching: VectorMatching | None,
                     return_bool: bool, pos: int) -> BinaryExpr:
        for side in (lhs, rhs):
            if side.type not in ("scalar", "vector"):
                raise PromQLError(
                    f"binary expression must contain only scalar and instant vector types, "
                    f"got {type_name(side.type)}", side.pos)
        both_scalar = lhs.type == "scalar" and rhs.type == "scalar"
        if return_bool and op not in COMPARISONS:
            raise PromQLError("bool modifier can only be used on comparison operators", pos)
        if op in COMPARISONS and both_scalar and not return_bool:
            raise PromQLError("comparisons between scalars must use BOOL modifier", pos)
        if op in SET_OPERATORS and (lhs.type == "scalar" or rhs.type == "scalar"):
            raise PromQLError(f'set operator "{op}" not allowed in binary scalar expression', pos)
        vectors = lhs.type == "vector" and rhs.type == "vector"
        if matching is not None and (matching.labels or matching.include or matching.on
                                     or matching.card not in ("one-to-one", "many-to-many")) and not vectors:
            raise PromQLError("vector matching only allowed between instant vectors", pos)
        return BinaryExpr(op, lhs, rhs, matching if vectors else None, return_bool, pos)

    def unary(self) -> Expr:
        t = self.peek()
        if t.kind == "OP" and t.text in ("+", "-"):
            self.next()
            operand = self.expr(_UNARY_PRECEDENCE + 1)
            if operand.type not in ("scalar", "vector"):
                raise PromQLError(
                    f"unary expression only allowed on expressions of type scalar or instant vector, "
                    f"got {type_name(operand.type)}", t.pos)
            if t.text == "+":
                return operand
            if isinstance(operand, NumberLiteral):
                return NumberLiteral(-operand.value, t.pos)
            return UnaryExpr("-", operand, t.pos)
        return self.postfix(self.primary())

    def postfix(self, e: Expr) -> Expr:
        if self.at("["):
            lb = self.next()
            d = self.next()
            if d.kind != "DURATION":
                raise PromQLError(f"unexpected {self.describe(d)} in range, expected duration", d.pos)
            if self.peek().text.startswith(":"):
                raise PromQLError("subqueries are not supported", lb.pos)
            if not self.at("]"):
                t = self.peek()
                raise PromQLError(f"unexpected {self.describe(t)} in range, expected \"]\"", t.pos)
            self.next()
            if not isinstance(e, VectorSelector):
                raise PromQLError("ranges only allowed for vector selectors", lb.pos)
            if e.offset:
                raise PromQLError("no offset modifiers allowed before range", lb.pos)
            if float(d.value) <= 0:
                raise PromQLError("range must be greater than 0", d.pos)
            e = MatrixSelector(e, float(d.value), e.pos)
        if self.peek().kind == "IDENT" and self.peek().text == "offset":
            ot = self.next()
            sign = 1.0
            if self.at("-") or self.at("+"):
                sign = -1.0 if self.next().text == "-" else 1.0
            d = self.next()
            if d.kind != "DURATION":
                raise PromQLError(f"unexpected {self.describe(d)} in offset, expected duration", d.pos)
            off = sign * float(d.value)
            if isinstance(e, VectorSelector):
                e = VectorSelector(e.name, e.matchers, off, e.pos)
            elif isinstance(e, MatrixSelector):
                e = MatrixSelector(VectorSelector(e.selector.name, e.selector.matchers, off, e.selector.pos),
                                   e.range, e.pos)
            else:
                raise PromQLError("offset modifier must be preceded by an instant vector selector "
                                  "or range vector selector", ot.pos)
        if self.at("@"):
            raise PromQLError("the @ modifier is not supported", self.peek().pos)
        if self.at("["):
            raise PromQLError("subqueries are not supported" if self.peek(2).text.startswith(":") else
                              "ranges only allowed for vector selectors", self.peek().pos)
        return e

    def primary(self) -> Expr:
        t = self.peek()
        if t.kind == "NUMBER":
            self.next()
            return NumberLiteral(float(t.value), t.pos)
        if t.kind == "STRING":
            self.next()
            return StringLiteral(str(t.value), t.pos)
        if t.kind == "DURATION":
            raise PromQLError(f"unexpected duration \"{t.text}\"", t.pos)
        if self.at("("):
            self.next()
            inner = self.expr(0)
            self.expect(")", "parenthesized expression")
            return ParenExpr(inner, t.pos)
        if self.at("{"):
            return self.selector(None, t.pos)
        if t.kind == "IDENT":
            name = t.text
            low = name.lower()
            nxt = self.peek(1)
            if low in AGGREGATORS and (nxt.text == "(" or nxt.text in ("by", "without")):
                return self.aggregate()
            if low in _UNSUPPORTED_AGGREGATORS and nxt.text in ("(", "by", "without"):
                raise PromQLError(f"aggregation '{name}' is not supported", t.pos)
            if nxt.kind == "OP" and nxt.text == "(":
                return self.call()
            if low in ("inf", "nan"):
                self.next()
                return NumberLiteral(float(low), t.pos)
            if name in _KEYWORDS:
                raise PromQLError(f"unexpected {self.describe(t)}", t.pos)
            self.next()
            return self.selector(name, t.pos)
        raise PromQLError(f"unexpected {self.describe(t)}", t.pos)

    def label_name(self, context: str) -> Token:
        t = self.next()
        if t.kind != "IDENT" or not _LABEL_NAME.fullmatch(t.text):
            raise PromQLError(f"unexpected {self.describe(t)} in {context}, expected label", t.pos)
        return t

    def arguments(self, context: str) -> list[Expr]:
        """A parenthesised, comma-separated list of expressions (a trailing comma allowed)."""
        self.expect("(", context)
        args: list[Expr] = []
        while not self.at(")"):
            args.append(self.expr(0))
            if not self.at(","):
                break
            self.next()
        self.expect(")", context)
        return args

    def label_list(self) -> tuple[str, ...]:
        self.expect("(", "grouping opts")
        names: list[str] = []
        while not self.at(")"):
            names.append(self.label_name("grouping opts").text)
            if not self.at(","):
                break
            self.next()
        self.expect(")", "grouping opts")
        return tuple(names)

    def selector(self, name: str | None, pos: int) -> VectorSelector:
        matchers: list[Matcher] = []
        if name is not None:
            matchers.append(make_matcher("__name__", "=", name))
        if self.at("{"):
            self.next()
            while not self.at("}"):
                lt = self.label_name("label matching")
                op = self.next()
                if op.kind != "OP" or op.text not in ("=", "!=", "=~", "!~"):
                    raise PromQLError(f"unexpected {self.describe(op)} in label matching, "
                                      "expected one of \"=\", \"!=\", \"=~\" or \"!~\"", op.pos)
                vt = self.next()
                if vt.kind != "STRING":
                    raise PromQLError(f"unexpected {self.describe(vt)} in label matching, expected string",
                                      vt.pos)
                if lt.text == "__name__" and name is not None:
                    raise PromQLError(f'metric name must not be set twice: "{name}" or "{vt.value}"', lt.pos)
                matchers.append(make_matcher(lt.text, op.text, str(vt.value), vt.pos))  # type: ignore[arg-type]
                if not self.at(","):
                    break
                self.next()
            self.expect("}", "label matching")
        if not any(not m.matches_empty() for m in matchers):
            raise PromQLError("vector selector must contain at least one non-empty matcher", pos)
        metric = name
        if metric is None:
            for m in matchers:
                if m.name == "__name__" and m.op == "=":
                    metric = m.value
                    break
        return VectorSelector(metric, tuple(matchers), 0.0, pos)

    def grouping(self) -> tuple[tuple[str, ...], bool] | None:
        if self.peek().kind == "IDENT" and self.peek().text in ("by", "without"):
            without = self.next().text == "without"
            return self.label_list(), without
        return None

    def aggregate(self) -> AggregateExpr:
        t = self.next()
        op = t.text.lower()
        grouping = self.grouping()
        args = self.arguments("aggregation")
        after = self.grouping()
        if grouping is not None and after is not None:
            raise PromQLError("aggregation must only contain one grouping clause", t.pos)
        grouping = grouping or after or ((), False)
        param: Expr | None = None
        want = 2 if op in _PARAM_TYPES else 1
        if len(args) != want:
            raise PromQLError(f"wrong number of arguments for aggregate expression provided, "
                              f"expected {want}, got {len(args)}", t.pos)
        if want == 2:
            param = args[0]
            if param.type != _PARAM_TYPES[op]:
                raise PromQLError(f"expected type {type_name(_PARAM_TYPES[op])} in aggregation parameter, "
                                  f"got {type_name(param.type)}", param.pos)
        body = args[-1]
        if body.type != "vector":
            raise PromQLError(f"expected type instant vector in aggregation expression, "
                              f"got {type_name(body.type)}", body.pos)
        if op == "count_values" and isinstance(unwrap(param), StringLiteral):  # type: ignore[arg-type]
            label = unwrap(param).value  # type: ignore[arg-type, attr-defined]
            if not _LABEL_NAME.fullmatch(label):
                raise PromQLError(f"invalid label name {label!r} in count_values", param.pos)  # type: ignore
        return AggregateExpr(op, body, param, grouping[0], grouping[1], t.pos)

    def call(self) -> Call:
        t = self.next()
        name = t.text
        if name in UNSUPPORTED:
            raise PromQLError(f"function '{name}' is not supported", t.pos)
        sig = SIGNATURES.get(name)
        if sig is None:
            raise PromQLError(f"unknown function with name '{name}'", t.pos)
        args = self.arguments("function call")
        n = len(sig.args)
        if sig.variadic:  # the last argument repeats zero or more times, as in Prometheus
            if len(args) < n - 1:
                raise PromQLError(f'expected at least {n - 1} argument(s) in call to "{name}", '
                                  f"got {len(args)}", t.pos)
        elif not n - sig.optional <= len(args) <= n:
            want = n if not sig.optional else f"{n - sig.optional} to {n}"
            raise PromQLError(f'expected {want} argument(s) in call to "{name}", got {len(args)}', t.pos)
        for i, a in enumerate(args):
            want_t = sig.args[min(i, n - 1)]
            if a.type != want_t:
                raise PromQLError(f'expected type {type_name(want_t)} in call to function "{name}", '
                                  f"got {type_name(a.type)}", a.pos)
        if name == "label_replace":
            dst = unwrap(args[1])
            if isinstance(dst, StringLiteral) and not _LABEL_NAME.fullmatch(dst.value):
                raise PromQLError(f"invalid destination label name in label_replace(): {dst.value}", dst.pos)
            rx = unwrap(args[4])
            if isinstance(rx, StringLiteral):
                make_matcher("", "=~", rx.value, rx.pos)  # validates the regex at load time
        if name == "label_join":
            dst = unwrap(args[1])
            if isinstance(dst, StringLiteral) and not _LABEL_NAME.fullmatch(dst.value):
                raise PromQLError(f"invalid destination label name in label_join(): {dst.value}", dst.pos)
        return Call(name, tuple(args), sig.returns, t.pos)


def parse(text: str) -> Expr:
    """Parse ``text`` into a syntax tree, or raise PromQLError(message, pos) naming the offending part."""
    return _Parser(text).parse()
