"""Export a RuleSet as a plain Prometheus rule file (``opsagent rules export``).

What changes on the way (see docs/rules.md):

* ``levels``: one rule per level, ``(expr) > 0.95`` for the worst level and
  ``(expr) > 0.90 unless (expr) > 0.95`` below it, so exactly one level's
  rule holds; each carries ``severity`` (the level mapped back through the
  severity mapping) and ``level``. Moving between levels restarts ``for`` in
  Prometheus, where opsagent keeps one alert.
* ``impact``: one rule per ``tier`` value of the matrix, plus one for series
  with no (or an unknown) tier, each with that row's level.
* ``recover`` (hysteresis), ``inhibits``/``depends_on`` and flapping have no
  Prometheus rule equivalent and are dropped (inhibition belongs in
  Alertmanager's ``inhibit_rules``); the file's header lists what was dropped.
"""

from __future__ import annotations

from typing import Any

import yaml

from rules import levels as lv
from rules.loader import AlertingRule, RecordingRule, RuleSet, RulesOptions


def export_rules(ruleset: RuleSet, options: RulesOptions | None = None) -> dict[str, Any]:
    """The Prometheus rule-file document (plain data) for a rule set."""
    options = options or RulesOptions()
    groups = []
    for g in ruleset.groups:
        rules: list[dict[str, Any]] = []
        for r in g.rules:
            if isinstance(r, RecordingRule):
                item: dict[str, Any] = {"record": r.record, "expr": r.expr.strip()}
                if r.labels:
                    item["labels"] = dict(r.labels)
                rules.append(item)
            else:
                rules.extend(_alerting(r, options))
        doc: dict[str, Any] = {"name": g.name}
        if g.interval:
            doc["interval"] = _duration(g.interval)
        if g.limit:
            doc["limit"] = g.limit
        doc["rules"] = rules
        groups.append(doc)
    return {"groups": groups}


def dropped(ruleset: RuleSet) -> list[str]:
    """One line per opsagent-only behaviour the export cannot carry."""
    out = []
    for r in ruleset.alerting_rules:
        if r.recover:
            out.append(f"{r.name}: recover ({r.recover.strip()}) dropped; resolves when expr stops holding")
        if r.inhibits:
            out.append(f"{r.name}: inhibits/depends_on dropped; use Alertmanager inhibit_rules")
    return out


def render_export(ruleset: RuleSet, options: RulesOptions | None = None, source: str = "") -> str:
    """The exported rule file as YAML text, with a header saying what was dropped."""
    head = ["# Prometheus rule file exported by `opsagent rules export`" + (f" from {source}" * bool(source))]
    head += ["# Flapping detection is not exported."]
    head += [f"# {line}" for line in dropped(ruleset)]
    body = yaml.dump(
        export_rules(ruleset, options), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=1000
    )
    return "\n".join(head) + "\n" + body


def _alerting(r: AlertingRule, options: RulesOptions) -> list[dict[str, Any]]:
    base = r.expr.strip()
    if r.levels:
        out = []
        for i, (level, th) in enumerate(r.levels):
            expr = f"({base}) {th}"
            worse = [f"({base}) {w}" for _, w in r.levels[:i]]
            if worse:
                expr = f"{expr} unless " + (f"({' or '.join(worse)})" if len(worse) > 1 else worse[0])
            out.append(_rule(r, expr, {"severity": lv.severity_for_level(level, options.severity_levels),
                                       "level": level}))
        return out
    if r.urgency:
        # one rule per distinct level: tiers with that level selected by ``and on(tier)``;
        # the default tier's level also takes series with no or an unknown tier (``unless``)
        tier = options.tier_label
        by_tier = {t: row.get(r.urgency) for t, row in options.impact_matrix.items()}
        default = lv.level_for_impact(None, r.urgency, options.impact_matrix, options.default_tier)
        out = []
        for level in sorted({x for x in by_tier.values() if x}, key=lambda x: lv.rank(x, options.levels)):
            if level == default:
                others = [t for t, x in by_tier.items() if x != level]
                expr = f"({base}) unless on({tier}) ({_tiers(tier, others)})" if others else base
            else:
                mine = [t for t, x in by_tier.items() if x == level]
                expr = f"({base}) and on({tier}) ({_tiers(tier, mine)})"
            out.append(_rule(r, expr, _level_labels(level, options)))
        return out
    extra: dict[str, str] = {}
    if "level" in r.labels and "severity" not in r.labels:
        extra["severity"] = lv.severity_for_level(r.labels["level"], options.severity_levels)
    return [_rule(r, base, extra)]


def _level_labels(level: str, options: RulesOptions) -> dict[str, str]:
    return {"severity": lv.severity_for_level(level, options.severity_levels), "level": level}


def _tiers(tier: str, values: list[str]) -> str:
    # one-element vectors carrying only tier=value, to select series by a label of the result
    return " or ".join(f'label_replace(vector(1), "{tier}", "{v}", "", "")' for v in values)


def _rule(r: AlertingRule, expr: str, extra_labels: dict[str, str]) -> dict[str, Any]:
    item: dict[str, Any] = {"alert": r.name, "expr": expr}
    if r.for_:
        item["for"] = _duration(r.for_)
    if r.keep_firing_for:
        item["keep_firing_for"] = _duration(r.keep_firing_for)
    labels = {**r.labels, **extra_labels}
    if labels:
        item["labels"] = labels
    if r.annotations:
        item["annotations"] = dict(r.annotations)
    return item


def _duration(seconds: float) -> str:
    from collector.schema import Duration

    return str(Duration(seconds))


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (expressions) as literal blocks, for readable output."""


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    if "\n" in data:
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", data)


_Dumper.add_representer(str, _str)
