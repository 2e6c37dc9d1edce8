"""Annotation templates: output identical to Prometheus' (checked against promtool where noted)."""

from __future__ import annotations

import pytest

from rules.template import Template, TemplateError


def render(text: str, value: float = 0.0, **labels: str) -> str:
    return Template.parse(text).render(labels, value, {"site": "bj"})


@pytest.mark.parametrize(
    ("text", "value", "want"),
    [
        ("{{ $value | humanize }}", 1234567, "1.235M"),
        ("{{ humanize $value }}", 0.00123, "1.23m"),
        ("{{ humanize $value }}", 0, "0"),
        ("{{ humanize1024 $value }}", 1048576, "1Mi"),
        ("{{ humanize1024 $value }}", 1234567, "1.177Mi"),
        ("{{ humanizeDuration $value }}", 90061, "1d 1h 1m 1s"),
        ("{{ humanizeDuration $value }}", 0.000012345, "12.35us"),
        ("{{ humanizeDuration $value }}", 59.5, "59.5s"),
        ("{{ humanizePercentage $value }}", 0.1234, "12.34%"),
        ("{{ $value }}", 1234567, "1.234567e+06"),  # Go's %v, as promtool prints it
        ("{{ $value }}", 0.5, "0.5"),
        ("{{ .Value }}", 100000, "100000"),
        ('{{ printf "%.2f" $value }}', 3.14159, "3.14"),
        ('{{ printf "%d" $value }}', 1234567, "%!d(float64=1.234567e+06)"),
        ('{{ printf "%5.1f|%e|%g" $value $value $value }}', 0.000012345, "  0.0|1.234500e-05|1.2345e-05"),
        ("{{ if gt $value 80.0 }}high{{ else if gt $value 50.0 }}mid{{ else }}low{{ end }}", 60, "mid"),
        ("{{- if lt $value 1.0 -}}  small  {{- end }}", 0.5, "small"),
        ("{{ humanizeTimestamp $value }}", 1234567, "1970-01-15 06:56:07 +0000 UTC"),
    ],
)
def test_functions_match_prometheus(text, value, want):
    assert render(text, value) == want


def test_labels_and_external_labels():
    assert render("{{ $labels.instance }} at {{ $externalLabels.site }}", instance="h1") == "h1 at bj"
    assert render("{{ .Labels.instance }}/{{ .ExternalLabels.site }}", instance="h1") == "h1/bj"
    assert render("[{{ $labels.missing }}]") == "[]"
    assert render('{{ $x := "a" }}{{ $x }}{{ toUpper $x }}') == "aA"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{{ query \"up\" }}", "function 'query' is not supported"),
        ("{{ nosuch $value }}", 'function "nosuch" not defined'),
        ("{{ if $value }}x", "without {{end}}"),
        ("{{ end }}", "unexpected {{end}}"),
        ("{{ $nope }}", "undefined variable '$nope'"),
        ("{{ range $labels }}{{ end }}", "not supported"),
        ("{{ $value", "unclosed action"),
        # Go notices a wrong argument count only when rendering, for every alert: refused at load
        ("{{ humanize }}", "wrong number of args for humanize: want 1 got 0"),
        ("{{ $value | humanize 2 }}", "wrong number of args for humanize: want 1 got 2"),
        ("{{ printf }}", "wrong number of args for printf: want at least 1 got 0"),
        ("{{ if and }}x{{ end }}", "wrong number of args for and: want at least 1 got 0"),
    ],
)
def test_bad_templates_fail_at_parse_time(text, message):
    with pytest.raises(TemplateError) as ei:
        Template.parse(text)
    assert message in str(ei.value)


def test_comparing_int_with_float_is_an_error_as_in_go():
    with pytest.raises(TemplateError, match="incompatible types"):
        render("{{ if gt $value 80 }}x{{ end }}", 90)
