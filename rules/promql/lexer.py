"""Split PromQL text into tokens, each with its character offset."""

from __future__ import annotations

import re
from dataclasses import dataclass

from rules.promql.errors import PromQLError

_NUMBER = re.compile(r"0[xX][0-9a-fA-F]+|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_DURATION_UNIT = re.compile(r"[0-9]+(ms|[smhdwy])")
_IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_SPACE = re.compile(r"[ \t\r\n]+")
# Longest first, so "==" wins over "=".
_OPERATORS = ("==", "!=", "<=", ">=", "=~", "!~", "+", "-", "*", "/", "%", "^", "<", ">", "=",
              "(", ")", "{", "}", "[", "]", ",", "@")
_UNITS = {"y": 365 * 86400, "w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1, "ms": 0.001}
_UNIT_ORDER = ("y", "w", "d", "h", "m", "s", "ms")
_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\"}


@dataclass(frozen=True, slots=True)
class Token:
    """One token: ``kind`` is NUMBER, DURATION, STRING, IDENT, OP or EOF."""

    kind: str
    text: str
    pos: int
    value: float | str = ""


def parse_duration(text: str, pos: int = 0) -> float:
    """Seconds of a Prometheus duration (``1h30m``, ``500ms``): units in descending order, each once."""
    total, at, last = 0.0, 0, -1
    while at < len(text):
        m = _DURATION_UNIT.match(text, at)
        if not m:
            raise PromQLError(f"bad duration syntax: {text!r}", pos)
        order = _UNIT_ORDER.index(m.group(1))
        if order <= last:
            raise PromQLError(f"bad duration syntax: {text!r} (units in descending order, once each)", pos)
        last = order
        total += int(m.group(0)[: -len(m.group(1))]) * _UNITS[m.group(1)]
        at = m.end()
    if not text:
        raise PromQLError("empty duration", pos)
    return total


def _unquote(text: str, pos: int) -> tuple[str, int]:
    """Read a Go-style quoted string starting at ``text[pos]``; return its value and the end offset."""
    quote = text[pos]
    if quote == "`":
        end = text.find("`", pos + 1)
        if end < 0:
            raise PromQLError("unterminated raw string", pos)
        return text[pos + 1 : end], end + 1
    out: list[str] = []
    i = pos + 1
    while i < len(text):
        c = text[i]
        if c == quote:
            return "".join(out), i + 1
        if c == "\n":
            break
        if c != "\\":
            out.append(c)
            i += 1
            continue
        if i + 1 >= len(text):
            break
        e = text[i + 1]
        if e in _ESCAPES:
            out.append(_ESCAPES[e])
            i += 2
        elif e == quote:
            out.append(e)
            i += 2
        elif e in "xuU":
            n = {"x": 2, "u": 4, "U": 8}[e]
            digits = text[i + 2 : i + 2 + n]
            if len(digits) != n or not all(d in "0123456789abcdefABCDEF" for d in digits):
                raise PromQLError(f"invalid escape sequence \\{e}{digits} in string", i)
            out.append(chr(int(digits, 16)))
            i += 2 + n
        elif e in "01234567":
            digits = text[i + 1 : i + 4]
            if len(digits) != 3 or not all(d in "01234567" for d in digits):
                raise PromQLError("invalid octal escape in string", i)
            out.append(chr(int(digits, 8)))
            i += 4
        else:
            raise PromQLError(f"unknown escape sequence \\{e} in string", i)
    raise PromQLError("unterminated quoted string", pos)


def tokenize(text: str) -> list[Token]:
    """All tokens of ``text``, ending with an EOF token; raises PromQLError with the offset of bad input."""
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in " \t\r\n":
            m = _SPACE.match(text, i)
            assert m is not None
            i = m.end()
            continue
        if c == "#":  # comment to end of line
            j = text.find("\n", i)
            i = n if j < 0 else j + 1
            continue
        if c.isdigit() or (c == "." and i + 1 < n and text[i + 1].isdigit()):
            m = _NUMBER.match(text, i)
            assert m is not None
            end = m.end()
            if end < n and (text[end].isalnum() or text[end] == "_"):
                # A number glued to letters: a duration (5m, 1h30m) or garbage (5x).
                j = end
                while j < n and (text[j].isalnum() or text[j] == "_"):
                    j += 1
                word = text[i:j]
                if not re.fullmatch(r"(?:[0-9]+(?:ms|[smhdwy]))+", word):
                    raise PromQLError(f"bad number or duration syntax: {word!r}", i)
                tokens.append(Token("DURATION", word, i, parse_duration(word, i)))
                i = j
                continue
            num = m.group(0)
            value = float(int(num, 16)) if num[:2].lower() == "0x" else float(num)
            tokens.append(Token("NUMBER", num, i, value))
            i = end
            continue
        if c in "\"'`":
            unquoted, end = _unquote(text, i)
            tokens.append(Token("STRING", text[i:end], i, unquoted))
            i = end
            continue
        if c.isalpha() or c in "_:":
            m = _IDENT.match(text, i)
            assert m is not None
            tokens.append(Token("IDENT", m.group(0), i, m.group(0)))
            i = m.end()
            continue
        for op in _OPERATORS:
            if text.startswith(op, i):
                tokens.append(Token("OP", op, i, op))
                i += len(op)
                break
        else:
            raise PromQLError(f"unexpected character {c!r}", i)
    tokens.append(Token("EOF", "", n))
    return tokens
