"""PromQL parsing: what is refused at load time, with the offset of the offending part."""

from __future__ import annotations

import pytest

from rules.promql import PromQLError, parse


@pytest.mark.parametrize(
    ("text", "message", "pos"),
    [
        ("histogram_quantile(0.9, x)", "function 'histogram_quantile' is not supported", 0),
        ("rate(x[5x])", "bad number or duration syntax: '5x'", 7),
        ("foo(x)", "unknown function with name 'foo'", 0),
        ('x{a=~"("}', "invalid regular expression", 5),
        ("rate(x)", 'expected type range vector in call to function "rate", got instant vector', 5),
        ("x[5m:1m]", "subqueries are not supported", 1),
        ("1 > 2", "comparisons between scalars must use BOOL modifier", 2),
        ("x + ", "unexpected end of input", 4),
        ('{a=""}', "at least one non-empty matcher", 0),
        ("sum(x) by (a) by (b)", "unexpected identifier", 14),
        ("x @ 100", "the @ modifier is not supported", 2),
        ("1 and x", 'set operator "and" not allowed in binary scalar expression', 2),
    ],
)
def test_refused_with_message_and_position(text, message, pos):
    with pytest.raises(PromQLError) as ei:
        parse(text)
    assert message in ei.value.message
    assert ei.value.pos == pos


def test_precedence_and_associativity():
    from rules.history import History
    from rules.promql import Engine

    e = Engine(History())
    assert e.instant(parse("2 ^ 3 ^ 2"), 0).value == 512  # type: ignore[union-attr]
    assert e.instant(parse("-2 ^ 2"), 0).value == -4  # type: ignore[union-attr]
    assert e.instant(parse("1 + 2 * 3 - 4 / 2"), 0).value == 5  # type: ignore[union-attr]
    assert e.instant(parse("10 - 2 - 3"), 0).value == 5  # type: ignore[union-attr]
    assert e.instant(parse("2 * 3 % 4"), 0).value == 2  # type: ignore[union-attr]
