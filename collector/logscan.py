"""Log matching engine: which records of a block of log text match which named patterns.

Pure (no I/O, no clock). Works on UTF-8 bytes made of complete lines; other
encodings are transcoded by the caller (``to_utf8``). User patterns run on
RE2, so matching is linear in the input and no pattern can hang the agent.

Speed comes from scanning a whole block with ONE combined regex (the
alternation of all patterns) to find the few candidate lines, then asking an
RE2 Set which patterns matched, only on those lines. A multi-line record (a
traceback) is a head line plus the continuation lines that follow it; it is
counted once per pattern however many of its lines match.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# Lines starting with blanks (traceback frames, Java "\tat ..."), and the
# other lines Python and Java write inside an exception report.
DEFAULT_CONTINUATION = (
    r"[ \t]|Traceback \(most recent call last\)|During handling of the above exception"
    r"|The above exception was the direct cause|Caused by:"
    r"|[A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt)(?::|$)"
)

_MAX_CARRY = 1 << 20  # a longer trailing record is matched as it is, not held back


@dataclass(frozen=True, slots=True)
class PatternSpec:
    """A named pattern: the regular expression (RE2 syntax) and whether case is ignored."""

    name: str
    regex: str
    ignore_case: bool = True


@dataclass(frozen=True, slots=True)
class Record:
    """One matching record: the indices of the patterns it matched and its text (UTF-8 bytes)."""

    patterns: tuple[int, ...]
    text: bytes
    lines: int


def _options(never_capture: bool = True) -> Any:
    import re2  # type: ignore[import-not-found,import-untyped,unused-ignore]

    opts = re2.Options()
    opts.log_errors = False
    opts.never_capture = never_capture
    return opts


def _wrap(p: PatternSpec) -> str:
    return f"(?i:{p.regex})" if p.ignore_case else f"(?:{p.regex})"


def to_utf8(data: bytes, encoding: str) -> bytes:
    """Transcode a block of log bytes to UTF-8; invalid bytes become U+FFFD.

    UTF-8 input is passed through unchanged: invalid bytes are harmless to RE2
    and are replaced only when a record is shown (``Record.text``).
    """
    if encoding in ("utf-8", "utf8"):
        return data
    # GB18030 is a superset of GBK and GB2312, so one codec reads all three.
    codec = "gb18030" if encoding.lower() in ("gbk", "gb2312", "gb18030") else encoding
    return data.decode(codec, errors="replace").encode("utf-8")


class Matcher:
    """Finds records matching any of ``patterns`` in blocks of complete lines.

    ``continuation``: a regex (matched at the start of a line) marking a line
    as part of the previous line's record; None disables multi-line records.
    A record is at most ``max_record_lines`` lines long. Call ``scan`` for each
    block, then ``flush`` at the end of the input, which returns the record
    held back at the end of the previous block (it may continue in the next).
    """

    def __init__(
        self,
        patterns: Sequence[PatternSpec],
        continuation: str | None = DEFAULT_CONTINUATION,
        max_record_lines: int = 50,
    ):
        import re2

        if not patterns:
            raise ValueError("a matcher needs at least one pattern")
        self.patterns = tuple(patterns)
        opts = _options()
        # (?m): a user's ^ and $ mean start and end of a line inside a block.
        combined = "(?m)(?:" + "|".join(_wrap(p) for p in self.patterns) + ")"
        self._combined = re2.compile(combined.encode(), opts)
        self._set = re2.Set.SearchSet(opts)
        for p in self.patterns:
            self._set.Add(("(?m)" + _wrap(p)).encode())
        self._set.Compile()
        self._cont = re2.compile(f"(?:{continuation})".encode(), opts) if continuation else None
        self.max_record_lines = max(1, max_record_lines)
        self._carry = b""

    # -- public

    def scan(self, data: bytes) -> list[Record]:
        """Records of ``data`` (complete lines); the last record is held back until the next call."""
        data = self._carry + data if self._carry else data
        self._carry = b""
        end = len(data)
        if self._cont is not None and end:
            head = self._last_record_start(data)
            if end - head <= _MAX_CARRY:
                self._carry = data[head:]
                end = head
        return self._records(data, end)

    def flush(self) -> list[Record]:
        """Records of the held-back tail: call at the end of the input."""
        data, self._carry = self._carry, b""
        return self._records(data, len(data)) if data else []

    def reset(self) -> None:
        """Forget the held-back tail (start of a new input)."""
        self._carry = b""

    def matched(self, line: bytes) -> tuple[int, ...]:
        """Indices of the patterns matching ``line`` (for callers that work line by line)."""
        return tuple(sorted(self._set.Match(line) or ()))

    # -- internals

    def _line_is_cont(self, data: bytes, start: int) -> bool:
        assert self._cont is not None
        nl = data.find(b"\n", start)
        return self._cont.match(data[start : len(data) if nl < 0 else nl]) is not None

    def _last_record_start(self, data: bytes) -> int:
        """Start of the record holding the last line (walking back over continuation lines)."""
        start = data.rfind(b"\n", 0, len(data) - 1) + 1
        for _ in range(self.max_record_lines - 1):
            if start == 0 or not self._line_is_cont(data, start):
                break
            start = data.rfind(b"\n", 0, start - 1) + 1
        return start

    def _records(self, data: bytes, end: int) -> list[Record]:
        out: list[Record] = []
        search = self._combined.search
        pos = 0  # also the floor: a record never reaches back before the end of the previous one
        while pos < end:
            m = search(data, pos, end)
            if m is None:
                break
            ls = data.rfind(b"\n", 0, m.start()) + 1
            le = data.find(b"\n", max(m.end(), ls), end)
            le = end if le < 0 else le + 1
            rs, rend, nlines = ls, le, 1
            if self._cont is not None:
                while rs > pos and nlines < self.max_record_lines and self._line_is_cont(data, rs):
                    i = data.rfind(b"\n", pos, rs - 1)
                    rs, nlines = (pos if i < 0 else i + 1), nlines + 1
                while rend < end and nlines < self.max_record_lines and self._line_is_cont(data, rend):
                    nxt = data.find(b"\n", rend, end)
                    rend, nlines = (end if nxt < 0 else nxt + 1), nlines + 1
            hits: set[int] = set()
            # Ask the Set only about the lines the combined regex flagged.
            while True:
                hits.update(self._set.Match(data[ls:le]) or ())
                m = search(data, le, rend) if le < rend else None
                if m is None:
                    break
                ls = data.rfind(b"\n", 0, m.start()) + 1
                le = data.find(b"\n", max(m.end(), ls), rend)
                le = rend if le < 0 else le + 1
            if hits:
                out.append(Record(tuple(sorted(hits)), data[rs:rend], nlines))
            pos = rend
        return out


def record_text(text: bytes, max_line_bytes: int) -> str:
    """A record as display text: invalid bytes replaced, each line cut at ``max_line_bytes``.

    The text is kept verbatim otherwise (markup, escape sequences): whoever
    renders it escapes it for its medium.
    """
    lines = text.rstrip(b"\n").split(b"\n")
    out = []
    for line in lines:
        if len(line) > max_line_bytes:
            cut = line[:max_line_bytes].decode("utf-8", errors="ignore")
            out.append(f"{cut}… [{len(line) - max_line_bytes} bytes cut]")
        else:
            out.append(line.decode("utf-8", errors="replace"))
    return "\n".join(out)
