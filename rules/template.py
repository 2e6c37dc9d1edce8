"""Alert annotation templates: the Go text/template subset Prometheus alerting rules use.

``Template.parse(text)`` checks the text at load time (unknown functions, unbalanced ``if``/``end``,
bad syntax raise TemplateError); ``render(labels, value, external_labels)`` expands it. Output matches
Prometheus for ``$labels``, ``$value``, ``$externalLabels``, ``.Labels``/``.Value``, pipelines,
``if``/``else if``/``else``/``end``, comparisons, ``printf`` and the ``humanize*`` functions.
Nothing is evaluated as code: the text is tokenised and interpreted by a small tree walker.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from collector.schema import compile_regex


class TemplateError(ValueError):
    """A template that cannot be parsed (load time) or executed (render time)."""


# ---------------------------------------------------------------- Go number formatting


def _digits(v: float) -> tuple[str, int]:
    """Shortest decimal digits of abs(v) and the decimal-point position (Go's decimalSlice dp)."""
    r = repr(abs(v))
    mant, _, exp = r.partition("e")
    whole, _, frac = mant.partition(".")
    if frac == "0":
        frac = ""
    digits = (whole + frac).lstrip("0")
    lead = len(whole + frac) - len((whole + frac).lstrip("0"))
    dp = len(whole) + (int(exp) if exp else 0) - lead
    digits = digits.rstrip("0")
    if not digits:
        return "0", 1
    return digits, dp


def _special(v: float, plus: bool = True) -> str | None:
    if v != v:
        return "NaN"
    if math.isinf(v):
        return ("+Inf" if plus else "Inf") if v > 0 else "-Inf"
    return None


def go_shortest(v: float) -> str:
    """Go's %v / strconv.FormatFloat(v, 'g', -1, 64) for a float64."""
    sp = _special(v)
    if sp:
        return sp
    if v == 0:
        return "-0" if math.copysign(1, v) < 0 else "0"
    digits, dp = _digits(v)
    sign = "-" if v < 0 else ""
    exp = dp - 1
    if exp < -4 or exp >= 6:  # Go: "if precision was the shortest possible, use precision 6"
        mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{mant}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if dp <= 0:
        return f"{sign}0.{'0' * -dp}{digits}"
    if dp >= len(digits):
        return f"{sign}{digits}{'0' * (dp - len(digits))}"
    return f"{sign}{digits[:dp]}.{digits[dp:]}"


def go_format(v: float, verb: str, prec: int | None = None, flags: str = "", width: str = "") -> str:
    """Go's fmt verbs e, f, g (and %v) for a float64, with flags and width."""
    sp = _special(v)
    if sp is not None:
        s = sp if "+" in flags or sp != "+Inf" else "+Inf"
        if sp == "+Inf" and "+" not in flags:
            s = "+Inf"
        return f"{s:>{width}}" if width and "-" not in flags else (f"{s:<{width}}" if width else s)
    if verb in ("g", "v") and prec is None:
        s = go_shortest(v)
        if "+" in flags and not s.startswith("-"):
            s = "+" + s
    else:
        p = 6 if prec is None else prec
        s = ("%" + flags.replace("-", "").replace("0", "") + "." + str(p) + verb) % v
    if width:
        w = int(width)
        if "-" in flags:
            s = s.ljust(w)
        elif "0" in flags:
            neg = s[:1] in "+-"
            s = s[:1] + s[1:].rjust(w - 1, "0") if neg else s.rjust(w, "0")
        else:
            s = s.rjust(w)
    return s


def _g4(v: float) -> str:
    """Go's %.4g."""
    sp = _special(v)
    return sp if sp is not None else f"{v:.4g}"


# ---------------------------------------------------------------- Prometheus template functions


def _to_float(x: Any) -> float:
    if isinstance(x, bool):
        raise TemplateError(f"can't convert {_go_type(x)} to float")
    if isinstance(x, int | float):
        return float(x)
    if isinstance(x, str):
        try:
            return float(x)
        except ValueError:
            raise TemplateError(f'strconv.ParseFloat: parsing "{x}": invalid syntax') from None
    raise TemplateError(f"can't convert {_go_type(x)} to float")


def humanize(x: Any) -> str:
    """Prometheus' humanize: SI prefixes, 4 significant digits (1234567 -> 1.235M)."""
    v = _to_float(x)
    if v == 0 or v != v or math.isinf(v):
        return _g4(v)
    prefix = ""
    if abs(v) >= 1:
        for p in ("k", "M", "G", "T", "P", "E", "Z", "Y"):
            if abs(v) < 1000:
                break
            prefix = p
            v /= 1000
        return _g4(v) + prefix
    for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(v) >= 1:
            break
        prefix = p
        v *= 1000
    return _g4(v) + prefix


def humanize1024(x: Any) -> str:
    """Prometheus' humanize1024: binary prefixes (ki, Mi, ...)."""
    v = _to_float(x)
    if abs(v) <= 1 or v != v or math.isinf(v):
        return _g4(v)
    prefix = ""
    for p in ("ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"):
        if abs(v) < 1024:
            break
        prefix = p
        v /= 1024
    return _g4(v) + prefix


def humanize_duration(x: Any) -> str:
    """Prometheus' humanizeDuration: ``1d 1h 1m 1s``, or seconds with SI prefixes below one second."""
    v = _to_float(x)
    if v != v or math.isinf(v):
        return _g4(v)
    if v == 0:
        return _g4(v) + "s"
    if abs(v) >= 1:
        sign = ""
        if v < 0:
            sign, v = "-", -v
        d = int(v)
        seconds, minutes, hours, days = d % 60, (d // 60) % 60, (d // 3600) % 24, d // 86400
        if days:
            return f"{sign}{days}d {hours}h {minutes}m {seconds}s"
        if hours:
            return f"{sign}{hours}h {minutes}m {seconds}s"
        if minutes:
            return f"{sign}{minutes}m {seconds}s"
        return f"{sign}{_g4(v)}s"
    prefix = ""
    for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(v) >= 1:
            break
        prefix = p
        v *= 1000
    return f"{_g4(v)}{prefix}s"


def humanize_percentage(x: Any) -> str:
    """Prometheus' humanizePercentage: 0.1234 -> 12.34%."""
    return _g4(_to_float(x) * 100) + "%"


def humanize_timestamp(x: Any) -> str:
    """Prometheus' humanizeTimestamp: Go's time.Time printed in UTC."""
    v = _to_float(x)
    if v != v or math.isinf(v):
        return _g4(v)
    ns = int(v * 1e9) // 1_000_000 * 1_000_000  # Prometheus goes through model.Time: milliseconds
    d = datetime.fromtimestamp(ns // 1_000_000_000, UTC)
    frac = ns % 1_000_000_000
    fs = f".{frac:09d}".rstrip("0") if frac else ""
    return d.strftime("%Y-%m-%d %H:%M:%S") + fs + " +0000 UTC"


def _go_type(x: Any) -> str:
    if isinstance(x, bool):
        return "bool"
    if isinstance(x, int):
        return "int"
    if isinstance(x, float):
        return "float64"
    if isinstance(x, str):
        return "string"
    if isinstance(x, Mapping):
        return "map[string]string"
    return "<nil>"


def go_print(x: Any) -> str:
    """Go's %v of a template value."""
    if x is None:
        return "<no value>"
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, float):
        return go_shortest(x)
    if isinstance(x, Mapping):
        return "map[" + " ".join(f"{k}:{x[k]}" for k in sorted(x)) + "]"
    return str(x)


_VERB = re.compile(r"%([-+# 0]*)(\d*)(?:\.(\d*))?([a-zA-Z%])")


def go_sprintf(fmt: str, *args: Any) -> str:
    """Go's fmt.Sprintf for the verbs templates use: v s d f F e g q x t %, with flags, width, precision."""
    out: list[str] = []
    i = 0
    argi = 0
    for m in _VERB.finditer(fmt):
        out.append(fmt[i : m.start()])
        i = m.end()
        flags, width, prec_s, verb = m.groups()
        if verb == "%":
            out.append("%")
            continue
        if argi >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        a = args[argi]
        argi += 1
        prec = int(prec_s or 0) if prec_s is not None else None
        bad = f"%!{verb}({_go_type(a)}={go_print(a)})"
        if verb == "v":
            s = go_format(a, "v", None, flags, width) if isinstance(a, float) \
                else _pad(go_print(a), flags, width)
        elif verb in "eEfFgG":
            if isinstance(a, float):
                s = go_format(a, verb.lower() if verb != "G" and verb != "E" else verb, prec, flags, width)
            else:
                s = bad
        elif verb == "d":
            s = _pad(("%" + flags.replace("-", "") + "d") % a, flags, width) \
                if isinstance(a, int) and not isinstance(a, bool) else bad
        elif verb == "s":
            s = _pad(a[:prec] if prec is not None else a, flags, width) if isinstance(a, str) else bad
        elif verb == "q":
            s = _pad(_go_quote(a), flags, width) if isinstance(a, str) else bad
        elif verb == "t":
            s = _pad(go_print(a), flags, width) if isinstance(a, bool) else bad
        elif verb in "xX":
            if isinstance(a, int) and not isinstance(a, bool):
                s = _pad(format(a, verb), flags, width)
            elif isinstance(a, str):
                s = _pad(a.encode().hex() if verb == "x" else a.encode().hex().upper(), flags, width)
            else:
                s = bad
        else:
            s = bad
        out.append(s)
    out.append(fmt[i:])
    if argi < len(args):
        extra = ", ".join(f"{_go_type(a)}={go_print(a)}" for a in args[argi:])
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


def _pad(s: str, flags: str, width: str) -> str:
    if not width:
        return s
    return s.ljust(int(width)) if "-" in flags else s.rjust(int(width))


def _go_quote(s: str) -> str:
    out = ['"']
    for c in s:
        if c in '"\\':
            out.append("\\" + c)
        elif c == "\n":
            out.append("\\n")
        elif c == "\t":
            out.append("\\t")
        elif c == "\r":
            out.append("\\r")
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\x{ord(c):02x}")
        else:
            out.append(c)
    out.append('"')
    return "".join(out)


def _truth(x: Any) -> bool:
    if x is None:
        return False
    if isinstance(x, bool):
        return x
    if isinstance(x, int | float):
        return x != 0
    if isinstance(x, str | Mapping):
        return len(x) > 0
    return True


def _kind(x: Any) -> str:
    if isinstance(x, bool):
        return "bool"
    if isinstance(x, int):
        return "int"
    if isinstance(x, float):
        return "float"
    if isinstance(x, str):
        return "string"
    raise TemplateError("invalid type for comparison")


def _eq(a: Any, *bs: Any) -> bool:
    if not bs:
        raise TemplateError("missing argument for comparison")
    for b in bs:
        if _kind(a) != _kind(b):
            raise TemplateError("incompatible types for comparison")
        if a == b:
            return True
    return False


def _lt(a: Any, b: Any) -> bool:
    ka, kb = _kind(a), _kind(b)
    if ka != kb:
        raise TemplateError("incompatible types for comparison")
    if ka == "bool":
        raise TemplateError("invalid type for comparison")
    return bool(a < b)


def _re_replace_all(pattern: str, repl: str, text: str) -> str:
    from rules.promql.engine import go_expand

    rx = _regex(pattern)
    groupindex = dict(getattr(rx, "groupindex", {}) or {})
    ngroups = int(getattr(rx, "groups", 0))
    out, i = [], 0
    for m in rx.finditer(text):
        out.append(text[i : m.start()])
        out.append(go_expand(repl, m, groupindex, ngroups))
        i = m.end()
    out.append(text[i:])
    return "".join(out)


def _regex(pattern: str) -> Any:
    try:
        return compile_regex(pattern)
    except Exception as e:  # re2.error and re.error share no base class
        raise TemplateError(f"invalid regular expression {pattern!r}") from e


def _title(s: str) -> str:
    out, prev = [], " "
    for c in s:
        out.append(c.upper() if not (prev.isalnum() or prev in "_'") else c)
        prev = c
    return "".join(out)


def _strip_port(hostport: str) -> str:
    if hostport.startswith("["):
        end = hostport.find("]")
        return hostport[1:end] if end > 0 else hostport
    return hostport.rsplit(":", 1)[0] if hostport.count(":") == 1 else hostport


def _index(m: Any, *keys: Any) -> Any:
    for k in keys:
        if not isinstance(m, Mapping):
            raise TemplateError(f"can't index item of type {_go_type(m)}")
        m = m.get(k, "")
    return m


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "humanize": humanize,
    "humanize1024": humanize1024,
    "humanizeDuration": humanize_duration,
    "humanizePercentage": humanize_percentage,
    "humanizeTimestamp": humanize_timestamp,
    "printf": go_sprintf,
    "print": lambda *a: "".join(
        (" " if i and not isinstance(x, str) and not isinstance(a[i - 1], str) else "") + go_print(x)
        for i, x in enumerate(a)),
    "println": lambda *a: " ".join(go_print(x) for x in a) + "\n",
    "toUpper": lambda s: str(s).upper(),
    "toLower": lambda s: str(s).lower(),
    "title": _title,
    "stripPort": _strip_port,
    "reReplaceAll": _re_replace_all,
    "match": lambda p, s: _regex(p).search(s) is not None,
    "eq": _eq,
    "ne": lambda a, b: not _eq(a, b),
    "lt": _lt,
    "le": lambda a, b: _lt(a, b) or _eq(a, b),
    "gt": lambda a, b: not (_lt(a, b) or _eq(a, b)),
    "ge": lambda a, b: not _lt(a, b),
    "not": lambda a: not _truth(a),
    "len": lambda a: len(a),
    "index": _index,
    "html": lambda s: str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    .replace('"', "&#34;").replace("'", "&#39;"),
    "urlquery": lambda s: __import__("urllib.parse").parse.quote_plus(str(s)),
}
# Prometheus template functions that need a query engine or the web UI: refused, never faked.
_UNSUPPORTED = frozenset({"query", "first", "label", "value", "sortByLabel", "strvalue", "args", "tmpl",
                          "safeHtml", "pathPrefix", "externalURL", "parseDuration", "toTime", "graphLink",
                          "tableLink"})
_UNSUPPORTED_ACTIONS = frozenset({"range", "with", "define", "template", "block", "break", "continue"})


# ---------------------------------------------------------------- parsing


def _check_arity(name: str, got: int) -> None:
    """Raise TemplateError when function ``name`` cannot take ``got`` arguments."""
    if name in ("and", "or"):
        low, high = 1, None
    else:
        f = FUNCTIONS[name]
        code = f.__code__
        low = code.co_argcount - len(f.__defaults__ or ())
        high = None if code.co_flags & 0x04 else code.co_argcount  # 0x04: *args
    if got < low or (high is not None and got > high):
        want = f"at least {low}" if high is None else str(low) if low == high else f"{low} to {high}"
        raise TemplateError(f"wrong number of args for {name}: want {want} got {got}")


@dataclass(frozen=True, slots=True)
class _Operand:
    kind: str  # "var", "field", "str", "num", "bool", "nil", "pipe"
    name: str = ""
    path: tuple[str, ...] = ()
    value: Any = None


@dataclass(frozen=True, slots=True)
class _Command:
    func: str | None
    args: tuple[_Operand, ...]


@dataclass(frozen=True, slots=True)
class _Pipeline:
    commands: tuple[_Command, ...]
    declare: str | None = None


@dataclass(frozen=True, slots=True)
class _If:
    branches: tuple[tuple[_Pipeline, tuple[Any, ...]], ...]
    otherwise: tuple[Any, ...]


_TOKEN = re.compile(
    r"""\s+|(?P<str>"(?:[^"\\\n]|\\.)*")|(?P<raw>`[^`]*`)|(?P<num>[-+]?(?:0[xX][0-9a-fA-F]+|\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?))
    |(?P<var>\$[A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)|(?P<field>(?:\.[A-Za-z0-9_]+)+|\.)|(?P<decl>:=|=)
    |(?P<ident>[A-Za-z_][A-Za-z0-9_]*)|(?P<punct>[|()])""",
    re.VERBOSE,
)
_ESC = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "a": "\a", "b": "\b", "f": "\f", "v": "\v"}


