"""Pure parts of log reading: the matching engine on strings, the position state, the docs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from collector.logscan import Matcher, PatternSpec, record_text, to_utf8
from collector.logstate import FileState, Position, parse_file_state

PATS = [
    PatternSpec("error", r"\berror\b"),
    PatternSpec("panic", r"\bpanic\b"),
    PatternSpec("start", r"^BOOT"),
    PatternSpec("exact", r"CaseSensitive", ignore_case=False),
]


def names(m: Matcher, records) -> list[tuple[str, ...]]:
    return [tuple(m.patterns[i].name for i in r.patterns) for r in records]


def test_each_matching_line_is_one_record_with_every_pattern_it_matched() -> None:
    m = Matcher(PATS, continuation=None)
    recs = m.scan(b"ok\nan ERROR and a Panic\nBOOT done\nmid BOOT\ncasesensitive\nCaseSensitive\n")
    assert names(m, recs) == [("error", "panic"), ("start",), ("exact",)]
    assert recs[0].text == b"an ERROR and a Panic\n"


def test_word_boundaries_and_anchors_are_per_line() -> None:
    m = Matcher(PATS, continuation=None)
    assert m.scan(b"errors everywhere\nterror\nx BOOT\n") == []


def test_continuation_joins_and_counts_once() -> None:
    m = Matcher(PATS)
    data = b"head error\n  frame error\n  frame panic\nnext line\n"
    recs = m.scan(data) + m.flush()
    assert names(m, recs) == [("error", "panic")]
    assert recs[0].lines == 3


def test_a_match_in_a_continuation_line_reaches_back_to_its_head() -> None:
    m = Matcher(PATS)
    recs = m.scan(b"before\nrequest failed\n  at Foo.bar(Foo.java:1) panic\nafter\n") + m.flush()
    assert [r.text for r in recs] == [b"request failed\n  at Foo.bar(Foo.java:1) panic\n"]


def test_record_split_across_blocks_is_held_back_and_joined() -> None:
    m = Matcher(PATS)
    first = m.scan(b"one error\nTraceback (most recent call last):\n")
    assert first == []  # the traceback may go on in the next block: held back
    second = m.scan(b'  File "x.py", line 1\nValueError: x\nfine\n')
    rest = m.flush()
    recs = first + second + rest
    assert len(recs) == 1 and recs[0].lines == 4


def test_record_length_is_bounded() -> None:
    m = Matcher(PATS, max_record_lines=3)
    data = b"error head\n" + b"  more\n" * 10
    recs = m.scan(data) + m.flush()
    assert recs[0].lines == 3


def test_invalid_utf8_does_not_hide_a_match() -> None:
    m = Matcher([*PATS, PatternSpec("zh", "错误")], continuation=None)
    recs = m.scan(b"\xff\xfe ERROR \x80\n" + "交易错误\n".encode())
    assert names(m, recs) == [("error",), ("zh",)]
    assert record_text(recs[0].text, 100) == "\ufffd\ufffd ERROR \ufffd"


def test_gbk_is_transcoded_and_invalid_bytes_replaced() -> None:
    assert to_utf8("错误".encode("gbk") + b"\xff\n", "gbk").decode() == "错误\ufffd\n"
    assert to_utf8(b"\xff", "utf-8") == b"\xff"


def test_record_text_cuts_long_lines_on_character_boundaries() -> None:
    text = ("错" * 100 + "\n").encode()
    out = record_text(text, 10)
    assert out.startswith("错错错") and "bytes cut" in out and "\ufffd" not in out


def test_state_round_trip_and_bad_state() -> None:
    st = FileState(position=Position(1, 2, 3, 4, 5), counts={"error": 2.0}, read_bytes=10.0)
    st.rotations["rename"] = 1.0
    assert dataclasses.asdict(parse_file_state(st.dump())) == dataclasses.asdict(st)
    for raw in (b"", b"[]", b'{"pos": [1, 2]}', b'{"counts": 3}', b"\xff"):
        with pytest.raises(ValueError):
            parse_file_state(raw)


def test_every_metric_and_option_is_documented() -> None:
    import collector.business as business
    import collector.logs as logs
    from collector.model import Desc

    docs = (Path(__file__).resolve().parent.parent / "docs" / "logs.md").read_text(encoding="utf-8")
    for mod in (logs, business):
        declared = [v.name for v in vars(mod).values() if isinstance(v, Desc)]
        assert declared
        assert [n for n in declared if f"`{n}`" not in docs] == []
    classes: tuple[type, ...] = (logs.LogsConfig, logs.LogFiles, logs.LogPattern)
    classes += (business.BusinessConfig, business.BusinessFlow)
    for cls in classes:
        options = [f.name for f in dataclasses.fields(cls) if f.name != "enabled"]
        assert [o for o in options if f"`{o}`" not in docs] == [], cls.__name__
    for name in logs.DEFAULT_PATTERNS:
        assert f"`{name}`" in docs