def _unescape(s: str) -> str:
    return re.sub(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|.)",
                  lambda m: chr(int(m.group(1)[1:], 16)) if len(m.group(1)) > 1 else _ESC.get(m.group(1),
                                                                                              m.group(1)),
                  s)


class _ActionParser:
    def __init__(self, text: str, variables: set[str]):
        self.toks: list[tuple[str, str]] = []
        pos = 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if not m or m.end() == pos:
                raise TemplateError(f"unexpected {text[pos]!r} in action {{{{{text}}}}}")
            pos = m.end()
            if m.lastgroup:
                self.toks.append((m.lastgroup, m.group(m.lastgroup)))
        self.i = 0
        self.variables = variables

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def pipeline(self, stop: str | None = None) -> _Pipeline:
        declare = None
        toks = self.toks
        if len(toks) > self.i + 1 and toks[self.i][0] == "var" and toks[self.i + 1][0] == "decl":
            declare = self.toks[self.i][1]
            if "." in declare:
                raise TemplateError(f"cannot assign to field {declare}")
            self.i += 2
        commands = [self.command()]
        while (t := self.peek()) is not None and t == ("punct", "|"):
            self.i += 1
            commands.append(self.command())
        t = self.peek()
        if t is not None and t != ("punct", stop):
            raise TemplateError(f"unexpected {t[1]!r} in pipeline")
        if declare is not None:
            self.variables.add(declare)
        for c in commands[1:]:
            if c.func is None:
                raise TemplateError("non-function command in pipeline stage")
        for i, c in enumerate(commands):
            if c.func is not None:
                # a piped value is the last argument; Go finds a wrong count only when the
                # template runs, for every alert, so it is refused here at load
                _check_arity(c.func, len(c.args) + (1 if i else 0))
        return _Pipeline(tuple(commands), declare)

    def command(self) -> _Command:
        ops: list[_Operand] = []
        func: str | None = None
        first = True
        while (t := self.peek()) is not None and t not in (("punct", "|"), ("punct", ")")):
            kind, text = t
            self.i += 1
            if kind == "ident" and text in ("true", "false"):
                ops.append(_Operand("bool", value=text == "true"))
            elif kind == "ident" and text == "nil":
                ops.append(_Operand("nil"))
            elif kind == "ident":
                if text in _UNSUPPORTED:
                    raise TemplateError(f"function {text!r} is not supported")
                if text not in FUNCTIONS and text not in ("and", "or"):
                    raise TemplateError(f'function "{text}" not defined')
                if not first:
                    ops.append(_Operand("pipe", value=_Pipeline((_Command(text, ()),))))
                else:
                    func = text
            elif kind == "str":
                ops.append(_Operand("str", value=_unescape(text[1:-1])))
            elif kind == "raw":
                ops.append(_Operand("str", value=text[1:-1]))
            elif kind == "num":
                if re.fullmatch(r"[-+]?(0[xX][0-9a-fA-F]+|\d+)", text):
                    ops.append(_Operand("num", value=int(text, 0)))
                else:
                    ops.append(_Operand("num", value=float(text)))
            elif kind == "var":
                name, *path = text.split(".")
                if name not in self.variables:
                    raise TemplateError(f"undefined variable {name!r}")
                ops.append(_Operand("var", name, tuple(path)))
            elif kind == "field":
                ops.append(_Operand("field", path=tuple(p for p in text.split(".") if p)))
            elif (kind, text) == ("punct", "("):
                inner = self.pipeline(stop=")")
                if self.peek() != ("punct", ")"):
                    raise TemplateError("unclosed left paren")
                self.i += 1
                ops.append(_Operand("pipe", value=inner))
            else:
                raise TemplateError(f"unexpected {text!r} in command")
            first = False
        if func is None and not ops:
            raise TemplateError("missing value for command")
        if func is None and len(ops) > 1:
            raise TemplateError(f"can't give argument to non-function {ops[0].name or ops[0].value!r}")
        return _Command(func, tuple(ops))


_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.DOTALL)


class Template:
    """A parsed annotation template; render it with ``render(labels, value, external_labels)``."""

    __slots__ = ("nodes", "text")

    def __init__(self, text: str, nodes: tuple[Any, ...]):
        self.text = text
        self.nodes = nodes

    @classmethod
    def parse(cls, text: str) -> Template:
        """Parse ``text``; raise TemplateError (with the action at fault) for anything unsupported."""
        pieces: list[Any] = []
        pos = 0
        trim_next = False
        for m in _ACTION.finditer(text):
            lit = text[pos : m.start()]
            if trim_next:
                lit = lit.lstrip(" \t\r\n")
            if m.group(1):
                lit = lit.rstrip(" \t\r\n")
            pieces.append(lit)
            pieces.append(("action", m.group(2).strip(), m.start()))
            trim_next = bool(m.group(3))
            pos = m.end()
        tail = text[pos:]
        if "{{" in tail:
            raise TemplateError("unclosed action")
        pieces.append(tail.lstrip(" \t\r\n") if trim_next else tail)
        variables = {"$", "$labels", "$externalLabels", "$externalURL", "$value"}
        stack: list[tuple[list[Any], list[tuple[_Pipeline, list[Any]]], list[Any] | None]] = []
        current: list[Any] = []
        for p in pieces:
            if isinstance(p, str):
                if p:
                    current.append(p)
                continue
            _, body, at = p
            try:
                if body.startswith("/*"):
                    if not body.endswith("*/"):
                        raise TemplateError("unclosed comment")
                    continue
                word = body.split(None, 1)[0] if body else ""
                rest = body[len(word):].strip()
                if word == "if":
                    cond = _ActionParser(rest, variables).pipeline()
                    branches: list[tuple[_Pipeline, list[Any]]] = [(cond, [])]
                    stack.append((current, branches, None))
                    current = branches[0][1]
                elif word == "else":
                    if not stack:
                        raise TemplateError("unexpected {{else}}")
                    parent, branches, otherwise = stack[-1]
                    if otherwise is not None:
                        raise TemplateError("expected end; found {{else}}")
                    if rest.startswith("if ") or rest == "if":
                        branches.append((_ActionParser(rest[2:].strip(), variables).pipeline(), []))
                        current = branches[-1][1]
                    elif rest:
                        raise TemplateError(f"unexpected {rest!r} after else")
                    else:
                        otherwise = []
                        stack[-1] = (parent, branches, otherwise)
                        current = otherwise
                elif word == "end":
                    if not stack:
                        raise TemplateError("unexpected {{end}}")
                    parent, branches, otherwise = stack.pop()
                    parent.append(_If(tuple((c, tuple(b)) for c, b in branches), tuple(otherwise or ())))
                    current = parent
                elif word in _UNSUPPORTED_ACTIONS:
                    raise TemplateError(f"template action {word!r} is not supported")
                elif not body:
                    raise TemplateError("missing value for command")
                else:
                    current.append(_ActionParser(body, variables).pipeline())
            except TemplateError as e:
                raise TemplateError(f"{e} (at offset {at}: {text[at:at + 40]!r})") from None
        if stack:
            raise TemplateError("unexpected EOF: {{if}} without {{end}}")
        return cls(text, tuple(current))

    def render(self, labels: Mapping[str, str], value: float,
               external_labels: Mapping[str, str] | None = None, external_url: str = "") -> str:
        """Expand the template for one alert; raise TemplateError when execution fails."""
        ext = dict(external_labels or {})
        data = {"Labels": dict(labels), "ExternalLabels": ext, "ExternalURL": external_url,
                "Value": float(value)}
        variables: dict[str, Any] = {"$": data, "$labels": data["Labels"], "$externalLabels": ext,
                                     "$externalURL": external_url, "$value": float(value)}
        out: list[str] = []
        self._run(self.nodes, data, variables, out)
        return "".join(out)

    def _run(self, nodes: tuple[Any, ...], dot: Any, variables: dict[str, Any], out: list[str]) -> None:
        for n in nodes:
            if isinstance(n, str):
                out.append(n)
            elif isinstance(n, _Pipeline):
                v = self._pipe(n, dot, variables)
                if n.declare is None:
                    out.append(go_print(v))
            else:
                assert isinstance(n, _If)
                for cond, body in n.branches:
                    if _truth(self._pipe(cond, dot, variables)):
                        self._run(body, dot, variables, out)
                        break
                else:
                    self._run(n.otherwise, dot, variables, out)

    def _pipe(self, p: _Pipeline, dot: Any, variables: dict[str, Any]) -> Any:
        prev: Any = _NOTHING
        for c in p.commands:
            prev = self._command(c, dot, variables, prev)
        if p.declare is not None:
            variables[p.declare] = prev
        return prev

    def _command(self, c: _Command, dot: Any, variables: dict[str, Any], piped: Any) -> Any:
        if c.func is None:
            return self._operand(c.args[0], dot, variables)
        if c.func in ("and", "or"):
            args = [self._operand(a, dot, variables) for a in c.args]
            if piped is not _NOTHING:
                args.append(piped)
            if not args:
                raise TemplateError(f"wrong number of args for {c.func}")
            for a in args[:-1]:
                if _truth(a) == (c.func == "or"):
                    return a
            return args[-1]
        args = [self._operand(a, dot, variables) for a in c.args]
        if piped is not _NOTHING:
            args.append(piped)
        try:
            return FUNCTIONS[c.func](*args)
        except TemplateError as e:
            raise TemplateError(f"error calling {c.func}: {e}") from None
        except TypeError:
            raise TemplateError(f"wrong number of args for {c.func}: got {len(args)}") from None

    def _operand(self, o: _Operand, dot: Any, variables: dict[str, Any]) -> Any:
        if o.kind in ("str", "num", "bool"):
            return o.value
        if o.kind == "nil":
            raise TemplateError("nil is not a command")
        if o.kind == "pipe":
            return self._pipe(o.value, dot, variables)
        base = variables[o.name] if o.kind == "var" else dot
        for name in o.path:
            if isinstance(base, Mapping):
                at_root = base is variables["$"] and (o.kind == "field" or o.name == "$")
                if at_root:
                    if name not in base:
                        raise TemplateError(f"can't evaluate field {name}")
                base = base.get(name, "")
            else:
                raise TemplateError(f"can't evaluate field {name} in type {_go_type(base)}")
        return base


_NOTHING = object()
